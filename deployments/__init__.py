"""Prefect infrastructure for the pipeline: work pools, blocks and their bootstrap."""
