"""A flow run's graph, timeline and task table as self-contained HTML (inline SVG, no script).

This is what survives where widgets do not: nbconvert, nbviewer, an executed notebook
without widget state. Every piece of user text (flow, task names, errors, log lines) is
escaped. Large `.map` groups are collapsed so a 1,000-task run stays a readable page.
"""

from __future__ import annotations

import html
import math
import time
from typing import Any, Iterable, Mapping

from nbflow import api
from nbflow.notebook.run_graph import (
    COLLAPSE_THRESHOLD,
    RUNNING_STATES,
    DisplayNode,
    RunGraph,
    TaskNode,
    collapse,
    layout,
    ordered_counts,
    state_colour,
)

FONT = "-apple-system,BlinkMacSystemFont,'Segoe UI',Helvetica,Arial,sans-serif"
#: graph SVG: pixels per layout unit across (layers) and down (rows).
X_UNIT, Y_UNIT = 80, 36
#: longest task label drawn; the full text is in the node's tooltip.
LABEL_CHARS = 22
GANTT_WIDTH, GANTT_LABEL_WIDTH, GANTT_ROW = 760, 180, 18
MAX_GANTT_ROWS = 60
#: bars drawn inside one collapsed timeline row (evenly sampled beyond this).
MAX_GROUP_BARS = 300
MAX_TABLE_ROWS = 200
MAX_ERROR_CHARS = 400
MAX_LOG_LINES = 300


def load_graph(flow_run_id: str) -> RunGraph:
    """The current snapshot of a flow run (an id or unique prefix) and its task runs from the store."""
    flow_run = api.flow_run(flow_run_id)
    task_runs = api.task_runs(flow_run["id"])
    return RunGraph.from_rows(flow_run, task_runs.to_dict("records"))


def render_html(flow_run_id: str) -> str:
    """A flow run as static HTML: header, task graph, timeline and task table (needs no widgets)."""
    return render(load_graph(flow_run_id))


def render(graph: RunGraph, now: float | None = None, threshold: int = COLLAPSE_THRESHOLD) -> str:
    """The static HTML of a graph as it is now (running bars end at `now`)."""
    now = time.time() if now is None else now
    display = collapse(graph, threshold)
    t0, t1 = graph.time_span(now)
    stamp = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(now))
    return (
        f'<div class="nbflow-run-graph" style="font-family:{FONT};font-size:13px;color:#222;'
        f'line-height:1.35;max-width:100%">'
        f"{header_html(graph, now)}"
        f'<div style="overflow-x:auto">{graph_svg(display)}</div>'
        f'<div style="overflow-x:auto">{gantt_svg(display, graph.nodes, t0, t1, now)}</div>'
        f'<div style="overflow-x:auto">{task_table(display, t0, now, graph.flow_run_id)}</div>'
        f'<div style="color:#888;font-size:11px;margin-top:4px">nbflow run graph &middot; '
        f"snapshot of {stamp}</div></div>"
    )


# -- pieces shared with the live widget ---------------------------------------------------------


def header_html(graph: RunGraph, now: float | None = None) -> str:
    """Flow name, run id, run state, duration and task-run counts per state (the legend)."""
    now = time.time() if now is None else now
    end = graph.end if graph.end is not None else (None if graph.is_final else now)
    duration = fmt_duration(end - graph.start) if graph.start is not None and end is not None else ""
    counts = graph.counts()
    total = sum(counts.values())
    parts = [
        f'<b style="font-size:14px">{_e(graph.flow_name or "flow run")}</b>',
        f'<span style="color:#666">run {_e(graph.flow_run_id[:8])}</span>',
        badge(graph.state),
        f'<span style="color:#444">{duration}</span>' if duration else "",
        f'<span style="color:#444">{total} task run{"" if total == 1 else "s"}:</span>',
        state_counts_html(counts),
    ]
    return ('<div style="display:flex;flex-wrap:wrap;gap:10px;align-items:center;margin:2px 0 6px">'
            + "".join(parts) + "</div>")


