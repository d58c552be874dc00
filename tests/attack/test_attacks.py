"""The attack suite (conf/attack/, mudman/attack/): each attack's defining behaviour, the
worst case over attacks, the baseline's matching attacks, and early, named config errors."""

from __future__ import annotations

import itertools
import math

import pytest
import torch

from mudman.attack.base import AttackStreams
from mudman.attack.lora import lora_module_names
from mudman.attack.suite import AttackOutcome, attack_specs, run_suite, worst_case
from mudman.config import validate_config
from mudman.data.batching import build_trial_data
from mudman.data.device_cache import DEVICE_DATA
from mudman.errors import ConfigError
from mudman.evaluation.lm_loss import lm_loss
from mudman.losses import cross_entropy
from mudman.models.loading import load_model_and_tokenizer
from mudman.models.tiny import byte_tokenizer, tiny_llama
from mudman.results import format_table
from mudman.sweeping.fingerprint import differences, experiment_of, fingerprint
from mudman.sweeping.outcomes import trial_attrs
from mudman.trial import baseline_key, run_trial, set_seed
from tests.conftest import batch_recorder
from tests.method_helpers import make_data


# A frozen copy of the relearning loop as it was before attacks became a config group
# (mudman/attack/relearning.py at main fcbccb3): the default attack must reproduce it bitwise.
def frozen_relearn(
    model, forget_batches, eval_batch, lr, relearn_passes, eval_every_passes, retain_batches=None
):
    n_steps = relearn_passes // 2
    for param in model.parameters():
        param.requires_grad_(True)
    optimizer = torch.optim.SGD(model.parameters(), lr=lr)
    losses = []
    forget_stream = itertools.cycle(forget_batches)
    retain_stream = itertools.cycle(retain_batches) if retain_batches else None
    passes = 0
    model.train(False)
    for step in range(1, n_steps + 1):
        on_retain = retain_stream is not None and step % 2 == 0
        batch = next(retain_stream if on_retain else forget_stream)
        optimizer.zero_grad(set_to_none=True)
        cross_entropy(model(input_ids=batch).logits, batch).backward()
        optimizer.step()
        passes += 2
        crossed = passes // eval_every_passes > (passes - 2) // eval_every_passes
        if crossed or step == n_steps:
            losses.append((passes, lm_loss(model, eval_batch)))
    return losses


@pytest.mark.parametrize(
    "overrides",
    [(), ("method=baseline", "attack.alternate_retain=true"), ("attack=sgd", "attack.lr=0.05")],
)
def test_default_sgd_attack_equals_the_original_relearning_loop_bitwise(compose, overrides):
    cfg = compose("relearn_passes=20", "eval_every_passes=4", *overrides)
    method = validate_config(cfg)
    unlearned: dict[str, torch.Tensor] = {}
    real_unlearn = method.unlearn

    def unlearn_and_keep(model, *args, **kwargs):
        real_unlearn(model, *args, **kwargs)
        unlearned.update({k: v.detach().clone() for k, v in model.state_dict().items()})

    method.unlearn = unlearn_and_keep
    record = run_trial(cfg, method=method)
    assert record["status"] == "completed"

    device = torch.device("cpu")
    model, tokenizer = load_model_and_tokenizer(cfg.model, device, torch.float32, None)
    model.load_state_dict(unlearned)
    data, _ = DEVICE_DATA.get(
        cfg.data, tokenizer, cfg.context_len, cfg.batch_size, cfg.paths.cache_dir, device
    )  # the very batches the trial used
    set_seed(cfg.seed)
    retain = data.relearn_retain if cfg.attack.alternate_retain else None
    expected = frozen_relearn(
        model,
        data.relearn_forget,
        data.forget_eval,
        cfg.attack.lr,
        cfg.relearn_passes,
        cfg.eval_every_passes,
        retain,
    )
    assert record["curves"]["relearning"] == expected  # exact float equality
    assert record["objective"] == min(loss for _, loss in expected)
    (only,) = record["attacks"]
    assert only["label"] == f"sgd lr={cfg.attack.lr}" and record["worst_attack"] == only["label"]
    assert record["passes"]["attack_total"] == cfg.relearn_passes


def _streams(seed: int = 0) -> AttackStreams:
    data = make_data(seed, n=4, batch=3, length=16)
    return AttackStreams(data.forget_val, data.retain_val, data.forget_train[0])


def _text_streams(compose) -> AttackStreams:
    """Real Python / English batches (a random model learns their byte statistics at once)."""
    cfg = compose()
    data = build_trial_data(cfg.data, byte_tokenizer(), cfg.context_len, cfg.batch_size, None)
    return AttackStreams.of(data)


