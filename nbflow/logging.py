"""Prefect-compatible import path: `from nbflow.logging import get_run_logger`."""

from nbflow.engine.run_logging import get_run_logger

__all__ = ["get_run_logger"]
