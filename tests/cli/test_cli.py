"""The `nbflow` command line: table layout and value formatting without I/O, the parser
in-process, and the real CLI as a subprocess against runs made by real flows."""

from __future__ import annotations

import datetime as dt
import io
import json
import os
import re
import shutil
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from nbflow.cli import formatting as fmt
from nbflow.cli.base import STATE_NAMES, state_name
from nbflow.cli.main import build_parser, main
from nbflow.cli.tables import clip, display_width, format_fields, format_table

REPO = Path(__file__).resolve().parents[2]


# -- tables ---------------------------------------------------------------------------------

def test_table_pads_columns_to_the_widest_cell_without_trailing_spaces() -> None:
    out = format_table(["NAME", "RUNS"], [["adder", "12"], ["a-much-longer-name", "3"]], right=[1])
    assert out.splitlines() == [
        "NAME                RUNS",
        "adder                 12",
        "a-much-longer-name     3",
    ]


def test_table_left_aligned_last_column_has_no_trailing_spaces() -> None:
    out = format_table(["A", "B"], [["x", "long value"], ["y", "v"]])
    assert out.splitlines() == ["A  B", "x  long value", "y  v"]


@pytest.mark.parametrize(("cell", "max_width", "expected"), [
    ("short", 10, "short"),
    ("exactly10!", 10, "exactly10!"),
    ("eleven chars", 10, "eleven ..."),
    ("line one\nline two", None, "line one line two"),
    ("tab\tand  spaces", None, "tab and spaces"),
])
def test_clip(cell: str, max_width: int | None, expected: str) -> None:
    assert clip(cell, max_width) == expected


def test_table_clips_cells_to_their_column_maximum() -> None:
    out = format_table(["ID", "ERROR"], [["1", "ValueError: " + "x" * 100]], max_widths={1: 20})
    assert out.splitlines()[1] == "1   ValueError: xxxxx..."
    assert display_width(out.splitlines()[1].split("   ", 1)[1]) == 20


def test_wide_characters_count_two_columns() -> None:
    assert display_width("日本") == 4
    assert display_width("e\u0301") == 1  # e + combining acute accent
    out = format_table(["NAME", "RUNS"], [["日本", "1"], ["abc", "2"]])
    first, second = out.splitlines()[1:]
    assert display_width(first[:first.index("1")]) == display_width(second[:second.index("2")])


def test_table_without_rows_is_the_header() -> None:
    assert format_table(["ID", "STATE"], []) == "ID  STATE"


def test_table_rejects_rows_of_the_wrong_length() -> None:
    with pytest.raises(ValueError, match="2 cells but there are 3 headers"):
        format_table(["A", "B", "C"], [["1", "2"]])


def test_fields_align_values_and_indent_continuation_lines() -> None:
    out = format_fields([("id", "abc"), ("state_message", "Traceback:\n  boom"), ("empty", "")])
    assert out.splitlines() == [
        "id:            abc",
        "state_message: Traceback:",
        "                 boom",
        "empty:",
    ]


# -- formatting -------------------------------------------------------------------------------

@pytest.fixture
def kolkata_time(monkeypatch: pytest.MonkeyPatch):
    """Local time zone UTC+05:30, so a missed UTC -> local conversion shows."""
    monkeypatch.setenv("TZ", "Asia/Kolkata")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


@pytest.mark.usefixtures("kolkata_time")
def test_times_are_stored_as_naive_utc_and_shown_in_local_time() -> None:
    naive_utc = dt.datetime(2024, 3, 1, 12, 0, 5, 123456)
    assert fmt.local_time(naive_utc) == "2024-03-01 17:30:05"
    assert fmt.clock_time(naive_utc) == "17:30:05.123"
    aware = dt.datetime(2024, 3, 1, 12, 0, 5, tzinfo=dt.timezone.utc)
    assert fmt.local_time(aware) == "2024-03-01 17:30:05"
    assert fmt.local_time(aware.timestamp()) == "2024-03-01 17:30:05"
    assert fmt.local_time("2024-03-01T12:00:05") == "2024-03-01 17:30:05"


@pytest.mark.parametrize("missing", [None, float("nan")])
def test_missing_values_print_as_a_dash(missing: object) -> None:
    assert fmt.local_time(missing) == "-"
    assert fmt.clock_time(missing) == "-"
    assert fmt.duration(missing) == "-"
    assert fmt.text(missing) == "-"


