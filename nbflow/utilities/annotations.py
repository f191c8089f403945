"""Prefect-compatible import path: `from nbflow.utilities.annotations import quote, allow_failure`."""

from nbflow.engine.annotations import BaseAnnotation, allow_failure, opaque, quote, unmapped

__all__ = ["BaseAnnotation", "allow_failure", "opaque", "quote", "unmapped"]
