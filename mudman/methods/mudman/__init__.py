"""MUDMAN (paper, Algorithm 1 and Listing 1), one concern per module:

* ``loop.py``: ``Mudman.unlearn``, the loop, and its four steps as Algorithm 1 has them;
* ``direction.py``: Disruption Masking and normalization (the unlearning direction);
* ``settings.py``: the typed ``method:`` block (defaults: conf/method/mudman.yaml) and its checks;
* ``variants.py``: the appendix B/D variants, each replacing or wrapping one step when on;
* ``adversaries.py``: full and LoRA adversaries, one or several.
"""

from mudman.methods.mudman.direction import (
    global_norm,
    mask_disagreeing_,
    normalize_,
    unlearning_direction_,
    use_weights,
)
from mudman.methods.mudman.loop import Mudman
from mudman.methods.mudman.settings import MudmanSettings

__all__ = [
    "Mudman",
    "MudmanSettings",
    "global_norm",
    "mask_disagreeing_",
    "normalize_",
    "unlearning_direction_",
    "use_weights",
]
