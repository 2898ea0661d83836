"""Prefect flows: the pipeline, the dataset watcher and teardown."""
