"""Prefect-compatible import paths under `nbflow.utilities`."""