def detail_html(node: TaskNode, logs: Iterable[Mapping[str, Any]] = (), now: float | None = None) -> str:
    """One task run: name, state, timing, error and its log lines."""
    now = time.time() if now is None else now
    duration = node.duration(now)
    started = time.strftime("%H:%M:%S", time.gmtime(node.start)) + " UTC" if node.start else "not started"
    rows = [
        '<div style="display:flex;flex-wrap:wrap;gap:10px;align-items:center">'
        f'<b>{_e(node.label)}</b>{badge(node.state)}'
        f'<span style="color:#444">{fmt_duration(duration) if duration is not None else ""}</span>'
        f'<span style="color:#666">started {started}</span>'
        f'<span style="color:#999;font-size:11px">task run {_e(node.id)}</span></div>'
    ]
    if node.error or (node.message and node.state not in ("Completed", "Cached")):
        rows.append(f'<pre style="color:#b3261e;white-space:pre-wrap;margin:6px 0">'
                    f"{_e(node.error or node.message)}</pre>")
    lines = list(logs)[-MAX_LOG_LINES:]
    if lines:
        text = "\n".join(f"{_clock(r.get('timestamp'))} {str(r.get('level_name') or ''):<7} "
                         f"{r.get('message') or ''}" for r in lines)
        rows.append('<div style="color:#666;margin-top:6px">Logs</div>'
                    '<pre style="max-height:260px;overflow:auto;background:#f6f8fa;padding:6px;'
                    f'font-size:11px;margin:2px 0;white-space:pre-wrap">{_e(text)}</pre>')
    else:
        rows.append('<div style="color:#999;margin-top:6px">No log lines.</div>')
    return f'<div style="font-family:{FONT};font-size:13px">{"".join(rows)}</div>'


def badge(state: str) -> str:
    return (f'<span style="background:{state_colour(state)};color:#fff;border-radius:9px;'
            f'padding:1px 8px;font-size:12px">{_e(state)}</span>')


def swatch(state: str) -> str:
    return (f'<span style="display:inline-block;width:10px;height:10px;border-radius:2px;'
            f'background:{state_colour(state)};vertical-align:-1px"></span>')


def state_counts_html(counts: Mapping[str, int]) -> str:
    return " ".join(f'<span style="white-space:nowrap">{swatch(s)} {_e(s)} {n}</span>'
                    for s, n in ordered_counts(counts).items())


def fmt_duration(seconds: float | None) -> str:
    if seconds is None:
        return ""
    if seconds < 1:
        return f"{seconds * 1000:.0f} ms" if seconds >= 0.001 else f"{seconds * 1000:.2f} ms"
    if seconds < 60:
        return f"{seconds:.2f} s"
    if seconds < 3600:
        return f"{int(seconds // 60)} m {seconds % 60:02.0f} s"
    return f"{int(seconds // 3600)} h {int(seconds % 3600 // 60):02d} m"


# -- the task graph ------------------------------------------------------------------------


#: the arrowhead at the end of every edge (identical in every graph, so a repeated id is harmless).
ARROW_DEFS = ('<defs><marker id="nbflow-arrow" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="6" '
              'markerHeight="6" orient="auto"><path d="M0,1 L10,5 L0,9 z" fill="#8d96a0"/></marker></defs>')


def graph_svg(display: list[DisplayNode]) -> str:
    if not display:
        return '<div style="color:#888;margin:8px 0">No task runs yet.</div>'
    positions = layout(display, rows_per_column=COLLAPSE_THRESHOLD)
    px = {d.id: (90 + positions[d.id][0] * X_UNIT, 34 + positions[d.id][1] * Y_UNIT) for d in display}
    width = max(x for x, _ in px.values()) + 100
    height = max(y for _, y in px.values()) + 30
    half = {d.id: 23 if d.collapsed else 7 for d in display}  # half the node's drawn width
    edges = []
    for d in display:
        x2, y2 = px[d.id]
        x2 -= half[d.id]
        for u in d.upstream:
            x1, y1 = px[u]
            x1 += half[u]
            mid = (x1 + x2) / 2
            edges.append(f'<path d="M{x1:.1f},{y1:.1f} C{mid:.1f},{y1:.1f} {mid:.1f},{y2:.1f} '
                         f'{x2:.1f},{y2:.1f}" fill="none" stroke="#b5bcc4" stroke-width="1.2" '
                         f'marker-end="url(#nbflow-arrow)"/>')
    nodes = [_svg_node(d, *px[d.id]) for d in display]
    return (f'<svg xmlns="http://www.w3.org/2000/svg" width="{width:.0f}" height="{height:.0f}" '
            f'viewBox="0 0 {width:.0f} {height:.0f}" font-family="{FONT}" role="img" '
            f'aria-label="task graph">{ARROW_DEFS if edges else ""}{"".join(edges)}{"".join(nodes)}</svg>')


