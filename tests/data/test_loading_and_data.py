"""Hub loading code exercised through local copies; exact-length batches; target selection."""

from __future__ import annotations

import json

import pytest
import torch
from omegaconf import OmegaConf

from mudman.data.batching import build_trial_data, split_examples, to_batches, tokenize_exact
from mudman.data.sources import load_texts
from mudman.errors import ConfigError
from mudman.models.loading import load_model_and_tokenizer, resolve_dtype
from mudman.models.targets import select_target_params
from mudman.models.tiny import byte_tokenizer, tiny_gpt_neox, tiny_llama


def test_model_loads_from_a_save_pretrained_directory_like_from_the_hub(tmp_path):
    original, tokenizer = tiny_gpt_neox(seed=5), byte_tokenizer()
    original.save_pretrained(tmp_path)
    tokenizer.save_pretrained(tmp_path)
    cfg = OmegaConf.create({"name": "local", "path": str(tmp_path), "dtype": "float32"})
    model, loaded_tok = load_model_and_tokenizer(cfg, torch.device("cpu"), torch.float32)
    ids = torch.tensor([loaded_tok("def f(x): return x")["input_ids"]])
    torch.testing.assert_close(model(input_ids=ids).logits, original(input_ids=ids).logits)
    assert list(select_target_params(model, ["dense_h_to_4h"])) == [
        "gpt_neox.layers.0.mlp.dense_h_to_4h.weight",
        "gpt_neox.layers.1.mlp.dense_h_to_4h.weight",
    ]


def test_model_loads_in_bfloat16(tmp_path):
    tiny_llama().save_pretrained(tmp_path)
    byte_tokenizer().save_pretrained(tmp_path)
    cfg = OmegaConf.create({"name": "local", "path": str(tmp_path), "dtype": "bfloat16"})
    dtype = resolve_dtype("auto", cfg.dtype, torch.device("cpu"))
    model, _ = load_model_and_tokenizer(cfg, torch.device("cpu"), dtype)
    assert {p.dtype for p in model.parameters()} == {torch.bfloat16}


@pytest.mark.parametrize(
    "setup, message",
    [
        (lambda d: None, "is not a directory"),
        (lambda d: d.mkdir(), "has no config.json"),
        (lambda d: (d.mkdir(), (d / "config.json").write_text("{}")), "holds no weights"),
    ],
)
def test_bad_local_model_path_is_a_clear_error(tmp_path, setup, message):
    directory = tmp_path / "model"
    setup(directory)
    cfg = OmegaConf.create({"name": "x", "path": str(directory), "dtype": "float32"})
    with pytest.raises(ConfigError, match=f"model.path=.*{message}"):
        load_model_and_tokenizer(cfg, torch.device("cpu"), torch.float32)


def test_hub_model_id_fails_fast_offline_with_advice():
    cfg = OmegaConf.create(
        {"name": "pythia-14m", "hub_id": "EleutherAI/pythia-14m", "dtype": "float32"}
    )
    with pytest.raises(ConfigError, match=r"model\.path=/local/dir"):
        load_model_and_tokenizer(cfg, torch.device("cpu"), torch.float32)


def _write_jsonl(path, rows):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))


def test_codesearchnet_schema_through_the_hub_loader(tmp_path):
    code = 'def add(a, b):\n    """Add."""\n    # sum it\n    return a + b  # done\n'
    _write_jsonl(tmp_path / "csn" / "train.jsonl", [{"code": code, "repo": "x"}] * 3)
    spec = OmegaConf.create(
        {
            "kind": "hf",
            "path": str(tmp_path / "csn"),
            "split": "train",
            "field": "code",
            "preprocess": ["strip_python"],
        }
    )
    texts = load_texts(spec, "data.forget.hub")
    assert texts == ["def add(a, b):\n    return a + b"] * 3


def test_python2_code_falls_back_to_regex_stripping():
    from mudman.data.preprocess import strip_python

    py2 = 'def f(x):\n    """Doc."""\n    print "hi"  # greet\n\n    return x\n'
    assert strip_python([py2]) == ['def f(x):\n    print "hi"\n    return x']


