"""The supported developer scripts (docs/scripts.md); run them from the repository root."""
