"""Shared fixtures: tiny models built in code, tiny real-text data sets, composed configs.

Everything here is offline and fast; tests needing the real SmolLM2 asset are marked
``slow`` and run only with ``--run-slow`` (or ``MUDMAN_SLOW=1``). Tests that start Python
processes are marked ``spawns`` (``make test-fast`` leaves them out); a test that starts one
without the marker fails, so the fast suite stays fast.
"""

from __future__ import annotations

import json
import os
import random
import sys
import sysconfig
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ["WANDB_MODE"] = "disabled"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# Tiny models gain nothing from a second thread and lose a lot to contention on a shared
# 2-core machine (measured 0.2 s vs 2.3 s per tiny trial under load); inherited by subprocesses.
os.environ.setdefault("OMP_NUM_THREADS", "1")

REPO = Path(__file__).resolve().parent.parent
CONF = REPO / "conf"

# The W&B logger config the tracking tests build trackers from (offline: nothing leaves here).
WANDB_CFG = {
    "name": "wandb",
    "project": "mudman-test",
    "entity": None,
    "group": "g",
    "job_type": "trial",
    "run_name": None,
    "tags": [],
    "mode": "offline",
}


def tiny_sweep_command(
    text_files: dict[str, Path], *extra: str, sweeper: str = "mudman_optuna"
) -> list[str]:
    """``python -m mudman -m`` on the tiny model and data, batch 4 x 32, no logger: the start
    of every command-line sweep in the tests; ``extra`` follows."""
    return [
        sys.executable,
        "-m",
        "mudman",
        "-m",
        f"hydra/sweeper={sweeper}",
        *tiny_jsonl_args(text_files),
        "logger=none",
        "batch_size=4",
        "context_len=32",
        *extra,
    ]


def tiny_jsonl_args(text_files: dict[str, Path]) -> list[str]:
    """Overrides selecting the tiny Llama and the ``text_files`` fixture as forget/retain data."""
    return [
        "model=tiny-llama",
        "data=jsonl",
        f"data.forget.local.path={text_files['forget']}",
        f"data.retain.local.path={text_files['retain']}",
    ]


def batch_recorder():
    """A one-weight model that remembers the first token of every training batch (batches
    are constant-filled in the tests that use it), so a test sees which stream fed each step;
    evaluation forwards (no grad) are not recorded."""
    import torch
    from torch import nn

    class BatchRecorder(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.embed = nn.Embedding(8, 8)
            self.seen: list[int] = []

        def forward(self, input_ids):
            if torch.is_grad_enabled():
                self.seen.append(int(input_ids[0, 0]))
            return type("Out", (), {"logits": self.embed(input_ids)})()

    return BatchRecorder()


@pytest.fixture(autouse=True)
def _spawning_needs_the_marker(request, monkeypatch):
    """Fail a test that starts a Python process (the CLI, a worker, a script) unmarked."""
    if request.node.get_closest_marker("spawns"):
        return
    import multiprocessing.process
    import subprocess

    def refuse(what: str):
        raise AssertionError(f"{request.node.nodeid} starts {what}: mark it @pytest.mark.spawns")

    popen_init = subprocess.Popen.__init__

    def checked_popen(self, args, *rest, **kwargs):
        program = str(args[0] if isinstance(args, (list, tuple)) else args).split()[0]
        if program == sys.executable or Path(program).name.startswith("python"):
            refuse(f"a Python process ({program})")
        popen_init(self, args, *rest, **kwargs)

    def checked_start(self):
        refuse(f"a multiprocessing process ({self.name})")

    monkeypatch.setattr(subprocess.Popen, "__init__", checked_popen)
    monkeypatch.setattr(multiprocessing.process.BaseProcess, "start", checked_start)


def pytest_addoption(parser):
    parser.addoption("--run-slow", action="store_true", help="run tests on real offline assets")


def pytest_collection_modifyitems(config, items):
    if config.getoption("--run-slow") or os.environ.get("MUDMAN_SLOW") == "1":
        return
    skip = pytest.mark.skip(reason="slow: needs real assets; use --run-slow or MUDMAN_SLOW=1")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)


def _stdlib_functions(limit: int) -> list[str]:
    """Real Python: top-level function bodies from a few stdlib modules (deterministic)."""
    root = Path(sysconfig.get_paths()["stdlib"])
    texts = []
    for name in ("textwrap.py", "shlex.py", "fnmatch.py", "glob.py", "string.py", "ntpath.py"):
        source = (root / name).read_text(encoding="utf-8")
        for chunk in source.split("\ndef ")[1:]:
            texts.append("def " + chunk[:600])
    return texts[:limit]


def _english(limit: int) -> list[str]:
    """Real English: the Zen of Python decoded, recombined deterministically into paragraphs."""
    import codecs
    import this

    lines = [line for line in codecs.decode(this.s, "rot13").splitlines()[2:] if line]
    rng = random.Random(0)
    return [" ".join(rng.sample(lines, 6)) for _ in range(limit)]


@pytest.fixture(scope="session")
def text_files(tmp_path_factory) -> dict[str, Path]:
    """forget.jsonl (Python) and retain.jsonl (English) with a ``text`` field."""
    directory = tmp_path_factory.mktemp("texts")
    files = {"forget": directory / "forget.jsonl", "retain": directory / "retain.jsonl"}
    for side, texts in (("forget", _stdlib_functions(200)), ("retain", _english(200))):
        with files[side].open("w") as handle:
            for text in texts:
                handle.write(json.dumps({"text": text}) + "\n")
    return files


@pytest.fixture
def compose(text_files, tmp_path):
    """Compose the real Hydra config with tiny-model, tiny-data overrides plus your own."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    def _compose(*overrides: str):
        base = [
            *tiny_jsonl_args(text_files),
            "logger=none",
            "progress=false",
            f"paths.cache_dir={tmp_path / 'cache'}",
            "batch_size=4",
            "context_len=32",
            "unlearn_passes=30",
            "relearn_passes=10",
            "eval_every_passes=10",
            "compare_baseline=false",
            "retain_loss_budget=1.0",
        ]
        with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
            return hydra_compose("config", overrides=[*base, *overrides])

    return _compose


@pytest.fixture(scope="session")
def trained_tiny_dir(text_files, tmp_path_factory) -> Path:
    """A tiny Llama briefly trained on the fixture texts, saved with save_pretrained.

    A random model sits at the uniform loss where unlearning has nothing to remove; a few
    hundred Adam steps give it real (if small) skills, and the directory exercises the same
    ``from_pretrained`` path as Hub models.
    """
    import torch

    from mudman.data.batching import tokenize_exact
    from mudman.losses import cross_entropy
    from mudman.models.tiny import byte_tokenizer, tiny_llama

    tokenizer = byte_tokenizer()
    texts = [
        json.loads(line)["text"]
        for side in ("forget", "retain")
        for line in text_files[side].read_text().splitlines()
    ]
    examples = tokenize_exact(texts, tokenizer, 32)
    model = tiny_llama(seed=0, hidden=48).train()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    gen = torch.Generator().manual_seed(0)
    for _ in range(150):
        batch = examples[torch.randint(len(examples), (16,), generator=gen)]
        optimizer.zero_grad()
        cross_entropy(model(input_ids=batch).logits, batch).backward()
        optimizer.step()
    directory = tmp_path_factory.mktemp("trained-tiny")
    model.eval().save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory
