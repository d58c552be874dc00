"""Objectives and the WMDP-study trial flow: probes, guard pruning, the retain pause rule,
alternating relearning, multi-objective studies, and the offline biology data options."""

from __future__ import annotations

import json

import optuna
import pytest
import torch
from omegaconf import OmegaConf

from mudman.attack.relearning import relearn
from mudman.config import validate_config
from mudman.data.preprocess import PACK_CHARS, pack
from mudman.data.sources import load_texts
from mudman.errors import ConfigError, TrialRejected
from mudman.methods.monitor import PassMonitor
from mudman.methods.mudman import Mudman
from mudman.models.tiny import tiny_llama
from mudman.objectives import build_objective
from mudman.objectives import mc_accuracy as mc_module
from mudman.sweeping.runner import StudySpec, TrialOutcome, run_study
from mudman.sweeping.space import parse_space
from mudman.sweeping.storage import make_storage
from tests.conftest import batch_recorder
from tests.method_helpers import make_data, prepare


# ------------------------------------------------------------------ monitor: probes and pause
def test_probes_run_on_their_own_period_and_once_more_at_the_end():
    evals, probes = [], []
    monitor = PassMonitor(
        lambda: evals.append(1) or {"forget_loss": 1.0, "retain_loss": 1.0},
        eval_every_passes=10,
        retain_budget=1.0,
        initial_retain_loss=1.0,
        probes=[(25, probes.append)],
    )
    for _ in range(11):  # 55 passes in loops of 5
        monitor.count(5)
    assert probes == [25, 50]
    assert [p for p, _ in monitor.history] == [10, 20, 30, 40, 50]
    monitor.finish()  # the final weights are judged by both
    assert probes == [25, 50, 55] and monitor.history[-1][0] == 55
    monitor.finish()  # idempotent at the same pass count
    assert probes == [25, 50, 55] and len(evals) == 6


def test_pause_follows_the_last_retain_loss_and_rejection_keeps_the_hard_limit():
    retain = iter([1.02, 1.07, 1.03, 1.2])
    monitor = PassMonitor(
        lambda: {"forget_loss": 0.0, "retain_loss": next(retain)},
        eval_every_passes=5,
        retain_budget=0.1,
        initial_retain_loss=1.0,
        pause_budget=0.05,
    )
    paused = []
    for _ in range(3):
        monitor.count(5)
        paused.append(monitor.skip_unlearning())
    assert paused == [False, True, False]
    assert monitor.paused_loops == 1
    with pytest.raises(TrialRejected, match=r"retain loss 1.2000 > budget limit 1.1000"):
        monitor.count(5)


def test_paused_mudman_only_retains():
    """While paused, the base weights move exactly as with a zero unlearning rate."""
    cfg = OmegaConf.load("conf/method/mudman.yaml")
    data = make_data()
    finals = []
    for paused, rate in ((True, 1e-2), (False, 0.0)):
        model = tiny_llama(seed=0)
        params = prepare(model)
        method = Mudman(OmegaConf.merge(cfg, {"unlearning_rate": rate}))  # 0 skips validation
        monitor = PassMonitor(
            lambda: {"forget_loss": 0.0, "retain_loss": 5.0},
            eval_every_passes=10**9,
            retain_budget=10.0,
            initial_retain_loss=0.0,
            pause_budget=1.0 if paused else None,
        )
        monitor.paused = paused
        method.unlearn(model, params, data, 4, monitor)
        assert monitor.paused_loops == (4 if paused else 0)
        assert monitor.passes == 4 * method.passes_per_loop()
        finals.append({n: p.detach().clone() for n, p in params.items()})
    for name in finals[0]:
        torch.testing.assert_close(finals[0][name], finals[1][name], rtol=0, atol=0)


# ------------------------------------------------------------------ alternating relearning
def test_relearning_alternates_forget_and_retain_steps():
    forget, retain, held_out = (torch.full((2, 4), k) for k in (1, 2, 3))
    model = batch_recorder()
    curve = relearn(model, [forget], held_out, 0.1, 12, 4, retain_batches=[retain]).forget_losses
    training = [k for k in model.seen if k != 3]
    assert training == [1, 2, 1, 2, 1, 2]
    assert [p for p, _ in curve] == [4, 8, 12]
    model = batch_recorder()
    relearn(model, [forget], held_out, 0.1, 12, 4)
    assert [k for k in model.seen if k != 3] == [1] * 6


