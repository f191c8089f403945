"""The failure of a failed task run as text: what raised, where, and what was restored."""

from __future__ import annotations

from typing import Any


def location(manifest: dict[str, Any]) -> str:
    """Where the failing code raised: 'line 3 of the cell' or 'file.py:12 in fn'."""
    raised = manifest.get("raised_at")
    if not raised:
        return "no line of the task's own code (it was stopped from outside, e.g. by its timeout)"
    if manifest["kind"] == "cell" and raised["filename"] == manifest.get("filename"):
        return f"line {raised['line']} of the cell: {raised.get('code') or ''}".rstrip(": ")
    return f"{raised['filename']}:{raised['line']} in {raised['function']}: {raised.get('code') or ''}".rstrip(": ")


def describe(inputs: Any) -> str:
    """A few lines saying what failed, where, and which values are back (and which are not)."""
    m = inputs.manifest
    what = f"%%task cell {m['task_name']!r}" if m["kind"] == "cell" else f"task {m['task_name']!r}"
    flow = f" of flow run {m['flow_run_id']}" if m.get("flow_run_id") else ""
    lines = [f"Task run {m['task_run_id']} ({what}){flow} ended {m['state']}: {m['error']}",
             f"  raised at {location(m)}"]
    if m["kind"] == "task" and m.get("filename"):
        lines.append(f"  the task is defined at {m['filename']}:{m.get('firstlineno', 1)}")
    restored = [f"{n} ({_type(m, n)})" for n in inputs]
    lines.append("Restored: " + (", ".join(restored) if restored else "nothing"))
    for s in inputs.skipped:
        lines.append(f"Not restored: {s['name']} ({s['type']}): {s['reason']}")
    return "\n".join(lines)


def _type(manifest: dict[str, Any], name: str) -> str:
    entry = manifest["values"].get(name)
    return entry["type"] if entry else "module"
