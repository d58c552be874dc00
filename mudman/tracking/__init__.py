"""Experiment tracking: Weights & Biases (offline by default) or nothing."""

from mudman.tracking.base import NullTracker, Tracker, build_tracker

__all__ = ["NullTracker", "Tracker", "build_tracker"]
