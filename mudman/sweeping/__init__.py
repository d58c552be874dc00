"""Sweeping: Optuna studies driven by Hydra multirun (search spaces, storage, the worker loop)."""
