"""Unlearning methods, one module each, registered by name in ``METHODS``.

Importing this package imports every method module so the registry is complete; adding a
method means one file here (decorated with ``@METHODS.register``) and one YAML in conf/method/.
"""

from mudman.methods import (  # noqa: F401  (registration)
    baseline,
    cir,
    circuit_breakers,
    gradient_difference,
    mudman,
    tar,
)
from mudman.methods.base import METHODS, UnlearningMethod, build_method

__all__ = ["METHODS", "UnlearningMethod", "build_method"]
