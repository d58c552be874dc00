"""What a comparison runs: its settings (the ``compare:`` block), checked, and its trials.

A comparison (``experiment=compare/...``) searches each method's main rate with a
:class:`~mudman.compare.ladder.Ladder` on the search seed, re-runs each method's best rate on
fresh data seeds (other train/validation splits and eval batches, ``data.split_seed``), and
runs the relearn-only baseline on the same seeds, so every gain is paired per seed. The best
rate is chosen on the search seed and judged on seeds it was not chosen on, so the reported
means carry no selection bias.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from omegaconf import DictConfig, OmegaConf

from mudman.errors import ConfigError


@dataclass(frozen=True)
class CompareSettings:
    name: str
    methods: tuple[str, ...]
    rate_key: str
    start: dict[str, float]
    factor: float
    max_rungs: int
    refinements: int
    seeds: tuple[int, ...]
    workers: int
    search_seed: int


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _integer(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def read_settings(cfg: DictConfig, known_methods: list[str]) -> CompareSettings:
    """The ``compare:`` block, every key checked before any trial starts."""
    block = cfg.compare
    allowed = {
        "name",
        "methods",
        "rate_key",
        "start",
        "factor",
        "max_rungs",
        "refinements",
        "seeds",
        "workers",
    }
    unknown = sorted(set(block) - allowed)
    if unknown:
        raise ConfigError(
            f"compare.{unknown[0]} is not a comparison setting; allowed: "
            + ", ".join(sorted(allowed))
        )
    name = block.get("name")
    if not isinstance(name, str) or not name or "/" in name:
        raise ConfigError(f"compare.name={name!r}; allowed: a non-empty name without '/'")
    methods = block.get("methods")
    if not OmegaConf.is_list(methods) or not methods:
        raise ConfigError(f"compare.methods={methods!r}; allowed: a non-empty list of methods")
    methods = [str(m) for m in methods]
    for method in methods:
        if method == "baseline":
            raise ConfigError(
                "compare.methods lists baseline; the baseline always runs on every seed: "
                "list only unlearning methods"
            )
        if method not in known_methods:
            raise ConfigError(
                f"compare.methods: {method!r} is not a method; allowed: "
                + ", ".join(m for m in known_methods if m != "baseline")
            )
    if len(set(methods)) != len(methods):
        raise ConfigError(f"compare.methods={methods} lists a method twice")
    start = block.get("start") or {}
    for method in methods:
        rate = start.get(method)
        if not _number(rate) or rate <= 0:
            raise ConfigError(
                f"compare.start.{method}={rate!r}; allowed: the ladder's first rate, a number "
                f"> 0 (set it with compare.start.{method}=<rate>)"
            )
    factor = block.get("factor", 3.0)
    if not _number(factor) or factor <= 1:
        raise ConfigError(f"compare.factor={factor!r}; allowed: a number > 1 (the ladder step)")
    for key, low in (("max_rungs", 1), ("refinements", 0), ("workers", 1)):
        value = block.get(key)
        if not _integer(value) or value < low:
            raise ConfigError(f"compare.{key}={value!r}; allowed: an integer >= {low}")
    seeds = block.get("seeds")
    if not OmegaConf.is_list(seeds) or not seeds or not all(_integer(s) and s >= 0 for s in seeds):
        raise ConfigError(f"compare.seeds={seeds!r}; allowed: a list of integers >= 0")
    search_seed = cfg.data.get("split_seed", 42)
    if len(set(seeds)) != len(seeds) or search_seed in seeds:
        raise ConfigError(
            f"compare.seeds={list(seeds)}: seeds must differ from each other and from the search "
            f"seed data.split_seed={search_seed} (the best rate is judged on data it was not "
            "chosen on)"
        )
    rate_key = block.get("rate_key", "method.unlearning_rate")
    if not isinstance(rate_key, str) or not rate_key.startswith("method."):
        raise ConfigError(f"compare.rate_key={rate_key!r}; allowed: a method key, method.<name>")
    return CompareSettings(
        name=name,
        methods=tuple(methods),
        rate_key=rate_key,
        start={m: float(start[m]) for m in methods},
        factor=float(factor),
        max_rungs=int(block.max_rungs),
        refinements=int(block.refinements),
        seeds=tuple(int(s) for s in seeds),
        workers=int(block.workers),
        search_seed=int(search_seed),
    )


@dataclass(frozen=True)
class Job:
    """One trial of a comparison: a method at a rate on a seed (the baseline has no rate)."""

    method: str
    stage: str  # search | seed | baseline
    seed: int
    rate: float | None = None

    @property
    def dirname(self) -> str:
        rate = "" if self.rate is None else f"_rate{self.rate:.6g}"
        return f"{self.method}/{self.stage}{rate}_seed{self.seed}"

    def overrides(self, rate_key: str) -> list[str]:
        """The trial's own overrides, after the comparison's shared ones."""
        own = [f"method={self.method}", f"data.split_seed={self.seed}", f"seed={self.seed}"]
        if self.rate is not None:
            own.append(f"{rate_key}={self.rate:.6g}")
        return own