def test_pile_bio_schema_with_label_filter(tmp_path):
    rows = [{"txt_chunk": f"bio {i}", "label": True} for i in range(3)]
    rows += [{"txt_chunk": f"other {i}", "label": False} for i in range(2)]
    _write_jsonl(tmp_path / "pile" / "train.jsonl", rows)
    for label, expected in ((True, ["bio 0", "bio 1", "bio 2"]), (False, ["other 0", "other 1"])):
        spec = OmegaConf.create(
            {
                "kind": "hf",
                "path": str(tmp_path / "pile"),
                "split": "train",
                "field": "txt_chunk",
                "filter": {"label": label},
            }
        )
        assert load_texts(spec, "data.forget.hub") == expected


def test_wrong_schema_and_empty_files_are_clear_errors(tmp_path):
    _write_jsonl(tmp_path / "csn" / "train.jsonl", [{"func": "x"}])
    spec = OmegaConf.create({"kind": "hf", "path": str(tmp_path / "csn"), "field": "code"})
    with pytest.raises(ConfigError, match=r"data.forget.hub.field='code' is not a column"):
        load_texts(spec, "data.forget.hub")
    (tmp_path / "empty.jsonl").write_text("")
    with pytest.raises(ConfigError, match="is empty"):
        load_texts(OmegaConf.create({"kind": "jsonl", "path": str(tmp_path / "empty.jsonl")}), "k")
    with pytest.raises(ConfigError, match="file not found"):
        load_texts(OmegaConf.create({"kind": "jsonl", "path": str(tmp_path / "no.jsonl")}), "k")
    _write_jsonl(tmp_path / "bad.jsonl", [{"title": "x"}])
    with pytest.raises(ConfigError, match=r"line 1: no field k.field='text'"):
        load_texts(OmegaConf.create({"kind": "jsonl", "path": str(tmp_path / "bad.jsonl")}), "k")


def test_examples_are_exactly_n_tokens_and_short_ones_dropped():
    tokenizer = byte_tokenizer()
    ids = tokenize_exact(["x" * 5, "y" * 10, "z" * 30], tokenizer, 10)
    assert ids.shape == (2, 10)
    assert tokenizer.decode(ids[1]) == "z" * 10


def test_split_is_deterministic_50_25_25():
    examples = torch.arange(400).reshape(100, 4)
    train, val, test = split_examples(examples, seed=42)
    assert (len(train), len(val), len(test)) == (50, 25, 25)
    again = split_examples(examples, seed=42)
    assert all(torch.equal(a, b) for a, b in zip((train, val, test), again, strict=False))
    assert sorted(torch.cat([train, val, test])[:, 0].tolist()) == list(range(0, 400, 4))
    assert [len(b) for b in to_batches(train, 16)] == [16, 16, 16]


def test_trial_data_eval_batches_and_too_small_data(text_files, tmp_path):
    cfg = OmegaConf.create(
        {
            "name": "jsonl",
            "source": "local",
            "forget": {"local": {"kind": "jsonl", "path": str(text_files["forget"])}},
            "retain": {"local": {"kind": "jsonl", "path": str(text_files["retain"])}},
        }
    )
    data = build_trial_data(cfg, byte_tokenizer(), 32, 4, str(tmp_path))
    assert data.forget_eval.shape == (4, 32)
    assert torch.equal(data.forget_eval, data.forget_val[0])
    assert torch.equal(data.relearn_forget[0], data.forget_val[1])
    cached = build_trial_data(cfg, byte_tokenizer(), 32, 4, str(tmp_path))
    assert torch.equal(cached.forget_train[0], data.forget_train[0])
    assert list((tmp_path / "examples").glob("*.pt"))  # tokenized once, reused from disk
    with pytest.raises(ConfigError, match=r"need at least 4000 .* batch_size=1000"):
        build_trial_data(cfg, byte_tokenizer(), 32, 1000, str(tmp_path))


def test_target_modules_errors_name_the_alternatives():
    model = tiny_llama()
    with pytest.raises(ConfigError, match=r"'dense_h_to_4h' matches no module.*gate_proj"):
        select_target_params(model, ["dense_h_to_4h"])
    with pytest.raises(ConfigError, match="matches non-linear modules"):
        select_target_params(model, ["mlp"])
    assert len(select_target_params(model, ["gate_proj", "up_proj"])) == 4