@pytest.mark.parametrize(("seconds", "expected"), [
    (0, "0.00s"), (0.4219, "0.42s"), (9.994, "9.99s"), (12.34, "12.3s"), (59.94, "59.9s"),
    (60, "1m 00s"), (245.4, "4m 05s"), (3599.4, "59m 59s"), (3600, "1h 00m"), (7380, "2h 03m"),
])
def test_duration(seconds: float, expected: str) -> None:
    assert fmt.duration(seconds) == expected


def test_text_and_jsonable_handle_pandas_and_numpy_values() -> None:
    import numpy as np
    import pandas as pd

    assert fmt.text(pd.NaT) == "-"
    assert fmt.text(np.int64(3)) == "3"
    assert fmt.text(1.5) == "1.5"
    assert fmt.text({"x": 1, "when": dt.datetime(2024, 1, 1)}).startswith('{"x": 1, "when": "2024-01-01T00:00:00+00:00"')
    assert fmt.jsonable({"t": pd.Timestamp("2024-01-01 10:00"), "n": np.float64("nan"), "i": np.int64(2),
                         "missing": pd.NaT, "nested": [np.bool_(True)]}) == {
        "t": "2024-01-01T10:00:00+00:00", "n": None, "i": 2, "missing": None, "nested": [True]}


# -- parser, in-process -----------------------------------------------------------------------

def _one_error_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert "Traceback" not in err
    assert lines[0].startswith("nbflow: error: ")
    return lines[0]


