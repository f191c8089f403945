"""The run-graph widget in a real browser: JupyterLab, headless Debian Chromium, a real kernel.

A notebook of this test defines a small flow (one task fails on purpose, handled with
`return_state=True`), runs it and shows `%nbflow graph`. The test runs every cell through
JupyterLab's own "Run All Cells" command and checks what the browser drew against the store:
one plotly marker per task run, coloured by its state, labelled with its task, and the header's
per-state counts. The page is saved as test-artifacts/notebook-run-graph.png.
"""

from __future__ import annotations

import re
import shutil
import time
from collections import Counter
from typing import Any

import pytest
from browser_lab import (ARTIFACTS, CELLS, KERNEL_IDLE, REPO, RUN_ALL, JupyterLab, cell_text, error_outputs,
                         write_notebook)

from nbflow.notebook.run_graph import STATE_COLOURS
from nbflow.notebook.widgets import ARROWS, NODES

pytestmark = pytest.mark.timeout(240)

DEMO = "graph_demo.ipynb"
DEMO_CELLS = [
    "%load_ext nbflow",
    '''import nbflow
from nbflow import flow, task

@task
def extract(n: int) -> list[int]:
    return list(range(n))

@task
def square(x: int) -> int:
    return x * x

@task
def total(values: list[int]) -> int:
    return sum(values)

@task
def explode(value: int) -> int:
    raise ValueError(f"fails on purpose (got {value})")

@flow(name="graph-demo")
def graph_demo(n: int = 3) -> int:
    rows = extract(n)
    result = total(square.map(rows))
    state = explode(result, return_state=True)  # handled: the flow goes on
    print("explode ended", state.name)
    return result''',
    '''value = graph_demo(3)
print("graph_demo returned", value)
nbflow.flush();''',
    "%nbflow graph",
]
#: the demo's task runs: extract, square x3, total, explode.
DEMO_TASK_RUNS = 6

KERNEL_TIMEOUT_S = 60
RUN_TIMEOUT_S = 90
WIDGET_TIMEOUT_MS = 30_000

OUTPUT = ".jp-NotebookPanel:not(.lm-mod-hidden) .jp-OutputArea-output"
PLOT = f"{OUTPUT} .js-plotly-plot"

#: JS: the markers plotly drew for trace `index` of the run view's figure (the task nodes), with
#: their fill colours and text labels in point order. The trace is found by its uid, not by its
#: place in the DOM, so the edge and selection traces of the same subplot are never counted.
NODE_POINTS = f"""
(index) => {{
  const plots = document.querySelectorAll('{PLOT}');
  if (plots.length !== 1 || !plots[0].data || !plots[0].data[index]) return {{plots: plots.length, points: 0}};
  const trace = plots[0].querySelector('g.trace' + plots[0].data[index].uid);
  if (!trace) return {{plots: 1, points: 0}};
  const points = Array.from(trace.querySelectorAll('path.point'));
  return {{
    plots: 1,
    points: points.length,
    fills: points.map((p) => getComputedStyle(p).fill),
    labels: Array.from(trace.querySelectorAll('.textpoint text')).map((t) => t.textContent),
  }};
}}
"""
NODES_DRAWN = f"""
([index, count]) => {{
  const drawn = ({NODE_POINTS})(index);
  return drawn.points === count && drawn.labels.length === count;
}}
"""


def _rgb(hex_colour: str) -> str:
    r, g, b = (int(hex_colour[i:i + 2], 16) for i in (1, 3, 5))
    return f"rgb({r}, {g}, {b})"


def open_notebook(page: Any, lab: JupyterLab, path: str) -> None:
    """Open a notebook in JupyterLab and wait until its kernel is connected and idle."""
    # ?reset: a fresh workspace, not the tabs an earlier test left open on this server
    page.goto(lab.url(f"lab/tree/{path}?reset"), wait_until="domcontentloaded")
    try:
        page.wait_for_function(KERNEL_IDLE, arg=path, timeout=KERNEL_TIMEOUT_S * 1000, polling=250)
    except Exception as exc:
        raise AssertionError(f"the kernel of {path} did not become idle within {KERNEL_TIMEOUT_S} s: "
                             f"{exc}\n{lab.log_tail()}") from None


def run_all_cells(page: Any, lab: JupyterLab, path: str, timeout: float = RUN_TIMEOUT_S) -> list[dict[str, Any]]:
    """Run All Cells; wait until every code cell ran (or one failed) and the kernel is idle."""
    page.evaluate(RUN_ALL, path)
    deadline = time.monotonic() + timeout
    state: dict[str, Any] | None = None
    while time.monotonic() < deadline:
        state = page.evaluate(CELLS, path)
        if state is not None:
            cells = state["cells"]
            if error_outputs(cells) or state["runAllError"]:
                return cells
            ran = all(c["count"] is not None and c["state"] != "running" for c in cells)
            if ran and state["kernel"] == "idle":
                return cells
        time.sleep(0.25)
    raise AssertionError(f"{path}: not every cell ran within {timeout:.0f} s; cells: "
                         f"{[(c['index'], c['count'], c['state']) for c in (state or {}).get('cells', [])]}"
                         f"\n{lab.log_tail()}")


