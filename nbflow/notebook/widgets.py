"""The run view: a flow run's task graph, timeline and task details as a notebook widget.

While the flow run executes in this process the view follows it. A recorder listener
only queues the run objects that changed (it runs in the engine's hot path); a timer
thread applies them to the model and pushes them to the front end as one plotly batch at
most every PUSH_INTERVAL seconds, whatever the number of task runs. Displayed, the view
also carries a static `text/html` rendering for places without widget state.
"""

from __future__ import annotations

import html
import logging
import os
import socket
import threading
import time
from collections import deque
from typing import Any

import ipywidgets as widgets
import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from nbflow import api
from nbflow.errors import UnknownRunError
from nbflow.notebook import static_html
from nbflow.notebook.run_graph import (
    RUNNING_STATES,
    STATE_COLOURS,
    UNKNOWN_COLOUR,
    RunGraph,
    TaskNode,
    layout,
)
from nbflow.store.buffer import recorder

logger = logging.getLogger("nbflow.notebook")

#: seconds between two pushes of a following view (at most 5 figure updates a second).
# plotly sends each redraw as ~4 comm messages: 0.4 s keeps a live view at ~10 messages/s.
PUSH_INTERVAL = 0.4
#: seconds between header refreshes, and between pushes that only grow Running bars.
SLOW_INTERVAL = 1.0
#: graphs with at most this many task runs show their names next to the nodes.
LABELS_UP_TO = 30
#: timelines with at most this many rows name each row.
ROW_NAMES_UP_TO = 40
# trace order in the figure
EDGES, NODES, SELECTED, BARS, ARROWS = 0, 1, 2, 3, 4
#: edges get an arrowhead half-way (which way data flows) up to this many.
ARROWS_UP_TO = 600
#: the shortest bar drawn, as a share of the timeline: a cache hit takes ~0 s and would not show.
MIN_BAR_SHARE = 0.006

# Colours go to the front end as numbers on a stepped colour scale of the palette: a numeric
# array validates and serializes many times faster than 1,000 colour strings on every push.
_STATES = [*STATE_COLOURS, None]
_CODE = {state: i + 0.5 for i, state in enumerate(_STATES)}
_UNKNOWN_CODE = _CODE[None]
_COLOURSCALE = [step for i, state in enumerate(_STATES)
                for step in ((i / len(_STATES), STATE_COLOURS.get(state, UNKNOWN_COLOUR)),
                             ((i + 1) / len(_STATES), STATE_COLOURS.get(state, UNKNOWN_COLOUR)))]
_COLOUR_RANGE = {"colorscale": _COLOURSCALE, "cmin": 0, "cmax": len(_STATES)}
_COLOUR_AXIS = {**_COLOUR_RANGE, "showscale": False}


