"""conftest for running Prefect's own test files against nbflow (see benchmarks/prefect_fidelity.py).

Copied next to the Prefect test files in a temporary directory. It
- installs the `prefect` -> `nbflow` import mapping (shim.py) before any test file is imported;
- deselects the tests the harness classified as not applicable (FIDELITY_EXCLUDE, a JSON file);
- provides only generic fixtures that make sense without a server (caplog on nbflow's loggers,
  a warnings filter); async tests and fixtures run on asyncio through anyio's pytest plugin;
- appends one JSON line per test outcome to FIDELITY_RESULTS.
"""

from __future__ import annotations

import json
import logging
import os
import warnings

import pytest

import shim

shim.install()

_EXCLUDE: dict[str, str] = {}
if os.environ.get("FIDELITY_EXCLUDE"):
    with open(os.environ["FIDELITY_EXCLUDE"]) as fh:
        _EXCLUDE = json.load(fh)
_RESULTS = os.environ.get("FIDELITY_RESULTS")
# nodeids already done in an earlier run of the same file (the harness resumes after a test
# killed the whole pytest process): deselected without a record
_DONE: set[str] = set()
if os.environ.get("FIDELITY_DONE"):
    with open(os.environ["FIDELITY_DONE"]) as fh:
        _DONE = set(json.load(fh))


def _write(record: dict) -> None:
    if _RESULTS:
        with open(_RESULTS, "a") as fh:
            fh.write(json.dumps(record) + "\n")


def _key(nodeid: str) -> str:
    """`tests/test_x.py::C::test_y[a-b]` -> `test_x.py::C::test_y` (what the static analysis names)."""
    base = nodeid.split("[", 1)[0]
    return base.split("/")[-1] if "/" in base.split("::")[0] else base


def pytest_configure(config: pytest.Config) -> None:
    for marker in ("service(arg)", "enable_api_log_handler", "clear_db", "windows", "unix", "asyncio",
                   "skip_on_windows", "flaky"):
        config.addinivalue_line("markers", f"{marker}: Prefect test-suite marker")
    warnings.simplefilter("default")


def pytest_collectstart(collector: pytest.Collector) -> None:
    shim.COLLECTING[0] = True


def pytest_collectreport(report: pytest.CollectReport) -> None:
    if report.failed:
        _write({"nodeid": report.nodeid, "outcome": "collect-error", "when": "collect",
                "error": _first_line(report), "longrepr": str(report.longrepr)[-3000:]})


@pytest.hookimpl(trylast=True)  # after -k / -m have deselected theirs
def pytest_collection_modifyitems(session: pytest.Session, config: pytest.Config, items: list) -> None:
    shim.COLLECTING[0] = False
    keep, drop = [], []
    for item in items:
        if item.nodeid in _DONE:
            drop.append(item)
            continue
        reason = _EXCLUDE.get(_key(item.nodeid))
        (drop if reason else keep).append(item)
        if reason:
            _write({"nodeid": item.nodeid, "outcome": "excluded", "reason": reason})
    if drop:
        config.hook.pytest_deselected(items=drop)
        items[:] = keep
    for item in keep:
        _write({"nodeid": item.nodeid, "outcome": "collected"})


def pytest_collection_finish(session: pytest.Session) -> None:
    shim.COLLECTING[0] = False


def _first_line(report: object) -> str:
    longrepr = getattr(report, "longrepr", None)
    crash = getattr(longrepr, "reprcrash", None)
    if crash is not None and getattr(crash, "message", None):
        lines = [line.strip() for line in crash.message.strip().splitlines() if line.strip()]
        if not lines:
            return "(empty message)"
        if lines[0].startswith(("AssertionError: Regex pattern did not match", "Regex pattern did not match")):
            return " ".join(lines)[:400]  # with the expected regex and the actual message
        return lines[0][:400]
    if isinstance(longrepr, tuple) and len(longrepr) == 3:  # skip: (path, line, reason)
        return str(longrepr[2])[:400]
    text = str(longrepr or "").strip().splitlines()
    errors = [line for line in text if line.startswith("E ")]
    return (errors[0][1:].strip() if errors else (text[-1] if text else ""))[:400]


def pytest_runtest_logstart(nodeid: str, location: object) -> None:
    _write({"nodeid": nodeid, "outcome": "started"})


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    _write({"nodeid": "", "outcome": "session-finished", "exitstatus": int(exitstatus)})


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if report.when == "call" or report.failed or report.skipped:
        if report.when != "call" and report.passed:
            return
        if report.passed:
            outcome = "passed"
        elif report.skipped:
            outcome = "xfailed" if hasattr(report, "wasxfail") else "skipped"
        else:
            outcome = "failed"
        record = {"nodeid": report.nodeid, "outcome": outcome, "when": report.when,
                  "duration": round(report.duration, 3)}
        if outcome != "passed":
            record["error"] = _first_line(report)
            if outcome == "failed":
                record["longrepr"] = str(report.longrepr)[-2000:]
        _write(record)


@pytest.fixture(scope="session")
def anyio_backend() -> str:
    """Prefect's suite runs async tests on asyncio (pytest-asyncio); anyio's plugin does it here."""
    return "asyncio"


@pytest.fixture
def caplog(caplog: pytest.LogCaptureFixture):
    """Like Prefect's caplog override: also capture the orchestrator's own loggers at INFO."""
    caplog.set_level(logging.INFO)
    logger = logging.getLogger("nbflow")
    logger.addHandler(caplog.handler)
    try:
        yield caplog
    finally:
        logger.removeHandler(caplog.handler)


@pytest.fixture
def ignore_prefect_deprecation_warnings():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        yield


@pytest.fixture
def tests_dir():
    from pathlib import Path

    return Path(__file__).parent
