"""Exceptions with meaning for the sweep machinery: a rejected trial is not a crash."""


class ConfigError(ValueError):
    """Bad user input, detected before any model or dataset is loaded."""


class TrialRejected(Exception):  # noqa: N818 - "rejected" is the paper's term (Optuna: PRUNED)
    """The trial broke a constraint (retain-loss budget, non-finite loss): not a valid sample."""

    def __init__(self, reason: str, passes_done: int, losses: dict[str, float]) -> None:
        super().__init__(f"trial rejected after {passes_done} passes: {reason}")
        self.reason = reason
        self.passes_done = passes_done
        self.losses = losses