def test_run_graph_widget_renders_task_nodes_with_their_states(page: Any, jupyter_lab: JupyterLab) -> None:
    from playwright.sync_api import expect

    started = time.monotonic()
    write_notebook(jupyter_lab.root_dir / DEMO, DEMO_CELLS)
    open_notebook(page, jupyter_lab, DEMO)
    cells = run_all_cells(page, jupyter_lab, DEMO)
    errors = error_outputs(cells)
    assert not errors, f"{DEMO} raised: {errors}\n" + "\n".join(cell_text(c) for c in cells)
    assert "graph_demo returned 5" in cell_text(cells[2]), cell_text(cells[2])
    assert "explode ended Failed" in cell_text(cells[2]), cell_text(cells[2])

    run = jupyter_lab.flow_run_summary("graph-demo")
    assert run is not None, f"no graph-demo flow run in the store\n{jupyter_lab.log_tail()}"
    counts = Counter(run["task_states"])
    assert len(run["task_states"]) == DEMO_TASK_RUNS, run
    assert counts == {"Completed": DEMO_TASK_RUNS - 1, "Failed": 1}, run

    # the live widget (not the static HTML fallback): one plotly marker per task run, in its
    # state's colour, labelled with its task (a mapped task as name[index])
    expected = {label: _rgb(STATE_COLOURS[state]) for label, state in zip(run["labels"], run["task_states"])}
    assert len(expected) == len(run["labels"]), run
    try:
        page.wait_for_function(NODES_DRAWN, arg=[NODES, len(expected)], timeout=WIDGET_TIMEOUT_MS, polling=250)
    except Exception as exc:
        raise AssertionError(f"the run graph did not draw {len(expected)} task nodes: {exc}; drawn: "
                             f"{page.evaluate(NODE_POINTS, NODES)}\n{jupyter_lab.log_tail()}") from None
    drawn = page.evaluate(NODE_POINTS, NODES)
    assert drawn["points"] == len(expected), drawn
    assert dict(zip(drawn["labels"], drawn["fills"])) == expected, (drawn, run)
    assert Counter(drawn["fills"]) == {_rgb(STATE_COLOURS[s]): n for s, n in counts.items()}, drawn

    # the header: flow name, run id, and the task-run counts per state
    header = page.locator(f"{OUTPUT} .widget-html", has_text="task runs:")
    expect(header).to_have_count(1, timeout=WIDGET_TIMEOUT_MS)
    text = " ".join(header.inner_text().split())
    assert "graph-demo" in text and f"run {run['id'][:8]}" in text, text
    assert f"{len(run['task_states'])} task runs:" in text, text
    for state, n in counts.items():
        assert re.search(rf"\b{state} {n}\b", text), f"header lacks '{state} {n}': {text}"
    assert run["state"] in text, (run["state"], text)

    # the edges (square[i] -> total) carry arrowheads: trace ARROWS, grey arrow markers, no lines
    arrows = page.evaluate(f"""() => {{
      const plot = document.querySelector('{PLOT}');
      const trace = plot.data[{ARROWS}];
      return {{mode: trace.mode, symbol: trace.marker.symbol, colour: trace.marker.color,
              sizes: Array.from(trace.marker.size || []).filter((s) => s > 0).length}};
    }}""")
    assert arrows == {"mode": "markers", "symbol": "arrow", "colour": "#8d96a0", "sizes": 3}, arrows

    # the timeline: one bar per task run
    bars = page.locator(f"{PLOT} .barlayer .point")
    expect(bars).to_have_count(len(run["task_states"]), timeout=WIDGET_TIMEOUT_MS)

    # the picture: the file browser folded away, the widget's cell at the top of the notebook panel
    page.evaluate("() => window.jupyterapp.shell.collapseLeft()")
    header.evaluate("el => el.closest('.jp-Cell').scrollIntoView({block: 'start'})")
    page.wait_for_timeout(500)  # let the panel settle before the picture
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "notebook-run-graph.png"), full_page=True)
    print(f"run-graph test took {time.monotonic() - started:.1f} s (server already up)")


def test_quickstart_notebook_runs_without_errors(page: Any, jupyter_lab: JupyterLab) -> None:
    source = REPO / "notebooks" / "quickstart.ipynb"
    if not source.exists():
        pytest.skip("notebooks/quickstart.ipynb does not exist yet")
    shutil.copy(source, jupyter_lab.root_dir / "quickstart.ipynb")
    open_notebook(page, jupyter_lab, "quickstart.ipynb")
    cells = run_all_cells(page, jupyter_lab, "quickstart.ipynb", timeout=150)
    errors = error_outputs(cells)
    assert not errors, f"quickstart.ipynb raised: {errors}\n{jupyter_lab.log_tail()}"
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "notebook-quickstart.png"), full_page=True)