# ------------------------------------------------------------------ the mc_accuracy objective
def _mc_cfg(**overrides):
    task = {"name": "t", "source": "local", "local": {"path": "unused"}}
    cfg = {
        "name": "mc_accuracy",
        "direction": "minimize",
        "metric": "accuracy",
        "eval_every_passes": 10,
        "guard_metric": "correct_letter_prob",
        "guard_allowance": 0.01,
        "guard_base": None,
        "multi_objective": False,
        "batch_size": 4,
        "target": {**task, "name": "wmdp"},
        "guard": {**task, "name": "mmlu"},
    }
    return OmegaConf.create({**cfg, **overrides})


class _Scripted:
    """Stands in for a MultipleChoiceEvaluator: returns the next scripted measurement."""

    def __init__(self, values):
        self.values = iter(values)

    def __call__(self, model):
        return next(self.values)


def _objective_with(monkeypatch, target, guard, **overrides):
    scripted = {"wmdp": _Scripted(target), "mmlu": _Scripted(guard)}
    monkeypatch.setattr(mc_module, "_evaluator", lambda spec, *a: scripted[spec.name])
    objective = build_objective(_mc_cfg(**overrides))
    objective.prepare(None, torch.device("cpu"), None)
    return objective


def _m(acc, prob):
    return {"accuracy": acc, "correct_letter_prob": prob}


def test_guard_prunes_below_base_minus_allowance(monkeypatch):
    objective = _objective_with(
        monkeypatch,
        target=[_m(0.5, 0.4)] * 3,
        guard=[_m(0.3, 0.300), _m(0.3, 0.2905), _m(0.3, 0.2895)],
    )
    start = objective.start(None)
    assert start == {
        "target/accuracy": 0.5,
        "target/correct_letter_prob": 0.4,
        "guard/accuracy": 0.3,
        "guard/correct_letter_prob": 0.3,
    }
    assert objective.guard_limit == pytest.approx(0.29)
    objective.probe(None, 10)  # 0.2905 >= 0.29: goes on
    with pytest.raises(TrialRejected, match=r"guard mmlu correct_letter_prob 0.2895 < limit 0.29"):
        objective.probe(None, 20)
    assert [p for p, _ in objective.history] == [0, 10, 20]  # the tripping probe is kept


def test_fixed_guard_base_and_multi_objective_values(monkeypatch):
    objective = _objective_with(
        monkeypatch,
        target=[_m(0.5, 0.4), _m(0.45, 0.4), _m(0.3, 0.35)],
        guard=[_m(0.3, 0.25), _m(0.3, 0.29), _m(0.3, 0.28)],
        guard_base=0.2973,
        multi_objective=True,
    )
    objective.start(None)
    assert objective.guard_limit == pytest.approx(0.2873)
    objective.probe(None, 10)
    scores = objective.score(None, [])
    assert scores["objective"] == 0.3  # target accuracy after relearning
    assert objective.directions == ["maximize", "minimize"]
    assert objective.names == [
        "mmlu_correct_letter_prob_after_unlearning",
        "wmdp_accuracy_after_relearning",
    ]
    assert objective.values({"objective": scores["objective"]}) == [0.29, 0.3]


def test_untouched_scores_are_measured_once_per_setup(monkeypatch, tmp_path):
    first = _objective_with(monkeypatch, target=[_m(0.5, 0.4)], guard=[_m(0.3, 0.3)])
    first.prepare(None, torch.device("cpu"), str(tmp_path), untouched_key="setup-a")
    values = first.start(None)
    second = _objective_with(monkeypatch, target=[], guard=[])  # would fail if measured again
    second.prepare(None, torch.device("cpu"), str(tmp_path), untouched_key="setup-a")
    assert second.start(None) == values and second.guard_limit == pytest.approx(0.29)
    other = _objective_with(monkeypatch, target=[_m(0.6, 0.5)], guard=[_m(0.2, 0.2)])
    other.prepare(None, torch.device("cpu"), str(tmp_path), untouched_key="setup-b")
    assert other.start(None)["target/accuracy"] == 0.6


