"""One deployment run executed in a child process, bounded by a timeout and cancellable.

The parent (a worker) starts `python -m nbflow.deployments.child SPEC OUTCOME` and
waits. The child runs a notebook with papermill or calls a flow entrypoint and writes
its outcome; the parent bounds the whole run (papermill's own timeout is per cell) and
on a timeout or a cancel kills the child's whole process tree. A notebook's kernel is
started by jupyter_client in its own session, so killing the child's process group is
not enough: the parent keeps a list of every descendant it has seen and kills those.

Right before the child starts, the notebook's or flow file's real path is checked again against
the allowed roots (nbflow.deployments.paths), and the child is given that real path: the file
may have been replaced by a symlink since it was deployed.

The child's stdout and stderr go to `<output notebook>.log` (notebook runs) or to the
temporary directory (flow runs; the flow's own logs are run records); a child that dies
without writing its outcome is Crashed, quoting the end of that log. An outcome names
the output notebook whenever papermill wrote one, also for failed and stopped runs.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import psutil

from nbflow.deployments import paths
from nbflow.deployments.notebook_runs import default_output_path
from nbflow.deployments.resume import resume_task_run

#: how much of the run's log a Crashed message quotes
_TAIL_CHARS = 1500
#: seconds between scans of the child's descendants (a scan reads every process in /proc)
_SCAN_EVERY = 0.5
_KINDS = ("notebook", "flow")


@dataclass
class RunSpec:
    """What one deployment run executes: a notebook or a flow entrypoint, with its parameters."""

    run_id: str
    flow_name: str
    kind: str
    notebook: str | None
    entrypoint: str | None
    parameters: dict[str, Any] = field(default_factory=dict)
    timeout_seconds: float | None = None
    #: the directories the notebook or flow file must lie in (the server's); None: this process's own
    allowed_roots: list[str] | None = None
    deployment_id: str | None = None
    deployment_name: str | None = None
    #: ISO times of the run's record (a flow run's process adopts the record, keeping them)
    scheduled_time: str | None = None
    created: str | None = None
    #: a retry from the failed task: the failed task run of the old run to resume at (its inputs restored)
    resume_task_run_id: str | None = None

    @classmethod
    def from_claim(cls, claimed: dict) -> "RunSpec":
        """The spec of a run as a worker claims it from the store or the API (extra keys ignored)."""
        timeout = claimed.get("timeout_seconds")
        kind = claimed.get("kind") or ("notebook" if claimed.get("notebook") else "flow")
        return cls(run_id=claimed["id"], flow_name=claimed["flow_name"], kind=kind,
                   notebook=claimed.get("notebook"), entrypoint=claimed.get("entrypoint"),
                   parameters=dict(claimed.get("parameters") or {}),
                   timeout_seconds=float(timeout) if timeout is not None else None,
                   allowed_roots=claimed.get("allowed_roots"), deployment_id=claimed.get("deployment_id"),
                   deployment_name=claimed.get("deployment_name"), scheduled_time=claimed.get("scheduled_time"),
                   created=claimed.get("created"), resume_task_run_id=resume_task_run(claimed.get("triggered_by")))


@dataclass
class Outcome:
    """How a run ended: a final state name, a message for people, and the executed notebook."""

    state: str  #: Completed | Failed | Crashed | TimedOut | Cancelled
    message: str
    output_notebook: str | None = None


def output_path(spec: RunSpec) -> Path:
    """Where a notebook run's executed notebook goes: $NBFLOW_HOME/runs/<stem>/<UTC stamp>-<id8>.ipynb."""
    if spec.kind != "notebook" or not spec.notebook:
        raise ValueError(f"Run {spec.run_id} is a {spec.kind} run; only notebook runs have an output "
                         "notebook.")
    return default_output_path(Path(spec.notebook), spec.run_id)


