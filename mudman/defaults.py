"""Where the shipped config lives (conf/) and how its YAML files serve as defaults and schema.

A leaf module (it imports nothing else of mudman), so methods, attacks and the config checks can
all read the shipped defaults without import circles.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from mudman.errors import ConfigError

# The config groups (conf/ in the repository checkout; the package is installed editable).
CONF_DIR = Path(__file__).resolve().parent.parent / "conf"


@cache
def group_defaults(group: str, name: str) -> dict[str, Any]:
    """A config group option's own YAML, merged over the options it lists in ``defaults``."""
    path = CONF_DIR / group / f"{name}.yaml"
    if not path.is_file():
        return {}
    node = OmegaConf.to_container(OmegaConf.load(path), resolve=False)
    merged: dict[str, Any] = {}
    for parent in node.pop("defaults", None) or []:
        if isinstance(parent, str) and parent != "_self_":
            merged.update(group_defaults(group, parent))
    merged.update(node)
    return merged


def kind_of(value: Any) -> str | None:
    """The type family a shipped default stands for (``None``: anything goes)."""
    if isinstance(value, bool):
        return "true or false"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "a mapping"
    return None  # strings and nulls: each method checks those values itself


def fits_kind(value: Any, kind: str) -> bool:
    if kind == "true or false":
        return isinstance(value, bool)
    if kind == "a number":
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if kind == "a list":
        return isinstance(value, (list, tuple)) or OmegaConf.is_list(value)
    return isinstance(value, dict) or OmegaConf.is_dict(value)


def check_types(node: DictConfig, group: str, name: str) -> None:
    """Wrong types (``method.retain_momentum=abc``) fail with the key, value and type allowed.

    The shipped YAML of the selected option is the schema: a key whose default is a number
    takes a number, a boolean takes true/false. Options without a YAML are not checked here.
    """
    for key, default in group_defaults(group, name).items():
        kind = kind_of(default)
        if kind is None or key not in node or node.get(key) is None:
            continue
        value = node.get(key)
        if not fits_kind(value, kind):
            raise ConfigError(
                f"{group}.{key}={value!r} has the wrong type; allowed: {kind} (default {default!r})"
            )
