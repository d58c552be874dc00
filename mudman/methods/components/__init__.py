"""Building blocks shared by several methods (frozen originals, representation terms, ...)."""
