"""What a file can be deployed as: a notebook and its parameters, or the flows a .py file defines
and theirs. A deploy form asks this before it shows its fields; nothing in the file is run."""

from __future__ import annotations

import os
from typing import Any

from nbflow.deployments import paths
from nbflow.deployments.definitions import DeploymentError, parameter_schema
from nbflow.deployments.entrypoints import EntrypointError, find_flows, flow_name_of


def describe_target(path: str) -> dict[str, Any]:
    """{"kind": "notebook", "notebook", "flow_name", "parameter_schema"} for a .ipynb file, or
    {"kind": "flow", "flows": [{"function", "flow_name", "entrypoint", "parameter_schema"}]} for a .py
    file. `path` is absolute or relative to the server's root dir, and must lie under an allowed root."""
    if not isinstance(path, str) or not path.strip():
        raise DeploymentError("path is required: the path of a .ipynb or .py file, relative to the server's "
                              "root dir.", "path", status=400)
    try:
        real = paths.resolve(path, "path")
    except paths.PathNotAllowedError as exc:
        raise DeploymentError(str(exc), "path") from None
    if real.suffix not in (".ipynb", ".py"):
        raise DeploymentError(f"{path!r} is neither a notebook (.ipynb) nor a Python file (.py); only those "
                              "can be deployed.", "path")
    if not os.path.isfile(real):
        raise DeploymentError(f"No file at {path!r} (resolved against the server's root dir "
                              f"{paths.base_dir()}).", "path", status=404)
    if real.suffix == ".ipynb":
        row = {"kind": "notebook", "notebook": str(real), "entrypoint": None}
        return {"kind": "notebook", "notebook": path, "flow_name": real.stem, "parameter_schema": parameter_schema(row)}
    try:
        names = find_flows(real)
        flows = []
        for name in names:
            row = {"kind": "flow", "notebook": None, "entrypoint": f"{real}:{name}"}
            flows.append({"function": name, "flow_name": flow_name_of(real, name), "entrypoint": f"{path}:{name}",
                          "parameter_schema": parameter_schema(row)})
    except EntrypointError as exc:
        raise DeploymentError(str(exc), "path") from None
    return {"kind": "flow", "path": path, "flows": flows}