@pytest.mark.parametrize(
    "override, message",
    [
        (
            {"metric": "f1"},
            r"objective.metric='f1' for objective.target=wmdp \(scoring letters\); "
            r"allowed: accuracy, correct_letter_prob",
        ),
        ({"guard_metric": None}, r"objective.guard_metric=None for objective.guard=mmlu"),
        (
            {"metric": "correct_letter_prob", "target": {"name": "t", "scoring": "choice_text"}},
            r"allowed: accuracy, accuracy_norm, correct_choice_prob",
        ),
        ({"target": {"name": "t", "scoring": "vibes"}}, r"objective.target.scoring='vibes'"),
        ({"direction": "up"}, r"objective.direction='up'; allowed: maximize, minimize"),
        ({"eval_every_passes": 0}, r"objective.eval_every_passes=0 must be an integer >= 1"),
        ({"guard_allowance": -1}, r"objective.guard_allowance=-1 must be a number >= 0"),
        ({"guard_base": 2}, r"objective.guard_base=2: null \(measure\) or in \[0, 1\]"),
        ({"guard": None}, r"objective.guard is not set; pick a task from conf/eval/"),
        ({"name": "bleu"}, r"objective.name='bleu'.*allowed: forget_loss, mc_accuracy"),
    ],
)
def test_bad_objective_settings_fail_at_config_time(override, message):
    with pytest.raises(ConfigError, match=message):
        build_objective(_mc_cfg(**override))


@pytest.mark.parametrize(
    "override, message",
    [
        ("retain_pause_budget=2.0", r"retain_pause_budget=2.0 must be > 0 and below retain_loss"),
        ("retain_pause_budget=-0.1", r"retain_pause_budget=-0.1 must be > 0"),
        ("attack.alternate_retain=3", r"attack.alternate_retain=3; allowed: true, false"),
    ],
)
def test_bad_pause_and_attack_settings(compose, override, message):
    with pytest.raises(ConfigError, match=message):
        validate_config(compose(override))


def test_pause_rule_needs_a_method_that_can_pause(compose):
    with pytest.raises(ConfigError, match=r"not supported by method=cir.*allowed: null"):
        validate_config(compose("method=cir", "retain_pause_budget=0.05"))
    validate_config(compose("method=tar", "retain_pause_budget=0.05"))


def test_paused_trial_reports_paused_loops(compose):
    from mudman.trial import run_trial

    record = run_trial(
        compose(
            "method=no_masking",
            "method.unlearning_rate=1.0",
            "retain_pause_budget=1e-9",
            "retain_loss_budget=100",
        )
    )
    assert record["status"] == "completed"
    # a huge unlearning step raises retain loss by the first evaluation (10 passes): the
    # remaining loops retain only, until retain loss is back under initial + 1e-9
    assert record["passes"]["paused_loops"] >= 1


# ------------------------------------------------------------------ multi-objective sweeps
def test_multi_objective_study_keeps_both_values_and_a_pareto_front(tmp_path):
    url = f"sqlite:///{tmp_path / 'mo.db'}"
    spec = StudySpec(
        name="mo",
        storage_url=url,
        storage=make_storage(url, 1, 2),
        directions=["maximize", "minimize"],
        n_trials=6,
        space=parse_space({"x": "interval(0, 1)"}),
        sampler=optuna.samplers.RandomSampler(seed=0),
        poll_seconds=0.1,
    )

    def trial(overrides, number):
        x = float(overrides[0].split("=")[1])
        if number == 2:
            return TrialOutcome("completed", [x, float("nan")])
        return TrialOutcome("completed", [x, x * x])

    study = run_study(spec, trial, heartbeat_interval=0.5)
    states = [t.state for t in study.trials]
    assert states.count(optuna.trial.TrialState.COMPLETE) == 5
    assert states.count(optuna.trial.TrialState.PRUNED) == 1  # the NaN pair
    assert all(len(t.values) == 2 for t in study.trials if t.values)
    assert study.best_trials  # a Pareto front exists
    spec.directions = ["maximize"]
    with pytest.raises(ConfigError, match=r"exists with directions \['maximize', 'minimize'\]"):
        run_study(spec, trial)