def _attack(compose, *overrides):
    cfg = compose(*overrides)
    validate_config(cfg)
    (spec,) = attack_specs(cfg)
    return spec.build()


def test_lora_attack_trains_only_adapters_and_leaves_base_weights_untouched(compose):
    attack = _attack(compose, "attack=lora", "attack.lr=0.05")
    model = tiny_llama(seed=0)
    before = {k: v.detach().clone() for k, v in model.state_dict().items()}
    streams = _text_streams(compose)
    start = lm_loss(model, streams.eval_batch)
    seen = {}

    def score(attacked, curve):
        names = [n for n, _ in attacked.named_parameters() if "lora_" in n]
        trainable = [n for n, p in attacked.named_parameters() if p.requires_grad]
        base_now = {
            k.replace(".base_layer", ""): v
            for k, v in attacked.get_base_model().state_dict().items()
            if "lora_" not in k
        }
        seen.update(
            adapters=names,
            trainable=trainable,
            base_unchanged=set(base_now) == set(before)
            and all(torch.equal(v, before[k]) for k, v in base_now.items()),
            loss=lm_loss(attacked, streams.eval_batch),
        )
        return {"objective": min(loss for _, loss in curve)}

    run = attack.run(model, streams, 20, 4, score=score)
    assert run.passes == 20 and len(run.streams) == 10  # 2 passes per step, LoRA too
    assert seen["adapters"] and set(seen["trainable"]) == set(seen["adapters"])
    assert seen["base_unchanged"]  # frozen during the attack, with the adapter attached
    assert seen["loss"] == run.curve[-1][1] < start - 0.05  # scored with the adapter active
    after = model.state_dict()
    assert set(after) == set(before)  # adapter modules removed again
    assert all(torch.equal(after[k], before[k]) for k in before)  # base weights bit for bit
    assert not any("lora" in n for n, _ in model.named_modules())
    assert lm_loss(model, streams.eval_batch) == start


