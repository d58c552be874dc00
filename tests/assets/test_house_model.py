"""The house model recipe and its inputs: held-out split, GO definitions, pretraining, config."""

from __future__ import annotations

import io
import json
import math
import sqlite3
import tarfile

import pytest

from mudman.assets import go_definitions, house
from mudman.assets.heldout import is_heldout
from tests.conftest import _english, _stdlib_functions


def test_heldout_split_is_stable_and_about_five_percent():
    keys = [f"GO:{i:07d}" for i in range(4000)]
    held = [k for k in keys if is_heldout(k)]
    assert 0.03 < len(held) / len(keys) < 0.07
    assert held == [k for k in keys if is_heldout(k)]  # pure function of the key
    assert is_heldout("GO:0000001") is False  # pinned: changing the rule must be deliberate


def _fake_deb(path, rows):
    """A real .deb layout (ar archive holding data.tar.xz) with a GO.sqlite inside."""
    db_path = path.parent / "GO.sqlite"
    db = sqlite3.connect(db_path)
    db.execute("CREATE TABLE go_term (go_id TEXT, term TEXT, ontology TEXT, definition TEXT)")
    db.executemany("INSERT INTO go_term VALUES (?, ?, ?, ?)", rows)
    db.commit()
    db.close()
    tar_bytes = io.BytesIO()
    with tarfile.open(fileobj=tar_bytes, mode="w:xz") as archive:
        archive.add(db_path, arcname=go_definitions.MEMBER)
    members = [("debian-binary", b"2.0\n"), ("data.tar.xz", tar_bytes.getvalue())]
    out = bytearray(b"!<arch>\n")
    for name, data in members:
        header = f"{name + '/':<16}{0:<12}{0:<6}{0:<6}{100644:<8}{len(data):<10}`\n"
        out += header.encode() + data + (b"\n" if len(data) % 2 else b"")
    path.write_bytes(bytes(out))
    return path


def test_go_definitions_build_reads_the_package(tmp_path, monkeypatch):
    rows = [(f"GO:{i:07d}", f"term {i}", "BP", f"Definition number {i}.") for i in range(60)]
    rows.append(("GO:9999999", "no definition", "CC", None))
    deb = _fake_deb(tmp_path / "x.deb", rows)
    monkeypatch.setattr(go_definitions, "fetch_deb", lambda downloads: deb)
    out = tmp_path / "out"
    out.mkdir()
    fields = go_definitions.build(out, tmp_path / "downloads")
    lines = [json.loads(line) for line in (out / "definitions.jsonl").read_text().splitlines()]
    assert len(lines) == 60 and fields["counts"]["definitions"] == 60
    assert lines[3] == {
        "go_id": "GO:0000003",
        "term": "term 3",
        "ontology": "BP",
        "text": "Definition number 3.",
        "split": "heldout" if is_heldout("GO:0000003") else "train",
    }
    assert all(r["split"] == ("heldout" if is_heldout(r["go_id"]) else "train") for r in lines)
    assert fields["counts"]["heldout"] + fields["counts"]["train"] == 60


@pytest.fixture(scope="module")
def pretrained(tmp_path_factory):
    """The real recipe on small real texts, few steps: a loadable house-style model."""
    functions = _stdlib_functions(10**6)
    texts = {
        "python": {"train": functions[:40], "heldout": functions[40:]},
        "english": {"train": _english(150), "heldout": _english(170)[150:]},
        "biology": {"train": _english(20), "heldout": _english(25)[20:]},
    }
    out = tmp_path_factory.mktemp("house")
    patch = pytest.MonkeyPatch()
    patch.setattr(house, "corpus_texts", lambda cache_dir=None: texts)
    for key, value in {
        "batch_size": 8,
        "seq_len": 64,
        "warmup_steps": 5,
        "eval_windows": 8,
    }.items():
        patch.setitem(house.TRAIN, key, value)  # a smaller run of the same code, for CI speed
    try:
        stats = house.pretrain(out, steps=30, log=lambda line: None)
    finally:
        patch.undo()
    return out, stats


