"""Data: text sources (Hub, local files, offline assets), preprocessing, exact-length batches."""
