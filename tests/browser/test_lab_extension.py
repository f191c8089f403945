"""nbflow's JupyterLab extension in a real browser, as a new user meets it: one JupyterLab, one story.

Pick a flow of a .py file from the file browser's menu; click "Deploy" on a notebook's toolbar, fill the dialog with a bad value (refused in the page, next to
its field) and a bad cron expression (refused by the server, next to its field), then good ones; see
the deployment in the nbflow sidebar, run it now from there with its parameter form, be told by a
JupyterLab notification when the run completes, open the run's tab and its output notebook in Lab's
own notebook viewer. Screenshots of each step go to test-artifacts/lab-*.png (and to docs/lab/ when
NBFLOW_UPDATE_SCREENSHOTS=1, for the README).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import nbformat
import pytest
from browser_lab import ARTIFACTS, REPO, JupyterLab

pytestmark = pytest.mark.timeout(240)

NOTEBOOK = "sales_report.ipynb"
FLOWS = "etl.py"
RUN_TIMEOUT_MS = 90_000
DOCS = REPO / "docs" / "lab"
SCORING = """from nbflow import flow, task


@task
def load(n: int) -> list:
    return list(range(n))


@task
def score(rows: list, threshold: float) -> float:
    total = sum(rows)
    if total > threshold:
        raise ValueError(f"total {total} over threshold {threshold}")
    return total


@flow
def scoring(n: int = 5) -> float:
    return score(load(n), 5.0)


if __name__ == "__main__":
    import nbflow

    scoring(return_state=True)
    nbflow.flush()
    print(nbflow.runs(flow_name="scoring", limit=1)["id"].iloc[0])
"""


def _notebook(path: Path) -> None:
    nb = nbformat.v4.new_notebook()
    parameters = nbformat.v4.new_code_cell("n_days = 3\nregion = 'eu'")
    parameters.metadata["tags"] = ["parameters"]
    nb.cells = [parameters, nbformat.v4.new_code_cell("print(f'{region}: {n_days * 14} sales')")]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3 (ipykernel)", "language": "python"}
    nbformat.write(nb, str(path))


def _shot(page: Any, name: str, target: Any = None) -> None:
    """Save a screenshot of the page (or of one element) for the README's walk-through."""
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / f"lab-{name}.png"
    (target or page).screenshot(path=str(path))
    if os.environ.get("NBFLOW_UPDATE_SCREENSHOTS") == "1":
        DOCS.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, DOCS / f"{name}.png")


def _extension_installed() -> bool:
    import sys

    return (Path(sys.prefix) / "share" / "jupyter" / "labextensions" / "nbflow" / "package.json").is_file()


