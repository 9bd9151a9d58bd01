"""What recording every transition in the monitoring database costs a workflow.

Run: ``python tests/benchmarks/bench_monitoring.py [--tasks N] [--repeats R] [--shape S]``

N trivial tasks on 4 threads, with and without ``Config(monitoring=True)``,
alternating, R runs each: ``independent`` tasks (the default) or a ``chain``
in which each task takes the one before as its input.  Prints the wall time
and the process's CPU time per task (best and median), the difference between
the bests and the median of the paired differences (each monitored run against
the unmonitored run just before it, so that the drift of a shared machine's
speed falls on both alike).  CPU time drifts less than wall time on a shared
machine, but counts the writer's SQLite work on the other core too, which the
workflow does not wait for.  The recorder queues a try when it ends, one hook
call per task, and a background thread writes them in batches.
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


def run(n: int, monitoring: bool, shape: str) -> tuple[float, float]:
    """Wall and CPU seconds for ``n`` tasks, cleanup (the writer draining) included."""
    app = flowkernel.python_app(inc)
    with tempfile.TemporaryDirectory() as tmp:
        config = flowkernel.Config(
            executors=[flowkernel.ThreadPoolExecutor(max_threads=4)],
            run_dir=tmp,
            initialize_logging=False,
            monitoring=monitoring,
        )
        start, cpu = time.perf_counter(), time.process_time()
        with flowkernel.load(config) as kernel:
            if shape == "chain":
                last = app(0)
                for _ in range(n - 1):
                    last = app(last)
                assert last.result() == n
            else:
                futures = [app(i) for i in range(n)]
                for future in futures:
                    future.result()
        elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu
        if monitoring:
            db = sqlite3.connect(os.path.join(kernel.run_dir, "monitoring.db"))
            (rows,) = db.execute("SELECT count(*) FROM transition").fetchone()
            db.close()
            assert rows == 3 * n, rows  # pending, launched, exec_done per task
    return elapsed, cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=100_000)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--shape", choices=("independent", "chain"), default="independent")
    args = parser.parse_args()
    run(1000, True, args.shape)
    off: list[tuple[float, float]] = []
    on: list[tuple[float, float]] = []
    for _ in range(args.repeats):
        off.append(run(args.tasks, False, args.shape))
        on.append(run(args.tasks, True, args.shape))
    print(
        f"{args.tasks:,} {args.shape} tasks, {args.repeats} runs each, alternating, "
        f"{os.cpu_count()} CPUs"
    )
    print("                        wall best  median    cpu best  median  (us/task)")
    for name, runs in (("without monitoring", off), ("with monitoring", on)):
        figures = []
        for which in (0, 1):
            times = [r[which] / args.tasks * 1e6 for r in runs]
            figures += [min(times), statistics.median(times)]
        print(f"  {name:<18}   {figures[0]:7.1f} {figures[1]:7.1f}     {figures[2]:7.1f} "
              f"{figures[3]:7.1f}")  # fmt: skip
    for which, label in ((0, "wall"), (1, "cpu ")):
        best = 100 * (min(r[which] for r in on) / min(r[which] for r in off) - 1)
        pairs = [b[which] / a[which] for a, b in zip(off, on, strict=True)]
        paired = 100 * (statistics.median(pairs) - 1)
        print(f"  overhead, {label}     {best:+6.1f}% (bests)  {paired:+6.1f}% (median of pairs)")


if __name__ == "__main__":
    main()
