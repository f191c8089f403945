"""The run-graph model without I/O: palette, layers, layout stability, live updates, collapsing."""

from __future__ import annotations

from datetime import datetime, timezone
from types import SimpleNamespace

import pytest

from nbflow.engine.states import STATE_TYPES, State
from nbflow.notebook.run_graph import (
    ROWS_PER_COLUMN,
    STATE_COLOURS,
    UNKNOWN_COLOUR,
    RunGraph,
    TaskNode,
    collapse,
    headline_state,
    layers,
    layout,
    ordered_counts,
    state_colour,
)


def node(id: str, *upstream: str, name: str | None = None, state: str = "Completed",
         key: int | None = None) -> TaskNode:
    return TaskNode(id, name or id.rstrip("0123456789"), state, upstream=tuple(upstream), dynamic_key=key)


def graph_of(*nodes: TaskNode, state: str = "Running") -> RunGraph:
    graph = RunGraph("flow-1", "etl", state)
    for i, n in enumerate(nodes):
        n.order = i
        graph.nodes[n.id] = n
    return graph


def live_task(id: str, state: str = "Running", *, flow_run_id: str = "flow-1", upstream=(),
              name: str = "work", key: int | None = None, error: str | None = None) -> SimpleNamespace:
    return SimpleNamespace(id=id, flow_run_id=flow_run_id, task_name=name, dynamic_key=key,
                           state=State(state, error), upstream=list(upstream), start_time=100.0,
                           end_time=None if state in ("Running", "Pending") else 101.5, error=error)


# -- palette ---------------------------------------------------------------------------------


def test_every_engine_state_has_its_own_colour() -> None:
    assert set(STATE_COLOURS) == set(STATE_TYPES)
    assert len(set(STATE_COLOURS.values())) == len(STATE_COLOURS)
    assert UNKNOWN_COLOUR not in STATE_COLOURS.values()


@pytest.mark.parametrize(("state", "colour"), [
    ("Completed", "#2ca02c"), ("Failed", "#d62728"), ("Running", "#1f6fe5"),
    ("Crashed", "#7b1f62"), ("NoSuchState", UNKNOWN_COLOUR), (None, UNKNOWN_COLOUR),
])
def test_state_colour(state: str | None, colour: str) -> None:
    assert state_colour(state) == colour


@pytest.mark.parametrize(("counts", "headline"), [
    ({"Completed": 990, "Failed": 10}, "Failed"),
    ({"Completed": 5, "Running": 1, "Pending": 4}, "Running"),
    ({"Completed": 3, "Cached": 2}, "Completed"),
    ({"Cached": 2}, "Cached"),
    ({"Crashed": 1, "Failed": 1}, "Crashed"),
    ({"Weird": 2}, "Weird"),
])
def test_headline_state(counts: dict[str, int], headline: str) -> None:
    assert headline_state(counts) == headline


def test_counts_follow_the_palette_order_and_skip_zeros() -> None:
    assert list(ordered_counts({"Failed": 1, "Zzz": 2, "Completed": 3, "Running": 0})) == [
        "Completed", "Failed", "Zzz"]


# -- layers and layout -----------------------------------------------------------------------


@pytest.mark.parametrize(("nodes", "expected"), [
    ([node("a")], {"a": 0}),
    ([node("a"), node("b", "a"), node("c", "b")], {"a": 0, "b": 1, "c": 2}),
    # fan-out then fan-in
    ([node("s"), node("m1", "s"), node("m2", "s"), node("j", "m1", "m2")], {"s": 0, "m1": 1, "m2": 1, "j": 2}),
    # longest path wins: d hangs off both a (layer 0) and c (layer 2)
    ([node("a"), node("b", "a"), node("c", "b"), node("d", "a", "c")], {"a": 0, "b": 1, "c": 2, "d": 3}),
    # upstream outside the graph (another flow run's task) is ignored
    ([node("a", "elsewhere")], {"a": 0}),
    # a cycle (never recorded by the engine) is broken, not looped on
    ([node("a", "b"), node("b", "a")], {"b": 0, "a": 1}),
    # self edges are ignored
    ([node("a", "a")], {"a": 0}),
])
def test_layers(nodes: list[TaskNode], expected: dict[str, int]) -> None:
    assert layers(nodes) == expected


