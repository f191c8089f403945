"""One flow run's task graph as plain data: nodes, edges, a stable layered layout, the palette.

Pure: built from store rows or from live run objects and laid out without I/O, so the
live widget and the static HTML draw the same model in the same colours.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Iterable, Mapping, Protocol, Sequence

#: state name -> colour; the one palette of every view (graph, timeline, header, static HTML).
STATE_COLOURS: dict[str, str] = {
    "Completed": "#2ca02c",
    "Cached": "#17a2a0",
    "Running": "#1f6fe5",
    "Retrying": "#6aa8f7",
    "Pending": "#a9afb7",
    "Scheduled": "#cfd4da",
    "Failed": "#d62728",
    "TimedOut": "#f08a0c",
    "Crashed": "#7b1f62",
    "Cancelled": "#4f555c",
    # Prefect's other names, reached when a flow or task returns such a state.
    "NotReady": "#c7b8a0",
    "Paused": "#e8c547",
    "Suspended": "#d4a017",
    "Cancelling": "#7d848c",
    "AwaitingRetry": "#b7d3f7",
    "AwaitingConcurrencySlot": "#dde3ea",
    "Late": "#e0b4b4",
    "Submitting": "#bcc2c9",
    "InfrastructurePending": "#959ca5",
}
#: colour of a state name the palette does not know (a newer store, a typo in a test).
UNKNOWN_COLOUR = "#8c8c8c"
FINAL_STATES = frozenset({"Completed", "Cached", "Failed", "TimedOut", "Crashed", "Cancelled"})
RUNNING_STATES = frozenset({"Running", "Retrying"})
UNSTARTED_STATES = frozenset({"Pending", "Scheduled"})
#: most telling state first: what a collapsed group of task runs is coloured by.
_HEADLINE_ORDER = ("Crashed", "Failed", "TimedOut", "Cancelled", "Running", "Retrying",
                   "Pending", "Scheduled", "Completed", "Cached")

#: layout: rows in one column of a layer before it wraps into the next column.
ROWS_PER_COLUMN = 25
#: layout: empty rows between two task groups stacked in one column.
GROUP_GAP = 0.6
#: layout: empty columns between two layers...
LAYER_GAP = 1.5
#: ...plus this many per extra column of a wide layer, so two big grids do not read as one.
WIDE_LAYER_GAP = 0.3
#: collapse: a task with more task runs than this in one layer is drawn as one node.
COLLAPSE_THRESHOLD = 50


def state_colour(state: str | None) -> str:
    """The palette colour of a state name."""
    return STATE_COLOURS.get(state or "", UNKNOWN_COLOUR)


@dataclass(slots=True)
class TaskNode:
    """One task run of the graph."""

    id: str
    task_name: str
    state: str = "Pending"
    start: float | None = None  #: epoch seconds (UTC)
    end: float | None = None
    error: str | None = None
    message: str | None = None
    upstream: tuple[str, ...] = ()  #: ids of task runs this one consumed (edges into it)
    dynamic_key: int | None = None
    order: int = 0  #: first-seen position; keeps nodes in place across updates

    @property
    def group(self) -> str:
        return self.task_name

    @property
    def label(self) -> str:
        return self.task_name if self.dynamic_key is None else f"{self.task_name}[{self.dynamic_key}]"

    def duration(self, now: float | None = None) -> float | None:
        """Seconds from start to end (to `now` while it runs); None before it starts."""
        if self.start is None:
            return None
        end = self.end if self.end is not None else now
        return None if end is None else max(0.0, end - self.start)


class RunGraph:
    """A flow run and its task runs, updated in place from snapshots or live run objects."""

    def __init__(self, flow_run_id: str, flow_name: str = "", state: str = "Pending",
                 start: float | None = None, end: float | None = None, *,
                 host: str | None = None, pid: int | None = None) -> None:
        self.flow_run_id = flow_run_id
        self.flow_name = flow_name
        self.state = state
        self.state_message: str | None = None
        self.start = start
        self.end = end
        #: where the flow run executes (from the store), to tell whether it runs in this process.
        self.host = host
        self.pid = pid
        #: task run id -> node, in first-seen order.
        self.nodes: dict[str, TaskNode] = {}
        #: bumped when a node is added or its edges change (the layout must be redone).
        self.structure_version = 0
        #: bumped on every change.
        self.version = 0

    # -- building ---------------------------------------------------------------------------

    @classmethod
    def from_rows(cls, flow_run: Mapping[str, Any], task_runs: Iterable[Mapping[str, Any]]) -> "RunGraph":
        """From store rows (`nbflow.flow_run(id)` and `nbflow.task_runs(id)` records)."""
        graph = cls(str(flow_run["id"]), _text(flow_run.get("flow_name")) or "",
                    _text(flow_run.get("state")) or "Pending", _epoch(flow_run.get("start_time")),
                    _epoch(flow_run.get("end_time")), host=_text(flow_run.get("host")),
                    pid=_int(flow_run.get("pid")))
        graph.state_message = _text(flow_run.get("state_message"))
        rows = sorted(task_runs, key=lambda r: (_epoch(r.get("created")) or _epoch(r.get("start_time"))
                                               or math.inf, _int(r.get("dynamic_key")) or 0))
        for row in rows:
            graph._upsert(str(row["id"]), _text(row.get("task_name")) or "?", _text(row.get("state")),
                          _epoch(row.get("start_time")), _epoch(row.get("end_time")),
                          _text(row.get("error")), _text(row.get("state_message")),
                          tuple(row.get("upstream") or ()), _int(row.get("dynamic_key")))
        return graph

    def apply_flow_run(self, run: Any) -> bool:
        """Take the state and times of a live flow run object; False if it is another run."""
        if run.id != self.flow_run_id:
            return False
        state = run.state
        self.flow_name = run.flow_name
        self.state = state.name if state is not None else self.state
        self.state_message = state.message if state is not None else None
        self.start, self.end = run.start_time, run.end_time
        self.version += 1
        return True

    def apply_task_run(self, run: Any) -> bool:
        """Take a live task run object (new or changed); False if it belongs to another flow run."""
        if run.flow_run_id != self.flow_run_id:
            return False
        state = run.state
        self._upsert(run.id, run.task_name, state.name if state is not None else None,
                     run.start_time, run.end_time, run.error,
                     state.message if state is not None else None, tuple(run.upstream or ()),
                     run.dynamic_key)
        return True

    def _upsert(self, id: str, task_name: str, state: str | None, start: float | None,
                end: float | None, error: str | None, message: str | None,
                upstream: tuple[str, ...], dynamic_key: int | None) -> None:
        node = self.nodes.get(id)
        if node is None:
            node = self.nodes[id] = TaskNode(id, task_name, dynamic_key=dynamic_key, order=len(self.nodes))
            self.structure_version += 1
        if node.upstream != upstream:
            node.upstream = upstream
            self.structure_version += 1
        node.state = state or node.state
        node.start, node.end, node.error, node.message = start, end, error, message
        self.version += 1

    # -- reading ----------------------------------------------------------------------------

    @property
    def is_final(self) -> bool:
        return self.state in FINAL_STATES

    def edges(self) -> list[tuple[str, str]]:
        """(upstream id, downstream id) for every dependency between two task runs of this graph."""
        nodes = self.nodes
        return [(u, node.id) for node in nodes.values() for u in node.upstream if u in nodes]

    def counts(self) -> dict[str, int]:
        """How many task runs are in each state, in palette order."""
        return ordered_counts(Counter(node.state for node in self.nodes.values()))

    def time_span(self, now: float | None = None) -> tuple[float | None, float | None]:
        """(first start, last end or `now` while something runs) over the flow run and its tasks."""
        starts = [t for t in [self.start, *(n.start for n in self.nodes.values())] if t is not None]
        ends = [t for t in [self.end, *(n.end for n in self.nodes.values())] if t is not None]
        if now is not None and (not self.is_final or any(n.state in RUNNING_STATES for n in self.nodes.values())):
            ends.append(now)
        if not starts:
            return None, None
        return min(starts), max(ends) if ends else None


def ordered_counts(counts: Mapping[str, int]) -> dict[str, int]:
    """Counts per state name in palette order, unknown names last, zeros left out."""
    known = [s for s in STATE_COLOURS if counts.get(s)]
    other = sorted(s for s in counts if s not in STATE_COLOURS and counts[s])
    return {s: counts[s] for s in known + other}


def headline_state(counts: Mapping[str, int]) -> str:
    """The state that best describes a group: any failure first, then work in flight."""
    for state in _HEADLINE_ORDER:
        if counts.get(state):
            return state
    return next((s for s, n in counts.items() if n), "Pending")


# -- collapsing large mapped groups ----------------------------------------------------------


@dataclass(slots=True)
class DisplayNode:
    """What the static view draws: one task run, or a collapsed group of sibling task runs."""

    id: str
    task_name: str
    label: str
    state: str
    counts: dict[str, int]
    members: tuple[str, ...]
    upstream: tuple[str, ...]
    start: float | None
    end: float | None
    error: str | None
    errors: int  #: how many members carry an error
    order: int

    @property
    def group(self) -> str:
        return self.task_name

    @property
    def collapsed(self) -> bool:
        return len(self.members) > 1


def collapse(graph: RunGraph, threshold: int = COLLAPSE_THRESHOLD) -> list[DisplayNode]:
    """Display nodes in first-seen order: more than `threshold` runs of one task in one layer
    become one node labelled "name ×N"; edges are remapped onto the groups."""
    nodes = list(graph.nodes.values())
    layer = _settle_unstarted(nodes, layers(nodes))
    groups: dict[tuple[str, int], list[TaskNode]] = {}
    for node in nodes:
        groups.setdefault((node.task_name, layer[node.id]), []).append(node)
    display_of: dict[str, str] = {}
    members_of: list[tuple[str, list[TaskNode]]] = []
    for (name, lay), group in groups.items():
        if len(group) > threshold:
            gid = f"group:{lay}:{name}"
            members_of.append((gid, group))
            display_of.update((n.id, gid) for n in group)
        else:
            members_of.extend((n.id, [n]) for n in group)
            display_of.update((n.id, n.id) for n in group)
    result = []
    for gid, group in members_of:
        upstream: dict[str, None] = {}
        for node in group:
            for u in node.upstream:
                target = display_of.get(u)
                if target is not None and target != gid:
                    upstream[target] = None
        if len(group) == 1:
            node = group[0]
            result.append(DisplayNode(node.id, node.task_name, node.label, node.state, {node.state: 1},
                                      (node.id,), tuple(upstream), node.start, node.end, node.error,
                                      int(node.error is not None), node.order))
            continue
        counts = ordered_counts(Counter(n.state for n in group))
        starts = [n.start for n in group if n.start is not None]
        ends = [n.end for n in group if n.end is not None]
        errors = [n.error for n in group if n.error]
        result.append(DisplayNode(
            gid, group[0].task_name, f"{group[0].task_name} ×{len(group)}", headline_state(counts),
            counts, tuple(n.id for n in group), tuple(upstream), min(starts) if starts else None,
            max(ends) if len(ends) == len(group) else None, errors[0] if errors else None,
            len(errors), min(n.order for n in group)))
    result.sort(key=lambda d: d.order)
    return result


# -- layout ----------------------------------------------------------------------------------


class _Placeable(Protocol):
    id: str
    upstream: Sequence[str]

    @property
    def group(self) -> str: ...


def layers(nodes: Sequence[_Placeable]) -> dict[str, int]:
    """Layer of each node: the longest path to it from a node without upstream (0).

    Upstream ids that are not among the nodes are ignored; a cycle (which the engine never
    records) is broken where it is found instead of looping.
    """
    upstream = {n.id: [u for u in n.upstream if u != n.id] for n in nodes}
    layer: dict[str, int] = {}
    visiting: set[str] = set()
    for root in upstream:
        if root in layer:
            continue
        stack = [root]
        while stack:  # iterative DFS: a chain of 10,000 task runs must not hit the recursion limit
            node = stack[-1]
            visiting.add(node)
            todo = [u for u in upstream[node] if u in upstream and u not in layer and u not in visiting]
            if todo:
                stack.extend(todo)
                continue
            stack.pop()
            visiting.discard(node)
            if node not in layer:
                layer[node] = 1 + max((layer[u] for u in upstream[node] if u in layer), default=-1)
    return layer


def layout(nodes: Sequence[_Placeable], rows_per_column: int = ROWS_PER_COLUMN) -> dict[str, tuple[float, float]]:
    """(x, y) of each node: x by layer (left to right), y down from the top of the layer.

    Within a layer the task runs of one task form a block, blocks are stacked in first-seen
    order, and a column wraps after `rows_per_column` rows, so a `.map` over thousands of
    items is a compact grid instead of one endless column. Only first-seen order decides
    places: a node added later never moves the nodes seen before it in its layer, unless it
    joins a block above them.
    """
    layer = _settle_unstarted(nodes, layers(nodes))
    blocks: dict[int, dict[str, list[str]]] = {}
    for node in nodes:
        blocks.setdefault(layer[node.id], {}).setdefault(node.group, []).append(node.id)
    positions: dict[str, tuple[float, float]] = {}
    x0 = 0.0
    for lay in sorted(blocks):
        column, row, last_column = 0, 0.0, 0
        for ids in blocks[lay].values():
            height = min(len(ids), rows_per_column)
            if row > 0 and row + height > rows_per_column:
                column, row = last_column + 1, 0.0
            for i, node_id in enumerate(ids):
                c, r = divmod(i, rows_per_column)
                positions[node_id] = (x0 + column + c, row + r)
            last_column = max(last_column, column + (len(ids) - 1) // rows_per_column)
            row += height + GROUP_GAP
        x0 += last_column + 1 + LAYER_GAP + last_column * WIDE_LAYER_GAP
    return positions


def _settle_unstarted(nodes: Sequence[_Placeable], layer: dict[str, int]) -> dict[str, int]:
    """Put runs that have not started, and so have no recorded edges yet, with their task's runs.

    The engine records a run's upstream when it starts; until then a pending `.map` child
    would sit in the first layer and jump right when it starts.
    """
    deepest: dict[str, int] = {}
    for node in nodes:
        if node.upstream:
            deepest[node.group] = max(deepest.get(node.group, 0), layer[node.id])
    for node in nodes:
        if not node.upstream and getattr(node, "state", None) in UNSTARTED_STATES and node.group in deepest:
            layer[node.id] = deepest[node.group]
    return layer


# -- converting store values -------------------------------------------------------------------


def _epoch(value: Any) -> float | None:
    """Epoch seconds from a float, or a datetime/Timestamp that is naive UTC as the store keeps it."""
    try:
        if value is None or value != value:  # None, NaN, NaT
            return None
    except TypeError:  # pandas.NA refuses to be a bool
        return None
    if isinstance(value, datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=timezone.utc)
        return value.timestamp()
    if isinstance(value, (int, float)):
        return float(value)
    return None


def _int(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):  # None, NaN, pandas.NA
        return None


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) else None
