"""Exactly-N-token examples, a seeded 50/25/25 split, and the batches every trial reuses.

Following the paper's setup: examples shorter than ``context_len`` tokens are dropped and
longer ones truncated (no padding); the split uses its own fixed seed so every trial of every
study sees identical batches in identical order. Tokenized tensors are cached on disk (keyed by
source, tokenizer and length) and in memory, so a sweep tokenizes once.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import torch
from omegaconf import DictConfig, OmegaConf

from mudman.errors import ConfigError
from mudman.results import current_umask

SPLIT_FRACTIONS = (0.50, 0.25, 0.25)  # train / validation / test
_MEMORY_CACHE: dict[str, torch.Tensor] = {}


def tokenize_exact(texts: list[str], tokenizer, context_len: int) -> torch.Tensor:
    """Token ids ``[n_examples, context_len]`` of every text at least that long, truncated."""
    rows = []
    for start in range(0, len(texts), 1024):
        encoded = tokenizer(texts[start : start + 1024])["input_ids"]
        rows.extend(ids[:context_len] for ids in encoded if len(ids) >= context_len)
    if not rows:
        return torch.empty(0, context_len, dtype=torch.long)
    return torch.tensor(rows, dtype=torch.long)


def split_examples(
    examples: torch.Tensor, seed: int = 42
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Deterministic shuffled 50/25/25 train/validation/test split."""
    generator = torch.Generator().manual_seed(seed)
    order = torch.randperm(len(examples), generator=generator)
    n_train = int(len(examples) * SPLIT_FRACTIONS[0])
    n_val = int(len(examples) * SPLIT_FRACTIONS[1])
    shuffled = examples[order]
    return shuffled[:n_train], shuffled[n_train : n_train + n_val], shuffled[n_train + n_val :]


def to_batches(examples: torch.Tensor, batch_size: int) -> list[torch.Tensor]:
    """Consecutive full batches (the incomplete tail is dropped, as with drop_last)."""
    n_full = len(examples) // batch_size
    return [examples[i * batch_size : (i + 1) * batch_size] for i in range(n_full)]


def tokenizer_fingerprint(tokenizer) -> str:
    """Hash of the tokenizer's full definition, so a changed vocabulary invalidates caches."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    text = backend.to_str() if backend is not None else repr(sorted(tokenizer.get_vocab().items()))
    extra = f"{tokenizer.bos_token}|{getattr(tokenizer, 'add_bos_token', None)}"
    return hashlib.sha256((text + extra).encode()).hexdigest()[:16]


def _atomic_save(tensor: torch.Tensor, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
    os.close(fd)
    torch.save(tensor, tmp)
    os.chmod(tmp, 0o666 & ~current_umask())  # mkstemp's 0600 -> the user's umask, as usual
    os.replace(tmp, path)


def cached_examples(
    spec: DictConfig, key: str, tokenizer, context_len: int, cache_dir: str | None
) -> torch.Tensor:
    """Tokenized exact-length examples of one source, from memory, disk, or freshly built."""
    from mudman.data.sources import load_texts

    spec_json = json.dumps(OmegaConf.to_container(spec, resolve=True), sort_keys=True)
    digest = hashlib.sha256(
        f"{spec_json}|{tokenizer_fingerprint(tokenizer)}|{context_len}".encode()
    ).hexdigest()[:20]
    if digest in _MEMORY_CACHE:
        return _MEMORY_CACHE[digest]
    path = Path(cache_dir).expanduser() / "examples" / f"{digest}.pt" if cache_dir else None
    if path is not None and path.exists():
        examples = torch.load(path, weights_only=True)
    else:
        examples = tokenize_exact(load_texts(spec, key, cache_dir), tokenizer, context_len)
        if path is not None:
            _atomic_save(examples, path)
    _MEMORY_CACHE[digest] = examples
    return examples


@dataclass
class TrialData:
    """Batches for one trial; eval batches are the first validation batch of each side."""

    forget_train: list[torch.Tensor]
    retain_train: list[torch.Tensor]
    forget_val: list[torch.Tensor]
    retain_val: list[torch.Tensor]

    @property
    def forget_eval(self) -> torch.Tensor:
        return self.forget_val[0]

    @property
    def retain_eval(self) -> torch.Tensor:
        return self.retain_val[0]

    @property
    def relearn_forget(self) -> list[torch.Tensor]:
        """The attacker's stream: forget validation batches after the eval batch."""
        return self.forget_val[1:]

    @property
    def relearn_retain(self) -> list[torch.Tensor]:
        return self.retain_val[1:]

    def to(self, device: torch.device) -> TrialData:
        move = lambda batches: [b.to(device) for b in batches]  # noqa: E731
        return TrialData(
            *(
                move(b)
                for b in (self.forget_train, self.retain_train, self.forget_val, self.retain_val)
            )
        )


def build_trial_data(
    data_cfg: DictConfig,
    tokenizer,
    context_len: int,
    batch_size: int,
    cache_dir: str | None,
    split_seed: int = 42,
) -> TrialData:
    """Forget/retain batches for the configured data source (``offline``, ``hub``, ...)."""
    source = data_cfg.source
    sides = {}
    for side in ("forget", "retain"):
        if source not in data_cfg[side] or data_cfg[side][source] is None:
            options = [k for k, v in data_cfg[side].items() if v is not None]
            raise ConfigError(
                f"data={data_cfg.name} has no {side} source for data.source={source!r}; "
                f"allowed: {', '.join(options)}"
            )
        key = f"data.{side}.{source}"
        examples = cached_examples(data_cfg[side][source], key, tokenizer, context_len, cache_dir)
        train, val, _test = split_examples(examples, split_seed)
        sides[side] = (to_batches(train, batch_size), to_batches(val, batch_size))
        if len(sides[side][0]) < 1 or len(sides[side][1]) < 2:
            raise ConfigError(
                f"{key}: only {len(examples)} examples of >= {context_len} tokens; need at least "
                f"{4 * batch_size} for one train and two validation batches of batch_size="
                f"{batch_size}. Lower batch_size/context_len or add data."
            )
    return TrialData(sides["forget"][0], sides["retain"][0], sides["forget"][1], sides["retain"][1])
