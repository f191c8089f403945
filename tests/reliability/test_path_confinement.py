"""Paths are confined to the allowed roots: a deployment's notebook or flow file, and the output
notebook the dashboard shows, must lie under the server's root dir, NBFLOW_HOME or a directory
added with NBFLOW_ALLOWED_ROOTS, once `..` and symlinks are resolved. Checked when a deployment
is made or changed, again when a worker runs it, and when an output notebook is served."""

from __future__ import annotations

import os
import secrets
import shutil
import time
import uuid
from pathlib import Path

import pytest

from deployment_helpers import FAST, wait_for, write_flow_file, write_notebook
from live_server import start_server, stop_server

from nbflow.store.records import FLOW_RUN_COLUMNS

SECRET_CELL = "open(MARKER, 'w').write('the outside notebook ran')"


@pytest.fixture(scope="module")
def layout(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A project (the server's root dir), a home, and a directory outside both, with links out."""
    base = tmp_path_factory.mktemp("confine")
    project, outside, home = base / "project", base / "outside", base / "home"
    for directory in (project, outside, home):
        directory.mkdir()
    marker = outside / "ran.txt"
    write_notebook(project / "report.ipynb", "n = 1", "print('report', n)")
    write_notebook(outside / "secret.ipynb", f"MARKER = {str(marker)!r}", SECRET_CELL, "print('SECRET-CONTENT')")
    write_flow_file(project / "flows.py", """
        from nbflow import flow

        @flow
        def hello(n: int = 1) -> int:
            return n
    """)
    write_flow_file(outside / "evil.py", """
        from nbflow import flow

        @flow
        def evil() -> None:
            pass
    """)
    (project / "link.ipynb").symlink_to(outside / "secret.ipynb")
    (project / "linkdir").symlink_to(outside, target_is_directory=True)
    (project / "evil.py").symlink_to(outside / "evil.py")
    return {"base": base, "project": project, "outside": outside, "home": home, "marker": marker}


@pytest.fixture(scope="module")
def server(layout):
    """`nbflow server start` run in the project directory, with no extra roots."""
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(layout["project"])  # the server's root dir is the directory it starts in
        live = start_server(layout["home"], layout["home"] / "server.log", secrets.token_hex(16),
                            extra_env={**FAST, "NBFLOW_ALLOWED_ROOTS": ""})
    try:
        yield live
    finally:
        stop_server(live)


def _refused(status: int, answer: dict, field: str, layout: dict) -> None:
    assert status == 422, answer
    assert answer["field"] == field, answer
    message = answer["message"]
    assert "outside the directories" in message and "NBFLOW_ALLOWED_ROOTS" in message, message
    assert str(layout["project"]) in message and str(layout["home"]) in message, message  # the roots, named


@pytest.mark.parametrize("field, target", [
    ("notebook", "../outside/secret.ipynb"),  # relative: resolved against the server's root dir
    ("notebook", "{project}/../outside/secret.ipynb"),
    ("notebook", "{outside}/secret.ipynb"),
    ("notebook", "link.ipynb"),  # a symlink in the project pointing out
    ("notebook", "linkdir/secret.ipynb"),  # through a symlinked directory
    ("notebook", "/etc/nbflow-does-not-exist.ipynb"),  # refused as outside: says nothing of existence
    ("entrypoint", "{outside}/evil.py:evil"),
    ("entrypoint", "../outside/evil.py:evil"),
    ("entrypoint", "evil.py:evil"),  # a symlinked file
], ids=["dotdot", "abs-dotdot", "absolute", "symlink", "symlinked-dir", "missing-outside", "entry-absolute",
        "entry-dotdot", "entry-symlink"])
def test_a_deployment_outside_the_roots_is_refused(server, layout, field, target) -> None:
    body = {"name": f"out-{uuid.uuid4().hex[:8]}", field: target.format(**{k: str(v) for k, v in layout.items()})}
    status, answer = server.request("POST", "deployments", body)
    _refused(status, answer, field, layout)
    assert "No notebook" not in answer["message"]
    assert server.request("GET", f"deployments/{body['name']}")[0] == 404


@pytest.mark.parametrize("field, target, words", [
    ("notebook", "nul\x00.ipynb", "NUL character"),  # refused with the body's other checks
    ("notebook", "~nbflow-no-such-user/x.ipynb", "not a usable path"),
    ("notebook", "x" * 300 + ".ipynb", "No notebook at"),  # a name too long for the file system
    ("entrypoint", "nul\x00.py:f", "NUL character"),
    ("entrypoint", "y" * 300 + ".py:f", "there is no file"),
], ids=["nul", "no-such-user", "too-long", "entry-nul", "entry-too-long"])
def test_unusable_paths_get_a_422_naming_the_field(server, field, target, words) -> None:
    status, answer = server.request("POST", "deployments", {"name": "unusable", field: target})
    assert status == 422 and answer["field"] == field and words in answer["message"], answer
    if words not in ("not a usable path", "NUL character"):
        return
    run_id = _scheduled_run(server)
    status, answer = server.request("POST", f"flow_runs/{run_id}/state",
                                    {"state": "Running", "output_notebook": target})
    assert status == 422 and answer["field"] == "output_notebook", answer


def test_a_patch_cannot_move_a_deployment_outside_the_roots(server, layout) -> None:
    status, created = server.request("POST", "deployments", {"name": "patched", "notebook": "report.ipynb",
                                                             "work_pool": "nobody"})
    assert status == 201, created
    status, answer = server.request("PATCH", "deployments/patched", {"notebook": "../outside/secret.ipynb"})
    _refused(status, answer, "notebook", layout)
    assert server.request("GET", "deployments/patched")[1]["notebook"] == str(layout["project"] / "report.ipynb")


def test_files_inside_the_roots_deploy_and_run(server, layout) -> None:
    status, flow = server.request("POST", "deployments", {"name": "inside-flow", "entrypoint": "flows.py:hello"})
    assert status == 201, flow
    assert flow["entrypoint"] == f"{layout['project'] / 'flows.py'}:hello"  # relative to the root dir
    status, notebook = server.request("POST", "deployments", {"name": "inside-nb", "notebook": "report.ipynb"})
    assert status == 201, notebook
    assert notebook["notebook"] == str(layout["project"] / "report.ipynb")
    status, run = server.request("POST", "deployments/inside-nb/runs", {})
    assert status == 201, run
    done = wait_for(server, run["id"], timeout=120)
    assert done["state"] == "Completed", done
    assert Path(done["output_notebook"]).is_relative_to(layout["home"] / "runs")
    status, page = server.request("GET", f"flow_runs/{run['id']}/output_notebook")
    assert status == 200 and b"report" in page


def test_a_notebook_replaced_by_a_link_out_after_deploying_is_not_run(server, layout) -> None:
    swapped = layout["project"] / "swapped.ipynb"
    write_notebook(swapped, "n = 1", "print(n)")
    status, created = server.request("POST", "deployments", {"name": "swapped", "notebook": "swapped.ipynb"})
    assert status == 201, created
    swapped.unlink()
    swapped.symlink_to(layout["outside"] / "secret.ipynb")
    status, run = server.request("POST", "deployments/swapped/runs", {})
    assert status == 201, run
    done = wait_for(server, run["id"], timeout=60)
    assert done["state"] == "Failed", done
    assert "outside the directories" in done["state_message"], done
    assert not layout["marker"].exists(), "the notebook outside the roots was executed"


def _scheduled_run(server) -> str:
    """A deployment run no worker takes (its pool has none), for workers' state reports."""
    name = f"idle-{uuid.uuid4().hex[:8]}"
    status, _ = server.request("POST", "deployments", {"name": name, "notebook": "report.ipynb",
                                                       "work_pool": "nobody"})
    assert status == 201
    status, run = server.request("POST", f"deployments/{name}/runs", {})
    assert status == 201, run
    return run["id"]


@pytest.mark.parametrize("target", ["{outside}/secret.ipynb", "../outside/secret.ipynb",
                                    "{project}/link.ipynb"], ids=["absolute", "dotdot", "symlink"])
def test_a_state_report_cannot_point_the_output_notebook_outside(server, layout, target) -> None:
    run_id = _scheduled_run(server)
    path = target.format(**{k: str(v) for k, v in layout.items()})
    status, answer = server.request("POST", f"flow_runs/{run_id}/state",
                                    {"state": "Running", "output_notebook": path})
    _refused(status, answer, "output_notebook", layout)
    run = server.request("GET", f"flow_runs/{run_id}")[1]
    assert run["state"] == "Scheduled" and not run["output_notebook"]  # nothing half-written


def _forged_run(server, output_notebook: str) -> str:
    """A flow run whose record, sent through POST events, names `output_notebook`."""
    now = time.time()
    values = dict.fromkeys(FLOW_RUN_COLUMNS)
    values.update(id=uuid.uuid4().hex, flow_name="forged", name="forged", state="Completed",
                  state_type="COMPLETED", parameters="{}", tags="[]", run_count=1, start_time=now, end_time=now,
                  duration_s=0.0, created=now, updated=now, output_notebook=output_notebook)
    status, answer = server.request("POST", "events", {"flow_runs": [[values[c] for c in FLOW_RUN_COLUMNS]]})
    assert status == 200, answer
    return values["id"]


@pytest.mark.parametrize("target", ["{outside}/secret.ipynb", "{home}/../outside/secret.ipynb",
                                    "{project}/link.ipynb"], ids=["absolute", "dotdot", "symlink"])
def test_an_output_notebook_outside_the_roots_is_never_served(server, layout, target) -> None:
    run_id = _forged_run(server, target.format(**{k: str(v) for k, v in layout.items()}))
    status, answer = server.request("GET", f"flow_runs/{run_id}/output_notebook")
    assert isinstance(answer, dict), answer[:300]  # JSON, never the page
    _refused(status, answer, "output_notebook", layout)
    assert "SECRET-CONTENT" not in str(answer)


def test_an_output_notebook_replaced_by_a_link_out_is_no_longer_served(server, layout) -> None:
    shown = layout["home"] / "runs" / "forged" / "shown.ipynb"
    shown.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(layout["project"] / "report.ipynb", shown)
    run_id = _forged_run(server, str(shown))
    status, page = server.request("GET", f"flow_runs/{run_id}/output_notebook")
    assert status == 200 and b"report" in page
    shown.unlink()
    shown.symlink_to(layout["outside"] / "secret.ipynb")
    status, answer = server.request("GET", f"flow_runs/{run_id}/output_notebook")
    _refused(status, answer, "output_notebook", layout)


def test_nbflow_allowed_roots_adds_directories_without_a_server(layout, monkeypatch) -> None:
    """The CLI on the embedded store applies the same rule, with the current directory as root dir."""
    from nbflow.deployments.client import ApiRequestError, LocalClient

    monkeypatch.chdir(layout["project"])
    monkeypatch.setenv("NBFLOW_ALLOWED_ROOTS", "")
    client = LocalClient()
    with pytest.raises(ApiRequestError) as refused:
        client.create_deployment({"name": "far", "notebook": str(layout["outside"] / "secret.ipynb")})
    assert refused.value.status == 422 and refused.value.field == "notebook"
    assert client.create_deployment({"name": "near", "notebook": "report.ipynb"})["notebook"] == str(
        layout["project"] / "report.ipynb")
    monkeypatch.setenv("NBFLOW_ALLOWED_ROOTS", os.pathsep.join([str(layout["base"] / "elsewhere"),
                                                                 str(layout["outside"])]))
    created = client.create_deployment({"name": "far", "notebook": str(layout["outside"] / "secret.ipynb")})
    assert created["notebook"] == str(layout["outside"] / "secret.ipynb")
