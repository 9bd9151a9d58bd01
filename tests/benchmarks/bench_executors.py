"""CPU-bound work on threads, processes and Dask; and the Dask executor's cost per task.

Run: ``python tests/benchmarks/bench_executors.py [--tasks N] [--work W] [--workers K]
[--trivial T] [--repeat R]``

1. N CPU-bound tasks (pure-Python loops of W iterations) through flowkernel on
   each executor kind with K workers: threads share one GIL, processes and Dask
   worker processes do not, so on K cores the latter approach K times faster.
2. T trivial tasks through ``client.submit`` directly and through flowkernel's
   ``dask`` executor, on the same cluster, in the same run, best of R: the
   difference is what flowkernel adds per task.

Figures are printed, never asserted; compare figures from one run.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from collections.abc import Callable
from typing import Any

import flowkernel

WAIT = 600.0
"""Bound on every wait, so a broken engine ends the run instead of hanging it."""


def spin(n: int) -> int:
    total = 0
    for i in range(n):
        total += i * i
    return total


def inc(x: int) -> int:
    return x + 1


def _on_kernel(executor: flowkernel.Executor, body: Callable[[], float]) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        config = flowkernel.Config(executors=[executor], run_dir=tmp, initialize_logging=False)
        with flowkernel.load(config):
            return body()


def _cpu_bound(executor: flowkernel.Executor, tasks: int, work: int) -> float:
    app = flowkernel.python_app(spin)

    def body() -> float:
        app(10).result(timeout=WAIT)  # warm up: workers started
        start = time.perf_counter()
        futures = [app(work) for _ in range(tasks)]
        for future in futures:
            future.result(timeout=WAIT)
        return time.perf_counter() - start

    return _on_kernel(executor, body)


def _dask_overhead(cluster: Any, n: int, repeat: int) -> tuple[float, float]:
    """Microseconds per trivial task: plain ``client.submit``, then flowkernel's executor."""
    from distributed import Client

    with Client(cluster, set_as_default=False) as client:
        client.gather(client.map(inc, range(100), pure=False))  # warm up
        direct = []
        for _ in range(repeat):
            start = time.perf_counter()
            client.gather([client.submit(inc, i, pure=False) for i in range(n)])
            direct.append((time.perf_counter() - start) / n * 1e6)

    app = flowkernel.python_app(inc)

    def body() -> float:
        for future in [app(i) for i in range(100)]:  # warm up
            future.result(timeout=WAIT)
        best = float("inf")
        for _ in range(repeat):
            start = time.perf_counter()
            futures = [app(i) for i in range(n)]
            for future in futures:
                future.result(timeout=WAIT)
            best = min(best, (time.perf_counter() - start) / n * 1e6)
        return best

    via = _on_kernel(flowkernel.make_executor("dask", cluster=cluster), body)
    return min(direct), via


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--tasks", type=int, default=16)
    parser.add_argument("--work", type=int, default=2_000_000)
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 2)
    parser.add_argument("--trivial", type=int, default=2_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    k = args.workers
    print(f"{os.cpu_count()} CPUs; {args.tasks} tasks of {args.work:,} iterations, {k} workers")
    seconds = {
        "threads": _cpu_bound(
            flowkernel.make_executor("threads", max_threads=k), args.tasks, args.work
        ),
        "processes": _cpu_bound(
            flowkernel.make_executor("processes", max_workers=k), args.tasks, args.work
        ),
    }
    try:
        from distributed import LocalCluster

        from flowkernel.contrib.spawning import without_main_reimport
    except ImportError:
        print("dask: not installed (pip install 'flowkernel[dask]')")
        cluster = None
    else:
        with without_main_reimport():
            cluster = LocalCluster(
                n_workers=k, threads_per_worker=1, processes=True, dashboard_address=":0"
            )
        seconds["dask"] = _cpu_bound(
            flowkernel.make_executor("dask", cluster=cluster), args.tasks, args.work
        )
    for kind, value in seconds.items():
        speedup = seconds["threads"] / value
        print(f"  CPU-bound on {kind:<10} {value:7.2f} s   {speedup:4.2f}x threads")

    if cluster is not None:
        direct, via = _dask_overhead(cluster, args.trivial, args.repeat)
        print(
            f"  {args.trivial:,} trivial tasks on Dask (best of {args.repeat}): "
            f"client.submit {direct:.0f} us/task, flowkernel dask executor {via:.0f} us/task "
            f"({via - direct:+.0f} us/task)"
        )
        cluster.close()


if __name__ == "__main__":
    main()
