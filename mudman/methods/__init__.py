"""Unlearning methods, one module each, registered by name in ``METHODS``.

Importing this package imports every method module so the registry is complete; adding a
method means one file here (decorated with ``@METHODS.register``) and one YAML in conf/method/.
"""

from mudman.methods import baseline, mudman  # noqa: F401  (registration)
from mudman.methods.base import METHODS, UnlearningMethod, build_method

__all__ = ["METHODS", "UnlearningMethod", "build_method"]
