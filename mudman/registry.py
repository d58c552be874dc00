"""One small registry type shared by every component family (losses, methods, data sources).

Components register themselves by name at definition time, so adding one is a single file plus
its YAML, and an unknown name fails with the list of what exists.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

from mudman.errors import ConfigError

T = TypeVar("T")


class Registry(Generic[T]):
    """A named mapping from string keys to components, with helpful errors."""

    def __init__(self, family: str) -> None:
        self.family = family
        self._items: dict[str, T] = {}

    def register(self, name: str) -> Callable[[T], T]:
        def decorator(item: T) -> T:
            if name in self._items:
                raise ValueError(f"{self.family} '{name}' is registered twice")
            self._items[name] = item
            return item

        return decorator

    def get(self, name: str, key: str | None = None) -> T:
        if name not in self._items:
            where = f"{key}={name!r}" if key else repr(name)
            raise ConfigError(f"unknown {self.family} {where}; allowed: {', '.join(self.names())}")
        return self._items[name]

    def names(self) -> list[str]:
        return sorted(self._items)

    def __contains__(self, name: object) -> bool:
        return name in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())
