"""One trial, top to bottom: prepare, unlearn (with the retain-budget check), relearn, score.

``run_trial`` reads as its steps (docs/trial.md): ``prepare`` (device, model, batches),
``describe`` (the record's header), ``measure_untouched`` and ``start_objective`` (the
untouched model's losses and scores), ``watch`` (the monitor of unlearning), ``unlearn``,
``relearn`` (the attack or attack suite), ``score`` or ``reject``, ``close`` (what the
monitor saw) and, with ``compare_baseline``, ``run_baseline``. Each fills its part of one
``TrialRecord`` (mudman/record.py), the schema of ``results.json``.

The objective (``conf/objective/``) is by default the minimum forget loss the relearning
attack reaches (higher = more robust unlearning); the WMDP study's is multiple-choice accuracy
after relearning (lower = better), with a capability guard probed during unlearning. A trial
that breaks the retain budget, trips the guard or goes non-finite is *rejected*: it has no
objective and is not a valid sample (Optuna records it as PRUNED).
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf
from tqdm.auto import tqdm

from mudman.attack.base import PASSES_PER_STEP, AttackStreams
from mudman.attack.suite import AttackSpec, SuiteResult, run_suite, suite_settings
from mudman.cache_keys import json_key
from mudman.config import validate_config
from mudman.console import bars_wanted
from mudman.data.batching import TrialData
from mudman.data.device_cache import DEVICE_DATA
from mudman.data.digests import read_cached_json
from mudman.errors import TrialRejected
from mudman.evaluation.lm_loss import forget_retain_losses
from mudman.methods import UnlearningMethod
from mudman.methods.monitor import PassMonitor
from mudman.models.loading import (
    load_model_and_tokenizer,
    resolve_device,
    resolve_dtype,
    set_tf32,
)
from mudman.models.targets import select_target_params
from mudman.objectives import Objective, build_objective
from mudman.record import Passes, Rejection, TrialRecord
from mudman.results import write_json_atomic
from mudman.runtime import apply_thread_policy, tune_allocator
from mudman.tracking.base import NullTracker, Tracker

log = logging.getLogger(__name__)


def set_seed(seed: int) -> None:
    """Re-seed everything: before unlearning and again before relearning (as the paper does)."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


@contextmanager
def timed(timings: dict[str, float], name: str) -> Iterator[None]:
    """Record the wall time of a block in ``timings[name]`` (seconds)."""
    start = time.perf_counter()
    try:
        yield
    finally:
        timings[name] = round(time.perf_counter() - start, 3)


def account_timings(
    before: dict[str, float], parts: dict[str, float], started_at: float
) -> dict[str, float]:
    """Timings whose parts add up to ``total_s`` = now - ``started_at``.

    ``before`` are phases of the caller (preflight, tracker start) ahead of ``parts``; a
    ``total_s``/``other_s`` already in ``parts`` is recomputed; the time no part measured is
    ``other_s``, so the ``time:`` line accounts for every second of the total.
    """
    merged = {**before, **{k: v for k, v in parts.items() if k not in ("other_s", "total_s")}}
    total = time.perf_counter() - started_at
    merged["other_s"] = round(max(0.0, total - sum(merged.values())), 3)
    merged["total_s"] = round(sum(merged.values()), 3)  # == the wall time, up to rounding
    return merged


def _fmt(values: dict[str, float]) -> str:
    return ", ".join(f"{k} {v:.4f}" for k, v in values.items())


def _bar(cfg: DictConfig, total: int, desc: str):
    """A progress bar, drawn only on a terminal (no carriage-return frames in log files)."""
    disable = not bars_wanted(cfg.progress) or total == 0
    return tqdm(total=total, desc=desc, disable=disable, leave=False)


