"""%%task and %nbflow in a real IPython kernel: tracked cells, caching across restarts, bad input."""

from __future__ import annotations

import re
from pathlib import Path

import nbflow
from kernel import error_of, outputs_text, run_notebook

LOAD = "%load_ext nbflow"


def test_task_cell_is_a_tracked_task_run_in_the_session_flow_run(tmp_path: Path) -> None:
    nb = run_notebook([LOAD, "%%task load\nrows = list(range(5))\nprint('loaded', len(rows))",
                       "%%task\ntotal = sum(rows)\ntotal"], tmp_path,
                      env={"JPY_SESSION_NAME": str(tmp_path / "sales report.ipynb")})
    assert "loaded 5" in outputs_text(nb.cells[1])
    runs = nbflow.runs()
    assert runs.iloc[0]["flow_name"] == "sales report"
    assert runs.iloc[0]["state"] == "Completed"  # the kernel shut down cleanly
    tasks = nbflow.task_runs(runs.iloc[0]["id"]).set_index("task_name")
    assert set(tasks.index) == {"load", "cell[total]"}
    assert set(tasks["state"]) == {"Completed"}
    assert tasks.loc["cell[total]", "upstream"] == [tasks.loc["load", "id"]]  # the data edge
    assert "10" in outputs_text(nb.cells[2])  # the last expression is shown, as in a plain cell
    lines = nbflow.logs(tasks.loc["load", "id"])
    printed = lines[lines["logger"] == "nbflow.cell.stdout"]
    assert printed["message"].tolist() == ["loaded 5"]
    assert "Finished in state Completed()" in lines["message"].tolist()


def test_cached_cell_is_restored_across_kernel_restarts(tmp_path: Path) -> None:
    counter = tmp_path / "runs.txt"
    cells = [
        LOAD,
        "n = 3",
        "def helper(x):\n    return x * 10",
        f"%%task --cache\nopen({str(counter)!r}, 'a').write('x')\nresult = [helper(i) for i in range(n)]\n"
        "print('computed', result)\nfrom IPython.display import HTML\ndisplay(HTML('<b>shown</b>'))",
        "result",
    ]
    first = run_notebook(cells, tmp_path)
    second = run_notebook(cells, tmp_path)
    assert counter.read_text() == "x"  # the second kernel did not execute the cell
    for nb in (first, second):
        shown = outputs_text(nb.cells[3])
        assert "computed [0, 10, 20]" in shown and "<b>shown</b>" in shown
        assert "[0, 10, 20]" in outputs_text(nb.cells[4])
    states = nbflow.sql("select state from task_runs order by created")["state"].tolist()
    assert states == ["Completed", "Cached"]


def test_changed_input_or_called_function_invalidates_the_cache(tmp_path: Path) -> None:
    counter = tmp_path / "runs.txt"
    body = f"%%task --cache\nopen({str(counter)!r}, 'a').write('x')\nout = helper(n)"
    run_notebook([LOAD, "n = 1", "def helper(x):\n    return x + 1", body], tmp_path)
    run_notebook([LOAD, "n = 2", "def helper(x):\n    return x + 1", body], tmp_path)
    run_notebook([LOAD, "n = 2", "def helper(x):\n    return x + 2", body], tmp_path)
    run_notebook([LOAD, "n = 2", "def helper(x):\n    # a comment does not matter\n    return x + 2", body],
                 tmp_path)
    assert counter.read_text() == "xxx"


def test_dataframe_outputs_round_trip_through_parquet(tmp_path: Path) -> None:
    cells = [LOAD, "import pandas as pd",
             "%%task --cache 1h frame\ndf = pd.DataFrame({'a': [1, 2], 'b': ['x', 'y']})",
             "print(df.to_dict('list'), type(df).__name__)"]
    run_notebook(cells, tmp_path)
    nb = run_notebook(cells, tmp_path)
    assert "{'a': [1, 2], 'b': ['x', 'y']} DataFrame" in outputs_text(nb.cells[3])
    paths = list((Path(nbflow.settings.home()) / "results").rglob("*.parquet"))
    assert paths, "the DataFrame output was not stored as Parquet"


def test_mutating_an_input_in_place_is_detected_and_not_cached(tmp_path: Path) -> None:
    cells = [LOAD, "data = [3, 1, 2]", "%%task --cache\ndata.sort()\nfirst = data[0]"]
    nb = run_notebook(cells, tmp_path)
    assert "changed its input(s) 'data' in place" in outputs_text(nb.cells[2])
    run_notebook(cells, tmp_path)
    assert set(nbflow.task_runs()["state"]) == {"Completed"}


def test_unpicklable_output_runs_says_why_and_is_never_a_false_hit(tmp_path: Path) -> None:
    cells = [LOAD, "%%task --cache\nimport threading\nlock = threading.Lock()\nvalue = 1"]
    first = run_notebook(cells, tmp_path)
    run_notebook(cells, tmp_path)
    assert "not cached" in outputs_text(first.cells[1]).lower() or \
        any("not cached" in m.lower() for m in nbflow.sql("select message from logs")["message"])
    assert set(nbflow.task_runs()["state"]) == {"Completed"}


