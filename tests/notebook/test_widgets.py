"""The run view on real flow runs: static HTML, the live widget's update rate, a real kernel."""

from __future__ import annotations

import re
import threading
import time
from pathlib import Path
from typing import Any, Callable

import pytest

import nbflow
from nbflow import ThreadPoolTaskRunner, flow, get_run_logger, task
from nbflow.errors import UnknownRunError
from nbflow.notebook.run_graph import STATE_COLOURS, RunGraph, TaskNode
from nbflow.notebook.static_html import render, render_html
from nbflow.store.buffer import recorder

WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"


@pytest.fixture
def widgets() -> Any:
    """nbflow.notebook.widgets, with plotly's FigureWidget loaded once (its first import is slow)."""
    pytest.importorskip("ipywidgets")
    pytest.importorskip("anywidget", reason="plotly's FigureWidget needs anywidget")
    import plotly.graph_objects as go

    from nbflow.notebook import widgets as module

    go.FigureWidget()
    return module


@task
def fetch(i: int) -> int:
    get_run_logger().info("fetched <item> %d", i)
    return i * 10


@task
def explode(value: int) -> int:
    raise ValueError(f"row {value} is <broken> & \"quoted\"")


@task
def total(values: list[int]) -> int:
    return sum(values)


@flow
def fan_out(n: int = 4) -> int:
    futures = fetch.map(range(n))
    explode.submit(futures[1]).wait()
    return total(list(futures))  # a list of futures: edges from every fetch


