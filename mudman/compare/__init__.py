"""Method comparison under one budget: search each method's rate, judge it on fresh seeds.

``python -m mudman experiment=compare/smollm2_python`` runs, for every method in
``compare.methods``: a ladder search of its main rate on the search seed (``ladder.py``), then
its best rate on each of ``compare.seeds`` (other data splits and eval batches), and the
relearn-only baseline on the same seeds; it prints and writes the table (mean ± SEM over seeds,
paired gain over the baseline), ``comparison.json`` and ``comparison.png``. docs/compare.md.
"""

from __future__ import annotations

import logging
import sys
import time
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from mudman.defaults import CONF_DIR
from mudman.errors import ConfigError

log = logging.getLogger("mudman.compare")

#: set per trial by the comparison; a user override of them would be silently replaced
PER_TRIAL_KEYS = ("method", "seed", "data.split_seed", "compare_baseline", "hydra.run.dir")


def known_methods(config_dir: Path) -> list[str]:
    return sorted(p.stem for p in (config_dir / "method").glob("*.yaml"))


def shared_overrides(task_overrides: list[str], rate_key: str) -> list[str]:
    """The user's overrides that every trial gets: all but the comparison's own."""
    shared = []
    for override in task_overrides:
        key = override.split("=", 1)[0].lstrip("+~")
        if key == "compare" or key.startswith("compare."):
            continue
        if key in (*PER_TRIAL_KEYS, rate_key):
            raise ConfigError(
                f"{override!r}: {key} is set per trial by the comparison; allowed: "
                "compare.methods=[...], compare.start.<method>=<rate>, compare.seeds=[...] "
                "(or run the trial without experiment=compare/...)"
            )
        shared.append(override)
    return shared


def method_fingerprints(
    overrides: list[str], settings, validate: bool = True, inputs: bool = True
) -> dict[str, str]:
    """Per method (and the baseline): the fingerprint of the experiment its trials run (config
    and the sha256 of every input file), minus the keys that vary per trial (rate, seeds).
    Composing each also checks it, so a bad override fails here, before the first trial."""
    from hydra import compose

    from mudman.compare.plan import Job
    from mudman.config import validate_config
    from mudman.data.digests import inputs_digest, selected_sources
    from mudman.sweeping.fingerprint import experiment_of, fingerprint

    prints = {}
    for method in (*settings.methods, "baseline"):
        job = Job(method, "search", settings.search_seed, settings.start.get(method))
        own = job.overrides(settings.rate_key)
        cfg = compose(config_name="config", overrides=[*overrides, *own, "compare=null"])
        if validate:
            validate_config(cfg)
        experiment = experiment_of(cfg, {})["config"]
        # the files a trial reads (model, data, tasks): an edited file is another experiment
        if inputs:  # (False only where the files need not exist: composing presets in tests)
            experiment["inputs"] = inputs_digest(selected_sources(cfg), cfg.paths.cache_dir)
        experiment.pop("seed", None)
        experiment.get("data", {}).pop("split_seed", None)
        experiment.pop("compare_baseline", None)
        section, _, key = settings.rate_key.partition(".")
        experiment.get(section, {}).pop(key, None)
        prints[method] = fingerprint(experiment)
    return prints


def run_comparison(cfg: DictConfig, run_dir: Path, task_overrides: list[str]) -> int:
    """Run (or resume) the comparison into ``run_dir``; returns the process exit code."""
    from mudman.compare.driver import Comparison, TrialLauncher, comparison_lock, execute
    from mudman.compare.plan import read_settings
    from mudman.compare.summary import console_table, figure, markdown_table, summarize
    from mudman.results import write_json_atomic

    settings = read_settings(cfg, known_methods(CONF_DIR))
    overrides = shared_overrides(task_overrides, settings.rate_key)
    maximize = str(cfg.objective.direction) == "maximize"
    fingerprints = method_fingerprints(overrides, settings)
    n_max = len(settings.methods) * (
        settings.max_rungs + settings.refinements + len(settings.seeds)
    )
    log.info(
        "comparison %s: %s, search seed %d, re-runs on seeds %s, %d worker(s); at most %d "
        "trials + %d baselines; trial logs under %s",
        settings.name,
        ", ".join(settings.methods),
        settings.search_seed,
        list(settings.seeds),
        settings.workers,
        n_max,
        len(settings.seeds),
        run_dir / "trials",
    )
    comparison = Comparison(settings, maximize)
    started = time.perf_counter()

    def on_finish(run) -> None:
        rate = "" if run.job.rate is None else f" rate={run.job.rate:.3g}"
        value = "" if run.value is None else f" objective {run.value:.4f}"
        where = "reused" if run.reused else f"{run.seconds:.0f} s"
        detail = f" ({run.detail})" if run.detail else ""
        print(
            f"[{len(comparison.runs):>3}] {run.job.method} {run.job.stage}{rate} "
            f"seed={run.job.seed}: {run.status}{value}{detail} [{where}]",
            flush=True,
        )

    with comparison_lock(run_dir):
        launcher = TrialLauncher(
            overrides, settings, run_dir, fingerprints, names_runs="run_name" in cfg.logger
        )
        launcher.check_existing()
        try:
            execute(comparison, launcher, on_finish)
        except KeyboardInterrupt:
            print(
                f"interrupted: {len(comparison.runs)} trials finished and kept under "
                f"{run_dir / 'trials'}; run the same command again to resume",
                file=sys.stderr,
            )
            return 130
        summary = summarize(comparison, maximize, str(cfg.objective.name))
        summary["wall_s"] = round(time.perf_counter() - started, 1)
        summary["config"] = OmegaConf.to_container(cfg.compare, resolve=True)
        write_json_atomic(summary, run_dir / "comparison.json")
        (run_dir / "comparison.md").write_text(markdown_table(summary) + "\n")
        figure(summary, run_dir / "comparison.png")
    print(console_table(summary))
    print(
        f"wall {summary['wall_s']:.0f} s; {run_dir / 'comparison.json'}, comparison.md, "
        "comparison.png"
    )
    failed = [t for t in summary["trials"] if t["status"] == "failed"]
    if failed:
        print(f"{len(failed)} trial(s) failed; their logs:", file=sys.stderr)
        for trial in failed:
            print(f"  {trial['directory']}/trial.log: {trial['detail']}", file=sys.stderr)
        return 1
    return 0
