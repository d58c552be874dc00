"""``python -m mudman.report``: statistics, a markdown table and figures from the storage alone.

Works on finished and running studies (running trials are counted, not used), needs no W&B.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import re
import sys
import warnings
from pathlib import Path

import optuna

from mudman.errors import ConfigError
from mudman.report.figures import bar_chart, baseline_by_study, study_plots
from mudman.report.runs import read_runs, runs_table
from mudman.report.stats import study_stats
from mudman.report.tables import markdown_table
from mudman.sweeping.storage import check_sqlite_database, mask_url


def check_arguments(parser: argparse.ArgumentParser, args: argparse.Namespace) -> re.Pattern:
    """``--last``, ``--studies``, ``--out``: refused with the flag, the value and what is allowed
    before the storage is opened."""
    if args.last < 1:
        parser.error(f"--last {args.last}: allowed: an integer >= 1 (the N of mean ± SEM)")
    try:
        pattern = re.compile(args.studies)
    except re.error as err:
        parser.error(f"--studies {args.studies!r} is not a valid regular expression: {err}")
    out = Path(args.out).expanduser()
    blocker = next((p for p in (out, *out.parents) if p.exists()), None)
    if blocker is not None and not blocker.is_dir():
        where = "is a file" if blocker == out else f"is under a file ({str(blocker)!r})"
        parser.error(f"--out {args.out!r} {where}; allowed: a folder (created if missing)")
    return pattern


def open_studies(storage: str, pattern: re.Pattern) -> list[optuna.Study]:
    """The matching studies, read only; a storage fault is one named line (ConfigError)."""
    if storage.startswith("sqlite:///"):
        if not Path(storage.removeprefix("sqlite:///")).expanduser().exists():
            raise ConfigError(f"--storage {storage}: no such database")
        check_sqlite_database(storage, write=False)
    try:
        names = sorted(
            s.study_name
            for s in optuna.get_all_study_summaries(storage)
            if pattern.search(s.study_name)
        )
        if not names:
            raise ConfigError(f"no study matching {pattern.pattern!r} in {mask_url(storage)}")
        return [optuna.load_study(study_name=n, storage=storage) for n in names]
    except ConfigError:
        raise
    except Exception as err:  # SQLAlchemy / driver errors: unreachable, corrupt, no schema
        first = str(err).splitlines()[0] if str(err) else ""
        raise ConfigError(
            f"--storage {mask_url(storage)} cannot be read: {type(err).__name__}: {first}"
        ) from err


DEFAULT_STORAGE = "sqlite:///outputs/optuna.db"  # the sweeper's default (conf/hydra/sweeper/)
DESCRIPTION = """\
Statistics, a markdown table and figures of Optuna studies, read from the storage alone
(finished or still running studies; running trials are counted, not used; no W&B needed).

examples:
  python -m mudman.report                                   # every study in the default storage
  python -m mudman.report --studies '^ablation-' --last 30  # a grid's studies, mean/SEM of 30
  python -m mudman.report --runs outputs/multirun/2026-12-01/10-00-00   # a plain multirun grid
  python -m mudman.report --robustness outputs/multirun/2026-12-01/10-00-00  # attack suites
"""


def build_parser() -> argparse.ArgumentParser:
    """The command line (also what ``--help`` shows: plain text, every option with its default)."""
    parser = argparse.ArgumentParser(
        prog="python -m mudman.report",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    storage = os.environ.get("MUDMAN_OPTUNA_STORAGE")
    parser.add_argument(
        "--storage",
        default=storage or DEFAULT_STORAGE,
        metavar="URL",
        help="Optuna storage URL, sqlite:///path or postgresql://... (default: "
        + ("$MUDMAN_OPTUNA_STORAGE" if storage else DEFAULT_STORAGE)
        + ", as the sweeper; $MUDMAN_OPTUNA_STORAGE when set)",
    )
    parser.add_argument(
        "--studies", default=".*", metavar="REGEX", help="regex on study names (default: all)"
    )
    parser.add_argument(
        "--last",
        type=int,
        default=30,
        metavar="N",
        help="mean/SEM over the last N valid trials of each study (default: 30)",
    )
    parser.add_argument(
        "--out",
        default="outputs/report",
        metavar="DIR",
        help="folder for table and figures (default: outputs/report)",
    )
    parser.add_argument("--no-plots", action="store_true", help="table only")
    parser.add_argument(
        "--runs",
        metavar="DIR",
        help="instead of a storage: tabulate the results.json of a plain multirun grid under DIR",
    )
    parser.add_argument(
        "--robustness",
        nargs="+",
        metavar="PATH",
        help="instead of a storage: robustness curves of trials with attack suites (run dirs, "
        "results.json files or sweep dirs; per method --pick best, or last --last N)",
    )
    parser.add_argument(
        "--pick", choices=("best", "last"), default="best", help="with --robustness (default best)"
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not (args.runs or args.no_plots) and importlib.util.find_spec("matplotlib") is None:
        parser.error("figures need matplotlib: pip install -e '.[report]' (or --no-plots)")
    if args.robustness:
        check_arguments(parser, args)
        return report_robustness(parser, args)
    if args.runs:
        check_arguments(parser, args)
        return report_runs(parser, Path(args.runs), Path(args.out))

    pattern = check_arguments(parser, args)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    try:
        studies = open_studies(args.storage, pattern)
    except ConfigError as err:
        print(f"Error: {mask_url(str(err))}", file=sys.stderr)
        return 2
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    rows = [study_stats(s, args.last) for s in studies]
    table = markdown_table(rows)
    (out / "table.md").write_text(table + "\n")
    print(table)
    if not args.no_plots:
        print(f"figure 2: {bar_chart(rows, out / 'figure2.png', args.last)}")
        baselines = baseline_by_study(rows)
        for study, stats in zip(studies, rows, strict=True):
            baseline = baselines.get(study.study_name)
            for path in study_plots(study, out / study.study_name, baseline, stats):
                print(f"plot: {path}")
    print(f"table: {out / 'table.md'}")
    return 0


def report_runs(parser: argparse.ArgumentParser, root: Path, out: Path) -> int:
    """``--runs DIR``: one row per run of a grid launched without the Optuna sweeper."""
    rows = read_runs(root)
    if not rows:
        parser.error(f"--runs {root}: no results.json under it")
    table = runs_table(rows)
    out.mkdir(parents=True, exist_ok=True)
    (out / "runs.md").write_text(table + "\n")
    print(table)
    print(f"table: {out / 'runs.md'} ({len(rows)} runs)")
    return 0


def report_robustness(parser: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    """``--robustness PATH...``: figures of attack suites (mudman/report/robustness.py)."""
    from mudman.report.robustness import report

    last = args.last if args.pick == "last" else 1
    try:
        paths = report([Path(p) for p in args.robustness], Path(args.out), args.pick, last)
    except (FileNotFoundError, ValueError) as err:
        parser.error(f"--robustness: {err}")
    for path in paths:
        print(f"robustness: {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