def test_bare_nbflow_prints_help_and_succeeds(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([]) == 0
    out = capsys.readouterr().out
    for command in ("version", "flow", "flow-run", "server"):
        assert command in out


def test_a_noun_without_a_verb_prints_its_help(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["flow-run"]) == 0
    out = capsys.readouterr().out
    assert "usage: nbflow flow-run" in out and "inspect" in out and "logs" in out


def test_help_exits_zero(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["flow-run", "ls", "--help"]) == 0
    assert "--flow-name" in capsys.readouterr().out
    assert main(["--version"]) == 0
    assert capsys.readouterr().out.startswith("nbflow ")


@pytest.mark.parametrize("raw", [name.upper() for name in STATE_NAMES.values()] + list(STATE_NAMES))
def test_state_names_are_case_insensitive(raw: str) -> None:
    assert state_name(raw) in STATE_NAMES.values()
    assert state_name(raw).lower() == raw.lower()
    assert build_parser().parse_args(["flow-run", "ls", "--state", raw]).state == state_name(raw)


def test_every_design_state_is_accepted() -> None:
    design = ("Scheduled Pending Running Completed Cached Failed Crashed Cancelled Retrying TimedOut "
              "Paused Suspended Cancelling AwaitingRetry Late AwaitingConcurrencySlot Submitting InfrastructurePending NotReady")  # the last five: Prefect's, for returned states
    assert sorted(STATE_NAMES.values()) == sorted(design.split())


@pytest.mark.parametrize(("argv", "names"), [
    (["flow-run", "ls", "--state", "Finished"], ["--state", "'Finished'", "Completed", "flow-run ls --help"]),
    (["flow-run", "ls", "--limit", "0"], ["--limit", "0", "flow-run ls --help"]),
    (["flow-run", "ls", "--limit", "-3"], ["--limit", "-3"]),
    (["flow-run", "ls", "--limit", "ten"], ["--limit", "'ten'"]),
    (["flow-run", "ls", "--bogus"], ["--bogus", "flow-run ls --help"]),
    (["flow-run", "inspect"], ["ID", "flow-run inspect --help"]),
    (["flow-run", "inspect", " "], ["empty"]),
    (["flow-run", "logs", "abcd", "--level", "LOUD"], ["--level", "'LOUD'"]),
    (["frobnicate"], ["frobnicate", "`nbflow --help`"]),
    (["server", "database", "reset", "--no"], ["--no", "server database reset --help"]),
])
def test_usage_errors_are_one_line_and_exit_2(argv: list[str], names: list[str],
                                             capsys: pytest.CaptureFixture[str]) -> None:
    assert main(argv) == 2
    captured = capsys.readouterr()
    line = _one_error_line(captured.err)
    assert line.endswith("--help`)"), line
    for name in names:
        assert name in line
    assert captured.out == ""


def test_version_in_process(capsys: pytest.CaptureFixture[str], nbflow_home: Path) -> None:
    from nbflow._version import __version__

    assert main(["version"]) == 0
    out = capsys.readouterr().out
    assert __version__ in out
    assert f"{sys.version_info.major}.{sys.version_info.minor}." in out
    assert "DuckDB version" in out
    assert str(nbflow_home / "nbflow.duckdb") in out


def test_unknown_run_in_process(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["flow-run", "inspect", "0123456789abcdef"]) == 1
    line = _one_error_line(capsys.readouterr().err)
    assert "'0123456789abcdef'" in line and "nbflow flow-run ls" in line


def test_short_unknown_prefix_says_how_long_a_prefix_must_be(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["flow-run", "logs", "ab"]) == 1
    line = _one_error_line(capsys.readouterr().err)
    assert "'ab'" in line and "at least 4 characters" in line


def test_empty_store_lists_say_so(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["flow", "ls"]) == 0
    assert "No flows" in capsys.readouterr().out
    assert main(["flow-run", "ls", "--state", "failed"]) == 0
    assert "No flow runs in state Failed" in capsys.readouterr().out


def test_store_errors_are_one_line(capsys: pytest.CaptureFixture[str], nbflow_home: Path) -> None:
    (nbflow_home / "nbflow.duckdb").write_bytes(b"this is not a database" * 100)
    assert main(["flow-run", "ls"]) == 1
    line = _one_error_line(capsys.readouterr().err)
    assert "nbflow.duckdb" in line and "reset" in line


def test_keyboard_interrupt_exits_130_quietly(monkeypatch: pytest.MonkeyPatch,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    import nbflow.api

    def interrupted(*args: object, **kwargs: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(nbflow.api, "runs", interrupted)
    assert main(["flow-run", "ls"]) == 130
    assert capsys.readouterr().err == ""


class _Terminal(io.StringIO):
    """A stdin that claims to be a terminal, holding the user's typed answer."""

    def isatty(self) -> bool:
        return True


def _make_store(home: Path) -> Path:
    from nbflow.store.backend import current_store

    current_store().query("SELECT 1")  # creates the file with its schema
    path = home / "nbflow.duckdb"
    assert path.exists()
    return path


@pytest.mark.parametrize(("typed", "code", "kept"), [
    ("y\n", 0, False), ("YES\n", 0, False), ("n\n", 1, True), ("\n", 1, True), ("", 1, True),
])
def test_reset_asks_on_a_terminal(typed: str, code: int, kept: bool, nbflow_home: Path,
                                  monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    path = _make_store(nbflow_home)
    monkeypatch.setattr(sys, "stdin", _Terminal(typed))
    assert main(["server", "database", "reset"]) == code
    captured = capsys.readouterr()
    assert f"Delete all runs in {path}? [y/N]" in captured.out
    assert path.exists() == kept
    if typed == "":
        assert "--yes" in _one_error_line(captured.err)


def test_reset_without_a_store_has_nothing_to_do(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["server", "database", "reset", "--yes"]) == 0
    assert "nothing to delete" in capsys.readouterr().out


# -- the real CLI against real runs -----------------------------------------------------------

FLOWS_SCRIPT = textwrap.dedent("""
    import json

    import nbflow
    from nbflow import flow, get_run_logger, task

    @task
    def double(x: int) -> int:
        return 2 * x

    @flow(name="adder")
    def adder(x: int = 1) -> int:
        get_run_logger().info("adding %s", x)
        return double(x) + 1

    @flow(name="breaker")
    def breaker() -> None:
        get_run_logger().info("about to break on purpose")
        raise ValueError("boom on purpose")

    adder(1)
    adder(2)
    try:
        breaker()
    except ValueError:
        pass
    nbflow.flush()
    runs = nbflow.runs()
    print(json.dumps(runs[["id", "flow_name", "state"]].to_dict("records")))
""")


def _env(home: Path) -> dict[str, str]:
    env = dict(os.environ)
    env["NBFLOW_HOME"] = str(home)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    return env


def nbflow_cli(home: Path, *args: str, stdin: int | None = subprocess.DEVNULL) -> subprocess.CompletedProcess[str]:
    """Run `python -m nbflow ARGS` with NBFLOW_HOME=home."""
    return subprocess.run([sys.executable, "-m", "nbflow", *args], env=_env(home), cwd=REPO, stdin=stdin,
                          capture_output=True, text=True, timeout=120)


@pytest.fixture(scope="module")
def runs_home(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[dict[str, str]]]:
    """An NBFLOW_HOME holding two Completed `adder` runs and one Failed `breaker` run."""
    home = tmp_path_factory.mktemp("cli-runs")
    made = subprocess.run([sys.executable, "-c", FLOWS_SCRIPT], env=_env(home), cwd=REPO,
                          capture_output=True, text=True, timeout=120)
    assert made.returncode == 0, made.stderr
    runs = json.loads(made.stdout.strip().splitlines()[-1])
    assert sorted((r["flow_name"], r["state"]) for r in runs) == [
        ("adder", "Completed"), ("adder", "Completed"), ("breaker", "Failed")]
    return home, runs


def _run_of(runs: list[dict[str, str]], flow_name: str) -> str:
    return next(r["id"] for r in runs if r["flow_name"] == flow_name)


def _assert_one_line_failure(result: subprocess.CompletedProcess[str], code: int) -> str:
    assert result.returncode == code, (result.stdout, result.stderr)
    return _one_error_line(result.stderr)


def test_help_and_version_do_not_import_heavy_libraries(tmp_path: Path) -> None:
    check = ("import sys\n"
             "from nbflow.cli.main import main\n"
             "assert main(['--help']) == 0 and main(['version']) == 0\n"
             "heavy = [m for m in ('pandas', 'duckdb', 'pyarrow', 'numpy') if m in sys.modules]\n"
             "assert not heavy, heavy\n")
    result = subprocess.run([sys.executable, "-c", check], env=_env(tmp_path), cwd=REPO,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr


def test_cli_version(runs_home: tuple[Path, list]) -> None:
    home, _ = runs_home
    result = nbflow_cli(home, "version")
    assert result.returncode == 0, result.stderr
    from nbflow._version import __version__

    assert __version__ in result.stdout
    assert str(home / "nbflow.duckdb") in result.stdout
    assert "DuckDB version" in result.stdout


def test_cli_flow_ls(runs_home: tuple[Path, list]) -> None:
    home, _ = runs_home
    result = nbflow_cli(home, "flow", "ls")
    assert result.returncode == 0, result.stderr
    header, *rows = result.stdout.splitlines()
    assert header.split() == ["NAME", "RUNS", "LAST", "RUN", "START", "LAST", "STATE"]
    by_name = {row.split()[0]: row.split() for row in rows}
    assert by_name["adder"][1] == "2" and by_name["adder"][-1] == "Completed"
    assert by_name["breaker"][1] == "1" and by_name["breaker"][-1] == "Failed"


def _listed(result: subprocess.CompletedProcess[str]) -> list[list[str]]:
    assert result.returncode == 0, result.stderr
    header, *rows = result.stdout.splitlines()
    assert header.split() == ["ID", "FLOW", "STATE", "START", "DURATION"]
    return [row.split() for row in rows]


def test_cli_flow_run_ls_and_its_filters(runs_home: tuple[Path, list]) -> None:
    home, runs = runs_home
    everything = _listed(nbflow_cli(home, "flow-run", "ls"))
    assert sorted(row[0] for row in everything) == sorted(r["id"] for r in runs)
    assert all(len(row[0]) == 32 for row in everything)  # full ids
    assert [row[0] for row in everything] == [r["id"] for r in runs]  # newest first, as the API

    adders = _listed(nbflow_cli(home, "flow-run", "ls", "--flow-name", "adder"))
    assert [row[1] for row in adders] == ["adder", "adder"]

    failed = _listed(nbflow_cli(home, "flow-run", "ls", "--state", "failed"))
    assert [(row[0], row[1], row[2]) for row in failed] == [(_run_of(runs, "breaker"), "breaker", "Failed")]

    assert len(_listed(nbflow_cli(home, "flow-run", "ls", "--limit", "1"))) == 1

    both = _listed(nbflow_cli(home, "flow-run", "ls", "--flow-name", "adder", "--state", "COMPLETED",
                              "--limit", "5"))
    assert len(both) == 2

    none = nbflow_cli(home, "flow-run", "ls", "--flow-name", "no-such-flow")
    assert none.returncode == 0 and "No flow runs of flow 'no-such-flow'" in none.stdout


@pytest.mark.parametrize("args", [("--state", "Exploded"), ("--limit", "0"), ("--limit", "many")])
def test_cli_flow_run_ls_bad_options(runs_home: tuple[Path, list], args: tuple[str, str]) -> None:
    home, _ = runs_home
    line = _assert_one_line_failure(nbflow_cli(home, "flow-run", "ls", *args), 2)
    assert args[0] in line and "(see `nbflow flow-run ls --help`)" in line


def test_cli_inspect_by_full_id_and_by_prefix(runs_home: tuple[Path, list]) -> None:
    home, runs = runs_home
    run_id = _run_of(runs, "breaker")
    full = nbflow_cli(home, "flow-run", "inspect", run_id)
    assert full.returncode == 0, full.stderr
    assert run_id in full.stdout and "breaker" in full.stdout and "Failed" in full.stdout
    assert "boom on purpose" in full.stdout
    assert nbflow_cli(home, "flow-run", "inspect", run_id[:8]).stdout == full.stdout

    adder = _run_of(runs, "adder")
    shown = nbflow_cli(home, "flow-run", "inspect", adder[:10])
    assert shown.returncode == 0, shown.stderr
    assert "Task runs (1):" in shown.stdout
    task_header = shown.stdout.split("Task runs (1):")[1].splitlines()[1]
    assert task_header.split() == ["ID", "TASK", "STATE", "DURATION", "ERROR"]
    assert "double" in shown.stdout and "Completed" in shown.stdout


def test_cli_inspect_json(runs_home: tuple[Path, list]) -> None:
    home, runs = runs_home
    run_id = _run_of(runs, "adder")
    result = nbflow_cli(home, "flow-run", "inspect", run_id, "--json")
    assert result.returncode == 0, result.stderr
    run = json.loads(result.stdout)
    assert run["id"] == run_id and run["flow_name"] == "adder" and run["state"] == "Completed"
    assert run["parameters"] in ({"x": 1}, {"x": 2})
    assert dt.datetime.fromisoformat(run["start_time"]).tzinfo is not None
    assert [t["task_name"] for t in run["task_runs"]] == ["double"]


def test_cli_inspect_unknown_id(runs_home: tuple[Path, list]) -> None:
    home, _ = runs_home
    line = _assert_one_line_failure(nbflow_cli(home, "flow-run", "inspect", "ffffffffffff"), 1)
    assert "'ffffffffffff'" in line and "`nbflow flow-run ls`" in line
    line = _assert_one_line_failure(nbflow_cli(home, "flow-run", "logs", "ffffffffffff"), 1)
    assert "'ffffffffffff'" in line


def test_cli_logs(runs_home: tuple[Path, list]) -> None:
    home, runs = runs_home
    run_id = _run_of(runs, "breaker")
    result = nbflow_cli(home, "flow-run", "logs", run_id[:8])
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    logged = [line for line in lines if "about to break on purpose" in line]
    assert len(logged) == 1
    clock, level, message = (part.strip() for part in logged[0].split(" | ", 2))
    dt.datetime.strptime(clock, "%H:%M:%S.%f")
    assert (level, message) == ("INFO", "about to break on purpose")

    errors_only = nbflow_cli(home, "flow-run", "logs", run_id, "--level", "error")
    assert errors_only.returncode == 0, errors_only.stderr
    assert "about to break on purpose" not in errors_only.stdout


def test_in_process_against_real_runs(runs_home: tuple[Path, list], monkeypatch: pytest.MonkeyPatch,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    home, runs = runs_home
    monkeypatch.setenv("NBFLOW_HOME", str(home))
    assert main(["flow-run", "ls", "--state", "COMPLETED", "--flow-name", "adder"]) == 0
    rows = capsys.readouterr().out.splitlines()[1:]
    assert sorted(row.split()[0] for row in rows) == sorted(r["id"] for r in runs if r["flow_name"] == "adder")
    breaker = _run_of(runs, "breaker")
    assert main(["flow-run", "inspect", breaker[:6]]) == 0
    out = capsys.readouterr().out
    assert re.search(rf"^id: +{breaker}$", out, re.M) and re.search(r"^state: +Failed$", out, re.M)


def test_cli_database_reset_needs_confirmation(runs_home: tuple[Path, list], tmp_path: Path) -> None:
    source, runs = runs_home
    home = tmp_path / "home"
    shutil.copytree(source, home)
    db = home / "nbflow.duckdb"

    refused = nbflow_cli(home, "server", "database", "reset")  # stdin is /dev/null: nobody to ask
    line = _assert_one_line_failure(refused, 1)
    assert "--yes" in line and str(db) in line
    closed = nbflow_cli(home, "server", "database", "reset", stdin=subprocess.PIPE)  # closed at once
    _assert_one_line_failure(closed, 1)
    assert db.exists()
    assert len(_listed(nbflow_cli(home, "flow-run", "ls"))) == len(runs)

    deleted = nbflow_cli(home, "server", "database", "reset", "--yes")
    assert deleted.returncode == 0, deleted.stderr
    assert str(db) in deleted.stdout and "Deleted" in deleted.stdout
    assert not db.exists()
    assert "No flow runs yet" in nbflow_cli(home, "flow-run", "ls").stdout
