"""Thin Prefect tasks around backend calls; the logic lives in core/ and tasks/backends/."""
