"""Loading a flow from an entrypoint by running its file: `load_flow_from_entrypoint("etl.py:etl")`,
as Prefect's, and `Flow.from_source(DIRECTORY, "etl.py:etl")` for code in a local directory.

The server never calls these (it reads entrypoints without running them: entrypoints.py); they
are for user code, and for the process that executes a flow deployment's run.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import os
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

from nbflow.engine.flows import Flow
from nbflow.errors import MissingFlowError, NbflowError, ScriptError


def load_flow_from_entrypoint(entrypoint: str, use_placeholder_flow: bool = True) -> Flow:
    """The flow at "path/to/file.py:flow_name" (the file is run) or "package.module.flow_name".

    `use_placeholder_flow` is accepted for Prefect's signature; nbflow always runs the file.
    """
    name = _split(entrypoint)[1]
    obj = load_object(entrypoint)
    if not isinstance(obj, Flow):
        raise MissingFlowError(f"Function with name {name!r} is not a flow. Make sure that it is decorated with "
                               "'@flow'.")
    return obj


def load_function_and_convert_to_flow(entrypoint: str) -> Flow:
    """The flow at `entrypoint`, or the plain function there made a flow (as Prefect's workers do)."""
    obj = load_object(entrypoint)
    if isinstance(obj, Flow):
        return obj
    if not callable(obj):
        raise MissingFlowError(f"{entrypoint!r} names a {type(obj).__name__}, not a flow or function; point "
                               "the entrypoint at a @flow function.")
    return Flow(obj)


def load_object(entrypoint: str) -> Any:
    """The object an entrypoint names: MissingFlowError if absent, ScriptError if running the file raised."""
    target, name = _split(entrypoint)
    if target.endswith(".py") or os.sep in target or "/" in target:
        module = load_script(Path(target))
    else:
        try:
            module = importlib.import_module(target)
        except ImportError as exc:
            raise MissingFlowError(f"Could not import the module {target!r} of entrypoint {entrypoint!r}: "
                                   f"{exc}.") from exc
    obj: Any = module
    for part in name.split("."):  # "file.py:Class.method" as Prefect allows
        try:
            obj = getattr(obj, part)
        except AttributeError:
            found = sorted(k for k, v in vars(module).items() if isinstance(v, Flow))
            raise MissingFlowError(f"Flow function with name {name!r} not found in {target!r}. Its flows are: "
                                   f"{', '.join(found) or 'none'}.") from None
    return obj


def load_script(path: Path) -> ModuleType:
    """Run a .py file as a module (its directory first on sys.path; `__main__` blocks stay off)."""
    path = Path(path).expanduser().resolve()
    if not path.is_file():
        raise MissingFlowError(f"There is no file {path}; give the path of an existing .py file, e.g. "
                               "flows/etl.py:etl.")
    name = f"__nbflow_loader_{hashlib.sha1(str(path).encode()).hexdigest()[:12]}__"
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise ScriptError(f"{path} cannot be loaded as a Python module.")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # pickling, dataclasses and flow.deploy() look the module up here
    directory = str(path.parent)
    if directory not in sys.path:
        sys.path.insert(0, directory)
    try:
        spec.loader.exec_module(module)
    except Exception as exc:
        sys.modules.pop(name, None)
        raise ScriptError(f"Running {path} to load its flow raised {type(exc).__name__}: {exc}") from exc
    return module


def flow_from_source(source: Any, entrypoint: str) -> Flow:
    """Prefect's `Flow.from_source` for code in a local directory (or file); remote storage is refused."""
    text = os.fspath(source) if isinstance(source, (str, os.PathLike)) else None
    if text is None or "://" in text or text.startswith("git@"):
        raise NbflowError(
            f"Flow.from_source() loads flows from a local directory; nbflow does not fetch code from git "
            f"repositories or remote storage (got {source!r}). Clone or copy the code, then "
            "Flow.from_source('path/to/code', 'flows.py:my_flow'); or deploy the flow from where its code "
            "lives with my_flow.deploy('name') or `nbflow deploy flows.py:my_flow --name NAME`.")
    base = Path(text).expanduser()
    target, name = _split(entrypoint)
    if base.is_file():
        return load_flow_from_entrypoint(f"{base}:{name}")
    if not base.is_dir():
        raise MissingFlowError(f"Flow.from_source(): there is no directory {base}; give the local directory "
                               "that holds the flow's file.")
    return load_flow_from_entrypoint(f"{base / target}:{name}")


def _split(entrypoint: str) -> tuple[str, str]:
    if not isinstance(entrypoint, str) or not entrypoint.strip():
        raise MissingFlowError(f"An entrypoint is text such as 'flows/etl.py:etl'; got {entrypoint!r}.")
    if ":" in entrypoint:
        target, name = entrypoint.rsplit(":", 1)
    elif "." in entrypoint:
        target, name = entrypoint.rsplit(".", 1)
    else:
        raise MissingFlowError(f"Entrypoint {entrypoint!r} has no ':'; write it as FILE.py:FLOW (e.g. "
                               "flows/etl.py:etl) or package.module.flow.")
    if not target.strip() or not name.strip():
        raise MissingFlowError(f"Entrypoint {entrypoint!r} needs a file or module and a name, e.g. "
                               "flows/etl.py:etl.")
    return target.strip(), name.strip()
