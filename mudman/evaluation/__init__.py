"""Evaluation: language-model loss on fixed batches (multiple-choice tasks come later)."""