def test_a_long_chain_does_not_hit_the_recursion_limit() -> None:
    chain = [node("t0")] + [node(f"t{i}", f"t{i - 1}") for i in range(1, 5000)]
    assert layers(list(reversed(chain)))["t4999"] == 4999


@pytest.mark.parametrize(("nodes", "expected"), [
    ([node("a"), node("b", "a"), node("c", "b")], {"a": (0, 0), "b": (2.5, 0), "c": (5.0, 0)}),
    # one task's runs form a block; another task in the same layer stacks below it after a gap
    ([node("x1", name="x"), node("x2", name="x"), node("y1", name="y"), node("z1", "x1", name="z")],
     {"x1": (0, 0), "x2": (0, 1), "y1": (0, 2.6), "z1": (2.5, 0)}),
])
def test_layout_table(nodes: list[TaskNode], expected: dict[str, tuple[float, float]]) -> None:
    placed = layout(nodes)
    assert set(placed) == set(expected)
    for name, (x, y) in expected.items():
        assert placed[name] == (pytest.approx(x), pytest.approx(y)), name


def test_layout_is_stable_when_runs_are_added() -> None:
    first = [node("src"), *(node(f"m{i}", "src", name="m") for i in range(5))]
    before = layout(first)
    grown = first + [node(f"m{i}", "src", name="m") for i in range(5, 8)] + [node("join", "m0", "m7")]
    after = layout(grown)
    assert {k: after[k] for k in before} == before


def test_a_large_map_becomes_a_grid_and_the_next_layer_starts_after_it() -> None:
    nodes = [node("src")] + [node(f"m{i}", "src", name="m", key=i) for i in range(1000)] + [
        node("total", *(f"m{i}" for i in range(1000)))]
    positions = layout(nodes)
    grid = [positions[f"m{i}"] for i in range(1000)]
    assert max(y for _, y in grid) == ROWS_PER_COLUMN - 1
    columns = sorted({x for x, _ in grid})
    assert len(columns) == 1000 // ROWS_PER_COLUMN
    assert positions["total"][0] > columns[-1]
    assert len(set(grid)) == 1000  # no two runs on one spot


# -- building and updating the model ---------------------------------------------------------


def test_from_rows_reads_store_values() -> None:
    flow_run = {"id": "flow-1", "flow_name": "etl", "state": "Running", "pid": 42, "host": "h",
                "start_time": datetime(2026, 1, 1, 12, 0, 0), "end_time": None}
    t = datetime(2026, 1, 1, 12, 0, 1)
    rows = [  # newest first, as nbflow.task_runs() returns them
        {"id": "b", "task_name": "load", "state": "Failed", "start_time": t, "end_time": t,
         "error": "ValueError: <bad>", "upstream": ["a"], "dynamic_key": float("nan"),
         "created": datetime(2026, 1, 1, 12, 0, 1)},
        {"id": "a", "task_name": "extract", "state": "Completed", "start_time": t,
         "end_time": datetime(2026, 1, 1, 12, 0, 3), "error": float("nan"), "upstream": None,
         "dynamic_key": 3, "created": datetime(2026, 1, 1, 12, 0, 0)},
    ]
    graph = RunGraph.from_rows(flow_run, rows)
    utc_noon = datetime(2026, 1, 1, 12, tzinfo=timezone.utc).timestamp()
    assert graph.start == utc_noon  # naive store times are UTC, whatever the local zone
    assert (graph.pid, graph.host) == (42, "h")
    assert list(graph.nodes) == ["a", "b"]  # oldest first: first-seen order
    a, b = graph.nodes["a"], graph.nodes["b"]
    assert (a.label, a.error, a.duration()) == ("extract[3]", None, 2.0)
    assert (b.label, b.error, b.upstream) == ("load", "ValueError: <bad>", ("a",))
    assert graph.edges() == [("a", "b")]
    assert graph.counts() == {"Completed": 1, "Failed": 1}


