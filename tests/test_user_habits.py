"""Habits users bring from Hydra and the official Optuna sweeper (docs/sweeps.md, console.md).

The official plugin's names (``hydra/sweeper=optuna``, ``hydra.sweeper.params.<key>=...``
quoted or not), the loss keyword-argument form the YAML comment shows, ``--help`` of both
commands.
"""

from __future__ import annotations

import os
import subprocess
import sys

import optuna
import pytest
from omegaconf import OmegaConf
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

from mudman.config import validate_config
from mudman.errors import ConfigError
from mudman.sweeping.official_names import rewrite_params_arguments

from .conftest import CONF, REPO, tiny_sweep_command


def _hydra_cfg(*overrides: str):
    from hydra import compose, initialize_config_dir

    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return compose("config", overrides=list(overrides), return_hydra_config=True)


# ------------------------------------------------------------------ the official names
def test_official_sweeper_name_selects_this_sweeper_with_the_same_keys():
    official = _hydra_cfg("hydra/sweeper=optuna").hydra
    ours = _hydra_cfg("hydra/sweeper=mudman_optuna").hydra
    assert official.sweeper._target_.endswith("mudman_optuna_sweeper.MudmanOptunaSweeper")
    as_dict = OmegaConf.to_container
    assert as_dict(official.sweeper) == as_dict(ours.sweeper)
    assert official.sweep.subdir == ours.sweep.subdir  # one run dir per study trial


@pytest.mark.parametrize(
    "argument, expected",
    [
        (  # unquoted (the shell's quotes only keep the spaces together)
            "hydra.sweeper.params.method.unlearning_rate=tag(log, interval(1e-5, 1e-2))",
            "method.unlearning_rate=tag(log, interval(1e-5, 1e-2))",
        ),
        (  # quoted for Hydra: a string, as the official plugin's params are
            'hydra.sweeper.params.method.unlearning_rate="tag(log, interval(1e-5, 1e-2))"',
            "method.unlearning_rate=tag(log, interval(1e-5, 1e-2))",
        ),
        (
            "++hydra.sweeper.params.method.unlearning_rate='tag(log,interval(1e-5,1e-2))'",
            "method.unlearning_rate=tag(log,interval(1e-5,1e-2))",
        ),
        (
            "+hydra.sweeper.params.method.fork_every_n_loops=int(interval(6, 42))",
            "method.fork_every_n_loops=int(interval(6, 42))",
        ),
        # a comma list is one categorical parameter (as in the official plugin), not a grid axis
        ("hydra.sweeper.params.method.masking=true,false", "method.masking=choice(true,false)"),
        ('hydra.sweeper.params.method.masking="true,false"', "method.masking=choice(true,false)"),
        ("hydra.sweeper.params.method.retain_momentum=0.5", "method.retain_momentum=0.5"),
        ("hydra.sweeper.n_trials=3", "hydra.sweeper.n_trials=3"),  # untouched
        ("method=mudman,no_masking", "method=mudman,no_masking"),  # a grid axis stays one
    ],
)
def test_official_params_forms_become_search_space_overrides(argument, expected):
    assert rewrite_params_arguments([argument]) == [expected]


def test_malformed_official_params_are_clear_errors():
    with pytest.raises(ConfigError, match=r"hydra.sweeper.params.method.adv_lr='interval\(1,'"):
        rewrite_params_arguments(["hydra.sweeper.params.method.adv_lr=interval(1,"])


@pytest.mark.spawns
def test_official_forms_run_a_study_with_those_distributions(tmp_path, text_files):
    """End to end: ``hydra/sweeper=optuna`` plus both params forms (Hydra refused both)."""
    url = f"sqlite:///{tmp_path}/o.db"
    env = {**os.environ, "WANDB_MODE": "disabled", "MUDMAN_CACHE": str(tmp_path / "cache")}
    cmd = [
        *tiny_sweep_command(text_files, sweeper="optuna"),
        "unlearn_passes=30",
        "relearn_passes=10",
        "eval_every_passes=10",
        f"hydra.sweeper.storage={url}",
        "hydra.sweeper.n_trials=2",
        f"hydra.sweep.dir={tmp_path}/multirun",
        "hydra.sweeper.params.method.unlearning_rate=tag(log, interval(1e-4, 1e-1))",
        'hydra.sweeper.params.method.retain_momentum="interval(0, 0.9)"',
        "++hydra.sweeper.params.method.fork_every_n_loops=int(interval(2, 4))",
    ]
    proc = subprocess.run(
        cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=300, check=False
    )
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output[-3000:]
    study = optuna.load_study(study_name="jsonl-tiny-llama-mudman", storage=url)
    assert len(study.trials) == 2
    for trial in study.trials:
        assert trial.distributions == {
            "method.unlearning_rate": FloatDistribution(1e-4, 1e-1, log=True),
            "method.retain_momentum": FloatDistribution(0.0, 0.9),
            "method.fork_every_n_loops": IntDistribution(2, 4),
        }
    # the summary a single-process sweep ends with
    assert "jsonl-tiny-llama-mudman: 2 complete, 0 pruned, 0 failed (2/2 valid); best" in output
    assert f"{tmp_path}/multirun/optimization_results.*.yaml" in output
    assert "next: python -m mudman.report --storage" in output
    assert "--studies '^jsonl-tiny-llama-mudman$'" in output
    assert (tmp_path / "multirun" / "optimization_results.jsonl-tiny-llama-mudman.yaml").is_file()
    assert "\r" not in output and "[HYDRA]" not in output  # not a terminal: no bar frames
    assert "[optuna" in output  # Optuna's own lines in the project's format