def test_sweeper_direction_must_agree_with_the_objective(compose):
    from mudman.sweeping.validation import study_directions

    cfg = OmegaConf.create(
        {
            "objective": OmegaConf.to_container(compose().objective),
            "hydra": {"sweeper": {"direction": None}},  # the node the sweeper reads
        }
    )
    assert study_directions(cfg) == ["maximize"]
    cfg.hydra.sweeper.direction = "minimize"
    with pytest.raises(ConfigError, match=r"direction=\['minimize'\] contradicts objective"):
        study_directions(cfg)


# ------------------------------------------------------------------ offline biology data
def _rows(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_filter_exclude_and_template_select_and_format_rows(tmp_path):
    path = _rows(
        tmp_path / "go.jsonl",
        [
            {"term": "a", "text": "def a", "split": "train"},
            {"term": "b", "text": "def b", "split": "heldout"},
            {"term": "c", "text": "def c", "split": "train"},
        ],
    )
    spec = OmegaConf.create(
        {
            "kind": "jsonl",
            "path": str(path),
            "template": "{term}: {text}",
            "filter": {"split": "train"},
            "exclude": {"term": ["c"]},
        }
    )
    assert load_texts(spec, "data.forget.local") == ["a: def a"]
    with pytest.raises(ConfigError, match=r"filter: field 'label' is not in the rows"):
        load_texts(OmegaConf.merge(spec, {"filter": {"label": True}}), "k")
    with pytest.raises(ConfigError, match=r"template='\{name\}' needs field 'name'"):
        load_texts(OmegaConf.merge(spec, {"template": "{name}"}), "k")
    with pytest.raises(ConfigError, match="no rows left after filter/exclude"):
        load_texts(OmegaConf.merge(spec, {"exclude": {"term": ["a", "c"]}}), "k")


def test_pack_joins_short_texts_in_order_without_losing_any():
    texts = [f"definition number {i} " * 3 for i in range(200)]
    packed = pack(texts)
    assert all(len(p) >= PACK_CHARS for p in packed[:-1])
    assert "\n\n".join(packed) == "\n\n".join(t.strip() for t in texts)


def test_offline_pile_bio_uses_only_the_train_split_of_go_definitions():
    data = OmegaConf.load("conf/data/pile_bio.yaml")
    forget = data.forget.offline
    assert forget.asset == "go-definitions" and dict(forget.filter) == {"split": "train"}
    assert "Algae" in list(data.retain.offline.exclude.title)
    assert data.source == "offline"


# ------------------------------------------------------------------ the offline WMDP-proxy preset
def _questions(path):
    rows = [
        {
            "question": f"Which term fits definition number {i}?",
            "choices": [f"term {i}", f"term {i + 1}", f"term {i + 2}", f"term {i + 3}"],
            "answer": i % 4,
        }
        for i in range(12)
    ]
    return _rows(path, rows)


def _wmdp_offline(compose, tmp_path, *overrides):
    questions = _questions(tmp_path / "questions.jsonl")
    return compose(
        "experiment=wmdp_offline",
        "model=tiny-llama",
        "data=jsonl",
        "data.source=local",
        "eval@objective.target=jsonl",
        "eval@objective.guard=jsonl",
        f"objective.target.local.path={questions}",
        f"objective.guard.local.path={questions}",
        "objective.target.limit=null",
        "objective.guard.limit=8",
        "objective.eval_every_passes=10",
        "batch_size=4",
        "context_len=32",
        "unlearn_passes=20",
        "relearn_passes=8",
        "eval_every_passes=5",
        "retain_loss_budget=10",
        "retain_pause_budget=5",
        *overrides,
    )


def test_offline_wmdp_preset_runs_a_short_trial(compose, tmp_path):
    from mudman.trial import run_trial

    cfg = _wmdp_offline(compose, tmp_path, "objective.guard_allowance=1.0", "compare_baseline=true")
    record = run_trial(cfg)
    assert record["status"] == "completed", record["rejection"]
    assert record["direction"] == "minimize" and record["directions"] == ["minimize"]
    assert [passes for passes, _ in record["evaluations"]] == [0, 10, 20]
    assert set(record["evaluations"][0][1]) == {
        "target/accuracy",
        "target/correct_letter_prob",
        "guard/accuracy",
        "guard/correct_letter_prob",
    }
    assert record["objective"] == record["scores"]["target/accuracy"]
    assert record["objective"] in {k / 12 for k in range(13)}  # 12 target questions
    assert 0 <= record["baseline"]["objective"] <= 1
    assert list(record["objectives"]) == ["jsonl_accuracy_after_relearning"]
    cached = list((tmp_path / "cache" / "baselines").glob("mc-*.json"))
    assert len(cached) == 1  # the untouched model's scores, reused by the next trial
    assert json.loads(cached[0].read_text()) == record["evaluations"][0][1]


def test_offline_wmdp_preset_prunes_on_the_guard(compose, tmp_path):
    from mudman.trial import run_trial

    cfg = _wmdp_offline(
        compose, tmp_path, "objective.guard_base=1.0", "objective.guard_allowance=0.0"
    )
    record = run_trial(cfg)
    assert record["status"] == "rejected"
    assert record["rejection"]["passes"] == 10
    assert record["rejection"]["reason"].startswith("guard jsonl correct_letter_prob")
    assert record["objective"] is None


def test_multi_objective_trial_records_both_values(compose, tmp_path):
    from mudman.trial import run_trial

    cfg = _wmdp_offline(
        compose,
        tmp_path,
        "objective.guard_allowance=1.0",
        "objective.multi_objective=true",
        "unlearn_passes=15",
    )
    record = run_trial(cfg)
    assert record["directions"] == ["maximize", "minimize"]
    guard_after_unlearning = record["evaluations"][-1][1]["guard/correct_letter_prob"]
    assert record["evaluations"][-1][0] == 15  # final weights probed off the 10-pass grid
    assert list(record["objectives"].values()) == [guard_after_unlearning, record["objective"]]


@pytest.mark.spawns
def test_multi_objective_hydra_sweep_end_to_end(tmp_path, text_files):
    from tests.sweeping.test_sweeper import _sweep

    questions = _questions(tmp_path / "questions.jsonl")
    proc = _sweep(
        tmp_path,
        text_files,
        "experiment=wmdp_offline",
        "data.source=local",
        "eval@objective.target=jsonl",
        "eval@objective.guard=jsonl",
        f"objective.target.local.path={questions}",
        f"objective.guard.local.path={questions}",
        "objective.target.limit=null",
        "objective.guard.limit=null",
        "objective.eval_every_passes=15",
        "objective.guard_allowance=1.0",
        "objective.multi_objective=true",
        "retain_loss_budget=10",
        "retain_pause_budget=5",
        "compare_baseline=false",
        "unlearn_passes=15",
        "relearn_passes=4",
        n_trials=3,
    )
    output = proc.communicate(timeout=600)[0]
    assert proc.returncode == 0, output[-3000:]
    url = f"sqlite:///{tmp_path}/o.db"
    study = optuna.load_study(study_name="wmdp-offline-tiny-llama-mudman", storage=url)
    assert [d.name for d in study.directions] == ["MAXIMIZE", "MINIMIZE"]
    complete = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert len(complete) == 3 and all(len(t.values) == 2 for t in complete)
    assert set(complete[0].params) == {"method.unlearning_rate", "method.retaining_rate"}
    assert study.best_trials


def test_a_missing_task_file_fails_before_any_model_loads(compose, tmp_path, monkeypatch):
    from mudman import preflight
    from mudman.models import loading

    def no_weights(*args, **kwargs):
        raise AssertionError("a model was loaded")

    monkeypatch.setattr(loading, "load_model_and_tokenizer", no_weights)
    cfg = _wmdp_offline(compose, tmp_path, f"objective.guard.local.path={tmp_path / 'no.jsonl'}")
    validate_config(cfg)
    with pytest.raises(ConfigError, match=r"objective.guard.*no.jsonl"):
        preflight.preflight(cfg)
