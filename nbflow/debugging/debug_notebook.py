"""A notebook that brings a failed task run back: it loads the kept inputs and holds the failing code."""

from __future__ import annotations

import ast
import json
import textwrap
import uuid
from typing import Any

from nbflow.debugging.report import location


def debug_notebook(manifest: dict[str, Any]) -> dict[str, Any]:
    """The debug notebook of a failed task run, as nbformat 4 JSON."""
    m = manifest
    what = f"`%%task` cell `{m['task_name']}`" if m["kind"] == "cell" else f"task `{m['task_name']}`"
    notes = [f"# Debug task run {m['task_run_id'][:8]}: {what}",
             f"It ended **{m['state']}** with `{m['error']}`, raised at {location(m)}.",
             f"Flow run: `{m['flow_run_id']}`; task run: `{m['task_run_id']}`.",
             "", "The next cell restores what it saw; the one after holds the code that failed. "
             "Fix it and run it again. `%nbflow debug " + m["task_run_id"] + " --pdb` re-runs it under the debugger."]
    if m["skipped"]:
        notes.append("\nNot restored:\n" + "\n".join(f"- `{s['name']}` ({s['type']}): {s['reason']}"
                                                    for s in m["skipped"]))
    notes.append("\n```\n" + m["traceback"].rstrip() + "\n```")
    cells = [_markdown("\n".join(notes)), _code(f"%load_ext nbflow\n%nbflow debug {m['task_run_id']}")]
    if m["kind"] == "cell":
        cells.append(_code(f"{m.get('header') or '%%task'}\n{m['source'] or ''}".rstrip()))
    else:
        if m.get("source"):
            imports = "\n".join(m.get("imports") or [])
            cells.append(_code(f"{imports}\n\n{function_definition(m['source'])}".strip()))
        name = function_name(m.get("source")) or _function(m)
        arguments = ", ".join(f"{p}={p}" for p in m["parameters"])
        cells.append(_code(f"result = {name}({arguments})\nresult"))
    return {"cells": cells, "metadata": {"kernelspec": {"name": "python3", "display_name": "Python 3",
                                                          "language": "python"},
                                          "language_info": {"name": "python"}},
            "nbformat": 4, "nbformat_minor": 5}


def notebook_text(manifest: dict[str, Any]) -> str:
    return json.dumps(debug_notebook(manifest), indent=1, ensure_ascii=False) + "\n"


def function_definition(source: str) -> str:
    """A task's source without its decorators, so the cell defines the plain function to re-run."""
    code = textwrap.dedent(source)
    try:
        node = ast.parse(code).body[0]
    except (SyntaxError, IndexError):
        return code
    if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
        return code
    return "\n".join(code.splitlines()[node.lineno - 1:]).rstrip()


def function_name(source: str | None) -> str | None:
    if not source:
        return None
    try:
        node = ast.parse(textwrap.dedent(source)).body[0]
    except (SyntaxError, IndexError):
        return None
    return node.name if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) else None


def _markdown(text: str) -> dict[str, Any]:
    return {"cell_type": "markdown", "id": uuid.uuid4().hex[:8], "metadata": {}, "source": text}


def _code(text: str) -> dict[str, Any]:
    return {"cell_type": "code", "id": uuid.uuid4().hex[:8], "metadata": {}, "execution_count": None,
            "outputs": [], "source": text}


def _function(manifest: dict) -> str:
    """The failed task's function name (its qualified name's last part)."""
    return (manifest.get("qualname") or manifest["task_key"]).rsplit(".", 1)[-1]