class Execution:
    """One run in a child process."""

    def __init__(self, spec: RunSpec, env: dict[str, str] | None = None) -> None:
        if spec.kind not in _KINDS:
            raise ValueError(f"Run {spec.run_id} has kind {spec.kind!r}; a run is a 'notebook' or a 'flow'.")
        if (spec.kind == "notebook") != bool(spec.notebook) or (spec.kind == "flow") != bool(spec.entrypoint):
            raise ValueError(f"Run {spec.run_id} of kind {spec.kind!r} needs exactly the "
                             f"{'notebook' if spec.kind == 'notebook' else 'entrypoint'} field; got "
                             f"notebook={spec.notebook!r}, entrypoint={spec.entrypoint!r}.")
        self.spec = spec
        self.env = dict(env or {})
        #: the executed notebook (notebook runs); chosen here so it is known even if the child dies
        self.output_notebook: Path | None = output_path(spec) if spec.kind == "notebook" else None
        #: the child's stdout and stderr: next to the output notebook, else in the temp dir (removed)
        self.log_path: Path | None = None
        self._tmp: Path | None = None
        self._proc: subprocess.Popen | None = None
        self._started = 0.0
        self._scanned = 0.0
        #: every descendant seen while the child ran: killed with it even once orphaned
        self._seen: set[psutil.Process] = set()
        self._lock = threading.Lock()
        self._killed = False  # kill() was called: a run without an outcome was stopped, not crashed
        #: how the run ended, once wait() has returned
        self.outcome: Outcome | None = None

    @property
    def pid(self) -> int | None:
        """The child process's id, once started."""
        return self._proc.pid if self._proc is not None else None

    def target(self) -> dict[str, str]:
        """The notebook or entrypoint to run, its file's real path checked against the allowed roots
        now (it may have been replaced by a symlink since it was deployed); PathNotAllowedError if not."""
        spec = self.spec
        if spec.kind == "notebook":
            return {"notebook": str(paths.resolve(spec.notebook, "notebook", spec.allowed_roots))}
        file_part, _, function = spec.entrypoint.rpartition(":")  # type: ignore[union-attr]
        return {"entrypoint": f"{paths.resolve(file_part, 'entrypoint', spec.allowed_roots)}:{function}"}

    def start(self) -> None:
        """Start the child process and return at once; PathNotAllowedError if its file is outside the roots."""
        if self._proc is not None:
            raise RuntimeError(f"Run {self.spec.run_id} was already started; make a new Execution to run "
                               "it again.")
        target = self.target()
        self._tmp = Path(tempfile.mkdtemp(prefix=f"nbflow-run-{self.spec.run_id[:8]}-"))
        spec_file, outcome_file = self._tmp / "spec.json", self._tmp / "outcome.json"
        body = asdict(self.spec) | target  # the child opens the checked real path, not the link
        body["output_notebook"] = str(self.output_notebook) if self.output_notebook else None
        spec_file.write_text(json.dumps(body), encoding="utf-8")
        if self.output_notebook is not None:
            self.output_notebook.parent.mkdir(parents=True, exist_ok=True)
            self.log_path = self.output_notebook.with_suffix(".log")
        else:
            self.log_path = self._tmp / "run.log"
        env = {**os.environ, **self.env, "NBFLOW_FLOW_RUN_ID": self.spec.run_id,
               "NBFLOW_FLOW_NAME": self.spec.flow_name, "PYTHONUNBUFFERED": "1",
               "NBFLOW_PARENT_PID": str(os.getpid()),
               # nbflow.runtime.deployment in the run's code
               "NBFLOW_DEPLOYMENT_ID": self.spec.deployment_id or "",
               "NBFLOW_DEPLOYMENT_NAME": self.spec.deployment_name or "",
               "NBFLOW_DEPLOYMENT_PARAMETERS": json.dumps(self.spec.parameters, default=str)}
        with open(self.log_path, "wb") as log:
            self._proc = subprocess.Popen(
                [sys.executable, "-m", "nbflow.deployments.child", str(spec_file), str(outcome_file)],
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, env=env,
                start_new_session=True)  # a signal meant for the worker's terminal does not reach the run
        self._started = time.monotonic()

    def wait(self, cancel: threading.Event | None = None, poll: float = 0.1) -> Outcome:
        """Block until the child ends, the timeout passes or `cancel` is set; return the outcome."""
        proc = self._proc
        if proc is None:
            raise RuntimeError("Execution.wait() before start(); call start() first.")
        if self.outcome is not None:
            return self.outcome
        timeout = self.spec.timeout_seconds
        deadline = self._started + timeout if timeout else None
        try:
            while True:
                code = proc.poll()
                if code is not None:
                    self._kill_seen()  # e.g. a kernel orphaned by a child that crashed
                    return self._finish(self._read_outcome(code))
                self._remember_descendants()
                if cancel is not None and cancel.is_set():
                    self.kill()
                    return self._finish(self._written() or Outcome("Cancelled", "Cancelled by request"))
                now = time.monotonic()
                if deadline is not None and now >= deadline:
                    self.kill()
                    written = self._written()  # the run ended; only saving its run records took long
                    if written is not None:
                        return self._finish(written)
                    what = "kernel" if self.spec.kind == "notebook" else "process"
                    return self._finish(Outcome(
                        "TimedOut", f"The run exceeded its timeout of {timeout:g} s; its {what} was stopped"))
                pause = poll if deadline is None else max(0.0, min(poll, deadline - now))
                if cancel is not None:
                    cancel.wait(pause)
                else:
                    time.sleep(pause)
        except BaseException:  # KeyboardInterrupt in the worker: leave no run behind
            self.kill()
            self._cleanup()
            raise

    def kill(self) -> None:
        """Kill the child's whole process tree, the kernel included (it runs in a session of its own)."""
        proc = self._proc
        if proc is None:
            return
        with self._lock:
            self._killed = True
            victims = list(self._seen)
            if proc.poll() is None:  # not reaped yet, so its pid is still its own
                try:
                    os.kill(proc.pid, signal.SIGSTOP)
                    victims += _stop_tree(psutil.Process(proc.pid))
                except (OSError, psutil.Error):
                    pass
                try:
                    os.killpg(proc.pid, signal.SIGKILL)  # the child's session, orphans included
                except OSError:
                    pass
                proc.kill()
            _kill_all(victims)  # the root is left to proc.wait(): psutil would reap it behind Popen's back
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                pass

    # -- helpers --------------------------------------------------------------------------------

    def _remember_descendants(self) -> None:
        """Note the child's descendants now, so they can be found after their parent is gone."""
        now = time.monotonic()
        if now - self._scanned < _SCAN_EVERY:
            return
        self._scanned = now
        try:
            found = psutil.Process(self._proc.pid).children(recursive=True)  # type: ignore[union-attr]
        except psutil.Error:
            return
        with self._lock:
            self._seen.update(found)  # psutil.Process compares by pid and start time

    def _kill_seen(self) -> None:
        with self._lock:
            _kill_all(list(self._seen))

    def _written(self) -> Outcome | None:
        """The outcome the child wrote, if it got that far."""
        outcome_file = self._tmp / "outcome.json"  # type: ignore[operator]
        try:
            data = json.loads(outcome_file.read_text(encoding="utf-8"))
            return Outcome(str(data["state"]), str(data["message"]))
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def _read_outcome(self, code: int) -> Outcome:
        written = self._written()
        if written is not None:
            return written
        if self._killed:
            return Outcome("Cancelled", "Cancelled by request (the run's process was killed)")
        how = (f"was killed by signal {-code} ({_signal_name(-code)})" if code < 0
               else f"exited with code {code}")
        tail = self._log_tail()
        detail = f": {tail}" if tail else " and printed nothing"
        where = f" (full log: {self.log_path})" if self.output_notebook is not None else ""
        return Outcome("Crashed", f"The run's process {how}{detail}{where}")

    def _log_tail(self) -> str:
        try:
            with open(self.log_path, "rb") as log:  # type: ignore[arg-type]
                log.seek(0, os.SEEK_END)
                log.seek(max(0, log.tell() - _TAIL_CHARS))
                return log.read().decode("utf-8", "replace").strip()
        except OSError:
            return ""

    def _finish(self, outcome: Outcome) -> Outcome:
        out = self.output_notebook
        if out is not None and out.is_file():
            outcome.output_notebook = str(out)
        self._cleanup()
        self.outcome = outcome
        return outcome

    def _cleanup(self) -> None:
        if self._tmp is not None:
            shutil.rmtree(self._tmp, ignore_errors=True)