def _svg_node(d: DisplayNode, x: float, y: float) -> str:
    weight = ' font-weight="600"' if d.collapsed else ""
    label = (f'<text x="{x:.1f}" y="{y - 11:.1f}" font-size="12" fill="#222" text-anchor="middle"'
             f"{weight}>{_e(_clip(d.label, LABEL_CHARS))}</text>")
    if not d.collapsed:
        tip = f"{d.label} — {d.state}"
        if d.error:
            tip += f"\n{_clip(d.error, MAX_ERROR_CHARS)}"
        return (f'<g><title>{_e(tip)}</title><circle cx="{x:.1f}" cy="{y:.1f}" r="7" '
                f'fill="{state_colour(d.state)}" stroke="#fff" stroke-width="1.5"/>{label}</g>')
    # every state present gets at least 2 px, so 3 failures among 1,000 runs still show
    widths = {state: max(2.0, 46 * n / sum(d.counts.values())) for state, n in d.counts.items()}
    stretch = 46 / sum(widths.values())
    segments, offset = [], x - 23
    for state, w in widths.items():
        w *= stretch
        segments.append(f'<rect x="{offset:.1f}" y="{y - 6:.1f}" width="{w:.2f}" height="12" '
                        f'fill="{state_colour(state)}"/>')
        offset += w
    breakdown = ", ".join(f"{n} {s}" for s, n in d.counts.items())
    return (f'<g><title>{_e(d.label)}: {_e(breakdown)}</title>{"".join(segments)}'
            f'<rect x="{x - 23:.1f}" y="{y - 6:.1f}" width="46" height="12" fill="none" '
            f'stroke="{state_colour(d.state)}" stroke-width="1.5" rx="2"/>{label}'
            f'<text x="{x:.1f}" y="{y + 17:.1f}" font-size="10" fill="#555" text-anchor="middle">'
            f"{_e(_clip(breakdown, 40))}</text></g>")


# -- the timeline --------------------------------------------------------------------------


def _timeline_order(display: list[DisplayNode]) -> list[DisplayNode]:
    return sorted(display, key=lambda d: (d.start is None, d.start or 0.0, d.order))


