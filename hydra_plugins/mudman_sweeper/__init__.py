"""Hydra finds sweepers in the hydra_plugins namespace; the logic is in mudman.sweeping."""