class RunView(widgets.VBox):
    """A flow run's header, task graph and timeline (one plotly FigureWidget) and a detail pane.

    Click a node or a bar to see that task run's state, error and log lines. With
    `live=True` and the flow run executing in this process, the view updates until the run
    reaches a final state. `flow_run` (a live flow run object of this process) starts the
    view from memory instead of the store, e.g. at the very start of a run.
    """

    def __init__(self, flow_run_id: str, live: bool = True, *, flow_run: Any = None) -> None:
        self._lock = threading.RLock()
        self._queue: deque[tuple[str, Any]] = deque()
        self._live_runs: dict[str, Any] = {}
        self._unsubscribe: Any = None
        self._thread: threading.Thread | None = None
        self._stopped = threading.Event()
        #: figure updates sent while following the run (the live update rate is push_count / seconds).
        self.push_count = 0
        #: resolve a prefix before listening; a live run object needs no store
        self._flow_run_id = flow_run.id if flow_run is not None else api.flow_run(flow_run_id)["id"]
        if live:  # listen before reading the snapshot, so no change in between is missed
            self._unsubscribe = recorder.subscribe(self._on_change)
        try:
            if flow_run is not None:
                graph, local = RunGraph(flow_run.id), True
                graph.apply_flow_run(flow_run)
            else:
                graph = static_html.load_graph(self._flow_run_id)
                local = graph.pid == os.getpid() and graph.host == socket.gethostname()
        except BaseException:
            self._stop_listening()
            raise
        self.graph = graph
        self._ids: list[str] = []
        self._arrows: tuple[Any, Any] | None = None  # arrowheads to send after the next batch
        self._structure = -1
        self._selected: str | None = None
        self._hover: list[str] = []
        self.header = widgets.HTML()
        self.figure = self._new_figure()
        self.detail = widgets.HTML('<div style="color:#888">Click a task run in the graph or the '
                                   "timeline to see its state, error and logs.</div>")
        super().__init__(children=[self.header, self.figure, self.detail],
                         layout=widgets.Layout(width="100%"))
        with self._lock:
            self._draw()
            self._refresh_header()
        if live and local and not graph.is_final:
            self._thread = threading.Thread(target=self._follow, daemon=True,
                                            name=f"nbflow-view-{self._flow_run_id[:8]}")
            self._thread.start()
        else:
            self._stop_listening()
            if not graph.is_final:
                self.detail.value = (
                    '<div style="color:#888">This flow run executes in another process '
                    f"(pid {graph.pid} on {html.escape(str(graph.host))}), so this view is a snapshot "
                    "of its last saved state: show it again to refresh.</div>")

    # -- public ----------------------------------------------------------------------------

    @property
    def flow_run_id(self) -> str:
        return self._flow_run_id

    @property
    def following(self) -> bool:
        """True while the view follows a running flow run."""
        return self._thread is not None and self._thread.is_alive()

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the view stops following (the run ended); True if it has."""
        if self._thread is not None:
            self._thread.join(timeout)
        return not self.following

    def select(self, task_run_id: str) -> None:
        """Show one task run in the detail pane (what a click on its node or bar does)."""
        with self._lock:
            node = self.graph.nodes.get(task_run_id)
            if node is None:
                raise UnknownRunError(f"Task run '{task_run_id}' is not part of flow run "
                                      f"'{self._flow_run_id}'.")
            self._selected = task_run_id
            self._draw_selection()
        try:
            logs = api.logs(task_run_id).to_dict("records")
        except Exception as exc:  # the store may be busy with another process: show it, don't fail
            logs = [{"level_name": "", "message": f"(logs not available now: {exc})"}]
        self.detail.value = static_html.detail_html(node, logs)

    def close(self) -> None:
        self._stopped.set()
        self._stop_listening()
        super().close()

    def _repr_mimebundle_(self, **kwargs: Any) -> dict[str, Any]:
        bundle = super()._repr_mimebundle_(**kwargs)
        with self._lock:
            bundle["text/html"] = static_html.render(self.graph)
            counts = ", ".join(f"{n} {s}" for s, n in self.graph.counts().items())
            bundle["text/plain"] = (f"RunView(flow run '{self.graph.flow_name}' "
                                    f"{self._flow_run_id[:8]}, {self.graph.state}: {counts or 'no task runs'})")
        return bundle

    # -- following a running flow run ------------------------------------------------------

    def _on_change(self, kind: str, run: Any) -> None:
        # In the engine's hot path: compare one attribute, queue the object, return.
        if (run.flow_run_id if kind == "task" else run.id) == self._flow_run_id:
            self._queue.append((kind, run))

    def _follow(self) -> None:
        last_push = last_header = time.monotonic()
        header_version, header_state = self.graph.version, self.graph.state
        try:
            while not self._stopped.wait(PUSH_INTERVAL):
                with self._lock:
                    changed = self._drain()
                    graph = self.graph
                    final = graph.is_final
                    if final:  # read every run object once more: its last change may be in flight
                        for run in self._live_runs.values():
                            graph.apply_task_run(run)
                        changed = True
                    now = time.monotonic()
                    running = any(n.state in RUNNING_STATES for n in graph.nodes.values())
                    if changed or (running and now - last_push >= SLOW_INTERVAL):
                        self._draw()
                        self.push_count += 1
                        last_push = now
                    if final or graph.state != header_state or (
                            graph.version != header_version and now - last_header >= SLOW_INTERVAL):
                        self._refresh_header()
                        header_version, header_state, last_header = graph.version, graph.state, now
                if final:
                    break
        except Exception:  # a broken view must never disturb the run: stop updating, say why
            logger.exception("The run view of flow run %s stopped updating", self._flow_run_id)
        finally:
            self._stop_listening()

    def _drain(self) -> bool:
        changed = False
        queue, graph = self._queue, self.graph
        while queue:
            kind, run = queue.popleft()
            if kind == "task":
                self._live_runs[run.id] = run
                changed = graph.apply_task_run(run) or changed
            else:
                changed = graph.apply_flow_run(run) or changed
        return changed

    def _stop_listening(self) -> None:
        unsubscribe, self._unsubscribe = self._unsubscribe, None
        if unsubscribe is not None:
            unsubscribe()
        self._queue.clear()

    # -- drawing -----------------------------------------------------------------------------

    def _new_figure(self) -> go.FigureWidget:
        base = make_subplots(rows=2, cols=1, row_heights=[0.58, 0.42], vertical_spacing=0.1,
                             subplot_titles=("Task graph", "Timeline"))
        fig = go.FigureWidget(base)
        fig.add_trace(go.Scatter(x=[], y=[], mode="lines", hoverinfo="skip",
                                 line={"color": "#b5bcc4", "width": 1}), row=1, col=1)
        fig.add_trace(go.Scatter(x=[], y=[], mode="markers", hoverinfo="text", textposition="top center",
                                 marker={"size": 12, "line": {"color": "#fff", "width": 1}, **_COLOUR_AXIS}),
                      row=1, col=1)
        fig.add_trace(go.Scatter(x=[], y=[], mode="markers", hoverinfo="skip",
                                 marker={"symbol": "circle-open", "size": 20, "color": "#111",
                                         "line": {"width": 2}}), row=1, col=1)
        # the outline in the bar's own colour keeps bars of 2,000 runs in 300 px visible
        fig.add_trace(go.Bar(x=[], y=[], base=[], orientation="h", hoverinfo="text", width=0.8,
                             marker={**_COLOUR_AXIS, "line": {"width": 1, **_COLOUR_RANGE}}),
                      row=2, col=1)
        # an arrowhead half-way along each edge, turned along it (angleref "previous")
        fig.add_trace(go.Scatter(x=[], y=[], mode="markers", hoverinfo="skip",
                                 marker={"symbol": "arrow", "angleref": "previous", "size": 0,
                                         "color": "#8d96a0", "line": {"width": 0}}), row=1, col=1)
        fig.update_layout(template="plotly_white", showlegend=False, clickmode="event",
                          margin={"l": 40, "r": 20, "t": 30, "b": 40}, height=520, bargap=0.2)
        fig.update_xaxes(visible=False, row=1, col=1)
        fig.update_yaxes(visible=False, row=1, col=1)  # a reversed range is set with the nodes
        fig.update_xaxes(title_text="seconds since the flow run started", row=2, col=1)
        fig.update_yaxes(autorange="reversed", row=2, col=1)
        fig.data[NODES].on_click(self._on_click)
        fig.data[BARS].on_click(self._on_click)
        return fig

    def _on_click(self, trace: Any, points: Any, state: Any) -> None:
        if points.point_inds:
            self.select(self._ids[points.point_inds[0]])

    def _draw(self) -> None:
        """Bring the figure up to date with the model in one front-end update."""
        graph, fig = self.graph, self.figure
        nodes = list(graph.nodes.values())
        count, now = len(nodes), time.time()
        t0 = graph.start if graph.start is not None else (graph.time_span()[0] or now)
        codes = np.fromiter((_CODE.get(n.state, _UNKNOWN_CODE) for n in nodes), float, count)
        starts = np.fromiter((n.start if n.start is not None else np.nan for n in nodes), float, count)
        bars = fig.data[BARS]
        with fig.batch_update():
            if graph.structure_version != self._structure:
                self._draw_structure(nodes)
                self._structure = graph.structure_version
            # A batch update resets, in the browser, properties that other traces of the batch
            # set and this one did not: restate the edges' mode or every edge end gets a marker.
            fig.data[EDGES].mode = "lines"
            fig.data[NODES].marker.color = codes
            bars.marker.color = bars.marker.line.color = codes
            bars.base = np.nan_to_num(starts - t0)
            lengths = np.fromiter((_bar_length(n, now) for n in nodes), float, count)
            if count:  # every bar that started shows, however short (a cache hit)
                span = float(np.nanmax(np.nan_to_num(starts - t0) + lengths)) or 1.0
                lengths = np.where(np.isnan(starts), 0.0, np.maximum(lengths, span * MIN_BAR_SHARE))
            bars.x = lengths
            hover = [_hover(n) for n in nodes]
            if hover != self._hover:  # text is slow to validate: send it only when it changed
                fig.data[NODES].hovertext = bars.hovertext = self._hover = hover
        if self._arrows is not None:
            # Apart from the batch: a trace in a batch loses, in the browser, the properties that
            # other traces of the batch set and it did not (its mode, its colour).
            (x, y), self._arrows = self._arrows, None
            fig.plotly_restyle({"x": [x], "y": [y], "mode": "markers", "hoverinfo": "skip",
                                "marker.size": [np.tile([0.0, 9.0, 0.0], len(x) // 3)],
                                "marker.symbol": "arrow", "marker.angleref": "previous",
                                "marker.color": "#8d96a0", "marker.line.width": 0}, trace_indexes=[ARROWS])

    def _draw_structure(self, nodes: list[TaskNode]) -> None:
        fig = self.figure
        positions = layout(nodes)
        self._ids = [n.id for n in nodes]
        xs = np.array([positions[n.id][0] for n in nodes], dtype=float)
        ys = np.array([positions[n.id][1] for n in nodes], dtype=float)
        edge_x: list[float] = []
        edge_y: list[float] = []
        arrow_x: list[float] = []
        arrow_y: list[float] = []
        for src, dst in self.graph.edges():  # one polyline, NaN between segments
            (x1, y1), (x2, y2) = positions[src], positions[dst]
            edge_x += [x1, x2, np.nan]
            edge_y += [y1, y2, np.nan]
            arrow_x += [x1, (x1 + x2) / 2, np.nan]
            arrow_y += [y1, (y1 + y2) / 2, np.nan]
        if len(arrow_x) > 3 * ARROWS_UP_TO:
            arrow_x = arrow_y = []
        self._arrows = (np.array(arrow_x), np.array(arrow_y))
        count = len(nodes)
        points = fig.data[NODES]
        points.x, points.y = xs, ys
        if count:  # room for the labels above the top row and beside the outer columns
            fig.layout.xaxis.range = [xs.min() - 1, xs.max() + 1]
            fig.layout.yaxis.range = [ys.max() + 0.7, ys.min() - 1]
        points.marker.size = 12 if count <= 100 else 9 if count <= 400 else 6
        points.mode = "markers+text" if count <= LABELS_UP_TO else "markers"
        points.text = [html.escape(n.label) for n in nodes] if count <= LABELS_UP_TO else None
        fig.data[EDGES].x, fig.data[EDGES].y = np.array(edge_x), np.array(edge_y)
        fig.data[EDGES].opacity = 1.0 if len(edge_x) <= 600 else 0.35
        fig.data[BARS].y = np.arange(count, dtype=float)
        named = count <= ROW_NAMES_UP_TO
        fig.layout.yaxis2.update(tickvals=list(range(count)) if named else [],
                                 ticktext=[html.escape(n.label) for n in nodes] if named else [],
                                 showticklabels=named)
        fig.layout.margin.l = 120 if named else 40
        fig.layout.height = min(760, max(480, 380 + 6 * count))
        self._draw_selection()

    def _draw_selection(self) -> None:
        ring = self.figure.data[SELECTED]
        points = self.figure.data[NODES]
        if self._selected in self._ids:
            i = self._ids.index(self._selected)
            ring.x, ring.y = [points.x[i]], [points.y[i]]
        else:
            ring.x, ring.y = [], []

    def _refresh_header(self) -> None:
        self.header.value = static_html.header_html(self.graph)


def view(flow_run_id: str | None = None, live: bool = True) -> RunView:
    """The run view of a flow run (an id or unique prefix); None: the newest flow run."""
    if flow_run_id is None:
        newest = api.runs(limit=1)
        if newest.empty:
            raise UnknownRunError("There are no flow runs yet in this store (NBFLOW_HOME): "
                                  "run a flow first, then show it with view().")
        flow_run_id = str(newest["id"].iloc[0])
    return RunView(flow_run_id, live=live)


def _hover(node: TaskNode) -> str:
    text = f"<b>{html.escape(node.label)}</b><br>{html.escape(node.state)}"
    if node.start is not None and node.end is not None:
        text += f" in {static_html.fmt_duration(node.end - node.start)}"
    elif node.start is not None:
        text += time.strftime(" since %H:%M:%S UTC", time.gmtime(node.start))
    if node.error:
        error = node.error if len(node.error) <= 200 else node.error[:199] + "…"
        text += f"<br>{html.escape(error)}"
    return text


def _bar_length(node: TaskNode, now: float) -> float:
    if node.start is None:
        return 0.0
    if node.end is not None:
        return node.end - node.start
    return now - node.start if node.state in RUNNING_STATES else 0.0
