"""Per-task overhead of nbflow (vs plain Python, optionally vs Prefect 3), one summary line.

    python3 benchmarks/bench_tasks.py --mode sequential --n 1000
    python3 benchmarks/bench_tasks.py --mode map --n 100000 --vs prefect -v

Modes (trivial task body `return x + 1`):
  sequential  N task calls one after another inside a flow
  map         task.map(range(N)).result()
  submit      N x task.submit(i), then wait for all
  cache-hit   a second flow run in which each of N tasks (cache_key_fn=task_input_hash)
              is a cache hit; the first run fills the cache and is not timed

Every measurement is a fresh subprocess with a fresh temporary NBFLOW_HOME / PREFECT_HOME.
Before the timed call each child runs one untimed warm-up flow (one task), so the figure is the
per-task cost, not the start-up cost (bench_startup.py measures that). Reported: wall time of
the timed flow call, µs per task (wall / N), peak RSS of the child's process tree, and for
nbflow the time until the records are durable (the call plus nbflow.flush()).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as C  # noqa: E402

MODES = ("sequential", "map", "submit", "cache-hit")
TARGETS = {  # nbflow figures the issue sets
    "sequential": ("µs/task", 50.0),
    "cache-hit": ("µs/task", 100.0),
}


# -- child: runs inside the measured process ------------------------------------------------------

#: body executions of the cache-hit task. A list, not an int: nbflow's task_input_hash folds the
#: values of int globals a task reads into its key, so an int counter would change the key itself.
CALLS = [0]


def _plain_funcs():
    def inc(x):
        return x + 1

    def cinc(x):
        CALLS[0] += 1
        return x + 1

    def sequential(n):
        for i in range(n):
            inc(i)

    def mapped(n):
        return list(map(inc, range(n)))

    def submitted(n):
        return [inc(i) for i in range(n)]

    def cached(n):
        for i in range(n):
            cinc(i)

    return {"sequential": sequential, "map": mapped, "submit": submitted, "cache-hit": cached}, None, None


def _framework_funcs(name: str):
    if name == "nbflow":
        from nbflow import flow, task, wait
        from nbflow.tasks import task_input_hash
    else:
        from prefect import flow, task
        from prefect.futures import wait
        from prefect.tasks import task_input_hash

    @task
    def inc(x):
        return x + 1

    @task(cache_key_fn=task_input_hash)
    def cinc(x):
        CALLS[0] += 1
        return x + 1

    @flow
    def warm():
        return inc(0)

    @flow
    def empty():
        return None

    @flow
    def sequential(n: int):
        for i in range(n):
            inc(i)

    @flow
    def mapped(n: int):
        return inc.map(range(n)).result()

    @flow
    def submitted(n: int):
        futures = [inc.submit(i) for i in range(n)]
        wait(futures)
        return [f.result() for f in futures]

    @flow
    def cached(n: int):
        for i in range(n):
            cinc(i)

    flows = {"sequential": sequential, "map": mapped, "submit": submitted, "cache-hit": cached}
    return flows, warm, empty


def _threadpool_baseline(mode: str, n: int) -> float | None:
    """concurrent.futures with the same function: what a bare thread pool costs (-v detail)."""
    if mode not in ("map", "submit"):
        return None
    from concurrent.futures import ThreadPoolExecutor, wait

    def inc(x):
        return x + 1

    with ThreadPoolExecutor() as pool:
        t0 = time.perf_counter()
        if mode == "map":
            list(pool.map(inc, range(n)))
        else:
            futures = [pool.submit(inc, i) for i in range(n)]
            wait(futures)
            [f.result() for f in futures]
        return time.perf_counter() - t0


def _idle_writer() -> None:
    """Profile mode: keep nbflow's background writer from starting, so every write happens in
    the explicit, profiled flush() (cProfile is wall-clock per thread; a writer thread competing
    for the GIL would smear its cost over whatever the main thread was doing)."""
    import threading

    try:
        from nbflow.store import buffer

        buffer.recorder._thread = threading.Thread(target=lambda: None)  # never started; not None
        buffer.EARLY_FLUSH_ROWS = 1 << 62  # no writer to wake: don't take the event's lock per state
    except Exception as exc:  # internals moved: the profile then includes the writer's GIL use
        print(f"bench: could not hold nbflow's writer thread ({exc})", file=sys.stderr)


def child(framework: str, mode: str, n: int, profile: bool) -> None:
    result: dict = {"framework": framework, "mode": mode, "n": n}
    t0 = time.perf_counter()
    if framework == "plain":
        flows, warm, empty = _plain_funcs()
    else:
        flows, warm, empty = _framework_funcs(framework)
    result["import_s"] = time.perf_counter() - t0
    flush = None
    if framework == "nbflow":
        import nbflow

        flush = nbflow.flush
        if profile:
            _idle_writer()
        result["version"] = nbflow.__version__
    elif framework == "prefect":
        import prefect

        result["version"] = prefect.__version__

    if warm is not None:
        t0 = time.perf_counter()
        warm()
        if flush:
            flush()
        result["warmup_s"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        empty()
        result["empty_flow_s"] = time.perf_counter() - t0
        if flush:
            flush()
    if mode == "cache-hit":
        t0 = time.perf_counter()
        flows[mode](n)  # fills the cache; not in the figure (shown with -v)
        if flush:
            flush()
        result["fill_s"] = time.perf_counter() - t0
        CALLS[0] = 0

    gc_watch = C.GcWatch()
    prof = C.ThreadProfiler() if profile else None
    c0 = time.process_time()
    t0 = time.perf_counter()
    if prof:
        with prof:
            flows[mode](n)
    else:
        flows[mode](n)
    wall = time.perf_counter() - t0
    result["cpu_s"] = time.process_time() - c0  # all threads of this process; less hit by a busy machine
    result.update(gc_watch.stop())
    if prof:
        prof.report(f"{framework} {mode} n={n}: the flow call ({wall:.3f} s)")
    result["wall_s"] = wall
    if flush:
        fprof = C.ThreadProfiler() if profile else None
        t1 = time.perf_counter()
        if fprof:
            with fprof:
                rows = flush()
        else:
            rows = flush()
        result["flush_s"] = time.perf_counter() - t1
        result["durable_s"] = time.perf_counter() - t0
        result["flushed_rows"] = rows
        if fprof:
            fprof.report(f"{framework} {mode} n={n}: nbflow.flush() after it ({result['flush_s']:.3f} s)")
    result["threads_end"] = C.threads_now()
    result.update(C.peak_rss_mb())  # before the checks below, which load pandas
    if mode == "cache-hit" and framework != "plain":
        result["body_calls"] = CALLS[0]  # 0 when every task was a cache hit
    if framework == "nbflow":
        import nbflow

        last = nbflow.runs(limit=1)
        run_id = last["id"].iloc[0]
        states = nbflow.sql("select state, count(*) as n from task_runs where flow_run_id = ? group by state",
                            [run_id])
        result["task_states"] = {str(r["state"]): int(r["n"]) for _, r in states.iterrows()}
    if framework == "plain":
        result["threadpool_s"] = _threadpool_baseline(mode, n)
    C.emit(result)


# -- parent ---------------------------------------------------------------------------------------

def measure(framework: str, mode: str, n: int, python: str, verbose: bool, profile: bool,
            timeout: float) -> dict:
    if framework == "prefect":
        import prefect_env

        home = C.fresh_home("bench-prefect-home-")
        env = prefect_env.prefect_env(home)
    else:
        home = C.fresh_home("bench-nbflow-home-")
        env = C.nbflow_env(home)
    cmd = [python, str(Path(__file__).resolve()), "--child", framework, "--mode", mode, "--n", str(n)]
    if profile:
        cmd.append("--profile")
    return C.run_child(cmd, env, timeout=timeout, verbose=verbose or profile, home=home)


def per_task_us(r: dict) -> float:
    return r["wall_s"] / r["n"] * 1e6


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mode", choices=MODES, required=True)
    ap.add_argument("--n", type=int, default=1000)
    ap.add_argument("--vs", choices=["prefect"], help="also run the same flows on Prefect 3 (throwaway venv)")
    ap.add_argument("--prefect-max-n", type=int, default=1000,
                    help="run Prefect at min(N, this) tasks (default 1000: 100,000 would take hours)")
    ap.add_argument("--repeat", type=int, default=3,
                    help="fresh processes for nbflow and plain; the median wall time is shown (default 3)")
    ap.add_argument("--prefect-repeat", type=int, default=1, help="fresh processes for Prefect (default 1)")
    ap.add_argument("--profile", action="store_true",
                    help="cProfile the nbflow child (all threads; the background writer held off, so "
                         "the flush after the call does all the writing), top 15 by tottime, on stderr; "
                         "BENCH_PROFILE_CLOCK=wall|cpu (default cpu: per-thread CPU time)")
    ap.add_argument("--timeout", type=float, default=3600, help="seconds per child process")
    ap.add_argument("-v", "--verbose", action="store_true")
    ap.add_argument("--child", choices=["nbflow", "plain", "prefect"], help=argparse.SUPPRESS)
    args = ap.parse_args(argv)

    if args.child:
        child(args.child, args.mode, args.n, args.profile)
        return 0

    mode, n, v = args.mode, args.n, args.verbose

    def run(framework: str, count: int, python: str) -> dict:
        repeat = args.prefect_repeat if framework == "prefect" else args.repeat
        if args.profile and framework == "nbflow":
            repeat = 1
        results = [measure(framework, mode, count, python, v, args.profile and framework == "nbflow", args.timeout)
                   for _ in range(max(1, repeat))]
        best = C.median_of(results, "wall_s")
        best["all_wall_s"] = [round(r["wall_s"], 6) for r in results]
        best["all_cpu_s"] = [round(r["cpu_s"], 6) for r in results]
        return best

    parts = []
    ok = True
    nb = None
    try:
        nb = run("nbflow", n, sys.executable)
        dur = f" (durable {C.fmt_s(nb['durable_s'])})"
        parts.append(f"nbflow {C.fmt_num(per_task_us(nb))} µs/task {C.fmt_s(nb['wall_s'])}{dur} "
                     f"{nb['tree_mb']:.0f} MB")
        if mode == "cache-hit" and nb.get("body_calls"):
            parts[-1] += f" [!{nb['body_calls']} of {n} were NOT cache hits]"
    except C.ChildFailed as exc:
        ok = False
        parts.append(f"nbflow FAILED ({exc})")
    try:
        pl = run("plain", n, sys.executable)
        parts.append(f"plain {C.fmt_num(per_task_us(pl))} µs/task")
    except C.ChildFailed as exc:
        ok = False
        pl = None
        parts.append(f"plain FAILED ({exc})")
    pf = None
    if args.vs == "prefect":
        import prefect_env

        pn = min(n, args.prefect_max_n)
        try:
            py, _version = prefect_env.ensure()
            pf = run("prefect", pn, str(py))
            at = f" (at n={pn:,})" if pn != n else ""
            parts.append(f"prefect {pf['version']}{at} {C.fmt_num(per_task_us(pf))} µs/task "
                         f"{C.fmt_s(pf['wall_s'])} {pf['tree_mb']:.0f} MB")
            if mode == "cache-hit" and pf.get("body_calls"):
                parts[-1] += f" [!{pf['body_calls']} of {pn} were NOT cache hits]"
            if nb:
                parts.append(f"prefect/nbflow {C.fmt_ratio(per_task_us(pf) / per_task_us(nb))}")
        except prefect_env.PrefectUnavailable as exc:
            parts.append(f"prefect unavailable: {exc}")
        except C.ChildFailed as exc:
            parts.append(f"prefect FAILED ({exc})")

    print(f"{mode} n={n:,}: " + " | ".join(parts), flush=True)

    if v:
        for label, r in (("nbflow", nb), ("plain", pl), ("prefect", pf)):
            if not r:
                continue
            extra = {k: (round(val, 6) if isinstance(val, float) else val) for k, val in r.items()}
            print(f"  {label}: {extra}")
        if nb:
            checks = [f"median {C.fmt_num(per_task_us(nb))} µs/task"]
            if mode in TARGETS:
                _unit, limit = TARGETS[mode]
                checks.append(f"target <= {limit:g} µs/task: {C.verdict(per_task_us(nb) <= limit)}")
            if mode == "map" and n == 1000:
                checks.append(f"target 1,000 mapped <= 0.1 s: {C.verdict(nb['wall_s'] <= 0.1)}")
            if mode == "map" and n == 100_000:
                checks.append(f"target 100,000 mapped < 30 s: {C.verdict(nb['wall_s'] < 30)}, "
                              f"< 1 GB: {C.verdict(nb['tree_mb'] < 1024)}")
            checks.append(f"best of {len(nb['all_wall_s'])} {C.fmt_num(min(nb['all_wall_s']) / n * 1e6)} µs/task, "
                          f"CPU {C.fmt_num(nb['cpu_s'] / n * 1e6)} µs/task")
            if pf:
                checks.append(f"target prefect/nbflow >= 100x: {C.verdict(per_task_us(pf) / per_task_us(nb) >= 100)}")
            print("  targets: " + "; ".join(checks))
        if pl and pl.get("threadpool_s") is not None:
            print(f"  bare concurrent.futures.ThreadPoolExecutor, same function: "
                  f"{C.fmt_num(pl['threadpool_s'] / n * 1e6)} µs/task {C.fmt_s(pl['threadpool_s'])}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
