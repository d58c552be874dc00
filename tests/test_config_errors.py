"""Bad input fails early, names the key, the value and what is allowed, before any load."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from mudman.config import validate_config
from mudman.errors import ConfigError

from .conftest import REPO


@pytest.mark.parametrize(
    "override, message",
    [
        (
            "method.unlearning_rate=-1",
            r"method.unlearning_rate=-1 is out of range; allowed: a number > 0",
        ),
        ("method.retaining_rate=0", r"method.retaining_rate=0 is out of range"),
        ("method.adv_lr=-0.1", r"method.adv_lr=-0.1 is out of range"),
        (
            "method.retain_momentum=1.0",
            r"method.retain_momentum=1.0 is out of range; allowed: 0 <= value < 1",
        ),
        ("method.adv_decay=1.5", r"method.adv_decay=1.5 is out of range"),
        (
            "method.fork_every_n_loops=0",
            r"method.fork_every_n_loops=0 is out of range; allowed: an int >= 1",
        ),
        (
            "method.normalization=l2",
            r"method.normalization='l2' is out of range; allowed: none, per_parameter",
        ),
        (
            "method.unlearning_loss=mse",
            r"allowed: correct_logit_minus_avg, cross_entropy, neg_cross_entropy",
        ),
        (
            "method.algorithm=nope",
            r"unknown method method.algorithm='nope'; allowed: baseline, .*mudman",
        ),
        ("unlearn_passes=32", r"unlearn_passes=32 is not divisible by the 5 passes"),
        ("relearn_passes=7", r"relearn_passes=7 must be a positive multiple of 2"),
        ("batch_size=0", r"batch_size=0 must be an integer >= 1"),
        ("context_len=1000", r"context_len=1000 is longer than model tiny-llama's max_context=256"),
        ("retain_loss_budget=-0.1", r"retain_loss_budget=-0.1 must be a number > 0"),
        ("attack.lr=0", r"attack.lr=0 must be a number > 0"),
        ("dtype=float8", r"dtype='float8' is not allowed; allowed: auto, float32, bfloat16"),
        ("target_modules=[]", r"target_modules is empty"),
        ("target_modules=['re:(']", r"target_modules regex 're:\(' is invalid"),
        ("data.source=hub", r"data.source='hub' is not available for data=jsonl; allowed: local"),
    ],
)
def test_bad_values_are_rejected_with_a_precise_message(compose, override, message):
    with pytest.raises(ConfigError, match=message):
        validate_config(compose(override))


def test_no_meta_learning_budget_uses_four_passes(compose):
    method = validate_config(compose("method=no_meta_learning", "unlearn_passes=32"))
    assert method.passes_per_loop() == 4


def _cli(*args: str, cache: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "MUDMAN_CACHE": cache, "WANDB_MODE": "disabled"}
    return subprocess.run(
        [sys.executable, "-m", "mudman", *args, "hydra.run.dir=" + cache + "/run"],
        capture_output=True,
        text=True,
        env=env,
        cwd=REPO,
        timeout=120,
    )


@pytest.mark.spawns
def test_cli_reports_bad_value_before_loading_anything(tmp_path):
    # The default model is the offline SmolLM2 asset, which this empty cache lacks: the
    # momentum error must come first (no model load attempted, no traceback).
    result = _cli("method.retain_momentum=1.5", cache=str(tmp_path))
    assert result.returncode == 2
    output = result.stdout + result.stderr
    assert "method.retain_momentum=1.5 is out of range; allowed: 0 <= value < 1" in output
    assert "Traceback" not in output and "not prepared" not in output


@pytest.mark.spawns
def test_cli_unknown_group_option_lists_the_allowed_ones(tmp_path):
    result = _cli("model=gpt5", cache=str(tmp_path))
    assert result.returncode != 0
    output = result.stdout + result.stderr
    assert "Could not find 'model/gpt5'" in output
    assert "pythia-14m" in output and "smollm2-135m" in output
    result = _cli("method=rmu", cache=str(tmp_path))
    assert "no_masking" in result.stdout + result.stderr


@pytest.mark.spawns
def test_cli_missing_offline_asset_says_which_command_prepares_it(tmp_path):
    result = _cli("logger=none", cache=str(tmp_path))
    assert result.returncode == 2
    output = result.stdout + result.stderr
    assert "smollm2-135m" in output and "make assets" in output
    assert "Traceback" not in output


@pytest.mark.spawns
def test_cli_misspelled_key_is_refused(tmp_path):
    result = _cli("unlearn_pases=30", cache=str(tmp_path))
    assert result.returncode != 0
    assert "unlearn_pases" in result.stdout + result.stderr


@pytest.mark.parametrize(
    "override, message",
    [
        (
            "method.retain_momentum=abc",
            r"method.retain_momentum='abc' has the wrong type; allowed: a number \(default 0.9\)",
        ),
        ("method.masking=maybe", r"method.masking='maybe' has the wrong type; allowed: true or"),
        ("method.unlearning_loss_kwargs=5", r"unlearning_loss_kwargs=5 has the wrong .* a mapping"),
        ("batch_size=abc", r"batch_size='abc' must be an integer >= 1"),
        ("context_len=1.5", r"context_len=1.5 must be an integer >= 2"),
        ("model.trust_remote_code=yes", r"model.trust_remote_code='yes'; allowed: true or false"),
        ("model.allow_pickle=1", r"model.allow_pickle=1; allowed: true or false"),
    ],
)
def test_wrong_types_name_the_key_the_value_and_the_type(compose, override, message):
    with pytest.raises(ConfigError, match=message):
        validate_config(compose(override))


WRONG_SCHEMA = '{"code": "def f(): pass"}\n'


def _no_weights_dir(path):
    path.mkdir()
    (path / "config.json").write_text("{}")
    return path


def _write(path, text):
    path.write_text(text)
    return path


@pytest.mark.parametrize(
    "overrides, message",
    [
        (
            lambda d: ["model.max_context=null", "context_len=300"],
            r"context_len=300 is longer than model tiny-llama's max_position_embeddings=256 "
            r"\(from its config.json\); allowed: 2..256",
        ),
        (
            lambda d: ["target_modules=[dense_h_to_4h]"],
            r"target_modules item 'dense_h_to_4h' matches no module of this model; "
            r"its linear modules are: down_proj, gate_proj",
        ),
        (lambda d: ["target_modules=[mlp]"], r"'mlp' matches non-linear modules"),
        (lambda d: [f"model.path={d / 'nope'}"], r"model.path='.*nope' is not a directory"),
        (
            lambda d: [f"model.path={_no_weights_dir(d / 'empty')}"],
            r"holds no weights \(\*.safetensors\)",
        ),
        (
            lambda d: [f"data.forget.local.path={d / 'missing.jsonl'}"],
            r"data.forget.local.path='.*missing.jsonl': file not found",
        ),
        (
            lambda d: [f"data.retain.local.path={_write(d / 'empty.jsonl', '')}"],
            r"data.retain.local.path='.*empty.jsonl' is empty",
        ),
        (
            lambda d: [f"data.forget.local.path={_write(d / 'x.jsonl', WRONG_SCHEMA)}"],
            r"line 1: no field data.forget.local.field='text'",
        ),
        (
            lambda d: ["batch_size=100"],
            r"data.forget.local: only \d+ examples of >= 32 tokens; need at least 400 .*"
            r"batch_size=100",
        ),
    ],
    ids=[
        "context-longer-than-config",
        "targets-match-nothing",
        "targets-not-linear",
        "model-path-missing",
        "model-path-without-weights",
        "data-missing",
        "data-empty",
        "data-wrong-schema",
        "data-too-small",
    ],
)
def test_file_dependent_bad_input_fails_before_any_weights_load(
    compose, tmp_path, monkeypatch, overrides, message
):
    import transformers

    import mudman.trial
    from mudman.cli import run

    def loaded(*args, **kwargs):
        raise AssertionError("model weights were loaded before the bad input was reported")

    monkeypatch.setattr(mudman.trial, "load_model_and_tokenizer", loaded)
    monkeypatch.setattr(transformers.AutoModelForCausalLM, "from_pretrained", loaded)
    with pytest.raises(ConfigError, match=message):
        run(compose(*overrides(tmp_path)), tmp_path / "run")
    assert not (tmp_path / "run" / "results.json").exists()


def test_malformed_search_spaces_name_key_value_and_allowed(compose):
    from mudman.sweeping.space import check_space, parse_space

    with pytest.raises(ConfigError, match=r"hydra.sweeper.params=\['lr'\] is not a mapping"):
        parse_space(["lr"])
    cfg = compose()
    with pytest.raises(
        ConfigError,
        match=r"params.method.unlearnin_rate: no such key .* did you mean method.unlearning_rate",
    ):
        check_space(cfg, parse_space({"method.unlearnin_rate": "interval(0.1, 0.2)"}))
    with pytest.raises(
        ConfigError,
        match=r"params.method.retain_momentum: its upper end 1.5 is not allowed: "
        r"method.retain_momentum=1.5 is out of range; allowed: 0 <= value < 1",
    ):
        check_space(cfg, parse_space({"method.retain_momentum": "interval(0, 1.5)"}))
    with pytest.raises(ConfigError, match=r"params.unlearn_passes: its choice 32 is not allowed"):
        check_space(cfg, parse_space({"unlearn_passes": "choice(30, 32)"}))
    check_space(cfg, parse_space({"method.adv_lr": "tag(log, interval(1e-3, 0.1))", "+x.y": "1"}))


def test_every_ablation_preset_space_passes_the_study_start_checks():
    """The study-start checks must not refuse a real search space (no false alarms)."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from omegaconf import OmegaConf

    from mudman.sweeping.space import check_space, parse_space

    from .conftest import CONF

    presets = sorted(p.stem for p in (CONF / "experiment" / "ablation").glob("*.yaml"))
    every = ("mudman", "no_masking", "no_normalization", "no_meta_learning", "tar")
    cells = [("house_python", v) for v in every] + [  # other presets differ in the rate ranges
        (p, v) for p in presets if p != "house_python" for v in ("mudman", "no_normalization")
    ]
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        for preset, variant in cells:
            cfg = hydra_compose(
                "config",
                overrides=[f"experiment=ablation/{preset}", f"method={variant}"],
                return_hydra_config=True,
            )
            params = OmegaConf.to_container(cfg.hydra.sweeper.params, resolve=True)
            assert params, (preset, variant)
            check_space(cfg, parse_space(params))