def start_in_thread(fn: Callable[[], Any]) -> tuple[threading.Thread, str]:
    """Run a flow in a thread; return the thread and the flow run's id once it has started."""
    seen: list[str] = []
    unsubscribe = recorder.subscribe(lambda kind, run: seen.append(run.id) if kind == "flow" else None)
    thread = threading.Thread(target=fn, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 30
        while not seen and time.monotonic() < deadline:
            time.sleep(0.001)
    finally:
        unsubscribe()
    assert seen, "the flow run did not start"
    return thread, seen[0]


# -- static HTML -----------------------------------------------------------------------------


def test_render_html_of_a_real_flow_run() -> None:
    fan_out()
    run_id = nbflow.runs().iloc[0]["id"]
    page = render_html(run_id[:8])
    for name in ("fan-out", "fetch[0]", "fetch[3]", "explode", "total"):
        assert name in page
    assert STATE_COLOURS["Completed"] in page and STATE_COLOURS["Failed"] in page
    assert "ValueError: row 10 is &lt;broken&gt; &amp; &quot;quoted&quot;" in page
    assert "<broken>" not in page
    assert "<script" not in page.lower() and "http://" not in page.replace("http://www.w3.org/2000/svg", "")
    assert page.count("<svg") == 2 and "<table" in page
    assert page.count("marker-end=\"url(#nbflow-arrow)\"") == 5  # edges, arrowed: fetch[1] -> explode, fetches -> total


def test_a_thousand_task_runs_stay_readable() -> None:
    graph = RunGraph("f" * 32, "big", "Completed", start=0.0, end=30.0)
    for i in range(1200):
        graph.nodes[f"m{i}"] = TaskNode(f"m{i}", "work", "Failed" if i % 100 == 0 else "Completed",
                                        start=i / 100, end=i / 100 + 1, dynamic_key=i, order=i,
                                        error="ValueError: nope" if i % 100 == 0 else None)
    graph.nodes["sum"] = TaskNode("sum", "total", "Completed", start=29.0, end=30.0,
                                  upstream=tuple(f"m{i}" for i in range(1200)), order=1200)
    page = render(graph, now=31.0)
    assert "work ×1200" in page and "1188 Completed, 12 Failed" in page
    assert page.count("<circle") == 1 and page.count("marker-end=") == 1
    assert len(page) < 150_000


# -- the widget ------------------------------------------------------------------------------


def test_view_of_a_finished_run_has_widget_and_html_fallback(widgets: Any) -> None:
    fan_out()
    view = widgets.view()  # the newest flow run
    assert not view.following
    bundle = view._repr_mimebundle_()
    assert bundle[WIDGET_VIEW]["model_id"] == view.model_id
    assert "fetch[2]" in bundle["text/html"] and "explode" in bundle["text/html"]
    assert "fan-out" in bundle["text/plain"]
    assert "Failed" in view.header.value and "Completed" in view.header.value

    points = view.figure.data[1]
    assert len(points.x) == 6 and len(view.figure.data[3].x) == 6  # six nodes, six bars
    arrows = view.figure.data[widgets.ARROWS]  # one arrowhead per edge (5), turned along it
    assert list(arrows.marker.size).count(9.0) == 5 and arrows.marker.symbol == "arrow"
    assert 'marker-end="url(#nbflow-arrow)"' in bundle["text/html"]
    bars = view.figure.data[3]  # the fetches take ~0 s, yet every bar shows
    assert min(bars.x) >= 0.9 * widgets.MIN_BAR_SHARE * max(b + x for b, x in zip(bars.base, bars.x)) > 0
    failed = next(n for n in view.graph.nodes.values() if n.task_name == "explode")
    view.select(failed.id)
    assert "ValueError: row 10 is &lt;broken&gt;" in view.detail.value
    fetched = next(n for n in view.graph.nodes.values() if n.label == "fetch[2]")
    view.select(fetched.id)
    assert "fetched &lt;item&gt; 2" in view.detail.value  # its log lines, escaped
    view.close()


def test_view_without_runs_says_what_to_do(widgets: Any) -> None:
    with pytest.raises(UnknownRunError, match="run a flow first"):
        widgets.view()


def test_live_view_follows_a_running_flow(widgets: Any) -> None:
    release = threading.Event()  # the tasks wait until the view exists, however slow it starts

    @task
    def slow(i: int) -> int:
        release.wait(30)
        time.sleep(0.4)
        return i

    @flow
    def stages() -> int:
        first = slow.map(range(3))
        second = slow.submit(first[0])
        return slow(second) + sum(f.result() for f in first)

    thread, run_id = start_in_thread(stages)
    view = widgets.RunView(run_id)
    assert view.following
    release.set()
    colours = []
    while view.following:
        colours.append(tuple(view.figure.data[1].marker.color))
        time.sleep(0.05)
    thread.join(10)
    colours.append(tuple(view.figure.data[1].marker.color))
    running, completed = widgets._CODE["Running"], widgets._CODE["Completed"]
    assert len(set(colours)) >= 3  # colours changed while it ran...
    assert any(running in c for c in colours)
    assert set(colours[-1]) == {completed}  # ...and ended all green
    assert len(view.graph.nodes) == 5  # runs that appeared during the run were added
    assert view.graph.state == "Completed" and set(view.graph.counts()) == {"Completed"}
    assert "Completed" in view.header.value and "Running" not in view.header.value
    assert all(cb != view._on_change for cb in recorder._listeners)  # unsubscribed at the end


def test_live_updates_of_a_thousand_task_map_are_rate_limited(widgets: Any) -> None:
    @task
    def work(i: int) -> int:
        time.sleep(0.05)
        return i

    @flow(task_runner=ThreadPoolTaskRunner(max_workers=16))
    def thousand() -> int:
        return sum(work.map(range(1000)).result())

    thread, run_id = start_in_thread(thousand)
    view = widgets.RunView(run_id)
    started = time.monotonic()
    messages: list[Any] = []
    view.figure.comm.send = lambda *args, **kwargs: messages.append(kwargs)
    assert view.following
    assert view.wait(60)
    elapsed = time.monotonic() - started
    thread.join(10)
    assert len(view.graph.nodes) == 1000 and view.graph.counts() == {"Completed": 1000}
    assert elapsed > 1.0, "the flow should run long enough to measure a rate"
    assert 2 <= view.push_count <= 10 * elapsed + 2
    updates = [m for m in messages if m["data"]["state"].get("_py2js_update")]
    assert len(updates) == view.push_count  # each push is one plotly update of the front end
    print(f"\n1,000-task map: {view.push_count} pushes in {elapsed:.2f} s "
          f"({view.push_count / elapsed:.1f}/s), {len(messages)} comm messages")


# -- in a real kernel --------------------------------------------------------------------------


def test_view_in_a_real_kernel_saves_widget_and_html(widgets: Any, tmp_path: Path) -> None:
    pytest.importorskip("nbclient")
    from kernel import run_notebook

    cell = (
        "from nbflow import flow, task\n"
        "from nbflow.notebook.widgets import view\n"
        "@task\n"
        "def load_rows(i): return i\n"
        "@task\n"
        "def summarise(rows): return sum(rows)\n"
        "@flow\n"
        "def kernel_report(n=3):\n"
        "    return summarise(list(load_rows.map(range(n))))\n"
        "kernel_report()\n"
        "view()"
    )
    nb = run_notebook([cell], tmp_path)
    outputs = [o for o in nb.cells[0].outputs if o["output_type"] in ("execute_result", "display_data")]
    assert len(outputs) == 1
    data = outputs[0]["data"]
    assert WIDGET_VIEW in data
    page = data["text/html"]
    assert "kernel-report" in page and "load_rows[2]" in page and "summarise" in page
    assert re.search(r"<svg[^>]*task graph", page)
    state = nb.metadata["widgets"]["application/vnd.jupyter.widget-state+json"]["state"]
    assert data[WIDGET_VIEW]["model_id"] in state  # the widget itself is saved too


def test_live_view_in_a_real_kernel_updates_from_its_timer_thread(widgets: Any, tmp_path: Path) -> None:
    pytest.importorskip("nbclient")
    from kernel import run_notebook

    start = (
        "import threading, time\n"
        "from nbflow import flow, task\n"
        "from nbflow.store.buffer import recorder\n"
        "from nbflow.notebook.widgets import RunView\n"
        "release = threading.Event()\n"
        "@task\n"
        "def step(i):\n"
        "    release.wait(60)\n"
        "    time.sleep(0.2 * i)\n"
        "    return i\n"
        "@flow\n"
        "def background(n=6):\n"
        "    return sum(step.map(range(n)).result())\n"
        "seen = []\n"
        "unsubscribe = recorder.subscribe(lambda kind, run: seen.append(run.id) if kind == 'flow' else None)\n"
        "thread = threading.Thread(target=background)\n"
        "thread.start()\n"
        "while not seen:\n"
        "    time.sleep(0.001)\n"
        "unsubscribe()\n"
        "view = RunView(seen[0])\n"
        "display(view)\n"
        "release.set()"
    )
    finish = "thread.join(60)\nprint('stopped', view.wait(10), 'pushes', view.push_count)"
    nb = run_notebook([start, finish], tmp_path)
    printed = "".join(o.get("text", "") for o in nb.cells[1].outputs)
    pushes = int(re.search(r"stopped True pushes (\d+)", printed).group(1))
    assert pushes >= 2
    # the header's last value reached the front end (nbclient keeps what the kernel sent)
    state = nb.metadata["widgets"]["application/vnd.jupyter.widget-state+json"]["state"]
    headers = [w["state"]["value"] for w in state.values()
               if "background" in str(w["state"].get("value", ""))]
    assert any("Completed 6" in h and "Running" not in h for h in headers)