def _stop_tree(root: psutil.Process) -> list[psutil.Process]:
    """SIGSTOP every descendant of a stopped root, then list them again: none can fork meanwhile."""
    for descendant in root.children(recursive=True):
        try:
            descendant.suspend()
        except psutil.Error:
            pass
    return root.children(recursive=True)


def _kill_all(victims: list[psutil.Process], timeout: float = 5.0) -> None:
    """SIGKILL each process (psutil checks it is still the same process) and wait until they are dead.

    A killed kernel is an orphan whose reaping is up to PID 1, so a zombie counts as dead.
    """
    unique = list({victim.pid: victim for victim in victims}.values())
    for victim in unique:
        try:
            victim.kill()
        except psutil.Error:
            pass
    deadline = time.monotonic() + timeout
    while unique and time.monotonic() < deadline:
        unique = [victim for victim in unique if _alive(victim)]
        if unique:
            time.sleep(0.02)


def _alive(process: psutil.Process) -> bool:
    try:
        return process.is_running() and process.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return "unknown signal"


def execute(spec: RunSpec, env: dict[str, str] | None = None,
            cancel: threading.Event | None = None) -> Outcome:
    """Run `spec` in a child process and wait for its outcome (start + wait)."""
    execution = Execution(spec, env)
    execution.start()
    return execution.wait(cancel)
