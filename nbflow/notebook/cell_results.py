"""What a %%task cell produced, and how it is kept: one result file per output variable.

A cell's cached result is a small JSON manifest (inline in the cache index when it
fits) naming one result per output variable — DataFrames as Parquet, plain values as
JSON, other objects as signed pickles — plus the printed and displayed output to
replay on a cache hit.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from nbflow.errors import SerializationError
from nbflow.store.results import ResultRef, ResultStore


@dataclass
class CellResult:
    """The outputs of one cell run, and what it printed and displayed."""

    outputs: dict[str, Any]
    deleted: list[str] = field(default_factory=list)
    stdout: str = ""
    stderr: str = ""
    #: display_data publications: (data mimebundle, metadata) in order.
    displays: list[tuple[dict, dict]] = field(default_factory=list)
    #: the mimebundle and metadata of the last expression's value (the cell's Out[n]), if any.
    shown: tuple[dict, dict] | None = None
    #: that value itself, in the kernel that computed it (never stored).
    value: Any = field(default=None, compare=False, repr=False)


class CellResultStorage:
    """Writes a CellResult as one result per output plus a manifest, and reads it back."""

    def __init__(self, results: ResultStore) -> None:
        self.results = results
        self.root = results.root

    def write(self, value: CellResult) -> ResultRef:
        refs = {}
        for name, output in value.outputs.items():
            try:
                refs[name] = self.results.write(output).to_dict()
            except SerializationError as exc:
                raise SerializationError(f"output variable '{name}': {exc}") from None
        manifest = {"kind": "nbflow-cell-result", "outputs": refs, "deleted": value.deleted,
                    "stdout": value.stdout, "stderr": value.stderr,
                    "displays": [[data, meta] for data, meta in value.displays],
                    "shown": list(value.shown) if value.shown is not None else None}
        ref = self.results.write(manifest)
        if ref.format != "json":
            raise SerializationError(
                "the cell's displayed output is not JSON (a display() of an object without a "
                "JSON mimebundle); its outputs were not cached")
        return ref

    def read(self, ref: ResultRef) -> CellResult:
        manifest = self.results.read(ref)
        outputs = {name: self.results.read(ResultRef.from_dict(d)) for name, d in manifest["outputs"].items()}
        shown = manifest.get("shown")
        return CellResult(outputs, list(manifest["deleted"]), manifest["stdout"], manifest["stderr"],
                          [(data, meta) for data, meta in manifest["displays"]],
                          (shown[0], shown[1]) if shown else None)


class ShownValue:
    """A cached cell's Out[n]: shows the mimebundle its last expression had when it ran."""

    def __init__(self, data: dict, metadata: dict) -> None:
        self.data, self.metadata = data, metadata

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> tuple[dict, dict]:
        return self.data, self.metadata

    def __repr__(self) -> str:
        return str(self.data.get("text/plain", "<cached cell result>"))
