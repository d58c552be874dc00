"""Exactly-N-token examples, a seeded 50/25/25 split, and the batches every trial reuses.

Following the paper's setup: examples shorter than ``context_len`` tokens are dropped and
longer ones truncated (no padding); the split uses its own seed (``data.split_seed``, 42), so
every trial of a study sees identical batches in identical order, and another split seed gives
other train/validation splits and other eval batches (a comparison's data seeds). Tokenized
tensors are cached on disk and in memory, keyed by the source's config, the sha256 of every
file it reads (``digests.py``), the tokenizer and the length, so a sweep tokenizes once and
an edited file is never served stale. A cache file that cannot be read is rebuilt, with one
warning naming it.
"""

from __future__ import annotations

import logging
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import torch
from omegaconf import DictConfig

from mudman.cache_keys import cache_key, config_json
from mudman.errors import ConfigError
from mudman.results import current_umask

SPLIT_FRACTIONS = (0.50, 0.25, 0.25)  # train / validation / test
# Texts are cut to this many characters per token of context before tokenizing, so a single
# huge row (one 200 MB line) costs no more than a normal one: no tokenizer's tokens average
# anywhere near 32 characters, so no text long enough is dropped by the cut.
CHARS_PER_TOKEN_BOUND = 32
_MEMORY_CACHE: dict[str, tuple[torch.Tensor, dict[str, int]]] = {}
log = logging.getLogger(__name__)


def max_chars(context_len: int) -> int:
    """The characters of a text that are tokenized (the rest cannot reach the example)."""
    return max(4096, context_len * CHARS_PER_TOKEN_BOUND)


def tokenize_exact(texts: list[str], tokenizer, context_len: int) -> torch.Tensor:
    """Token ids ``[n_examples, context_len]`` of every text at least that long, truncated."""
    return tokenize_counted(texts, tokenizer, context_len)[0]


def tokenize_counted(
    texts: list[str], tokenizer, context_len: int
) -> tuple[torch.Tensor, dict[str, int]]:
    """Like :func:`tokenize_exact`, dropping exact duplicate texts, and counting what each
    rule dropped: ``{"rows", "kept", "too_short", "duplicates"}``."""
    limit = max_chars(context_len)
    seen: set[str] = set()
    distinct = []
    for text in texts:
        cut = text[:limit]
        if cut not in seen:
            seen.add(cut)
            distinct.append(cut)
    rows = []
    for start in range(0, len(distinct), 1024):
        encoded = tokenizer(distinct[start : start + 1024])["input_ids"]
        rows.extend(ids[:context_len] for ids in encoded if len(ids) >= context_len)
    counts = {
        "rows": len(texts),
        "kept": len(rows),
        "too_short": len(distinct) - len(rows),
        "duplicates": len(texts) - len(distinct),
    }
    if not rows:
        return torch.empty(0, context_len, dtype=torch.long), counts
    return torch.tensor(rows, dtype=torch.long), counts


def split_seed_of(data_cfg: DictConfig) -> int:
    """``data.split_seed`` (42 when absent, as before the key existed), checked."""
    seed = data_cfg.get("split_seed", 42)
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ConfigError(f"data.split_seed={seed!r}; allowed: an integer >= 0 (default 42)")
    return seed


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
    # the definition and the BOS token run together (no "|" between them), as in the first
    # fingerprints: kept so the token caches on disk stay valid
    definition = f"{text}{tokenizer.bos_token}"
    return cache_key(definition, getattr(tokenizer, "add_bos_token", None), length=16)


def _atomic_save(tensor: torch.Tensor | dict, path: Path) -> None:
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
    return examples_and_rows(spec, key, tokenizer, context_len, cache_dir)[0]