def gantt_svg(display: list[DisplayNode], nodes: Mapping[str, TaskNode], t0: float | None,
              t1: float | None, now: float) -> str:
    rows = _timeline_order(display)[:MAX_GANTT_ROWS]
    if t0 is None or not rows:
        return ""
    span = max((t1 or now) - t0, 1e-3)
    chart = GANTT_WIDTH - GANTT_LABEL_WIDTH - 16
    scale = chart / span
    height = 26 + GANTT_ROW * len(rows) + 4
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{GANTT_WIDTH}" height="{height}" '
           f'viewBox="0 0 {GANTT_WIDTH} {height}" font-family="{FONT}" role="img" aria-label="timeline">']
    for tick in _ticks(span):
        x = GANTT_LABEL_WIDTH + tick * scale
        out.append(f'<line x1="{x:.1f}" y1="18" x2="{x:.1f}" y2="{height - 4}" stroke="#eceff2"/>'
                   f'<text x="{x:.1f}" y="13" font-size="10" fill="#777" text-anchor="middle">'
                   f"{_e(_fmt_tick(tick))}</text>")
    for i, d in enumerate(rows):
        y = 22 + i * GANTT_ROW
        out.append(f'<text x="{GANTT_LABEL_WIDTH - 6}" y="{y + 11}" font-size="11" fill="#333" '
                   f'text-anchor="end"><title>{_e(d.label)}</title>{_e(_clip(d.label, 26))}</text>')
        members = [nodes[m] for m in d.members if m in nodes]
        opacity = "0.55" if d.collapsed else "1"
        step = max(1, math.ceil(len(members) / MAX_GROUP_BARS))
        for node in members[::step]:
            if node.start is None:
                continue
            end = node.end if node.end is not None else (now if node.state in RUNNING_STATES else node.start)
            x = GANTT_LABEL_WIDTH + (node.start - t0) * scale
            w = max(3.0, (end - node.start) * scale)  # a cache hit (~0 s) still shows
            tip = "" if d.collapsed else f"<title>{_e(d.label)} — {_e(node.state)}, {fmt_duration(end - node.start)}</title>"
            out.append(f'<rect x="{x:.1f}" y="{y + 3}" width="{w:.1f}" height="11" rx="1.5" '
                       f'fill="{state_colour(node.state)}" fill-opacity="{opacity}">{tip}</rect>')
    out.append("</svg>")
    if len(display) > MAX_GANTT_ROWS:
        out.append(f'<div style="color:#888;font-size:11px">Timeline shows the first {MAX_GANTT_ROWS} '
                   f"of {len(display)} rows.</div>")
    return "".join(out)


def _ticks(span: float) -> list[float]:
    raw = span / 5
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 5, 10) if m * magnitude >= raw)
    return [i * step for i in range(int(span / step) + 1)]


def _fmt_tick(seconds: float) -> str:
    if seconds == 0:
        return "0"
    return f"{seconds * 1000:.0f} ms" if seconds < 1 else f"{seconds:g} s"


# -- the table -------------------------------------------------------------------------------


def task_table(display: list[DisplayNode], t0: float | None, now: float, flow_run_id: str) -> str:
    if not display:
        return ""
    cell = 'style="padding:2px 8px;border-bottom:1px solid #eee;text-align:left;vertical-align:top"'
    head = "".join(f"<th {cell}>{h}</th>" for h in ("Task run", "State", "Start", "Duration", "Error"))
    body = []
    rows = _timeline_order(display)
    for d in rows[:MAX_TABLE_ROWS]:
        if d.collapsed:
            state = state_counts_html(d.counts)
        else:
            state = f"{swatch(d.state)} {_e(d.state)}"
        start = f"+{d.start - t0:.2f} s" if d.start is not None and t0 is not None else ""
        end = d.end if d.end is not None else (now if d.start is not None and d.state in RUNNING_STATES else None)
        duration = fmt_duration(end - d.start) if d.start is not None and end is not None else ""
        error = ""
        if d.error:
            more = f" (and {d.errors - 1} more)" if d.errors > 1 else ""
            error = (f'<code style="white-space:pre-wrap;color:#b3261e">'
                     f"{_e(_clip(d.error, MAX_ERROR_CHARS))}</code>{more}")
        body.append(f"<tr><td {cell}>{_e(d.label)}</td><td {cell}>{state}</td><td {cell}>{start}</td>"
                    f"<td {cell}>{duration}</td><td {cell}>{error}</td></tr>")
    note = ""
    if len(rows) > MAX_TABLE_ROWS:
        note = (f'<div style="color:#888;font-size:11px">{len(rows) - MAX_TABLE_ROWS} more rows: '
                f"nbflow.task_runs({_e(repr(flow_run_id))})</div>")
    return (f'<table style="border-collapse:collapse;font-size:12px;margin-top:8px">'
            f"<thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>{note}")


# -- text ------------------------------------------------------------------------------------


def _e(text: Any) -> str:
    return html.escape(str(text), quote=True)


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _clock(value: Any) -> str:
    if value is None or value != value:
        return ""
    if hasattr(value, "strftime"):
        return value.strftime("%H:%M:%S.%f")[:-3]
    if isinstance(value, (int, float)):
        return time.strftime("%H:%M:%S", time.gmtime(value))
    return str(value)
