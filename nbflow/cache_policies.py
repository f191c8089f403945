"""Prefect-compatible import path: `from nbflow.cache_policies import INPUTS, TASK_SOURCE`."""

from nbflow.engine.cache_policies import *  # noqa: F401,F403
from nbflow.engine.cache_policies import __all__  # noqa: F401
