"""Prefect-compatible import path: `from nbflow.flows import flow`."""

from nbflow.engine.flows import Flow, flow

__all__ = ["Flow", "flow"]
