"""Data rows are checked while reading (issue 12, item 8): invalid UTF-8, a null or non-string
``text``, forget = retain; long rows are cut before tokenizing; every trial records and logs
how many rows each source kept and dropped, and warns when fewer than half survive."""

from __future__ import annotations

import json
import logging

import pytest

from mudman.data import batching
from mudman.data.batching import build_trial_data, tokenize_counted
from mudman.errors import ConfigError
from mudman.models.tiny import byte_tokenizer
from mudman.trial import run_trial


def _build(cfg):
    batching._MEMORY_CACHE.clear()
    return build_trial_data(
        cfg.data, byte_tokenizer(), cfg.context_len, cfg.batch_size, cfg.paths.cache_dir
    )


def _lines(path, lines):
    path.write_bytes(b"".join(lines))
    return path


@pytest.mark.parametrize(
    "line, message",
    [
        (b'{"text": "caf\xe9 au lait"}\n', r"line 3: not valid UTF-8 \(byte 0xe9 at column 14\)"),
        (b'{"text": null}\n', r"line 3: field 'text' is null; allowed: a string"),
        (b'{"text": 12345}\n', r"line 3: field 'text' is a int \(12345\); allowed: a string"),
        (b'{"text": ["a", "b"]}\n', r"line 3: field 'text' is a list"),
    ],
    ids=["invalid-utf8", "null", "number", "list"],
)
def test_bad_rows_name_the_file_the_line_and_what_is_allowed(compose, tmp_path, line, message):
    good = json.dumps({"text": "x" * 80}).encode() + b"\n"
    path = _lines(tmp_path / "bad.jsonl", [good, b"\n", line, good])
    cfg = compose(f"data.forget.local.path={path}")
    with pytest.raises(ConfigError, match=rf"data.forget.local.path='.*bad.jsonl' {message}"):
        _build(cfg)


def test_a_forget_file_identical_to_the_retain_file_is_refused(compose, text_files, tmp_path):
    copy = tmp_path / "copy.jsonl"
    copy.write_bytes(text_files["retain"].read_bytes())
    cfg = compose(f"data.forget.local.path={copy}")
    with pytest.raises(ConfigError, match=r"give the same examples .*allowed: a forget set"):
        _build(cfg)


def test_rows_are_counted_and_duplicates_dropped():
    texts = ["a" * 50, "short", "a" * 50, "b" * 50, "tiny"]
    examples, counts = tokenize_counted(texts, byte_tokenizer(), 32)
    assert len(examples) == 2
    assert counts == {"rows": 5, "kept": 2, "too_short": 2, "duplicates": 1}


def test_each_trial_records_and_logs_its_rows_and_warns_below_half(
    compose, tmp_path, text_files, caplog
):
    retain = tmp_path / "retain.jsonl"
    rows = [json.loads(x) for x in text_files["retain"].read_text().splitlines()]
    rows += [{"text": "too short"}] * 150 + [{"text": f"short {i}"} for i in range(150)]
    retain.write_text("".join(json.dumps(r) + "\n" for r in rows))
    cfg = compose(f"data.retain.local.path={retain}")
    with caplog.at_level(logging.INFO):
        record = run_trial(cfg)
        second = run_trial(cfg)  # reuses the device batches: still records and reports
    counts = record["data_rows"]["data.retain.local"]
    assert counts["rows"] == 500 and counts["duplicates"] == 149 and counts["too_short"] == 151
    assert counts["kept"] == 200 and second["data_rows"] == record["data_rows"]
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert sum("data.retain.local: kept 200 of 500 rows" in w for w in warnings) == 2
    assert "fewer than half survive" in warnings[0]
    forget = record["data_rows"]["data.forget.local"]
    assert forget["kept"] == forget["rows"] - forget["too_short"] - forget["duplicates"]


def test_a_run_reports_its_rows_once_not_in_preflight_and_again_in_the_trial(
    compose, tmp_path, text_files, caplog
):
    from mudman.preflight import check_data

    cfg = compose(f"paths.cache_dir={tmp_path / 'fresh-cache'}", "context_len=48")
    with caplog.at_level(logging.INFO, logger="mudman.data.batching"):
        check_data(cfg)  # builds the batches (as `python -m mudman` does before the trial)
        run_trial(cfg)
    lines = [r.getMessage() for r in caplog.records if "data.retain.local: kept" in r.getMessage()]
    assert len(lines) == 1, lines


def test_a_huge_row_is_cut_before_tokenizing_so_memory_stays_bounded():
    tokenizer = byte_tokenizer()
    longest = []

    def recording(texts, **kw):
        longest.append(max(len(t) for t in texts))
        return tokenizer(texts, **kw)

    huge = "word " * 20_000_000  # one 100 MB row: was tokenized whole (13.5 GB at 200 MB)
    examples, counts = tokenize_counted([huge, "a" * 64], recording, 32)
    assert counts["kept"] == 2 and examples.shape == (2, 32)
    assert longest == [batching.max_chars(32)] and batching.max_chars(32) <= 4096


def test_a_null_template_field_is_refused_with_its_line(compose, tmp_path):
    path = tmp_path / "t.jsonl"
    path.write_text(json.dumps({"term": "a", "text": "x"}) + "\n" + '{"term": null, "text": "y"}\n')
    cfg = compose(f"data.forget.local.path={path}", "+data.forget.local.template='{term}: {text}'")
    with pytest.raises(ConfigError, match=r"line 2: field 'term' is null; allowed: a value"):
        _build(cfg)
