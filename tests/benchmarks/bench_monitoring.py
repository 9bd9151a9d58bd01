"""What recording every transition in the monitoring database costs a workflow.

Run: ``python tests/benchmarks/bench_monitoring.py [--tasks N] [--repeats R]``

N trivial tasks on 4 threads, with and without ``Config(monitoring=True)``,
alternating, R runs each; prints the time per task (best and median), the
difference between the bests and the median of the paired differences (each
monitored run against the unmonitored run just before it, so that the drift
of a shared machine's speed falls on both alike).  The recorder copies a
task's fields when its try ends, one hook call per task, and a background
thread writes them in batches.
"""

from __future__ import annotations

import argparse
import os
import sqlite3
import statistics
import tempfile
import time

import flowkernel


def inc(x: int) -> int:
    return x + 1


def run(n: int, monitoring: bool) -> float:
    app = flowkernel.python_app(inc)
    with tempfile.TemporaryDirectory() as tmp:
        config = flowkernel.Config(
            executors=[flowkernel.ThreadPoolExecutor(max_threads=4)],
            run_dir=tmp,
            initialize_logging=False,
            monitoring=monitoring,
        )
        start = time.perf_counter()
        with flowkernel.load(config) as kernel:
            futures = [app(i) for i in range(n)]
            for future in futures:
                future.result()
        elapsed = time.perf_counter() - start  # includes the writer draining at cleanup
        if monitoring:
            db = sqlite3.connect(os.path.join(kernel.run_dir, "monitoring.db"))
            (rows,) = db.execute("SELECT count(*) FROM transition").fetchone()
            db.close()
            assert rows == 3 * n, rows  # pending, launched, exec_done per task
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=100_000)
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    run(1000, True)
    off, on = [], []
    for _ in range(args.repeats):
        off.append(run(args.tasks, False))
        on.append(run(args.tasks, True))
    print(f"{args.tasks:,} tasks, {args.repeats} runs each, alternating, {os.cpu_count()} CPUs")
    print("                        best    median  (us/task)")
    for name, times in (("without monitoring", off), ("with monitoring", on)):
        best, middle = min(times), statistics.median(times)
        print(f"  {name:<18} {best / args.tasks * 1e6:7.1f}  {middle / args.tasks * 1e6:7.1f}")
    best = 100 * (min(on) / min(off) - 1)
    paired = 100 * (statistics.median(b / a for a, b in zip(off, on, strict=True)) - 1)
    print(f"  overhead           {best:+6.1f}% (bests)  {paired:+6.1f}% (median of pairs)")


if __name__ == "__main__":
    main()
