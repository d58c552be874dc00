"""Real offline assets (model, code corpus, English text) prepared once into a local cache.

Prepare with ``make assets`` or ``python -m mudman.assets``; use with ``require_asset(name)``.
Importing this package has no side effects and does not import torch or transformers.
"""

from mudman.assets.prepare import PrepareResult, asset_status, prepare, prepare_one
from mudman.assets.store import (
    ASSET_NAMES,
    AssetError,
    MissingAssetError,
    asset_path,
    default_cache_dir,
    require_asset,
)

__all__ = [
    "ASSET_NAMES",
    "AssetError",
    "MissingAssetError",
    "PrepareResult",
    "asset_path",
    "asset_status",
    "default_cache_dir",
    "prepare",
    "prepare_one",
    "require_asset",
]