def test_lora_default_targets_are_every_projection_but_the_output_head():
    model = tiny_llama(seed=0)
    names = lora_module_names(model, "all-linear")
    leaves = {n.rsplit(".", 1)[-1] for n in names}
    assert leaves == {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"}
    assert "lm_head" not in names and len(names) == 7 * model.config.num_hidden_layers
    assert lora_module_names(model, ["gate_proj"]) == [
        f"model.layers.{i}.mlp.gate_proj" for i in range(model.config.num_hidden_layers)
    ]
    with pytest.raises(ConfigError, match=r"attack.target_modules: target_modules item 'nope'"):
        lora_module_names(model, ["nope"])


def test_retain_then_forget_runs_its_retain_steps_first(compose):
    attack = _attack(compose, "attack=retain_then_forget", "attack.retain_fraction=0.3")
    forget, retain, held_out = (torch.full((2, 4), k) for k in (1, 2, 3))
    model = batch_recorder()
    run = attack.run(model, AttackStreams([forget], [retain], held_out), 20, 4)
    assert run.streams == ["retain"] * 3 + ["forget"] * 7
    assert model.seen == [2] * 3 + [1] * 7  # the batches really came from those streams
    assert [p for p, _ in run.curve] == [4, 8, 12, 16, 20]  # evaluated through both phases


def test_adamw_attack_is_torch_adamw_with_the_configured_keys(compose):
    attack = _attack(
        compose,
        "attack=adamw",
        "attack.lr=0.01",
        "attack.betas=[0.8,0.99]",
        "attack.eps=1e-6",
        "attack.weight_decay=0.1",
    )
    streams = _streams()
    model, reference = tiny_llama(seed=0), tiny_llama(seed=0)
    attack.run(model, streams, 4, 100)
    optimizer = torch.optim.AdamW(
        reference.parameters(), lr=0.01, betas=(0.8, 0.99), eps=1e-6, weight_decay=0.1
    )
    for batch in streams.forget[:2]:
        optimizer.zero_grad()
        cross_entropy(reference(input_ids=batch).logits, batch).backward()
        optimizer.step()
    for (name, mine), theirs in zip(model.named_parameters(), reference.parameters(), strict=True):
        assert torch.equal(mine, theirs), name


def test_every_attack_of_a_suite_starts_from_the_same_unlearned_weights(compose):
    cfg = compose(
        "relearn_passes=12",
        "eval_every_passes=4",
        "attack_suite=[{name:sgd,lr:0.05},{name:sgd,lr:0.05},{name:adamw,lr:1e-3}]",
    )
    record = run_trial(cfg)
    first, second, third = record["attacks"]
    assert [a["label"] for a in record["attacks"]] == [
        "sgd lr=0.05",
        "sgd lr=0.05 #2",
        "adamw lr=0.001",
    ]
    # a second attack continuing from the attacked weights would relearn further and faster
    assert second["curve"] == first["curve"] and second["value"] == first["value"]
    assert third["curve"] != first["curve"]
    assert record["passes"]["attacks"] == dict.fromkeys([a["label"] for a in record["attacks"]], 12)
    assert record["passes"]["attack_total"] == 36


def test_the_objective_is_the_worst_case_over_attacks_and_the_baseline_gets_them_too(compose):
    suite = "attack_suite=[{name:sgd,lr:[0.003,0.1]},{name:adamw,lr:3e-3},retain_then_forget]"
    record = run_trial(compose("compare_baseline=true", "relearn_passes=12", suite))
    values = {a["label"]: a["value"] for a in record["attacks"]}
    assert len(values) == 4 and len(set(values.values())) == 4
    assert record["objective"] == min(values.values())  # forget_loss: lowest = attacker's best
    assert values[record["worst_attack"]] == record["objective"]
    worst = next(a for a in record["attacks"] if a["label"] == record["worst_attack"])
    assert record["curves"]["relearning"] == [tuple(p) for p in worst["curve"]]
    for attack in record["attacks"]:
        assert attack["value"] == min(loss for _, loss in attack["curve"])
    baseline = record["baseline"]
    assert [a["label"] for a in baseline["attacks"]] == list(values)
    assert baseline["objective"] == min(a["value"] for a in baseline["attacks"])
    table = format_table(record)
    assert "<- worst case" in table and all(label in table for label in values)
    assert "baseline (same attacks, worst case, no unlearning)" in table
    attrs = trial_attrs(record, run_dir=None)
    assert attrs["attack_values"] == values and attrs["worst_attack"] == record["worst_attack"]
    assert set(attrs["baseline_attack_values"]) == set(values)


def _outcome(label: str, value: float) -> AttackOutcome:
    return AttackOutcome(label, {"name": label}, value, {"objective": value}, [], 2, {}, 0.0, 0.0)


def test_worst_case_follows_the_objective_direction_and_skips_diverged_attacks():
    outcomes = [_outcome("a", 3.0), _outcome("b", 2.0), _outcome("c", math.nan), _outcome("d", 4.0)]
    assert worst_case(outcomes, "maximize").label == "b"  # forget loss: the lowest
    assert worst_case(outcomes, "minimize").label == "d"  # target accuracy: the highest
    assert math.isnan(worst_case([_outcome("x", math.nan)], "maximize").value)


def test_run_suite_scores_each_attacked_model_before_the_next_attack_starts(compose):
    streams = _text_streams(compose)
    model = tiny_llama(seed=0)
    start = {k: v.clone() for k, v in model.state_dict().items()}
    scored = []

    def score(attacked, curve):
        scored.append(lm_loss(attacked, streams.eval_batch))
        return {"objective": -scored[-1]}  # e.g. an accuracy: higher = attacker better

    from omegaconf import OmegaConf

    cfg = OmegaConf.create(
        {
            "seed": 0,
            "relearn_passes": 8,
            "eval_every_passes": 4,
            "model": {"relearn_lr": 0.1},
            "attack": {"name": "sgd", "lr": 0.1, "alternate_retain": False},
            "attack_suite": [{"name": "sgd", "lr": [0.01, 0.3]}],
        }
    )
    result = run_suite(model, streams, cfg, score, "minimize", reseed=set_seed)
    assert [o.value for o in result.outcomes] == [-v for v in scored]
    assert scored[1] < scored[0]  # the stronger attack, scored on its own attacked model
    assert result.worst.label == "sgd lr=0.3"  # minimize: the highest value
    assert any(not torch.equal(start[k], v) for k, v in model.state_dict().items())


def test_the_baseline_key_and_the_study_fingerprint_distinguish_attack_sets(compose):
    plain = compose()
    suite_a = compose("attack_suite=[sgd,adamw]")
    suite_b = compose("attack_suite=[sgd,lora]")
    keys = {baseline_key(c) for c in (plain, suite_a, suite_b, compose("attack=adamw"))}
    assert len(keys) == 4
    a, b = experiment_of(suite_a, {}), experiment_of(suite_b, {})
    assert fingerprint(a) != fingerprint(b)
    assert [d[0] for d in differences(a, b)] == ["attack_suite"]


@pytest.mark.parametrize(
    "override, message",
    [
        ("attack.lr=0", r"attack.lr=0 must be a number > 0"),
        (
            "attack_suite=[sgdx]",
            r"unknown attack attack_suite\[0\].name='sgdx'; allowed: adamw, "
            r"lora, retain_then_forget, sgd",
        ),
        (
            "attack_suite=[{name:sgd,rank:4}]",
            r"attack_suite\[0\].rank=4: attack sgd has no key 'rank'; "
            r"allowed: alternate_retain, lr",
        ),
        ("attack_suite=[]", r"attack_suite=\[\]; allowed: null, or a non-empty list"),
        ("attack_suite=3", r"attack_suite=3; allowed: null, or a non-empty list"),
        ("attack_suite=[{name:sgd,lr:[]}]", r"attack_suite\[0\].lr=\[\]; allowed"),
        ("attack_suite=[{name:sgd,lr:[0.1,-1]}]", r"attack_suite\[0\].lr=-1 must be a number > 0"),
        (
            "attack_suite=[{name:adamw,eps:abc}]",
            r"attack_suite\[0\].eps='abc' has the wrong type; allowed: a number",
        ),
    ],
)
def test_bad_suites_fail_at_config_time_naming_key_value_and_allowed(compose, override, message):
    with pytest.raises(ConfigError, match=message):
        validate_config(compose(override))


@pytest.mark.parametrize(
    "overrides, message",
    [
        (
            ("attack=adamw", "attack.betas=[0.9]"),
            r"attack.betas=\[0.9\] is out of range; "
            r"allowed: two numbers in \[0, 1\)",
        ),
        (("attack=adamw", "attack.weight_decay=-1"), r"attack.weight_decay=-1 is out of range"),
        (("attack=lora", "attack.rank=0"), r"attack.rank=0 is out of range; allowed: an integer"),
        (("attack=lora", "attack.alpha=0"), r"attack.alpha=0 is out of range"),
        (("attack=lora", "attack.target_modules=[]"), r"attack.target_modules=\[\]"),
        (
            ("attack=retain_then_forget", "attack.retain_fraction=1.5"),
            r"attack.retain_fraction=1.5 is out of range; allowed: a number in \(0, 1\)",
        ),
        (
            ("attack=retain_then_forget", "attack.retain_fraction=0.01"),
            r"attack.retain_fraction=0.01 gives 0 retain steps of the 5 steps",
        ),
        (
            ("attack=retain_then_forget", "+attack.alternate_retain=true"),
            r"attack.alternate_retain=True: attack retain_then_forget has no key",
        ),
    ],
)
def test_bad_attack_settings_fail_at_config_time(compose, overrides, message):
    with pytest.raises(ConfigError, match=message):
        validate_config(compose(*overrides))


def test_lora_without_peft_names_the_extra(compose, monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "peft" else real(name, *a)
    )
    with pytest.raises(ConfigError, match=r"needs the peft library: pip install -e '\.\[lora\]'"):
        validate_config(compose("attack=lora"))


def test_lora_targets_the_model_lacks_fail_in_the_preflight(compose):
    from mudman.preflight import check_model

    with pytest.raises(ConfigError, match=r"attack_suite\[1\].target_modules: .*'nope'"):
        check_model(compose("attack_suite=[sgd,{name:lora,target_modules:[nope]}]"))


def _robustness_preset(preset: str, *overrides: str):
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    from tests.conftest import CONF

    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return hydra_compose("config", [f"experiment={preset}", "logger=none", *overrides])


@pytest.mark.parametrize(
    "preset, method",
    [
        *[("robustness/house_python", m) for m in ("mudman", "no_masking", "tar", "baseline")],
        *[("robustness/smollm2_python", m) for m in ("mudman", "tar", "baseline")],
    ],
)
def test_robustness_presets_compose_with_their_suites_and_rates(preset, method):
    cfg = _robustness_preset(preset, f"method={method}")
    validate_config(cfg)  # no model or data loads: the presets' keys and suites are valid
    labels = [spec.label for spec in attack_specs(cfg)]
    assert {label.split(" ")[0] for label in labels} == {
        "sgd", "adamw", "lora", "retain_then_forget",
    }  # fmt: skip
    assert len(labels) == len(set(labels)) >= 6
    if method != "baseline":
        assert cfg.method.unlearning_rate == cfg.method_rates[method]


def test_smollm2_robustness_preset_refuses_no_masking_until_it_is_given_a_rate():
    """The comparison found no no_masking rate within SmolLM2's retain budget, so the preset
    gives none: the method is refused at config time, naming the key, and runs once given one."""
    with pytest.raises(ConfigError, match=r"method\.unlearning_rate=None"):
        validate_config(_robustness_preset("robustness/smollm2_python", "method=no_masking"))
    given = _robustness_preset(
        "robustness/smollm2_python", "method=no_masking", "+method_rates.no_masking=1e-5"
    )
    validate_config(given)
    assert given.method.unlearning_rate == 1e-5
