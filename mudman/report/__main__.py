"""``python -m mudman.report``: statistics, a markdown table and figures from the storage alone.

Works on finished and running studies (running trials are counted, not used), needs no W&B.
"""

from __future__ import annotations

import argparse
import os
import re
import warnings
from pathlib import Path

import optuna

from mudman.report.figures import bar_chart, study_plots
from mudman.report.runs import read_runs, runs_table
from mudman.report.stats import study_stats
from mudman.report.tables import markdown_table
from mudman.sweeping.storage import mask_url

DEFAULT_STORAGE = "sqlite:///outputs/optuna.db"  # the sweeper's default (conf/hydra/sweeper/)
DESCRIPTION = """\
Statistics, a markdown table and figures of Optuna studies, read from the storage alone
(finished or still running studies; running trials are counted, not used; no W&B needed).

examples:
  python -m mudman.report                                   # every study in the default storage
  python -m mudman.report --studies '^ablation-' --last 30  # a grid's studies, mean/SEM of 30
  python -m mudman.report --runs outputs/multirun/2026-12-01/10-00-00   # a plain multirun grid
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
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.runs:
        return report_runs(parser, Path(args.runs), Path(args.out))

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    if (
        args.storage.startswith("sqlite:///")
        and not Path(args.storage.removeprefix("sqlite:///")).expanduser().exists()
    ):
        parser.error(f"--storage {args.storage}: no such database")
    pattern = re.compile(args.studies)
    names = sorted(
        s.study_name
        for s in optuna.get_all_study_summaries(args.storage)
        if pattern.search(s.study_name)
    )
    if not names:
        parser.error(f"no study matching {args.studies!r} in {mask_url(args.storage)}")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    studies = [optuna.load_study(study_name=n, storage=args.storage) for n in names]
    rows = [study_stats(s, args.last) for s in studies]
    table = markdown_table(rows)
    (out / "table.md").write_text(table + "\n")
    print(table)
    if not args.no_plots:
        print(f"figure 2: {bar_chart(rows, out / 'figure2.png', args.last)}")
        for study in studies:
            for path in study_plots(study, out / study.study_name):
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


if __name__ == "__main__":
    raise SystemExit(main())
