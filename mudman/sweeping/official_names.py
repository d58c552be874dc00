"""The official hydra-optuna-sweeper's command-line habits, accepted by this sweeper.

Its users write the search space as ``hydra.sweeper.params.<key>=<expression>``, quoted or not.
Hydra itself refuses both before any sweeper runs: the unquoted form is a sweep over a Hydra key
("Sweeping over Hydra's configuration is not supported"), the quoted one adds a key to the
struct ``params`` node ("Key 'method' is not in struct"). The entry point therefore rewrites each
such argument, before Hydra parses the command line, into this sweeper's own search-space
override ``<key>=<expression>``: it adds to or replaces that key of the cell's
``hydra.sweeper.params`` (a preset's other keys stay), as the official plugin merges command-line
parameters over its ``params``. A plain comma list stays one categorical parameter
(``choice(...)``), not a grid axis, as in the official plugin.
"""

from __future__ import annotations

import re

from mudman.errors import ConfigError

PARAMS_PREFIX = "hydra.sweeper.params."
_PARAM_ARG = re.compile(r"^\+{0,2}hydra\.sweeper\.params\.(?P<key>[^=]+)=(?P<value>.*)$", re.S)
GRAMMAR = (
    "interval(a,b), tag(log, interval(a,b)), int(interval(a,b)), choice(a,b,...), "
    "range(a,b,step), or a fixed value"
)


def _parse(key: str, value: str, shown: str):
    from hydra.core.override_parser.overrides_parser import OverridesParser

    try:
        return OverridesParser.create().parse_override(f"{key}={value}")
    except Exception as err:
        raise ConfigError(
            f"{PARAMS_PREFIX}{key}={shown!r} is not valid override grammar; allowed: {GRAMMAR}"
            f" ({str(err).splitlines()[0]})"
        ) from err


def search_override(key: str, value: str) -> str:
    """One ``hydra.sweeper.params.<key>=<value>`` -> the equivalent ``<key>=<expression>``."""
    from hydra.core.override_parser.types import ChoiceSweep

    override = _parse(key, value, value)
    if not override.is_sweep_override() and isinstance(override.value(), str):
        quoted = override.value()  # the official plugin's params are strings: parse the text
        inner = _parse(key, quoted, value)
        if inner.is_sweep_override():
            value, override = quoted, inner
    if isinstance(override.value(), ChoiceSweep) and override.value().simple_form:
        value = f"choice({value})"  # a categorical parameter of the study, not a grid axis
    if key.startswith(("+", "~")) or not key.strip():
        raise ConfigError(
            f"{PARAMS_PREFIX}{key}={value!r}: allowed: an existing config key after "
            f"{PARAMS_PREFIX} (new keys: +<key>=<expression> as a search-space override)"
        )
    return f"{key}={value}"


def rewrite_params_arguments(argv: list[str]) -> list[str]:
    """Each ``[+|++]hydra.sweeper.params.<key>=<expr>`` (quoted or not) -> ``<key>=<expr>``;
    every other argument is returned unchanged."""
    out = []
    for arg in argv:
        match = _PARAM_ARG.match(arg)
        out.append(arg if match is None else search_override(match["key"], match["value"]))
    return out