def attack(
    model,
    data: TrialData,
    cfg: DictConfig,
    tracker: Tracker,
    objective: Objective,
    step_offset: int = 0,
    prefix: str = "relearn",
) -> SuiteResult:
    """Run the trial's attack (or every attack of ``attack_suite``, each from the same weights
    and re-seeded); log on the shared step axis; the objective scores each attacked model."""
    single = cfg.get("attack_suite") is None

    def on_eval(spec: AttackSpec, index: int, passes: int, loss: float) -> None:
        if single:  # the log lines and tracker keys of the one fixed attack, as they were
            log.info("%s %4d passes: forget loss %.4f", prefix, passes, loss)
            tracker.log({f"{prefix}/forget_loss": loss}, step=step_offset + passes)
            return
        log.info("%s [%s] %4d passes: forget loss %.4f", prefix, spec.label, passes, loss)
        step = step_offset + index * cfg.relearn_passes + passes  # passes executed so far
        tracker.log({f"{prefix}/{spec.label}/forget_loss": loss}, step=step)

    def bar(spec: AttackSpec):
        return _bar(cfg, cfg.relearn_passes // PASSES_PER_STEP, prefix if single else spec.label)

    return run_suite(
        model,
        AttackStreams.of(data),
        cfg,
        objective.score,
        str(cfg.objective.direction),
        on_eval=on_eval,
        bar=bar,
        reseed=set_seed,
    )


def suite_record(suite: SuiteResult) -> dict[str, Any]:
    """The attacks' part of a results record: every attack's curve, settings and value, and
    which one was the worst case (the trial's objective)."""
    return {
        "attacks": [outcome.to_record() for outcome in suite.outcomes],
        "worst_attack": suite.worst.label,
    }


def baseline_key(cfg: DictConfig, tokenizer: Any = None) -> str:
    """Everything the relearn-only baseline depends on (not the method): the configs, the
    sha256 of every input file (model, data, objective tasks) and the tokenizer."""
    from mudman.data.batching import tokenizer_fingerprint
    from mudman.data.digests import inputs_digest, selected_sources

    parts = {
        k: OmegaConf.to_container(cfg[k], resolve=True)
        for k in ("model", "data", "attack", "objective")
    }
    suite = suite_settings(cfg)
    if suite is not None:  # absent without a suite: the keys of older baselines stay valid
        parts["attack_suite"] = suite
    parts["inputs"] = inputs_digest(selected_sources(cfg), cfg.paths.cache_dir)
    if tokenizer is not None:
        parts["tokenizer"] = tokenizer_fingerprint(tokenizer)
    parts.update(
        {
            k: cfg[k]
            for k in (
                "context_len",
                "batch_size",
                "relearn_passes",
                "eval_every_passes",
                "seed",
                "dtype",
            )
        }
    )
    parts["device_type"] = resolve_device(cfg.device).type
    if parts["device_type"] == "cuda":  # TF32 changes the numbers; CPU keys stay as they were
        parts["tf32"] = bool(cfg.get("tf32", True))
    return json_key(parts, length=20)


def run_baseline(
    cfg: DictConfig,
    data: TrialData,
    device,
    dtype,
    tracker: Tracker,
    objective: Objective,
    tokenizer: Any = None,
) -> dict:
    """Relearning on the untouched model, cached on disk: a sweep computes it once."""
    key = baseline_key(cfg, tokenizer)
    path = Path(cfg.paths.cache_dir).expanduser() / "baselines" / f"{key}.json"
    cached = read_cached_json(path)
    if cached is not None and "objective" in cached:
        return {**cached, "cached": True}
    start = time.perf_counter()
    model, _ = load_model_and_tokenizer(cfg.model, device, dtype, cfg.paths.cache_dir)
    suite = attack(model, data, cfg, tracker, objective, prefix="baseline")
    record = {
        "objective": suite.worst.scores["objective"],
        "scores": suite.worst.scores,
        "curve": suite.worst.curve,
        "seconds": round(time.perf_counter() - start, 3),
        **suite_record(suite),
    }
    write_json_atomic(record, path)
    del model
    return {**record, "cached": False}


@dataclass
class Prepared:
    """What a trial runs on: device and precision, the model and its targeted weights, the
    batches (already on the device)."""

    device: torch.device
    dtype: torch.dtype
    tf32: bool
    threads: int
    model: Any
    tokenizer: Any
    data: TrialData
    data_reused: bool
    params: dict[str, torch.nn.Parameter]

    def release_model(self) -> None:
        """Free the trial's model before the baseline loads another."""
        self.model = self.params = None


def prepare(cfg: DictConfig, timings: dict[str, float]) -> Prepared:
    """Pick device and precision, load the model and the batches, and make only the targeted
    weights trainable (no weight gradients for the rest)."""
    device = resolve_device(cfg.device)
    dtype = resolve_dtype(cfg.dtype, cfg.model.dtype, device)
    tf32 = set_tf32(device, bool(cfg.get("tf32", True)))
    threads = apply_thread_policy(cfg.get("threads", "auto"), device)  # docs/performance.md
    tune_allocator()
    with timed(timings, "load_s"):
        model, tokenizer = load_model_and_tokenizer(cfg.model, device, dtype, cfg.paths.cache_dir)
    with timed(timings, "data_s"):  # built on the device once per process (per study worker)
        data, data_reused = DEVICE_DATA.get(
            cfg.data, tokenizer, cfg.context_len, cfg.batch_size, cfg.paths.cache_dir, device
        )
    if data.used_by_a_trial:  # built (and reported) for an earlier trial: report again
        from mudman.data.batching import report_rows

        for key, counts in (data.rows or {}).items():
            report_rows(key, counts, cfg.context_len)
    data.used_by_a_trial = True
    params = select_target_params(model, cfg.target_modules)
    for name, param in model.named_parameters():
        param.requires_grad_(name in params)  # no weight gradients for untargeted parameters
    return Prepared(device, dtype, tf32, threads, model, tokenizer, data, data_reused, params)


def describe(cfg: DictConfig, run: Prepared) -> TrialRecord:
    """The record's header: what runs where, before anything is measured."""
    data = run.data
    return TrialRecord(
        status="running",
        direction=str(cfg.objective.direction),
        device=str(run.device),
        dtype=str(run.dtype).removeprefix("torch."),
        tf32=run.tf32,
        threads=run.threads,
        data_reused=run.data_reused,
        data_rows=data.rows,  # per source: rows read, kept, too short, duplicates
        targets=list(run.params),
        n_targeted_params=sum(p.numel() for p in run.params.values()),
        n_model_params=sum(p.numel() for p in run.model.parameters()),
        n_batches={
            "forget_train": len(data.forget_train),
            "retain_train": len(data.retain_train),
            "forget_val": len(data.forget_val),
            "retain_val": len(data.retain_val),
        },
    )


def measure_untouched(
    run: Prepared, tracker: Tracker, timings: dict[str, float]
) -> dict[str, float]:
    """Forget and retain loss of the untouched model (the retain budget counts from here)."""
    with timed(timings, "initial_eval_s"):
        initial = forget_retain_losses(run.model, run.data.forget_eval, run.data.retain_eval)
    tracker.log({f"unlearn/{k}": v for k, v in initial.items()}, step=0)
    return initial


def start_objective(
    cfg: DictConfig,
    run: Prepared,
    objective: Objective,
    tracker: Tracker,
    timings: dict[str, float],
) -> dict[str, float]:
    """Ready the objective's evaluations and score the untouched model (e.g. WMDP and MMLU);
    empty for an objective that only scores after relearning."""
    with timed(timings, "evaluation_setup_s"):
        objective.prepare(
            run.tokenizer,
            run.device,
            cfg.paths.cache_dir,
            untouched_key=baseline_key(cfg, run.tokenizer),
        )
        initial_scores = objective.start(run.model)
    if initial_scores:
        tracker.log({f"eval/{k}": v for k, v in initial_scores.items()}, step=0)
    return initial_scores


def watch(
    cfg: DictConfig,
    run: Prepared,
    objective: Objective,
    tracker: Tracker,
    initial: dict[str, float],
) -> PassMonitor:
    """The monitor of unlearning: evaluates every ``eval_every_passes``, logs, rejects a trial
    over the retain budget or with a non-finite loss, and runs the objective's probes (the
    capability guard)."""

    def log_eval(passes: int, values: dict[str, float]) -> None:
        log.info("eval %4d passes: %s", passes, _fmt(values))
        tracker.log({f"eval/{k}": v for k, v in values.items()}, step=passes)

    def probe(passes: int) -> None:
        try:
            values = objective.probe(run.model, passes)
        except TrialRejected as rejected:
            log_eval(passes, rejected.losses)  # the values that tripped the guard
            raise
        log_eval(passes, values)

    def evaluate() -> dict[str, float]:
        return forget_retain_losses(run.model, run.data.forget_eval, run.data.retain_eval)

    def on_eval(passes: int, values: dict[str, float]) -> None:
        log.info(
            "unlearn %4d passes: forget loss %.4f, retain loss %.4f",
            passes,
            values["forget_loss"],
            values["retain_loss"],
        )
        tracker.log({f"unlearn/{k}": v for k, v in values.items()}, step=passes)

    return PassMonitor(
        evaluate,
        cfg.eval_every_passes,
        cfg.retain_loss_budget,
        initial["retain_loss"],
        on_eval,
        probes=[(objective.probe_every_passes, probe)] if objective.probe_every_passes else [],
        pause_budget=cfg.get("retain_pause_budget"),
    )


def plan_passes(cfg: DictConfig, method: UnlearningMethod) -> Passes:
    """The pass budgets: how many loops of the method the unlearning budget allows."""
    return Passes(
        unlearning_budget=cfg.unlearn_passes,
        per_loop=method.passes_per_loop(),
        loops=method.n_loops(cfg.unlearn_passes),
        relearning=cfg.relearn_passes,
    )


def unlearn(
    cfg: DictConfig,
    method: UnlearningMethod,
    run: Prepared,
    monitor: PassMonitor,
    n_loops: int,
    timings: dict[str, float],
) -> dict[str, float] | None:
    """Re-seed (as the paper does) and run the method's loops; the monitor judges the final
    weights too. Returns the last evaluation's losses, ``None`` when none ran (raises
    ``TrialRejected``)."""
    set_seed(cfg.seed)
    with (
        timed(timings, "unlearning_s"),
        _bar(cfg, n_loops, f"unlearn ({cfg.method.name})") as bar,
    ):
        method.unlearn(run.model, run.params, run.data, n_loops, monitor, progress=bar)
        if n_loops:
            monitor.finish()  # always judge the final weights
    return monitor.history[-1][1] if monitor.history else None


def relearn(
    cfg: DictConfig,
    run: Prepared,
    objective: Objective,
    tracker: Tracker,
    step_offset: int,
    timings: dict[str, float],
) -> SuiteResult:
    """Attack the unlearned model (each attack of a suite from the same weights); the
    objective scores each attacked model inside, so that time moves to ``scoring_s``."""
    with timed(timings, "relearning_s"):
        suite = attack(run.model, run.data, cfg, tracker, objective, step_offset=step_offset)
    timings["scoring_s"] = suite.scoring_s
    timings["relearning_s"] = round(timings["relearning_s"] - suite.scoring_s, 3)
    return suite


def score(record: TrialRecord, suite: SuiteResult, objective: Objective) -> dict[str, float]:
    """A completed trial: the worst-case attack's value is the objective. Returns the losses
    after relearning."""
    curve, scores = suite.worst.curve, suite.worst.scores
    attacks = suite_record(suite)
    record.attacks, record.worst_attack = attacks["attacks"], attacks["worst_attack"]
    record.passes.attacks = {o.label: o.passes for o in suite.outcomes}
    record.passes.attack_total = suite.passes
    record.objective = scores["objective"]
    record.scores = scores
    values = objective.values(record.to_json())
    record.objectives = dict(zip(objective.names, values, strict=True))
    record.directions = objective.directions
    record.status = "completed"
    record.curves = {"relearning": curve}
    return {"forget_loss": curve[-1][1]}


def reject(record: TrialRecord, rejected: TrialRejected) -> None:
    """A rejected trial: no objective, and why (not a valid sample)."""
    record.status = "rejected"
    record.rejection = Rejection(
        reason=rejected.reason, passes=rejected.passes_done, losses=rejected.losses
    )


def close(
    record: TrialRecord,
    monitor: PassMonitor,
    losses: dict[str, dict[str, float]],
    evaluations: list | None,
) -> None:
    """What the monitor saw, whatever the outcome: passes done, the unlearning curve, the
    retain limit and the losses per phase."""
    record.passes.unlearning_done = monitor.passes
    record.passes.paused_loops = monitor.paused_loops
    record.evaluations = evaluations  # [passes, {task/metric: value}]
    unlearning = [[passes, v["forget_loss"], v["retain_loss"]] for passes, v in monitor.history]
    record.curves = {**(record.curves or {}), "unlearning": unlearning}
    record.retain_loss_limit = monitor.retain_limit
    record.losses = losses


def summary_of(record: TrialRecord) -> dict[str, Any]:
    """The tracker's run summary."""
    summary = {"objective": record.objective, "status": record.status}
    if record.baseline:
        summary["baseline_objective"] = record.baseline_objective
    return summary


def run_trial(
    cfg: DictConfig, tracker: Tracker | None = None, method: UnlearningMethod | None = None
) -> dict[str, Any]:
    """Run one trial and return its record as ``results.json`` holds it (docs/trial.md).

    ``method`` is the already validated method when the caller checked the config first.
    The timings' parts sum to ``total_s``: what no phase measured is ``other_s``.
    """
    started_at = time.perf_counter()
    tracker = tracker or NullTracker()
    timings: dict[str, float] = {}
    method = method or validate_config(cfg)  # before anything heavy
    objective = build_objective(cfg.objective)

    run = prepare(cfg, timings)
    record = describe(cfg, run)
    losses = {"initial": measure_untouched(run, tracker, timings)}
    initial_scores = start_objective(cfg, run, objective, tracker, timings)
    monitor = watch(cfg, run, objective, tracker, losses["initial"])
    record.passes = plan_passes(cfg, method)
    try:
        after = unlearn(cfg, method, run, monitor, record.passes.loops, timings)
        losses["after_unlearning"] = after or dict(losses["initial"])  # no loops: untouched
        suite = relearn(cfg, run, objective, tracker, monitor.passes, timings)
        losses["after_relearning"] = score(record, suite, objective)
    except TrialRejected as rejected:
        reject(record, rejected)
    close(record, monitor, losses, objective.history if initial_scores else None)
    run.release_model()

    if cfg.compare_baseline and cfg.method.algorithm != "baseline":
        with timed(timings, "baseline_s"):
            record.baseline = run_baseline(
                cfg, run.data, run.device, run.dtype, tracker, objective, run.tokenizer
            )
    record.timings = account_timings({}, timings, started_at)
    tracker.summary(summary_of(record))
    return record.to_json()
