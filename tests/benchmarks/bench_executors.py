"""CPU-bound work on threads, processes and Dask; and the Dask executor's cost per task.

Run: ``python tests/benchmarks/bench_executors.py [--tasks N] [--work W] [--workers K]``

1. N CPU-bound tasks (pure-Python loops of W iterations) on each executor kind
   with K workers: threads share one GIL, processes and Dask worker processes
   do not, so on K cores the latter approach K times faster.
2. The same trivial tasks through flowkernel's ``dask`` executor and through
   ``client.submit`` directly, on the same cluster, in the same run: the
   difference is what flowkernel adds per task.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

import flowkernel


def spin(n: int) -> int:
    total = 0
    for i in range(n):
        total += i * i
    return total


def inc(x: int) -> int:
    return x + 1


def _timed(executor: flowkernel.Executor, tasks: int, work: int) -> float:
    app = flowkernel.python_app(spin)
    with tempfile.TemporaryDirectory() as tmp:
        config = flowkernel.Config(executors=[executor], run_dir=tmp, initialize_logging=False)
        with flowkernel.load(config):
            app(10).result()  # warm up (workers started)
            start = time.perf_counter()
            futures = [app(work) for _ in range(tasks)]
            for future in futures:
                future.result()
            return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=16)
    parser.add_argument("--work", type=int, default=2_000_000)
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 2)
    parser.add_argument("--trivial", type=int, default=2_000)
    args = parser.parse_args()
    k = args.workers
    print(
        f"{os.cpu_count()} CPUs; {args.tasks} tasks of {args.work:,} loop iterations, {k} workers"
    )
    seconds = {
        "threads": _timed(
            flowkernel.make_executor("threads", max_threads=k), args.tasks, args.work
        ),
        "processes": _timed(
            flowkernel.make_executor("processes", max_workers=k), args.tasks, args.work
        ),
    }
    try:
        from distributed import Client, LocalCluster

        from flowkernel.contrib.spawning import without_main_reimport
    except ImportError:
        print("dask: not installed")
        Client = None  # type: ignore[assignment,misc]
    if Client is not None:
        with without_main_reimport():
            cluster = LocalCluster(
                n_workers=k, threads_per_worker=1, processes=True, dashboard_address=None
            )
        executor = flowkernel.make_executor("dask", cluster=cluster)
        seconds["dask"] = _timed(executor, args.tasks, args.work)
    for kind, value in seconds.items():
        speedup = seconds["threads"] / value
        print(f"  CPU-bound on {kind:<10} {value:7.2f} s   {speedup:4.2f}x threads")

    if Client is not None:
        n = args.trivial
        client = Client(cluster)
        client.gather(client.map(inc, range(100), pure=False))
        start = time.perf_counter()
        client.gather([client.submit(inc, i, pure=False) for i in range(n)])
        direct = (time.perf_counter() - start) / n * 1e6
        app = flowkernel.python_app(inc)
        with tempfile.TemporaryDirectory() as tmp:
            executor = flowkernel.make_executor("dask", cluster=cluster)
            config = flowkernel.Config(executors=[executor], run_dir=tmp, initialize_logging=False)
            with flowkernel.load(config):
                [app(i).result() for i in range(100)]
                start = time.perf_counter()
                futures = [app(i) for i in range(n)]
                for future in futures:
                    future.result()
                via = (time.perf_counter() - start) / n * 1e6
        print(
            f"  {n:,} trivial tasks on Dask: client.submit {direct:.0f} us/task, "
            f"flowkernel dask executor {via:.0f} us/task ({via - direct:+.0f} us)"
        )
        client.close()
        cluster.close()


if __name__ == "__main__":
    main()