def examples_and_rows(
    spec: DictConfig, key: str, tokenizer, context_len: int, cache_dir: str | None
) -> tuple[torch.Tensor, dict[str, int]]:
    """The examples of one source and how many of its rows were kept and dropped (why)."""
    from mudman.data.digests import inputs_digest, warn_corrupt
    from mudman.data.sources import load_texts

    files = inputs_digest({key: spec}, cache_dir)  # a missing file fails here, named
    digest = cache_key(
        config_json(spec), files, tokenizer_fingerprint(tokenizer), context_len, length=20
    )
    if digest in _MEMORY_CACHE:
        return _MEMORY_CACHE[digest]
    path = Path(cache_dir).expanduser() / "examples" / f"{digest}.pt" if cache_dir else None
    entry = None
    if path is not None and path.exists():
        try:
            saved = torch.load(path, weights_only=True)
            if not isinstance(saved, dict) or not isinstance(saved.get("examples"), torch.Tensor):
                raise ValueError(f"holds {type(saved).__name__}, not an examples record")
            entry = (saved["examples"], dict(saved["rows"]))
        except Exception as err:  # truncated, garbage, or another format: rebuild
            warn_corrupt(path, err)
    if entry is None:
        entry = tokenize_counted(load_texts(spec, key, cache_dir), tokenizer, context_len)
        if path is not None:
            _atomic_save({"examples": entry[0], "rows": entry[1]}, path)
    _MEMORY_CACHE[digest] = entry
    return entry


@dataclass
class TrialData:
    """Batches for one trial; eval batches are the first validation batch of each side."""

    forget_train: list[torch.Tensor]
    retain_train: list[torch.Tensor]
    forget_val: list[torch.Tensor]
    retain_val: list[torch.Tensor]
    # per source: rows read, kept, dropped as too short and as duplicates (recorded per trial)
    rows: dict[str, dict[str, int]] | None = None
    # a trial has used (and so reported) these batches: a later trial reports them again; the
    # trial after the preflight that built them does not repeat the preflight's lines
    used_by_a_trial: bool = False

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
            ),
            rows=self.rows,
        )


def build_trial_data(
    data_cfg: DictConfig,
    tokenizer,
    context_len: int,
    batch_size: int,
    cache_dir: str | None,
    split_seed: int | None = None,
) -> TrialData:
    """Forget/retain batches for the configured data source (``offline``, ``hub``, ...),
    split with ``split_seed`` (default: ``data.split_seed``)."""
    if split_seed is None:
        split_seed = split_seed_of(data_cfg)
    source = data_cfg.source
    sides, rows, examples_of = {}, {}, {}
    for side in ("forget", "retain"):
        if source not in data_cfg[side] or data_cfg[side][source] is None:
            options = [k for k, v in data_cfg[side].items() if v is not None]
            raise ConfigError(
                f"data={data_cfg.name} has no {side} source for data.source={source!r}; "
                f"allowed: {', '.join(options)}"
            )
        key = f"data.{side}.{source}"
        examples, rows[key] = examples_and_rows(
            data_cfg[side][source], key, tokenizer, context_len, cache_dir
        )
        examples_of[side] = examples
        report_rows(key, rows[key], context_len)
        train, val, _test = split_examples(examples, split_seed)
        sides[side] = (to_batches(train, batch_size), to_batches(val, batch_size))
        if len(sides[side][0]) < 1 or len(sides[side][1]) < 2:
            raise ConfigError(
                f"{key}: only {len(examples)} examples of >= {context_len} tokens; need at least "
                f"{4 * batch_size} for one train and two validation batches of batch_size="
                f"{batch_size}. Lower batch_size/context_len or add data."
            )
    forget, retain = examples_of["forget"], examples_of["retain"]
    if forget.shape == retain.shape and torch.equal(forget, retain):
        from mudman.data.digests import source_files

        files = [
            f"{label}={str(path)!r}"
            for side in ("forget", "retain")
            for label, path in source_files(
                data_cfg[side][source], f"data.{side}.{source}", cache_dir
            )
        ]
        raise ConfigError(
            f"{' and '.join(files) or f'data.forget.{source} and data.retain.{source}'} give the "
            "same examples (the same content, from line 1 on); allowed: a forget set and a "
            "retain set that differ (unlearning a text while retaining it measures nothing)"
        )
    return TrialData(
        sides["forget"][0], sides["retain"][0], sides["forget"][1], sides["retain"][1], rows=rows
    )


def report_rows(key: str, counts: dict[str, int], context_len: int) -> None:
    """One log line per source; a warning when fewer than half of its rows survive."""
    line = (
        f"{key}: kept {counts['kept']} of {counts['rows']} rows "
        f"({counts['too_short']} shorter than context_len={context_len} tokens, "
        f"{counts['duplicates']} duplicates)"
    )
    if counts["kept"] * 2 < counts["rows"]:
        log.warning("%s: fewer than half survive; a shorter context_len keeps more", line)
    else:
        log.info("%s", line)
