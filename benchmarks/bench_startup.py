"""Start-up cost of nbflow (optionally vs Prefect 3), one summary line.

    python3 benchmarks/bench_startup.py [--vs prefect] [-v] [--profile]

import:      `import nbflow` timed inside a fresh interpreter, median of 5 (after one untimed
             run that compiles the bytecode, as `pip install` would have), with the
             cumulative figure `python -X importtime` gives for the package alongside.
first call:  a fresh process on a fresh NBFLOW_HOME runs a flow with one task: the wall time of
             the call, and separately the call plus nbflow.flush() (the records durable in the
             store), median of --repeat processes. For Prefect (fresh PREFECT_HOME each time) the
             call includes booting its temporary local server, as a new user's first call does.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as C  # noqa: E402

IMPORT_SNIPPET = (
    "import time, sys; n0 = len(sys.modules); t = time.perf_counter(); import {pkg}; "
    "print(time.perf_counter() - t, len(sys.modules) - n0)"
)


# -- child: the first flow call -------------------------------------------------------------------

def child_first_call(framework: str, profile: bool) -> None:
    result: dict = {"framework": framework}
    t0 = time.perf_counter()
    if framework == "nbflow":
        import nbflow
        from nbflow import flow, task

        result["version"] = nbflow.__version__
        if profile:
            import threading

            from nbflow.store import buffer

            buffer.recorder._thread = threading.Thread(target=lambda: None)  # writes only in the profiled flush()
            buffer.EARLY_FLUSH_ROWS = 1 << 62
    else:
        import prefect
        from prefect import flow, task

        result["version"] = prefect.__version__
    result["import_s"] = time.perf_counter() - t0

    @task
    def inc(x):
        return x + 1

    @flow
    def hello():
        return inc(1)

    prof = C.ThreadProfiler() if profile else None
    c0 = time.process_time()
    t0 = time.perf_counter()
    if prof:
        with prof:
            value = hello()
    else:
        value = hello()
    result["call_s"] = time.perf_counter() - t0
    result["call_cpu_s"] = time.process_time() - c0
    if prof:
        prof.report(f"{framework} first flow call ({result['call_s']:.3f} s)")
    assert value == 2, value
    if framework == "nbflow":
        fprof = C.ThreadProfiler() if profile else None
        t1 = time.perf_counter()
        if fprof:
            with fprof:
                nbflow.flush()
        else:
            nbflow.flush()
        result["flush_s"] = time.perf_counter() - t1
        result["durable_s"] = time.perf_counter() - t0
        if fprof:
            fprof.report(f"nbflow.flush() after the first call ({result['flush_s']:.3f} s)")
    result.update(C.peak_rss_mb())
    if framework == "nbflow":
        result["runs_recorded"] = int(nbflow.sql("select count(*) from task_runs").iloc[0, 0])
    C.emit(result)


# -- parent -------------------------------------------------------------------------------------

def _env(framework: str) -> tuple[dict, str]:
    if framework == "prefect":
        import prefect_env

        home = C.fresh_home("bench-prefect-home-")
        return prefect_env.prefect_env(home), home
    home = C.fresh_home("bench-nbflow-home-")
    return C.nbflow_env(home), home


def _python(framework: str) -> str:
    if framework == "prefect":
        import prefect_env

        return str(prefect_env.ensure()[0])
    return sys.executable


def measure_import(framework: str, runs: int, verbose: bool) -> dict:
    import shutil

    py = _python(framework)
    env, home = _env(framework)
    try:
        snippet = IMPORT_SNIPPET.format(pkg=framework)
        cmd = [py, "-c", snippet]
        subprocess.run(cmd, env=env, cwd=str(C.ROOT), capture_output=True, text=True, timeout=600)  # compiles .pyc
        inside, process, modules = [], [], 0
        for _ in range(runs):
            t0 = time.perf_counter()
            proc = subprocess.run(cmd, env=env, cwd=str(C.ROOT), capture_output=True, text=True, timeout=600)
            process.append(time.perf_counter() - t0)
            if proc.returncode != 0:
                raise C.ChildFailed(f"import {framework} failed: {proc.stderr.strip().splitlines()[-1:]}")
            secs, modules = proc.stdout.split()
            inside.append(float(secs))
        bare = []
        for _ in range(3):
            t0 = time.perf_counter()
            subprocess.run([py, "-c", "pass"], env=env, cwd=str(C.ROOT), capture_output=True, timeout=60)
            bare.append(time.perf_counter() - t0)
        # python -X importtime: the package's cumulative time, and the heaviest modules
        proc = subprocess.run([py, "-X", "importtime", "-c", f"import {framework}"], env=env, cwd=str(C.ROOT),
                              capture_output=True, text=True, timeout=600)
        importtime_us, rows = None, []
        for line in proc.stderr.splitlines():
            if not line.startswith("import time:") or "self [us]" in line:
                continue
            self_us, cum_us, name = (p.strip() for p in line[len("import time:"):].split("|"))
            rows.append((int(self_us), int(cum_us), name))
            if name == framework:
                importtime_us = int(cum_us)
        heaviest = sorted(rows, key=lambda r: -r[1])[:8]
        result = {
            "median_s": C.median(inside), "all_s": inside, "modules": int(modules),
            "process_median_s": C.median(process), "bare_interpreter_s": C.median(bare),
            "importtime_s": importtime_us / 1e6 if importtime_us else None,
            "heaviest_cumulative": [(name.strip(), round(cum / 1000, 1)) for _s, cum, name in heaviest],
        }
        if framework == "nbflow" and verbose:
            # a source checkout with PYTHONDONTWRITEBYTECODE=1 (no .pyc): compiles nbflow every time
            cold_env = dict(env)
            cold_env.pop("PYTHONPYCACHEPREFIX", None)
            cold_env["PYTHONDONTWRITEBYTECODE"] = "1"
            proc = subprocess.run(cmd, env=cold_env, cwd=str(C.ROOT), capture_output=True, text=True, timeout=600)
            if proc.returncode == 0:
                result["no_pyc_s"] = float(proc.stdout.split()[0])
        return result
    finally:
        shutil.rmtree(home, ignore_errors=True)


def measure_first_call(framework: str, repeat: int, verbose: bool, profile: bool, timeout: float) -> dict:
    py = _python(framework)
    results = []
    for _ in range(max(1, repeat)):
        env, home = _env(framework)
        cmd = [py, str(Path(__file__).resolve()), "--child", framework]
        if profile:
            cmd.append("--profile")
        results.append(C.run_child(cmd, env, timeout=timeout, verbose=verbose or profile, home=home))
    out = C.median_of(results, "call_s")
    out["all_call_s"] = [round(r["call_s"], 4) for r in results]
    if framework == "nbflow":
        out["durable_s"] = C.median([r["durable_s"] for r in results])
        out["flush_s"] = C.median([r["flush_s"] for r in results])
        out["all_durable_s"] = [round(r["durable_s"], 4) for r in results]
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--vs", choices=["prefect"], help="also measure Prefect 3 (throwaway venv)")
    ap.add_argument("--imports", type=int, default=5, help="fresh interpreters for the import median (default 5)")
    ap.add_argument("--repeat", type=int, default=3, help="fresh processes for nbflow's first call (default 3)")
    ap.add_argument("--prefect-repeat", type=int, default=1, help="fresh processes for Prefect's first call (default 1)")
    ap.add_argument("--profile", action="store_true", help="cProfile nbflow's first call and flush (stderr); BENCH_PROFILE_CLOCK=wall|cpu")
    ap.add_argument("--timeout", type=float, default=900)
    ap.add_argument("-v", "--verbose", action="store_true")
    ap.add_argument("--child", choices=["nbflow", "prefect"], help=argparse.SUPPRESS)
    args = ap.parse_args(argv)

    if args.child:
        child_first_call(args.child, args.profile)
        return 0

    v = args.verbose
    parts: list[str] = []
    ok = True
    nb_imp = nb_call = pf_imp = pf_call = None
    try:
        nb_imp = measure_import("nbflow", args.imports, v)
        it = f" (-X importtime {C.fmt_ms(nb_imp['importtime_s'])})" if nb_imp["importtime_s"] else ""
        parts.append(f"import nbflow {C.fmt_ms(nb_imp['median_s'])}{it}")
    except C.ChildFailed as exc:
        ok = False
        parts.append(f"import nbflow FAILED ({exc})")
    try:
        nb_call = measure_first_call("nbflow", 1 if args.profile else args.repeat, v, args.profile, args.timeout)
        parts.append(f"first flow call {C.fmt_time(nb_call['call_s'])}, durable {C.fmt_time(nb_call['durable_s'])}, "
                     f"{nb_call['tree_mb']:.0f} MB")
    except C.ChildFailed as exc:
        ok = False
        parts.append(f"first flow call FAILED ({exc})")
    if args.vs == "prefect":
        import prefect_env

        try:
            _py, version = prefect_env.ensure()
            pf_imp = measure_import("prefect", args.imports, v)
            pf_call = measure_first_call("prefect", args.prefect_repeat, v, False, args.timeout)
            it = f" (-X importtime {C.fmt_ms(pf_imp['importtime_s'])})" if pf_imp["importtime_s"] else ""
            parts.append(f"prefect {version}: import {C.fmt_ms(pf_imp['median_s'])}{it}, first flow call "
                         f"{C.fmt_s(pf_call['call_s'])}, {pf_call['tree_mb']:.0f} MB")
            if nb_imp and nb_call:
                parts.append(f"prefect/nbflow: import {C.fmt_ratio(pf_imp['median_s'] / nb_imp['median_s'])}, "
                             f"first call {C.fmt_ratio(pf_call['call_s'] / nb_call['call_s'])} "
                             f"(vs durable {C.fmt_ratio(pf_call['call_s'] / nb_call['durable_s'])})")
        except prefect_env.PrefectUnavailable as exc:
            parts.append(f"prefect unavailable: {exc}")
        except C.ChildFailed as exc:
            parts.append(f"prefect FAILED ({exc})")

    print("startup: " + " | ".join(parts), flush=True)
    if v:
        for label, r in (("nbflow import", nb_imp), ("nbflow first call", nb_call),
                         ("prefect import", pf_imp), ("prefect first call", pf_call)):
            if r:
                shown = {k: (round(x, 6) if isinstance(x, float) else x) for k, x in r.items()}
                print(f"  {label}: {shown}")
        checks = []
        if nb_imp:
            checks.append(f"import <= 150 ms: {C.verdict(nb_imp['median_s'] <= 0.150)}")
        if nb_call:
            checks.append(f"first call <= 0.2 s: {C.verdict(nb_call['call_s'] <= 0.2)} "
                          f"(durable {C.verdict(nb_call['durable_s'] <= 0.2)})")
        if nb_imp and pf_imp:
            checks.append(f"import >= 10x better than Prefect: "
                          f"{C.verdict(pf_imp['median_s'] / nb_imp['median_s'] >= 10)}")
        if nb_call and pf_call:
            checks.append(f"first call >= 100x better than Prefect: "
                          f"{C.verdict(pf_call['call_s'] / nb_call['call_s'] >= 100)} "
                          f"(durable {C.verdict(pf_call['call_s'] / nb_call['durable_s'] >= 100)})")
        print("  targets: " + "; ".join(checks))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