def test_deploy_a_notebook_run_it_and_open_its_output_in_lab(page: Any, jupyter_lab: JupyterLab) -> None:
    if not _extension_installed():
        pytest.skip("nbflow's lab extension is not installed in this environment (pip install . installs it)")
    _notebook(jupyter_lab.root_dir / NOTEBOOK)
    (jupyter_lab.root_dir / FLOWS).write_text(
        "from nbflow import flow\n\n@flow\ndef load(rows: int, label: str = 'x'):\n    return rows\n\n"
        "@flow(name='nightly-report')\ndef nightly():\n    return 1\n\ndef helper():\n    return 2\n")
    page.set_viewport_size({"width": 1400, "height": 900})
    page.goto(jupyter_lab.url(f"lab/tree/{NOTEBOOK}?reset"), wait_until="domcontentloaded")

    # the file browser's context menu offers it for .py files too: pick one of the file's flows. The
    # command takes the item right-clicked, even when Lab selects the opening notebook meanwhile (it
    # does once the notebook's kernel is up), so no waiting for the kernel here.
    page.locator(".jp-DirListing-item[data-file-type=python]", has_text=FLOWS).click(button="right")
    page.locator(".lm-Menu-item", has_text="Deploy with nbflow").click()
    dialog = page.locator("[data-testid=nbflow-deploy-dialog]")
    picker = dialog.locator("[data-testid=nbflow-flow]")
    picker.wait_for()
    assert picker.locator("option").all_text_contents() == ["load", 'nightly (flow "nightly-report")']
    assert dialog.locator("[data-testid=nbflow-name]").input_value() == "etl-load"
    assert dialog.locator("[data-testid=param-rows]").get_attribute("aria-required") == "true"
    picker.select_option("nightly")
    assert dialog.locator("[data-testid=param-rows]").count() == 0
    assert dialog.locator("[data-testid=nbflow-name]").input_value() == "etl-nightly"
    dialog.get_by_role("button", name="Cancel").click()
    dialog.wait_for(state="detached")

    # 1. "Deploy" on the notebook's toolbar opens the dialog, its parameter form read from the notebook
    deploy = page.locator(".jp-NotebookPanel-toolbar [data-testid=nbflow-deploy-button] button")
    deploy.click()
    dialog = page.locator("[data-testid=nbflow-deploy-dialog]")
    dialog.wait_for()
    assert dialog.locator("[data-testid=nbflow-name]").input_value() == "sales_report"
    assert dialog.locator("[data-testid=param-n_days]").input_value() == "3"
    assert dialog.locator("[data-testid=param-region]").input_value() == "eu"
    status = page.locator("[data-testid=nbflow-status]")
    assert status.inner_text() == "nbflow: 0 running"

    # 2. bad values: a fraction for an int parameter is refused in the page; a bad cron by the server
    dialog.locator("[data-testid=param-n_days]").fill("2.5")
    dialog.locator("[data-testid=nbflow-schedule-kind]").select_option("cron")
    dialog.locator("[data-testid=nbflow-cron]").fill("61 * * * *")
    cron_error = dialog.locator("[data-testid=error-schedule\\.cron]")
    cron_error.filter(has_text="minute").wait_for()  # the server's preview names the bad field
    dialog.locator("[data-testid=nbflow-run-once]").uncheck()
    dialog.locator("[data-testid=nbflow-deploy-dialog-submit]").click()
    dialog.locator("[data-testid=error-n_days]").filter(has_text="whole number").wait_for()
    _shot(page, "1-deploy-dialog-errors", dialog.locator(".jp-Dialog-content"))
    deployments = jupyter_lab.store_query("import json, nbflow.deployments.service as s\nprint(json.dumps(0))")
    assert deployments == 0

    # 3. good values: the preview says when it fires; Deploy creates it and shows it in the sidebar
    dialog.locator("[data-testid=param-n_days]").fill("5")
    dialog.locator("[data-testid=nbflow-cron]").fill("0 6 * * 1-5")
    dialog.locator("[data-testid=nbflow-timezone]").fill("Europe/Paris")
    preview = dialog.locator("[data-testid=nbflow-schedule-preview]")
    preview.filter(has_text="Next:").wait_for()
    assert "Europe/Paris" in preview.inner_text() and cron_error.inner_text() == ""
    _shot(page, "2-deploy-dialog", dialog.locator(".jp-Dialog-content"))
    dialog.locator("[data-testid=nbflow-deploy-dialog-submit]").click()
    dialog.wait_for(state="detached")
    item = page.locator("[data-testid=nbflow-deployment][data-name=sales_report]")
    item.wait_for()
    assert "next in" in item.inner_text() and "Europe/Paris" in item.inner_text()

    # 4. run it now from the sidebar, with its parameter form (the deployment's default is 5)
    item.locator("[data-testid=nbflow-run-now]").click()
    run_dialog = page.locator("[data-testid=nbflow-run-dialog]")
    assert run_dialog.locator("[data-testid=param-n_days]").input_value() == "5"
    run_dialog.locator("[data-testid=param-n_days]").fill("6")
    _shot(page, "3-sidebar-run-now")
    run_dialog.locator("[data-testid=nbflow-run-dialog-submit]").click()
    run_dialog.wait_for(state="detached")

    # 5. a notification says when it completes; the run is in the sidebar, coloured by its state
    toast = page.locator(".Toastify__toast", has_text="sales_report ended Completed")
    toast.wait_for(timeout=RUN_TIMEOUT_MS)
    run_row = page.locator("[data-testid=nbflow-run][data-state=Completed]").first
    run_row.wait_for()
    open_run = toast.get_by_role("button", name="Open run")
    open_run.click(trial=True)  # waits until the toast stops moving (its slide-in)
    _shot(page, "4-notification")

    # 6. its detail opens in a Lab tab (the dashboard's run page); its output notebook in Lab's viewer
    open_run.click()
    only_this = page.locator("[data-testid=nbflow-only-notebook]")
    only_this.check()  # the runs of sales_report.ipynb (the last notebook in focus): this one
    page.locator("[data-testid=nbflow-runs] li", has_text="sales_report").first.wait_for()
    only_this.uncheck()
    frame = page.frame_locator(".nbflow-RunDetail iframe")
    frame.locator("[data-testid=output-notebook]").wait_for(timeout=30_000)
    assert frame.locator(".topbar").is_hidden()  # embedded: Lab's tab stands for the dashboard's bar
    _shot(page, "5-run-detail")
    frame.locator("[data-testid=open-in-lab]").click()
    output = page.locator(".jp-NotebookPanel:not(.lm-mod-hidden) .jp-OutputArea-output", has_text="eu: 84 sales")
    output.wait_for(timeout=30_000)
    tab = page.locator(".lm-DockPanel-tabBar .lm-TabBar-tab.lm-mod-current")
    assert "(run output)" in tab.inner_text()
    _shot(page, "6-output-notebook")
    assert page.evaluate("""() => {
      const w = window.jupyterapp.shell.currentWidget;
      return w.context.path.startsWith('nbflow-run:') && w.context.model.readOnly && !w.context.contentsModel.writable;
    }""")

    # 7. a failed run's tab has "Debug in a notebook": the notebook that brings the failing moment back,
    # saved among the user's files and opened in Lab, where running it fails again, at the same line
    (jupyter_lab.root_dir / "scoring.py").write_text(SCORING)
    done = subprocess.run([sys.executable, "scoring.py"], cwd=jupyter_lab.root_dir, env=jupyter_lab.env,
                          capture_output=True, text=True, timeout=60)
    run_id = done.stdout.strip().splitlines()[-1]
    page.evaluate(f"window.jupyterapp.commands.execute('nbflow:open-run', {{id: '{run_id}'}})")
    run_tab = page.locator(f"#nbflow-run-{run_id}")
    run_tab.locator("[data-testid=nbflow-debug-notebook] button").click()
    debug_tab = page.locator(".lm-DockPanel-tabBar .lm-TabBar-tab.lm-mod-current", has_text=f"debug-{run_id[:8]}")
    debug_tab.wait_for(timeout=30_000)
    assert (jupyter_lab.root_dir / "nbflow-debug" / f"debug-{run_id[:8]}.ipynb").is_file()
    page.wait_for_function("""() => {
      const kernel = window.jupyterapp.shell.currentWidget?.sessionContext?.session?.kernel;
      return kernel && kernel.status === 'idle';
    }""", timeout=60_000)  # the notebook names its kernel (python3): Lab starts it without asking
    page.evaluate("window.jupyterapp.commands.execute('notebook:run-all-cells')")
    panel = page.locator(".jp-NotebookPanel:not(.lm-mod-hidden)")
    panel.locator(".jp-OutputArea-output", has_text="Restored: rows (list), threshold (float)").wait_for(timeout=60_000)
    panel.locator(".jp-OutputArea-output[data-mime-type='application/vnd.jupyter.stderr']",
                  has_text="ValueError: total 10 over threshold 5.0").wait_for(timeout=30_000)
    _shot(page, "7-debug-notebook")
    # the dashboard's own button, inside the run tab, opens the same notebook (it is not made twice)
    page.evaluate(f"window.jupyterapp.commands.execute('nbflow:open-run', {{id: '{run_id}'}})")
    run_tab.frame_locator("iframe").locator("[data-testid=debug-button]").click()
    debug_tab.wait_for(timeout=30_000)
    assert [p.name for p in (jupyter_lab.root_dir / "nbflow-debug").glob("*.ipynb")] == [f"debug-{run_id[:8]}.ipynb"]

    # 8. Retry in a run's tab (the embedded page's button) starts a run that opens in a tab of its own and
    # that this Lab follows to its end, as one started from the panel: tracked, then announced and dropped
    first = jupyter_lab.store_query("import json, nbflow\nruns = nbflow.runs(flow_name='sales_report')\n"
                                    "done = runs[runs.deployment_id.notna() & (runs.state == 'Completed')]\n"
                                    "print(json.dumps(str(done['id'].iloc[0])))")
    page.evaluate(f"window.jupyterapp.commands.execute('nbflow:open-run', {{id: '{first}'}})")
    tracked = "() => Object.keys(JSON.parse(localStorage.getItem('nbflow:tracked-runs') || '{}'))"
    assert page.evaluate(tracked) == []
    page.locator(f"#nbflow-run-{first}").frame_locator("iframe").locator("[data-testid=retry-button]").click()
    page.wait_for_function(f"() => ({tracked})().length === 1", timeout=10_000)
    [again] = page.evaluate(tracked)
    page.locator(f"#nbflow-run-{again}:not(.lm-mod-hidden) iframe").wait_for(timeout=10_000)
    page.wait_for_function(f"() => ({tracked})().length === 0", timeout=RUN_TIMEOUT_MS)
    page.locator(".Toastify__toast", has_text="sales_report ended Completed").first.wait_for()

    # 9. run tabs come back after a reload, like notebooks
    page.goto(jupyter_lab.url("lab"), wait_until="domcontentloaded")
    page.locator(f"#nbflow-run-{first} iframe").wait_for(state="attached", timeout=60_000)
    page.locator(f"#nbflow-run-{run_id}").wait_for(state="attached")