def test_live_task_runs_update_the_model() -> None:
    graph = RunGraph("flow-1", "etl", "Running")
    assert graph.apply_task_run(live_task("a", "Pending"))
    structure = graph.structure_version
    assert graph.nodes["a"].state == "Pending"

    assert graph.apply_task_run(live_task("a", "Running"))
    assert graph.structure_version == structure  # a state change does not redo the layout
    assert graph.apply_task_run(live_task("b", "Running", upstream=["a"]))
    assert graph.structure_version > structure  # a new run does

    structure = graph.structure_version
    graph.apply_task_run(live_task("b", "Failed", upstream=["a", "a2"], error="KeyError: 'x'"))
    assert graph.structure_version > structure  # so do new edges
    assert graph.nodes["b"].error == "KeyError: 'x'"
    assert not graph.apply_task_run(live_task("c", flow_run_id="another-flow"))
    assert list(graph.nodes) == ["a", "b"]


def test_live_flow_run_updates_the_header_state() -> None:
    graph = RunGraph("flow-1")
    run = SimpleNamespace(id="flow-1", flow_name="etl", state=State("Completed"), start_time=1.0, end_time=3.0)
    assert graph.apply_flow_run(run) and graph.is_final
    assert (graph.flow_name, graph.start, graph.end) == ("etl", 1.0, 3.0)
    assert not graph.apply_flow_run(SimpleNamespace(id="subflow", flow_name="x", state=None,
                                                    start_time=None, end_time=None))


def test_time_span_reaches_now_while_something_runs() -> None:
    graph = graph_of(TaskNode("a", "a", "Running", start=10.0), state="Running")
    graph.start = 9.0
    assert graph.time_span(now=20.0) == (9.0, 20.0)
    graph.state, graph.nodes["a"].state, graph.nodes["a"].end, graph.end = "Completed", "Completed", 12.0, 13.0
    assert graph.time_span(now=20.0) == (9.0, 13.0)


# -- collapsing ------------------------------------------------------------------------------


def test_collapse_folds_a_large_map_into_one_node_with_a_breakdown() -> None:
    mapped = [TaskNode(f"m{i}", "fetch", "Failed" if i % 10 == 0 else "Completed", start=float(i),
                       end=float(i + 1), error="ValueError: x" if i % 10 == 0 else None,
                       upstream=("src",), dynamic_key=i) for i in range(120)]
    graph = graph_of(node("src"), *mapped, node("total", *(m.id for m in mapped)))
    display = collapse(graph, threshold=50)
    assert [d.label for d in display] == ["src", "fetch ×120", "total"]
    group = display[1]
    assert group.counts == {"Completed": 108, "Failed": 12}
    assert group.state == "Failed" and group.errors == 12 and group.error == "ValueError: x"
    assert (group.start, group.end) == (0.0, 120.0)
    assert group.upstream == ("src",)
    assert display[2].upstream == (group.id,)  # 120 edges become one


def test_collapse_keeps_small_groups_as_they_are() -> None:
    graph = graph_of(node("src"), *(node(f"m{i}", "src", name="m", key=i) for i in range(50)))
    display = collapse(graph, threshold=50)
    assert len(display) == 51 and not any(d.collapsed for d in display)
    assert display[1].label == "m[0]" and display[1].upstream == ("src",)


def test_runs_that_have_not_started_wait_in_their_tasks_layer() -> None:
    # The engine records edges when a run starts: pending map children have none yet.
    nodes = [node("src"), node("m0", "src", name="m", state="Running"),
             node("m1", name="m", state="Pending"), node("lone", name="lone", state="Pending")]
    positions = layout(nodes)
    assert positions["m1"][0] == positions["m0"][0] > positions["src"][0]
    assert positions["lone"][0] == positions["src"][0]  # no started sibling: stays first
