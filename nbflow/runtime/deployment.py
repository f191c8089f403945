"""The deployment whose run executes here (Prefect's `prefect.runtime.deployment`), else None."""

from __future__ import annotations

import json
import os
from typing import Any

from nbflow.runtime import flow_run

ATTRIBUTES = ["id", "name", "parameters", "flow_run_id"]


def __getattr__(name: str) -> Any:
    if name == "id":
        return flow_run.deployment_id
    if name == "name":
        return os.environ.get("NBFLOW_DEPLOYMENT_NAME") or None
    if name == "parameters":
        raw = os.environ.get("NBFLOW_DEPLOYMENT_PARAMETERS")
        return json.loads(raw) if raw else ({} if flow_run.deployment_id is None else flow_run.parameters)
    if name == "flow_run_id":
        return flow_run.id if flow_run.deployment_id is not None else None
    raise AttributeError(f"nbflow.runtime.deployment has no attribute {name!r}; it has {', '.join(ATTRIBUTES)}.")


def __dir__() -> list[str]:
    return sorted(ATTRIBUTES)
