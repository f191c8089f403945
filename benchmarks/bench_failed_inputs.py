"""What keeping a failed task run's inputs costs: a task taking a 1M-row DataFrame fails, timed with
NBFLOW_KEEP_FAILED_INPUTS on and off (a fresh NBFLOW_HOME each time; the success path never keeps).

    .venv/bin/python benchmarks/bench_failed_inputs.py [--rows 1000000] [--repeat 5]

It runs in the interpreter it is started with (it needs pandas and pyarrow), nbflow from this checkout.
"""

from __future__ import annotations

import argparse
import logging
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--repeat", type=int, default=5)
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

    def failed_run(keep: bool) -> tuple[float, int]:
        home = tempfile.mkdtemp(prefix="nbflow-bench-")
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


if __name__ == "__main__":
    main()
