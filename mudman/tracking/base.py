"""The tracker interface a trial talks to, so tracking can never break a run."""

from __future__ import annotations

from typing import Any


class Tracker:
    """Receives metrics on one global step axis (passes since the start of unlearning)."""

    def log(self, metrics: dict[str, float], step: int) -> None:
        """Log scalar metrics at ``step``."""

    def summary(self, values: dict[str, Any]) -> None:
        """Record final values of the run."""

    def finish(self, failed: bool = False) -> None:
        """Flush and close."""


class NullTracker(Tracker):
    """``logger=none``: tracking disabled."""
