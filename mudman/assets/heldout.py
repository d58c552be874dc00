"""A split that does not depend on corpus order: held out iff the hash of a stable key says so.

Used for the house model's pretraining corpora (held-out text is never trained on, not even by
the tokenizer) and for GO definitions, so evaluation sets built later can stay disjoint from
training text by reusing the same rule on the same key (GO id, function source, article title).
"""

from __future__ import annotations

import hashlib

HELDOUT_PERCENT = 5


def is_heldout(key: str, percent: int = HELDOUT_PERCENT) -> bool:
    """True for about ``percent`` % of keys: ``int(sha256(key)[:8], 16) % 100 < percent``."""
    return int(hashlib.sha256(key.encode("utf-8")).hexdigest()[:8], 16) % 100 < percent
