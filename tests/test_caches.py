"""Caches follow content (issue 12, item 4): examples, baselines and untouched scores are keyed
by the sha256 of every input file and the tokenizer; a changed file rebuilds, a missing one
fails with its key, a corrupt cache entry is rebuilt with one warning naming it."""

from __future__ import annotations

import json
import logging

import pytest
import torch
from omegaconf import OmegaConf

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


# ------------------------------------------------------------------ pinned cache keys
# Every on-disk and in-process cache is found by its key; a key that changes by one byte
# orphans the caches users already have (baselines, untouched scores, tokenized examples). The
# values below were computed on the code before the keys shared one helper
# (mudman/cache_keys.py), from inputs without paths or versions, so they never drift.


class _PinnedBackend:
    def to_str(self) -> str:
        return '{"model": {"type": "BPE", "vocab": {"a": 0, "b": 1}}}'


class _PinnedTokenizer:
    """What ``tokenizer_fingerprint`` reads, fixed: a vocabulary, the BOS token and flag."""

    bos_token = "<s>"
    add_bos_token = False

    def __init__(self, backend: _PinnedBackend | None = None) -> None:
        if backend is not None:
            self.backend_tokenizer = backend

    def get_vocab(self) -> dict[str, int]:
        return {"b": 1, "a": 0, "<s>": 2}


PINNED_TASK = {
    "name": "pinned_task",
    "source": "offline",
    "offline": {"kind": "jsonl", "path": "pinned/questions.jsonl"},
}


def test_the_tokenizer_fingerprint_is_pinned():
    assert batching.tokenizer_fingerprint(_PinnedTokenizer()) == "19e1d55a32a6ef98"
    assert batching.tokenizer_fingerprint(_PinnedTokenizer(_PinnedBackend())) == "7918ed834dfddc47"


def test_the_examples_cache_file_name_is_pinned(monkeypatch, tmp_path):
    from mudman.data import sources

    monkeypatch.setattr(batching, "_MEMORY_CACHE", {})
    monkeypatch.setattr(sources, "load_texts", lambda spec, key, cache_dir: ["pinned"])
    monkeypatch.setattr(
        batching,
        "tokenize_counted",
        lambda texts, tokenizer, n: (torch.zeros((1, n), dtype=torch.long), {"kept": 1}),
    )
    spec = OmegaConf.create({"kind": "hf", "path": "pinned/texts", "split": "train"})
    batching.examples_and_rows(spec, "data.forget.hub", _PinnedTokenizer(), 8, str(tmp_path))
    assert [p.name for p in (tmp_path / "examples").iterdir()] == ["a3add9a3a6bb6d2f6cf3.pt"]


def test_the_device_batches_key_is_pinned(monkeypatch):
    from mudman.data import device_cache

    built = type("Built", (), {"to": lambda self, device: self})()
    monkeypatch.setattr(device_cache, "build_trial_data", lambda *args: built)
    data = OmegaConf.create(
        {
            "name": "pinned",
            "source": "hub",
            "forget": {"hub": {"kind": "hf", "path": "pinned/forget"}},
            "retain": {"hub": {"kind": "hf", "path": "pinned/retain"}},
        }
    )
    cache = device_cache.DeviceDataCache()
    cache.get(data, _PinnedTokenizer(), 8, 4, None, torch.device("cpu"))
    assert cache.key == "495ee5a2df25bb78129af1700de212f8a325e6a8bd3a84b82df41fdb3b7bd50a"


def test_the_untouched_scores_and_evaluator_keys_are_pinned(monkeypatch, tmp_path):
    from mudman.objectives import mc_accuracy

    monkeypatch.setattr(mc_accuracy, "_EVALUATORS", {})
    monkeypatch.setattr(mc_accuracy, "_task", lambda spec, cache_dir, role: None)
    monkeypatch.setattr(mc_accuracy, "MultipleChoiceEvaluator", lambda *args: args[3])
    cfg = OmegaConf.create(
        {
            "name": "mc_accuracy",
            "direction": "minimize",
            "target": {**PINNED_TASK, "name": "pinned_target"},
            "guard": PINNED_TASK,
            "metric": "accuracy",
            "guard_metric": "correct_letter_prob",
            "batch_size": 16,
        }
    )
    objective = mc_accuracy.MultipleChoiceAccuracy(cfg)
    objective.prepare(_PinnedTokenizer(), torch.device("cpu"), str(tmp_path), "pinned-untouched")
    assert objective.start_cache.name == "mc-375237528dc557fc502b.json"
    assert list(mc_accuracy._EVALUATORS) == [
        "67399eb71eb5b0a6fcf6ead3da53e618fe30f18a3a8ac10055fcf03fda201c74",  # target
        "08b7c755fed2d7343135917c24e7e55216361947eac5cb47ffc83497432afd2a",  # guard
    ]


def test_the_baseline_key_is_pinned():
    cfg = OmegaConf.create(
        {
            "model": {"name": "pinned-model", "hub_id": "pinned/model", "dtype": "float32"},
            "data": {
                "name": "pinned",
                "source": "hub",
                "forget": {"hub": {"kind": "hf", "path": "pinned/forget"}},
                "retain": {"hub": {"kind": "hf", "path": "pinned/retain"}},
            },
            "attack": {"name": "relearn", "lr": 1e-3},
            "objective": {"name": "forget_loss", "direction": "maximize"},
            "context_len": 32,
            "batch_size": 4,
            "relearn_passes": 10,
            "eval_every_passes": 2,
            "seed": 0,
            "dtype": "auto",
            "device": "cpu",
            "paths": {"cache_dir": None},
        }
    )
    assert baseline_key(cfg) == "fb546e7f29a51110257a"
    assert baseline_key(cfg, _PinnedTokenizer()) == "9c10310bbf3708e81b66"