def test_categorical_official_param_is_one_study_not_a_grid():
    from mudman.sweeping.grid import split_arguments
    from mudman.sweeping.space import parse_space

    args = rewrite_params_arguments(["hydra.sweeper.params.method.masking=true,false"])
    grid, search, fixed = split_arguments(args)
    assert grid == [] and fixed == [] and len(search) == 1
    key, _, expression = search[0].partition("=")
    assert parse_space({key: expression})[key] == CategoricalDistribution([True, False])


# ------------------------------------------------------------------ loss keyword arguments
def test_loss_kwargs_in_the_documented_form(compose):
    cfg = compose(
        "method.unlearning_loss=correct_logit_minus_avg",
        "method.unlearning_loss_kwargs={clip_at:0.5}",
    )
    validate_config(cfg)
    assert OmegaConf.to_container(cfg.method.unlearning_loss_kwargs) == {"clip_at": 0.5}
    added = compose(
        "method.unlearning_loss=correct_logit_minus_avg",
        "+method.unlearning_loss_kwargs.clip_at=0.5",
    )
    assert added.method.unlearning_loss_kwargs == cfg.method.unlearning_loss_kwargs


@pytest.mark.parametrize(
    "overrides, message",
    [
        (
            [
                "method.unlearning_loss=correct_logit_minus_avg",
                "method.unlearning_loss_kwargs={clip:0}",
            ],
            r"unlearning_loss_kwargs.clip=0: .*correct_logit_minus_avg has no keyword argument "
            r"'clip'; allowed: clip_at",
        ),
        (
            ["method.unlearning_loss_kwargs={clip_at:0.0}"],  # the default loss takes none
            r"neg_cross_entropy has no keyword argument 'clip_at'; allowed: none",
        ),
        (
            [
                "method.unlearning_loss=correct_logit_minus_avg",
                "method.unlearning_loss_kwargs={clip_at:x}",
            ],
            r"unlearning_loss_kwargs.clip_at='x' has the wrong type; allowed: a number",
        ),
    ],
)
def test_bad_loss_kwargs_are_clear_errors(compose, overrides, message):
    with pytest.raises(ConfigError, match=message):
        validate_config(compose(*overrides))


def test_loss_kwargs_reach_the_loss(compose, monkeypatch):
    """The mapping given on the command line is what the loss is called with."""
    import mudman.methods.mudman.loop as mudman_method

    seen = {}
    real = mudman_method.get_loss

    def spy(name, **kwargs):
        seen[name] = kwargs
        return real(name, **kwargs)

    monkeypatch.setattr(mudman_method, "get_loss", spy)
    from mudman.trial import run_trial

    cfg = compose(
        "method.unlearning_loss=correct_logit_minus_avg",
        "method.unlearning_loss_kwargs={clip_at:0.5}",
    )
    run_trial(cfg)
    assert seen == {"correct_logit_minus_avg": {"clip_at": 0.5}}


# ------------------------------------------------------------------ --help
@pytest.mark.spawns
def test_help_describes_the_program_groups_and_examples():
    proc = subprocess.run(
        [sys.executable, "-m", "mudman", "--help"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    text = proc.stdout
    assert text.startswith("mudman: robust LLM unlearning experiments")
    assert "Powered by Hydra" not in text and "cli is powered by Hydra" not in text
    for group in ("method:", "model:", "data:", "experiment:", "objective:", "logger:"):
        assert f"\n{group} " in text, group
    assert "no_masking" in text and "tiny-llama" in text  # options listed
    examples = [line for line in text.splitlines() if line.startswith("  python -m mudman ")]
    assert len(examples) == 3
    assert any("hydra/sweeper=optuna" in line for line in examples)
    assert "unlearn_passes=300" in text  # the main keys' current values


def test_report_help_is_plain_text_with_every_default(monkeypatch, capsys):
    from mudman.report.__main__ import main

    monkeypatch.setenv("MUDMAN_OPTUNA_STORAGE", "postgresql://me:SECRET_PW_9@db/x")
    with pytest.raises(SystemExit) as stop:
        main(["--help"])
    assert stop.value.code == 0
    text = capsys.readouterr().out
    assert "``" not in text and "`" not in text  # no raw RST
    storage_help = text[text.index("--storage URL") : text.index("--studies REGEX  ")]
    assert "Optuna storage URL" in storage_help and "$MUDMAN_OPTUNA_STORAGE" in storage_help
    assert "SECRET_PW_9" not in text
    monkeypatch.delenv("MUDMAN_OPTUNA_STORAGE")
    with pytest.raises(SystemExit):
        main(["--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "(default: sqlite:///outputs/optuna.db" in text
    assert "(default: 30)" in text and "(default: outputs/report)" in text
