"""Backends: one protocol set (base.py), implemented for `local` and `gcp`."""
