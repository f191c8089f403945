"""Prefect-compatible import path: `from nbflow.states import State, Completed, Failed`."""

from nbflow.engine.states import Cancelled, Completed, Crashed, Failed, State, StateType

__all__ = ["Cancelled", "Completed", "Crashed", "Failed", "State", "StateType"]
