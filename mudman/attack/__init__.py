"""The fine-tuning attacks that measure how well unlearning survives (``conf/attack/``).

Importing this package registers every attack in ``ATTACKS``: ``sgd`` (the paper's fixed
relearning attack, the default), ``adamw``, ``lora`` and ``retain_then_forget``.
"""

from mudman.attack import adamw, lora, retain_then_forget, sgd  # noqa: F401  (registration)
from mudman.attack.base import ATTACKS, Attack, build_attack

__all__ = ["ATTACKS", "Attack", "build_attack"]
