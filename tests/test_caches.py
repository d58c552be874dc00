"""Caches follow content (issue 12, item 4): examples, baselines and untouched scores are keyed
by the sha256 of every input file and the tokenizer; a changed file rebuilds, a missing one
fails with its key, a corrupt cache entry is rebuilt with one warning naming it."""

from __future__ import annotations

import json
import logging

import pytest
import torch

from mudman.data import batching
from mudman.data.batching import cached_examples
from mudman.errors import ConfigError
from mudman.models.tiny import byte_tokenizer
from mudman.trial import baseline_key, run_trial


def _write(path, texts):
    path.write_text("".join(json.dumps({"text": t}) + "\n" for t in texts))


def _examples(compose, path, cache_dir, fresh_process=True):
    if fresh_process:
        batching._MEMORY_CACHE.clear()  # a new process: only the disk cache remains
    cfg = compose(f"data.forget.local.path={path}")
    spec = cfg.data.forget.local
    return cached_examples(spec, "data.forget.local", byte_tokenizer(), 8, str(cache_dir))


@pytest.mark.parametrize("fresh_process", [True, False], ids=["disk-cache", "memory-cache"])
def test_an_edited_data_file_is_reread_not_served_from_the_cache(compose, tmp_path, fresh_process):
    path = tmp_path / "mine.jsonl"
    _write(path, [f"aaaaaaaaaaa{i}" for i in range(3)])
    first = _examples(compose, path, tmp_path / "cache")
    _write(path, [f"bbbbbbbbbbb{i}" for i in range(5)])  # the same path, edited
    second = _examples(compose, path, tmp_path / "cache", fresh_process)
    assert first.shape[0] == 3 and second.shape[0] == 5
    assert not torch.equal(first[:1], second[:1])


def test_a_deleted_data_file_fails_by_name_even_when_cached(compose, tmp_path):
    path = tmp_path / "mine.jsonl"
    _write(path, ["aaaaaaaaaaaa"] * 3)
    _examples(compose, path, tmp_path / "cache")
    path.unlink()
    with pytest.raises(ConfigError, match=r"data.forget.local.path='.*mine.jsonl': file not found"):
        _examples(compose, path, tmp_path / "cache", fresh_process=False)


def test_a_corrupt_examples_cache_is_rebuilt_with_one_warning(compose, tmp_path, caplog):
    path = tmp_path / "mine.jsonl"
    _write(path, ["aaaaaaaaaaaa"] * 3)
    good = _examples(compose, path, tmp_path / "cache")
    (entry,) = (tmp_path / "cache" / "examples").glob("*.pt")
    entry.write_bytes(b"\x00garbage, a torn copy")
    with caplog.at_level(logging.WARNING):
        again = _examples(compose, path, tmp_path / "cache")
    assert torch.equal(good, again)
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and str(entry) in warnings[0].getMessage()
    torch.load(entry, weights_only=True)  # rewritten whole


def test_baseline_and_untouched_keys_follow_file_contents_and_the_tokenizer(compose, tmp_path):
    path = tmp_path / "mine.jsonl"
    _write(path, ["aaaaaaaaaaaa"] * 3)
    cfg = compose(f"data.forget.local.path={path}")
    before = baseline_key(cfg)
    _write(path, ["bbbbbbbbbbbb"] * 3)
    assert baseline_key(cfg) != before
    tokenizer = byte_tokenizer()
    assert baseline_key(cfg, tokenizer) != baseline_key(cfg)


def test_a_corrupt_baseline_cache_is_rebuilt_with_one_warning(compose, tmp_path, caplog):
    cfg = compose("compare_baseline=true")
    first = run_trial(cfg)["baseline"]
    (entry,) = (tmp_path / "cache" / "baselines").glob("*.json")
    entry.write_text('{"objective": 1.0, "tor')  # killed mid-copy by some other tool
    with caplog.at_level(logging.WARNING):
        again = run_trial(cfg)["baseline"]
    assert again["cached"] is False and again["objective"] == first["objective"]
    warnings = [r for r in caplog.records if "unreadable" in r.getMessage()]
    assert len(warnings) == 1 and str(entry) in warnings[0].getMessage()
    assert run_trial(cfg)["baseline"]["cached"] is True
