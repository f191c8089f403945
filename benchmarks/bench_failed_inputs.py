"""What keeping a failed task run's inputs costs: a task taking a 1M-row DataFrame fails, timed with
NBFLOW_KEEP_FAILED_INPUTS on and off (a fresh NBFLOW_HOME each time; the success path never keeps).
With --server, also while reporting to a real `nbflow server start` on this machine: from a home of
its own (as a worker on another machine: the data is sent to the server) and from the server's home
(nothing to send: one request finds it there).

    .venv/bin/python benchmarks/bench_failed_inputs.py [--rows 1000000] [--repeat 5] [--server]

It runs in the interpreter it is started with (it needs pandas and pyarrow), nbflow from this checkout.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import secrets
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--server", action="store_true", help="also time it while reporting to a server")
    args = ap.parse_args()

    import numpy as np
    import pandas as pd

    from nbflow import task

    logging.getLogger("nbflow").setLevel(logging.CRITICAL)  # the failure's own log line is not measured
    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"id": np.arange(args.rows), "amount": rng.normal(size=args.rows),
                          "units": rng.integers(0, 100, args.rows), "region": rng.choice(["n", "s", "e", "w"], args.rows)})

    @task
    def check(frame: pd.DataFrame) -> None:
        raise ValueError("bad row")

    def failed_run(keep: bool, home: str | None = None) -> tuple[float, int]:
        home = home or tempfile.mkdtemp(prefix="nbflow-bench-")
        os.environ["NBFLOW_HOME"] = home
        os.environ["NBFLOW_KEEP_FAILED_INPUTS"] = "1" if keep else "0"
        started = time.perf_counter()
        check(frame, return_state=True)
        seconds = time.perf_counter() - started
        kept = sum(p.stat().st_size for p in Path(home, "debug").rglob("*.parquet")) if keep else 0
        return seconds, kept

    failed_run(True), failed_run(False)  # warm-up: imports of pyarrow and cloudpickle
    on = [failed_run(True) for _ in range(args.repeat)]
    off = [failed_run(False)[0] for _ in range(args.repeat)]
    print(f"failed task with a {args.rows:,}-row DataFrame input ({frame.memory_usage(deep=True).sum() / 1e6:.0f} MB "
          f"in memory): keeping inputs {statistics.median(s for s, _ in on) * 1000:.0f} ms "
          f"({on[0][1] / 1e6:.1f} MB Parquet); off {statistics.median(off) * 1e6:.0f} µs")
    if args.server:
        with _server() as (url, token, server_home):
            os.environ.update(NBFLOW_API_URL=url, NBFLOW_API_TOKEN=token)
            failed_run(True)  # warm-up: the first connection
            remote = [failed_run(True)[0] for _ in range(args.repeat)]
            shared = [failed_run(True, server_home)[0] for _ in range(args.repeat)]
            kept = len(list(Path(server_home, "debug").rglob("manifest.json")))
            import nbflow

            nbflow.flush()  # the run records, before the server stops
        print(f"  reporting to a server on this machine: from a home of its own (sent to the server) "
              f"{statistics.median(remote) * 1000:.0f} ms; from the server's home {statistics.median(shared) * 1000:.0f} ms "
              f"({kept} failures kept by the server)")


class _server:
    """A real `nbflow server start` with a home of its own, on a free port."""

    def __enter__(self) -> tuple[str, str, str]:
        self.home = tempfile.mkdtemp(prefix="nbflow-bench-server-")
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        token = secrets.token_hex(16)
        env = {k: v for k, v in os.environ.items() if not k.startswith("NBFLOW_")}
        env.update(NBFLOW_HOME=self.home, NBFLOW_API_TOKEN=token, PYTHONPATH=str(Path(__file__).resolve().parents[1]))
        self.process = subprocess.Popen([sys.executable, "-m", "nbflow", "server", "start", "--port", str(port)],
                                        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        url = f"http://127.0.0.1:{port}/"
        deadline = time.monotonic() + 60
        while True:
            try:
                json.loads(urllib.request.urlopen(url + "nbflow/api/health", timeout=2).read())
                return url, token, self.home
            except OSError:
                if self.process.poll() is not None or time.monotonic() > deadline:
                    raise SystemExit("the nbflow server did not start") from None
                time.sleep(0.1)

    def __exit__(self, *exc: object) -> None:
        self.process.terminate()
        self.process.wait(timeout=30)

if __name__ == "__main__":
    main()
