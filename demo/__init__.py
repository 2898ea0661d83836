"""Offline demo helpers: a tiny, deterministic Gemma 3 chat model built from the sample data."""
