"""The fine-tuning attack that measures how well unlearning survives."""
