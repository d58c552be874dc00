"""The entry point: ``python -m mudman [overrides]`` or ``mudman [overrides]``.

Composes the Hydra config, refuses bad input before loading anything, runs one trial, writes
``results.json`` into the Hydra run directory and prints a short table.
"""

from __future__ import annotations

import logging
import sys
import time
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

from mudman.assets import MissingAssetError
from mudman.defaults import CONF_DIR
from mudman.errors import ConfigError

log = logging.getLogger("mudman")


def run(cfg: DictConfig, run_dir: Path) -> dict:
    """Run one trial into ``run_dir`` (separate from Hydra so tests can call it directly)."""
    from mudman.config import validate_config
    from mudman.console import bars_wanted, library_bars, logs_above_bars
    from mudman.preflight import preflight
    from mudman.redaction import redact
    from mudman.results import format_table, process_memory, write_json_atomic
    from mudman.tracking import build_tracker
    from mudman.trial import account_timings, run_trial, timed

    results_path = run_dir / "results.json"
    if results_path.exists() and not cfg.overwrite:
        raise ConfigError(f"{results_path} exists; pass overwrite=true to replace it")
    started_at = time.perf_counter()
    timings: dict[str, float] = {}
    library_bars(bars_wanted(cfg.progress))
    with timed(timings, "preflight_s"):
        method = validate_config(cfg)  # fail before W&B starts or any model loads
        preflight(cfg, run_dir)  # disk, model config and module tree, data: still no weights
    resolved = redact(OmegaConf.to_container(cfg, resolve=True))  # no tokens in W&B or results
    with timed(timings, "tracker_s"):
        tracker = build_tracker(cfg.logger, resolved, run_dir)
    try:
        with logs_above_bars(bars_wanted(cfg.progress)):
            record = run_trial(cfg, tracker, method)
        record["timings"] = account_timings(timings, record.get("timings", {}), started_at)
    except BaseException:
        tracker.finish(failed=True)
        raise
    tracker.finish()
    record["config"] = resolved
    record["memory"] = process_memory()
    write_json_atomic(redact(record), results_path)
    print(format_table(record))
    print(f"results: {results_path}")
    return record


@hydra.main(version_base="1.3", config_path=str(CONF_DIR), config_name="config")
def hydra_main(cfg: DictConfig) -> float | None:
    hydra_cfg = HydraConfig.get()
    run_dir = Path(hydra_cfg.runtime.output_dir)
    if cfg.get("compare") is not None:  # experiment=compare/...: many trials, docs/compare.md
        if hydra_cfg.mode == RunMode.MULTIRUN:
            log.error("a comparison runs its own trials: drop -m (multirun)")
            sys.exit(2)
        from mudman.compare import run_comparison

        try:
            sys.exit(run_comparison(cfg, run_dir, list(hydra_cfg.overrides.task)))
        except (ConfigError, MissingAssetError) as err:
            log.error("%s", err)
            sys.exit(2)
    try:
        record = run(cfg, run_dir)
    except (ConfigError, MissingAssetError) as err:
        if hydra_cfg.mode == RunMode.MULTIRUN:
            raise  # the sweeper records the trial as failed and goes on
        log.error("%s", err)
        sys.exit(2)
    return record["objective"]


def main() -> float | None:
    """``python -m mudman``: the command line as the official Optuna sweeper's users type it
    (``hydra.sweeper.params.<key>=<expr>``, docs/sweeps.md) is made acceptable to Hydra first."""
    from mudman.sweeping.official_names import rewrite_params_arguments

    try:
        sys.argv[1:] = rewrite_params_arguments(sys.argv[1:])
    except ConfigError as err:
        print(f"Error: {err}", file=sys.stderr)
        sys.exit(2)
    return hydra_main()


if __name__ == "__main__":
    main()