def test_pretrain_learns_and_saves_a_loadable_llama(pretrained):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    out, stats = pretrained
    assert stats["uniform_loss"] == pytest.approx(math.log(stats["vocab_size"]), abs=1e-3)
    for corpus in house.CORPORA:  # 30 small steps already beat uniform guessing on unseen text
        assert stats["heldout_loss"][corpus] < stats["uniform_loss"] - 0.4
    model = AutoModelForCausalLM.from_pretrained(out)
    tokenizer = AutoTokenizer.from_pretrained(out)
    assert type(model).__name__ == "LlamaForCausalLM"
    assert model.config.tie_word_embeddings and model.config.hidden_size == 128
    assert any(name.endswith("mlp.gate_proj.weight") for name, _ in model.named_parameters())
    text = "def f(x):\n    return x  # é"
    ids = tokenizer(text)["input_ids"]
    assert tokenizer.decode(ids) == text and tokenizer.eos_token_id not in ids


def test_pretrained_house_model_runs_a_trial(pretrained, compose):
    from mudman.trial import run_trial

    out, _ = pretrained
    cfg = compose(
        "model=house",
        f"model.path={out}",
        "unlearn_passes=10",
        "relearn_passes=10",
        "eval_every_passes=10",
    )
    record = run_trial(cfg)
    assert record["status"] in ("completed", "rejected")
    assert record["targets"] and all(t.endswith("gate_proj.weight") for t in record["targets"])


def test_model_house_reads_the_asset(compose, tmp_path):
    from mudman.assets import MissingAssetError
    from mudman.models.loading import model_source

    cfg = compose("model=house")
    assert cfg.model.asset == "house" and list(cfg.model.target_modules) == ["gate_proj"]
    with pytest.raises(MissingAssetError, match="--only house"):
        model_source(cfg.model, str(tmp_path / "empty-cache"))


def test_assets_cli_pretrains_the_house_model_into_a_directory(tmp_path, monkeypatch, capsys):
    """``python -m mudman.assets --house-out DIR --house-steps N``: the recipe with N steps into
    DIR (not the cache), the stats printed as JSON; --house-steps alone is refused."""
    from transformers import AutoModelForCausalLM

    from mudman.assets.__main__ import main

    functions = _stdlib_functions(10**6)
    texts = {
        "python": {"train": functions[:20], "heldout": functions[20:30]},
        "english": {"train": _english(60), "heldout": _english(70)[60:]},
        "biology": {"train": _english(10), "heldout": _english(14)[10:]},
    }
    monkeypatch.setattr(house, "corpus_texts", lambda cache_dir=None: texts)
    small = {"batch_size": 4, "seq_len": 32, "warmup_steps": 2, "eval_windows": 4}
    for key, value in small.items():
        monkeypatch.setitem(house.TRAIN, key, value)
    out, cache = tmp_path / "house3", tmp_path / "cache"
    assert main(["--cache-dir", str(cache), "--house-out", str(out), "--house-steps", "3"]) == 0
    printed = capsys.readouterr().out
    stats = json.loads(printed[printed.index("{\n") :])
    assert stats["train"]["steps"] == 3 and stats["tokens_seen"] == 3 * 4 * 32
    assert set(stats["heldout_loss"]) == set(house.CORPORA)
    assert type(AutoModelForCausalLM.from_pretrained(out)).__name__ == "LlamaForCausalLM"
    assert not (cache / "assets" / "house").exists()  # the cached asset is left alone
    for bad, message in (
        (["--house-steps", "3"], "--house-steps needs --house-out"),
        (["--house-out", str(out), "--house-steps", "0"], "--house-steps=0"),
        (["--house-out", str(out), "--only", "house"], "drop --only"),
    ):
        with pytest.raises(SystemExit) as exit_info:
            main(["--cache-dir", str(cache), *bad])
        assert exit_info.value.code == 2 and message in capsys.readouterr().err
