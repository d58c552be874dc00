"""Choose the parameters to intervene on: the weights of the named linear modules.

``target_modules`` is a list whose items are either a module's own name (``gate_proj``,
``dense_h_to_4h``: matches that last path component in every layer) or a regular expression
prefixed with ``re:`` matched against the full module path
(``re:.*layers\\.[0-3]\\.mlp\\.gate_proj``).
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from torch import nn

from mudman.errors import ConfigError


def _matches(module_path: str, pattern: str) -> bool:
    if pattern.startswith("re:"):
        return re.fullmatch(pattern[3:], module_path) is not None
    return module_path == pattern or module_path.endswith("." + pattern)


def validate_target_patterns(target_modules: Sequence[str] | str) -> list[str]:
    """Normalize and syntax-check the patterns without a model (fails before loading)."""
    patterns = [target_modules] if isinstance(target_modules, str) else list(target_modules)
    if not patterns:
        raise ConfigError("target_modules is empty; give module names (gate_proj) or 're:<regex>'")
    for pattern in patterns:
        if not isinstance(pattern, str) or not pattern:
            raise ConfigError(f"target_modules item {pattern!r} must be a non-empty string")
        if pattern.startswith("re:"):
            try:
                re.compile(pattern[3:])
            except re.error as err:
                raise ConfigError(f"target_modules regex {pattern!r} is invalid: {err}") from err
    return patterns


def select_target_params(
    model: nn.Module, target_modules: Sequence[str] | str
) -> dict[str, nn.Parameter]:
    """Return ``{param_name: weight}`` of every linear module matching a pattern, in model order."""
    patterns = validate_target_patterns(target_modules)
    linear_names = {name for name, m in model.named_modules() if isinstance(m, nn.Linear)}
    selected: dict[str, nn.Parameter] = {}
    for pattern in patterns:
        hits = [name for name, _ in model.named_modules() if name and _matches(name, pattern)]
        if not hits:
            leaves = sorted({name.rsplit(".", 1)[-1] for name in linear_names})
            raise ConfigError(
                f"target_modules item {pattern!r} matches no module of this model; "
                f"its linear modules are: {', '.join(leaves)}"
            )
        not_linear = [name for name in hits if name not in linear_names]
        if not_linear:
            raise ConfigError(
                f"target_modules item {pattern!r} matches non-linear modules "
                f"({', '.join(not_linear[:3])}...); only nn.Linear weights can be targeted"
            )
        for name in hits:
            selected[f"{name}.weight"] = model.get_submodule(name).weight
    order = {name: i for i, (name, _) in enumerate(model.named_parameters())}
    return dict(sorted(selected.items(), key=lambda kv: order.get(kv[0], len(order))))