def test_failing_cell_shows_the_users_traceback_and_is_recorded(tmp_path: Path) -> None:
    nb = run_notebook([LOAD, "%%task flaky --retries 1\ndef inner():\n    raise ValueError('bad row 7')\ninner()"],
                      tmp_path, allow_errors=True)
    error = error_of(nb.cells[1])
    assert error["ename"] == "ValueError" and error["evalue"] == "bad row 7"
    text = re.sub(r"\x1b\[[0-9;]*m", "", "\n".join(error["traceback"]))
    assert "inner()" in text and "bad row 7" in text and "nbflow" not in text.replace("%load_ext nbflow", "")
    task = nbflow.task_runs().iloc[0]
    assert task["state"] == "Failed" and task["run_count"] == 2 and "bad row 7" in task["error"]
    assert nbflow.runs().iloc[0]["state"] == "Failed"


def test_timeout_stops_a_hanging_cell(tmp_path: Path) -> None:
    nb = run_notebook([LOAD, "%%task --timeout 0.5\nimport time\ntime.sleep(30)", "print('next cell runs')"],
                      tmp_path, allow_errors=True)
    assert error_of(nb.cells[1])["ename"] in ("TimedOutError", "TaskTimedOut")
    assert "next cell runs" in outputs_text(nb.cells[2])
    assert nbflow.task_runs().iloc[0]["state"] == "TimedOut"


def test_bad_usage_raises_usage_error_with_the_usage_line(tmp_path: Path) -> None:
    nb = run_notebook([LOAD, "%%task --retries -1\nx = 1", "%%task --bogus\nx = 1", "%%task --cache soon x\nx = 1",
                       "%nbflow graph 0123456789abcdef", "%nbflow frobnicate", "%%task\nx = = 1"],
                      tmp_path, allow_errors=True)
    # IPython shows a UsageError as one message on stderr (no traceback) and fails the cell.
    shown = [outputs_text(nb.cells[i]) for i in range(7)]
    for index in (1, 2, 3, 4, 5):
        assert "UsageError" in shown[index], (index, shown[index])
        assert "Traceback" not in shown[index]
    assert "--retries must be 0 or more" in shown[1] and "usage: %%task" in shown[1]
    assert "--bogus" in shown[2]
    assert "--cache takes a duration" in shown[3]
    assert "No flow run" in shown[4]
    assert "Unknown %nbflow command 'frobnicate'" in shown[5] and "usage: %nbflow runs" in shown[5]
    assert error_of(nb.cells[6])["ename"] == "SyntaxError"
    assert nbflow.task_runs().empty  # nothing half-recorded for refused cells


def test_nbflow_runs_sql_and_cache_clear(tmp_path: Path) -> None:
    counter = tmp_path / "runs.txt"
    cells = [LOAD, f"%%task --cache\nopen({str(counter)!r}, 'a').write('x')\ny = 1",
             "%nbflow runs", "%nbflow sql select count(*) as n from task_runs", "%nbflow cache clear",
             f"%%task --cache\nopen({str(counter)!r}, 'a').write('x')\ny = 1"]
    nb = run_notebook(cells, tmp_path)
    assert "flow" in outputs_text(nb.cells[2]) and "Running" in outputs_text(nb.cells[2])  # its own run
    assert "Removed 1 cache entry" in outputs_text(nb.cells[4])
    assert counter.read_text() == "xx"


def test_nbflow_run_reruns_stale_cells_downstream_of_a_change(tmp_path: Path) -> None:
    counter = tmp_path / "runs.txt"
    cells = [LOAD, "%%task source\nbase = 1",
             f"%%task middle\nopen({str(counter)!r}, 'a').write('m')\ndoubled = base * 2",
             f"%%task other\nopen({str(counter)!r}, 'a').write('o')\nunrelated = 5",
             "%nbflow run",
             "base = 10",
             "%nbflow run", "print(doubled)"]
    nb = run_notebook(cells, tmp_path)
    assert "All task cells are up to date" in outputs_text(nb.cells[4])
    assert "Re-running" in outputs_text(nb.cells[6]) and "middle" in outputs_text(nb.cells[6])
    assert "20" in outputs_text(nb.cells[7])
    assert counter.read_text() == "mom"


def test_a_flow_run_record_displays_its_run_graph(tmp_path: Path) -> None:
    nb = run_notebook([LOAD, "import nbflow\nfrom nbflow import flow, task\n@task\ndef one():\n    return 1\n"
                             "@flow\ndef shown():\n    return one()\nshown()",
                       "nbflow.flow_run(nbflow.runs(flow_name='shown').iloc[0]['id'])"], tmp_path)
    data = [o for o in nb.cells[2]["outputs"] if o["output_type"] == "execute_result"][0]["data"]
    assert "application/vnd.jupyter.widget-view+json" in data
    assert "one" in data["text/html"] and "<svg" in data["text/html"]
