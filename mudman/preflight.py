"""Checks that need the filesystem but not the weights, run before any model is loaded.

Why: a sweep left running for days must fail in its first seconds, with a message naming the
key, the value and what is allowed, on a full disk or unwritable output dir, a context longer
than the model supports, ``target_modules`` (or a LoRA attack's) the model lacks, pickle-only
weights, or data too small for the batches: not after the model loaded, or an hour into the
compute.

- directories: :func:`check_output_dir` (also run by :class:`PreflightCallback` before Hydra
  creates the run/sweep dir, so even Hydra's own files never hit a read-only or full disk);
- model: its ``config.json`` (max positions) and its module tree built on the *meta* device
  (no memory, milliseconds) to resolve ``target_modules``;
- data: the tokenizer alone, then the exact-length batches (cached: the trial reuses them);
- objective: its own files, e.g. the multiple-choice tasks of ``objective=mc_accuracy``.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

from mudman.errors import ConfigError

DEFAULT_MIN_FREE_MB = 200
MAX_POSITION_KEYS = ("max_position_embeddings", "n_positions", "max_sequence_length", "n_ctx")


def min_free_mb(cfg: DictConfig) -> float:
    """``preflight.min_free_mb`` (missing key: the default)."""
    section = cfg.get("preflight") or {}
    value = section.get("min_free_mb", DEFAULT_MIN_FREE_MB)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
        raise ConfigError(f"preflight.min_free_mb={value!r}; allowed: a number >= 0 (MiB)")
    return float(value)


def check_output_dir(path: str | os.PathLike, key: str, min_free: float) -> None:
    """Refuse a directory that cannot be created or written, or a disk that is (nearly) full."""
    path = Path(path).expanduser().absolute()
    existing = next(p for p in (path, *path.parents) if p.exists())
    if not existing.is_dir():
        where = (
            "is a file" if existing == path else f"cannot be created: {str(existing)!r} is a file"
        )
        raise ConfigError(f"{key}={str(path)!r} {where}; allowed: a writable directory")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise ConfigError(
            f"{key}={str(path)!r} is not writable ({str(existing)!r} denies writing to this "
            "user, or the file system is read-only); allowed: a writable directory"
        )
    free = shutil.disk_usage(existing).free / 2**20
    if free < min_free:
        raise ConfigError(
            f"{key}={str(path)!r}: only {free:.0f} MiB free on its disk; need at least "
            f"preflight.min_free_mb={min_free:g} MiB (free some space or lower that key)"
        )


def check_dirs(cfg: DictConfig, run_dir: Path | None) -> None:
    """The run directory and the shared cache directory."""
    needed = min_free_mb(cfg)
    if run_dir is not None:
        check_output_dir(run_dir, "hydra.run.dir", needed)
    check_output_dir(cfg.paths.cache_dir, "paths.cache_dir", needed)


def max_positions(config: Any) -> int | None:
    """The longest context the architecture config allows (``None`` when it does not say)."""
    for key in MAX_POSITION_KEYS:
        value = getattr(config, key, None)
        if isinstance(value, int) and value > 0:
            return value
    return None


_CHECKED_MODELS: set[str] = set()  # a sweep's trials share model and targets: check once


def check_model(cfg: DictConfig) -> None:
    """Context length and ``target_modules`` against the model's config and module tree."""
    import torch
    from transformers import AutoModelForCausalLM

    from mudman.models.loading import load_model_config
    from mudman.models.targets import select_target_params

    model = OmegaConf.to_container(cfg.model, resolve=True)
    targets = cfg.target_modules
    if OmegaConf.is_config(targets):
        targets = OmegaConf.to_container(targets, resolve=True)
    from mudman.attack.lora import lora_module_names
    from mudman.attack.suite import attack_specs

    lora = [spec for spec in attack_specs(cfg) if spec.name == "lora"]
    lora_targets = [spec.settings.get("target_modules") for spec in lora]
    key = json.dumps(
        [model, targets, cfg.context_len, str(cfg.paths.cache_dir), lora_targets], default=str
    )
    if key in _CHECKED_MODELS:
        return

    config = load_model_config(cfg.model, cfg.paths.cache_dir)
    limit = max_positions(config)
    if limit is not None and cfg.context_len > limit:
        raise ConfigError(
            f"context_len={cfg.context_len} is longer than model {cfg.model.name}'s "
            f"max_position_embeddings={limit} (from its config.json); allowed: 2..{limit}"
        )
    with torch.device("meta"):  # the module tree only: no weights are allocated or read
        skeleton = AutoModelForCausalLM.from_config(
            config, trust_remote_code=cfg.model.get("trust_remote_code", False) is True
        )
    select_target_params(skeleton, cfg.target_modules)
    for spec in lora:  # the LoRA attack's adapter targets exist too
        lora_module_names(skeleton, spec.settings.get("target_modules"), spec.key)
    _CHECKED_MODELS.add(key)


def check_data(cfg: DictConfig) -> None:
    """Files exist, parse, have the field, and give enough exact-length examples. The batches
    built here stay on the trial's device for the trial (and the next ones) to reuse."""
    from mudman.data.device_cache import DEVICE_DATA
    from mudman.models.loading import load_tokenizer, resolve_device

    tokenizer = load_tokenizer(cfg.model, cfg.paths.cache_dir)
    device = resolve_device(cfg.device)
    DEVICE_DATA.get(
        cfg.data, tokenizer, cfg.context_len, cfg.batch_size, cfg.paths.cache_dir, device
    )


def check_objective(cfg: DictConfig) -> None:
    """The objective's own inputs (e.g. the multiple-choice task files) load and parse."""
    from mudman.objectives import build_objective

    build_objective(cfg.objective).check_inputs(cfg.paths.cache_dir)


def preflight(cfg: DictConfig, run_dir: Path | None = None) -> None:
    """Every check that needs files but no weights (after :func:`validate_config`)."""
    check_dirs(cfg, run_dir)
    check_model(cfg)
    check_data(cfg)
    check_objective(cfg)


def _fail(err: ConfigError) -> None:
    # Hydra's own error report would print a traceback; bad input gets one clean line
    print(f"Error: {err}", file=sys.stderr)
    sys.exit(2)


class PreflightCallback(Callback):
    """Hydra callback: check output dirs before Hydra creates them or writes its config files."""

    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        try:
            needed = min_free_mb(config)
            check_output_dir(config.hydra.run.dir, "hydra.run.dir", needed)
            check_output_dir(config.paths.cache_dir, "paths.cache_dir", needed)
            results = Path(config.hydra.run.dir).expanduser() / "results.json"
            if results.exists() and not config.get("overwrite", False):
                # refuse before Hydra rewrites the finished run's .hydra/ files
                raise ConfigError(f"{results} exists; pass overwrite=true to replace it")
        except ConfigError as err:
            _fail(err)

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        try:
            needed = min_free_mb(config)
            check_output_dir(config.hydra.sweep.dir, "hydra.sweep.dir", needed)
            check_output_dir(config.paths.cache_dir, "paths.cache_dir", needed)
            storage = str(config.hydra.sweeper.get("storage") or "")
            if storage.startswith("sqlite:///"):
                database = Path(storage.removeprefix("sqlite:///")).expanduser()
                check_output_dir(database.parent, "hydra.sweeper.storage", needed)
        except ConfigError as err:
            _fail(err)
