"""Reporting: the paper's statistics, tables and figures, from the Optuna storage alone."""
