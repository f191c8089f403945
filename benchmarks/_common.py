"""Shared helpers of the benchmark scripts (standard library only: the Prefect venv imports it too)."""

from __future__ import annotations

import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent


# -- child side ---------------------------------------------------------------------------------

def _status_kb(pid: int | str, field: str) -> int:
    try:
        with open(f"/proc/{pid}/status") as fh:
            for line in fh:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def _descendants(root: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as fh:
                stat = fh.read()
        except OSError:
            continue
        fields = stat[stat.rfind(")") + 2:].split()  # after "pid (comm) "
        if fields[0] == "Z":
            continue
        children.setdefault(int(fields[1]), []).append(int(entry))
    found, todo = [], [root]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def peak_rss_mb() -> dict[str, float]:
    """Peak RSS of this process tree, MB.

    self: VmHWM of this process; children: VmHWM of each live descendant (Prefect's server
    subprocess is still running when the measurement ends) plus the largest ru_maxrss among
    descendants that have already exited. tree = self + children.
    """
    own = _status_kb("self", "VmHWM")
    live = sum(_status_kb(pid, "VmHWM") for pid in _descendants(os.getpid()))
    reaped = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss  # KB on Linux
    kids = live + reaped
    return {"self_mb": own / 1024, "children_mb": kids / 1024, "tree_mb": (own + kids) / 1024}


def threads_now() -> int:
    return _status_kb("self", "Threads")


class GcWatch:
    """Time spent in the cyclic garbage collector (all generations) and full collections."""

    def __init__(self) -> None:
        import gc

        self._gc = gc
        self.seconds = 0.0
        self.full = 0
        self._t = 0.0
        gc.callbacks.append(self._cb)

    def _cb(self, phase: str, info: dict) -> None:
        if phase == "start":
            self._t = time.perf_counter()
        else:
            self.seconds += time.perf_counter() - self._t
            self.full += info.get("generation") == 2

    def stop(self) -> dict[str, float]:
        if self._cb in self._gc.callbacks:
            self._gc.callbacks.remove(self._cb)
        return {"gc_s": self.seconds, "gc_full_collections": self.full}


def emit(result: dict[str, Any]) -> None:
    """The child's answer: one JSON line on stdout, last."""
    sys.stdout.flush()
    print("@@RESULT " + json.dumps(result), flush=True)


class ThreadProfiler:
    """cProfile over every thread that starts while it is on (the pool workers too), merged."""

    def __init__(self, clock: str | None = None) -> None:
        import cProfile

        clock = clock or os.environ.get("BENCH_PROFILE_CLOCK", "cpu")
        # cpu: each thread's own CPU time (time.thread_time), so a thread waiting for the GIL or
        # a lock is not charged; wall: elapsed time, waiting included.
        self.clock = clock
        self._cls = cProfile.Profile
        self._args = (time.thread_time,) if clock == "cpu" else ()
        self.profiles: list[Any] = []
        self.main = cProfile.Profile(*self._args)

    def _boot(self, frame: Any, event: str, arg: Any) -> None:
        prof = self._cls(*self._args)
        self.profiles.append(prof)
        sys.setprofile(None)
        prof.enable()

    def __enter__(self) -> "ThreadProfiler":
        threading.setprofile(self._boot)
        self.main.enable()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.main.disable()
        threading.setprofile(None)

    def report(self, title: str, top: int = 15, out: Any = None, cumulative: bool = True) -> None:
        import io
        import pstats

        out = out or sys.stderr
        buf = io.StringIO()
        stats = pstats.Stats(self.main, stream=buf)
        for prof in self.profiles:
            try:
                prof.create_stats()
                stats.add(prof)
            except Exception:
                pass
        stats.sort_stats("tottime").print_stats(top)
        print(f"--- profile ({self.clock} time): {title} ({len(self.profiles)} other thread(s) merged), "
              f"top {top} by tottime",
              file=out)
        print(_trim_profile(buf.getvalue()), file=out)
        if cumulative:
            buf.seek(0)
            buf.truncate()
            stats.sort_stats("cumulative").print_stats(top)
            print(f"--- same, top {top} by cumtime", file=out)
            print(_trim_profile(buf.getvalue()), file=out)


def _trim_profile(text: str) -> str:
    lines = text.splitlines()
    for i, line in enumerate(lines):
        if "ncalls" in line:
            return "\n".join(lines[i - 2 if i >= 2 else 0:]).rstrip()
    return text.rstrip()


# -- parent side --------------------------------------------------------------------------------

class ChildFailed(RuntimeError):
    pass


def fresh_home(prefix: str) -> str:
    return tempfile.mkdtemp(prefix=prefix)


#: Bytecode cache of the nbflow children. Installed packages ship compiled .pyc files (pip
#: compiles on install) but a source checkout run with PYTHONDONTWRITEBYTECODE=1 recompiles
#: nbflow on every import; the children write their .pyc here instead (never into nbflow/).
PYCACHE = HERE / ".pycache"


def nbflow_env(home: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env["PYTHONPYCACHEPREFIX"] = str(PYCACHE)
    env["NBFLOW_HOME"] = home
    env["NBFLOW_LOGGING_LEVEL"] = "WARNING"
    env["PYTHONPATH"] = str(ROOT) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    return env


def run_child(cmd: list[str], env: dict[str, str], timeout: float, verbose: bool = False,
              home: str | None = None) -> dict[str, Any]:
    """Run a child, pass its stderr through when verbose, return its JSON result."""
    try:
        proc = subprocess.run(cmd, env=env, cwd=str(ROOT), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise ChildFailed(f"timed out after {timeout:.0f} s") from None
    finally:
        if home:
            shutil.rmtree(home, ignore_errors=True)
    if verbose and proc.stderr.strip():
        sys.stderr.write(proc.stderr if proc.stderr.endswith("\n") else proc.stderr + "\n")
    for line in reversed(proc.stdout.splitlines()):
        if line.startswith("@@RESULT "):
            return json.loads(line[len("@@RESULT "):])
    tail = [ln for ln in (proc.stderr or proc.stdout).strip().splitlines() if ln.strip()]
    reason = tail[-1][:300] if tail else f"exit code {proc.returncode}"
    raise ChildFailed(f"exit {proc.returncode}: {reason}")


def median_of(results: list[dict[str, Any]], key: str) -> dict[str, Any]:
    """The result whose `key` is the median (lower median for an even count)."""
    ordered = sorted(results, key=lambda r: r[key])
    return ordered[(len(ordered) - 1) // 2]


def median(values: list[float]) -> float:
    return statistics.median(values)


# -- formatting ---------------------------------------------------------------------------------

def fmt_num(v: float) -> str:
    if v >= 100:
        return f"{v:,.0f}"
    if v >= 10:
        return f"{v:.1f}"
    if v >= 1:
        return f"{v:.2f}"
    return f"{v:.2g}" if v >= 0.01 else f"{v:.3f}"


def fmt_time(v: float) -> str:
    """Milliseconds below 0.1 s, else seconds."""
    return f"{fmt_num(v * 1000)} ms" if v < 0.1 else fmt_s(v)


def fmt_s(v: float) -> str:
    if v >= 100:
        return f"{v:,.0f} s"
    if v >= 10:
        return f"{v:.1f} s"
    return f"{v:.3f} s"


def fmt_ms(v_s: float) -> str:
    return f"{fmt_num(v_s * 1000)} ms"


def fmt_ratio(v: float) -> str:
    return f"{v:,.0f}x" if v >= 10 else f"{v:.1f}x"


def verdict(ok: bool) -> str:
    return "PASS" if ok else "FAIL"
