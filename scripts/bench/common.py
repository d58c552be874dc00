"""Helpers several benchmarks share: the composed config, the trial's model and batches."""

from __future__ import annotations

import os
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[2]
HOG = "while True: pass"  # a busy CPU process beside a measurement (``python -c HOG``)
OFFLINE_ENV = {"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "WANDB_MODE": "disabled"}


def compose(overrides: list[str]):
    """The project's Hydra config with ``overrides`` (no logger, no baseline, no progress)."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    from mudman.defaults import CONF_DIR

    base = ["logger=none", "compare_baseline=false", "progress=false"]
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return hydra_compose("config", overrides=base + overrides)


def load_model_and_batches(cfg, device):
    """The config's model, tokenizer and trial batches on ``device`` (as a trial builds them)."""
    from mudman.data.batching import build_trial_data
    from mudman.models.loading import load_model_and_tokenizer, resolve_dtype

    dtype = resolve_dtype(cfg.dtype, cfg.model.dtype, device)
    model, tokenizer = load_model_and_tokenizer(cfg.model, device, dtype, cfg.paths.cache_dir)
    data = build_trial_data(
        cfg.data, tokenizer, cfg.context_len, cfg.batch_size, cfg.paths.cache_dir
    ).to(device)
    return dtype, model, tokenizer, data


def sync(device: torch.device) -> None:
    """Wait for the device, so a timer around GPU work measures the work."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def child_env(**extra: str) -> dict[str, str]:
    """This process's environment with the repository first on ``PYTHONPATH``, so a child
    ``python -c`` imports ``scripts.bench`` and this tree's ``mudman`` from any directory."""
    path = os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH", "")) if p)
    return {**os.environ, "PYTHONPATH": path, **extra}
