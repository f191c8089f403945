"""Prefect-compatible import path: `from nbflow.exceptions import FailedRun, MissingResult, ...` (Prefect's
names for nbflow's errors; nbflow.errors has them under nbflow's own names too)."""

from nbflow.errors import (
    CancelledRun, ConfigurationError, CrashedRun, FailedRun, InvalidNameError, MappingLengthMismatch,
    MappingMissingIterable, MissingFlowError, MissingResult, ParameterBindError, ParameterTypeError, PausedRun,
    PrefectException, ReservedArgumentError, ScriptError, SerializationError, UnfinishedRun, UpstreamTaskError,
)

__all__ = [
    "CancelledRun", "ConfigurationError", "CrashedRun", "FailedRun", "InvalidNameError", "MappingLengthMismatch",
    "MappingMissingIterable", "MissingFlowError", "MissingResult", "ParameterBindError", "ParameterTypeError",
    "PausedRun", "PrefectException", "ReservedArgumentError", "ScriptError", "SerializationError", "UnfinishedRun",
    "UpstreamTaskError",
]
