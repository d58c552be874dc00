"""A multirun's command line as a grid of studies.

Command-line overrides are split three ways:
- plain comma lists (``method=mudman,no_masking``) are *grid axes*: each combination is a cell
  with its own study (name, search space and trial count come from that cell's composed config);
- functional sweeps (``interval``, ``tag(log, ...)``, ``int(...)``, ``choice(...)``, ``range``)
  add to / replace the cell's ``hydra.sweeper.params`` search space;
- everything else is passed to every trial unchanged.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from contextlib import contextmanager

from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import ChoiceSweep

from mudman.errors import ConfigError


def split_arguments(arguments: list[str]) -> tuple[list[list[str]], list[str], list[str]]:
    """-> (grid axes as lists of ``key=value``, search-space overrides, fixed overrides)."""
    parser = OverridesParser.create()
    grid, search, fixed = [], [], []
    for text, override in zip(arguments, parser.parse_overrides(arguments), strict=True):
        value = override.value() if override.is_sweep_override() else None
        if isinstance(value, ChoiceSweep) and value.simple_form:
            key = override.get_key_element()
            grid.append([f"{key}={v}" for v in override.sweep_string_iterator()])
        elif override.is_sweep_override():
            search.append(text)
        else:
            fixed.append(text)
    return grid, search, fixed


def grid_cells(grid: list[list[str]], fixed: list[str]) -> list[tuple[str, list[str]]]:
    """Every combination of the grid axes as (label, overrides); errors name the cell by its
    label ("grid cell 2/3 (method=tar)"; a single study needs none, so its label is "")."""
    cells = list(itertools.product(*grid)) or [()]
    return [
        (f"grid cell {n}/{len(cells)} ({' '.join(c)})" if len(cells) > 1 else "", [*fixed, *c])
        for n, c in enumerate(cells, 1)
    ]


@contextmanager
def naming(label: str) -> Iterator[None]:
    """Prefix a ConfigError raised inside with the grid cell it belongs to."""
    try:
        yield
    except ConfigError as err:
        if not label or str(err).startswith("grid cell "):
            raise
        raise ConfigError(f"{label}: {err}") from err
