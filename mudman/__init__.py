"""mudman: robust LLM unlearning (MUDMAN and rivals) measured against a fine-tuning attack."""

__version__ = "0.1.0"
