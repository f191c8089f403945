"""Re-run a failed task with its kept inputs and open the post-mortem debugger where it raises."""

from __future__ import annotations

import importlib.util
import inspect
import linecache
import sys
from collections import OrderedDict
from pathlib import Path
from typing import Any, Callable

from nbflow.store import debug_files
from nbflow.store.debug_files import DebugDataError


def task_function(manifest: dict[str, Any]) -> Callable:
    """The failed task's function: the one kept with the failure, else imported from its file."""
    errors = []
    kept = manifest.get("function")
    if kept:
        entry = {"ref": kept}
        try:
            fn = debug_files.load_value({**manifest, "values": {"__function__": entry}}, "__function__")
            return getattr(fn, "fn", fn)
        except DebugDataError:
            raise
        except Exception as exc:  # noqa: BLE001 - e.g. its module cannot be imported here
            errors.append(f"{type(exc).__name__}: {exc}")
    filename, qualname = manifest.get("filename"), (manifest.get("qualname") or manifest["task_key"]).rsplit(".", 1)[-1]
    if filename and Path(filename).is_file():
        spec = importlib.util.spec_from_file_location(f"nbflow_debug_{manifest['task_run_id'][:8]}", filename)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        fn = getattr(module, qualname, None)
        if fn is not None:
            return getattr(fn, "fn", fn)
        errors.append(f"{filename} has no {qualname!r}")
    raise DebugDataError(f"Cannot re-run task {manifest['task_name']!r}: its function could not be loaded "
                         f"({'; '.join(errors) or 'no file'}). Its inputs are restored; call it yourself.")


def task_call(manifest: dict[str, Any], values: dict[str, Any]) -> tuple[Callable, tuple, dict]:
    """The function and the arguments to call it with, as the failed run was called."""
    missing = [n for n in manifest["parameters"] if n not in values]
    if missing:
        reasons = {s["name"]: s["reason"] for s in manifest["skipped"]}
        listed = "; ".join(f"{n}: {reasons.get(n, 'not kept')}" for n in missing)
        raise DebugDataError(f"Cannot re-run task {manifest['task_name']!r}: argument(s) were not kept ({listed}).")
    fn = task_function(manifest)
    _remember_source(fn, manifest)
    bound = inspect.BoundArguments(inspect.signature(fn), OrderedDict((n, values[n]) for n in manifest["parameters"]))
    return fn, bound.args, bound.kwargs


def _remember_source(fn: Callable, manifest: dict[str, Any]) -> None:
    """Let the debugger list the task's code when its file is gone (a kernel's cell, another machine)."""
    code = getattr(fn, "__code__", None)
    if code is None or not manifest.get("source") or Path(code.co_filename).is_file():
        return
    lines = [""] * (manifest.get("firstlineno", 1) - 1) + manifest["source"].splitlines()
    text = [line + "\n" for line in lines]
    linecache.cache[code.co_filename] = (sum(map(len, text)), None, text, code.co_filename)


def post_mortem(run: Callable[[], Any], shell: Any = None) -> bool:
    """Call `run`; if it raises, open the debugger at the failing line and return True."""
    try:
        run()
    except Exception:
        etype, value, tb = sys.exc_info()
        tb = tb.tb_next if tb is not None and tb.tb_next is not None else tb  # start at the user's code
        print(f"It raised again: {etype.__name__}: {value}. The debugger opens at the failing line "
              "(type 'help' for commands, 'q' to quit).", flush=True)
        if shell is not None:
            debugger = getattr(shell, "debugger_cls", None)
            if debugger is None:
                from IPython.core.debugger import Pdb as debugger
            session = debugger()
            session.reset()
            session.interaction(None, tb)
        else:
            import pdb

            pdb.post_mortem(tb)
        return True
    print("It ran without error this time with the kept inputs.", flush=True)
    return False
