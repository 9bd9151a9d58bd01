"""A loop that submits a million tasks, with and without Config(max_pending_tasks=...).

Run: ``python tests/benchmarks/bench_backpressure.py [--tasks N] [--limit L] [--limited-only]``

Each task sleeps 0.2 ms on one of four executor threads, so the loop submits
faster than tasks finish; the loop keeps no futures (it counts results in a
done-callback), as a real producer loop would.  Without a limit every
unfinished task (record + future + arguments) waits in memory at once; with
``max_pending_tasks=L`` submission blocks while ``L`` tasks are unfinished, so
memory stays bounded.  Prints the peak number of unfinished tasks and the peak
RSS growth of each run.
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import tempfile
import threading
import time

import flowkernel


def _rss_mb() -> float:
    with open(f"/proc/{os.getpid()}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run(n: int, limit: int | None) -> tuple[float, float, float]:
    @flowkernel.python_app
    def inc(x: int) -> int:
        time.sleep(0.0002)  # slower than submitting: the producer runs ahead
        return x + 1

    done = 0
    lock = threading.Lock()

    def count(_future: object) -> None:
        nonlocal done
        with lock:
            done += 1

    with tempfile.TemporaryDirectory() as tmp:
        config = flowkernel.Config(
            executors=[flowkernel.ThreadPoolExecutor(max_threads=4)],
            run_dir=tmp,
            initialize_logging=False,
            max_pending_tasks=limit,
        )
        rss_before = _rss_mb()
        peak_rss, peak_unfinished = rss_before, 0
        start = time.perf_counter()
        with flowkernel.load(config) as kernel:
            for x in range(n):
                inc(x).add_done_callback(count)
                if x % 10_000 == 0:
                    peak_rss = max(peak_rss, _rss_mb())
                    peak_unfinished = max(peak_unfinished, x + 1 - done)
            kernel.wait_for_current_tasks()
        elapsed = time.perf_counter() - start
    assert done == n, (done, n)
    return elapsed, float(peak_unfinished), peak_rss - rss_before


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=1_000_000)
    parser.add_argument("--limit", type=int, default=10_000)
    parser.add_argument(
        "--limited-only", action="store_true", help="skip the run without a limit (it needs GBs)"
    )
    args = parser.parse_args()
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs, {args.tasks:,} tasks")
    for limit in (args.limit,) if args.limited_only else (args.limit, None):
        seconds, unfinished, rss = run(args.tasks, limit)
        label = f"max_pending_tasks={limit}" if limit else "no limit"
        print(
            f"  {label:<26} {seconds:7.1f} s   peak unfinished {unfinished:10,.0f}   "
            f"peak RSS growth {rss:8.1f} MB"
        )


if __name__ == "__main__":
    main()
