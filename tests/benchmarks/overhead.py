"""Per-task overhead of flowkernel next to plain concurrent.futures (and Parsl, Dask if installed).

Run: ``python tests/benchmarks/overhead.py [--tasks N] [--workers W] [--repeats R] [--json]``

Every task is trivial (``x + 1``), so what is measured is the cost of the
machinery around it.  All systems run in the same process, one after another,
with the same number of worker threads; each figure is the best of R repeats,
and the systems compared in a ratio take turns, round by round, so that the
drift of a shared machine's speed falls on all of them alike.

Workloads (N tasks unless said otherwise):

* ``independent`` — submit N tasks, then wait for all;
* ``chain``       — each task takes the previous one's future (plain
  concurrent.futures: each task submits the next from its done-callback);
* ``fan-in``      — N tasks and one task taking all N futures as ``inputs``,
  for N = 1,000 / 10,000 / 100,000 (capped at --tasks), both with the inputs
  already running and with inputs that finish only after the fan-in task was
  submitted (``late``); every sample covers as many tasks at each size (ten
  fan-ins of 10,000 against one of 100,000), so that each size is timed over
  as long a stretch of the machine's drifting speed;
* ``diamond``     — one root, N middle tasks on it, one sink on all of them;
* ``memo``        — N calls of a ``cache=True`` app over 100 distinct arguments;
* ``hooks``       — ``independent`` with 10 extra no-op plugins implementing
  every hook.

Memory: bytes retained per task while all N futures are held, and what is
left after the futures are dropped, measured with ``tracemalloc`` in a
separate pass (tracing slows everything, so it never overlaps the timings).
"""

from __future__ import annotations

import argparse
import concurrent.futures as cf
import gc
import json
import os
import platform
import sys
import tempfile
import threading
import time
import tracemalloc
from collections.abc import Callable
from typing import Any

import flowkernel
from flowkernel import hookspecs


def inc(x: int = 0) -> int:
    return x + 1


def opener(gate: threading.Event) -> int:
    """Holds its dependents back until the gate opens (the ``late`` fan-in)."""
    gate.wait()
    return 0


def total(*parts: int, inputs: list[int] = []) -> int:  # noqa: B006 - Parsl's inputs= idiom
    return sum(parts) + sum(inputs)


# -- plain concurrent.futures -----------------------------------------------------------


def cf_independent(pool: cf.ThreadPoolExecutor, n: int) -> None:
    futures = [pool.submit(inc, i) for i in range(n)]
    for future in futures:
        future.result()


def cf_chain(pool: cf.ThreadPoolExecutor, n: int) -> None:
    done = threading.Event()
    remaining = [n]

    def step(future: cf.Future[int]) -> None:
        # A future already done when its callback is added runs the callback
        # at once, on this stack: loop over those instead of recursing.
        while True:
            remaining[0] -= 1
            if remaining[0] == 0:
                done.set()
                return
            future = pool.submit(inc, future.result())
            if not future.done():
                future.add_done_callback(step)
                return

    pool.submit(inc, 0).add_done_callback(step)
    done.wait()


def cf_fan_in(pool: cf.ThreadPoolExecutor, n: int) -> None:
    parts = [pool.submit(inc, i) for i in range(n)]
    pool.submit(lambda: sum(f.result() for f in parts)).result()


# -- flowkernel ---------------------------------------------------------------------------


def _fk_apps(kernel: flowkernel.DataFlowKernel | None = None) -> dict[str, Any]:
    return {
        "inc": flowkernel.python_app(inc, data_flow_kernel=kernel),
        "total": flowkernel.python_app(total, data_flow_kernel=kernel),
        "cached": flowkernel.python_app(inc, data_flow_kernel=kernel, cache=True),
        "opener": flowkernel.python_app(opener, data_flow_kernel=kernel),
    }


def fk_independent(apps: dict[str, Any], n: int) -> None:
    app = apps["inc"]
    futures = [app(i) for i in range(n)]
    for future in futures:
        future.result()


def fk_chain(apps: dict[str, Any], n: int) -> None:
    app = apps["inc"]
    future = app(0)
    for _ in range(n - 1):
        future = app(future)
    future.result()


def fk_fan_in(apps: dict[str, Any], n: int, late: bool = False) -> None:
    gate = threading.Event()
    inc_app, total_app = apps["inc"], apps["total"]
    root = apps["opener"](gate) if late else None
    parts = [inc_app(root if late else i) for i in range(n)]
    sink = total_app(inputs=parts)
    gate.set()
    sink.result()


def fk_diamond(apps: dict[str, Any], n: int) -> None:
    inc_app, total_app = apps["inc"], apps["total"]
    root = inc_app(0)
    middle = [inc_app(root) for _ in range(n)]
    total_app(inputs=middle).result()


def fk_memo(apps: dict[str, Any], n: int) -> None:
    app = apps["cached"]
    futures = [app(i % 100) for i in range(n)]
    for future in futures:
        future.result()


class NoOpPlugin:
    """Implements every hook and decides nothing, as a monitoring plugin might."""

    def __init__(self, number: int) -> None:
        self.number = number


def _no_op(name: str) -> Callable[..., None]:
    spec = getattr(hookspecs, name)
    params = list(spec.__code__.co_varnames[: spec.__code__.co_argcount])
    namespace: dict[str, Any] = {}
    exec(f"def {name}(self, {', '.join(params)}):\n    return None", namespace)
    return flowkernel.hookimpl(namespace[name])  # type: ignore[no-any-return]


for _hook in hookspecs.HOOK_NAMES:
    setattr(NoOpPlugin, _hook, _no_op(_hook))


def _config(workers: int, run_dir: str, **fields: Any) -> flowkernel.Config:
    return flowkernel.Config(
        executors=[flowkernel.ThreadPoolExecutor(max_threads=workers)],
        run_dir=run_dir,
        initialize_logging=False,
        **fields,
    )


def _kernel(workers: int, run_dir: str, **fields: Any) -> flowkernel.DataFlowKernel:
    return flowkernel.load(_config(workers, run_dir, **fields))


# -- Parsl and Dask, when installed ------------------------------------------------------------


def _parsl(workers: int, run_dir: str) -> tuple[Any, dict[str, Any]] | None:
    try:
        import parsl
        from parsl.config import Config as ParslConfig
        from parsl.executors.threads import ThreadPoolExecutor as ParslThreads
    except ImportError:
        return None
    dfk = parsl.load(ParslConfig(executors=[ParslThreads(max_threads=workers)], run_dir=run_dir))
    apps = {
        "inc": parsl.python_app(inc),
        "total": parsl.python_app(total),
        "cached": parsl.python_app(cache=True)(inc),
    }
    return dfk, apps


def _dask_client(workers: int) -> Any:
    try:
        from dask.distributed import Client, LocalCluster
    except ImportError:
        return None
    cluster = LocalCluster(
        n_workers=1, threads_per_worker=workers, processes=False, dashboard_address=None
    )
    return Client(cluster)


def dask_independent(client: Any, n: int) -> None:
    futures = client.map(inc, range(n), pure=False)
    client.gather(futures)


def dask_chain(client: Any, n: int) -> None:
    future = client.submit(inc, 0, pure=False)
    for _ in range(n - 1):
        future = client.submit(inc, future, pure=False)
    future.result()


def delayed_independent(n: int, workers: int) -> None:
    import dask

    tasks = [dask.delayed(inc)(i) for i in range(n)]
    dask.compute(*tasks, scheduler="threads", num_workers=workers)


# -- measuring ----------------------------------------------------------------------------------


def timed(fn: Callable[[], None]) -> float:
    gc.collect()
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def best_of(repeats: int, fn: Callable[[], None]) -> float:
    return min(timed(fn) for _ in range(repeats))


def interleaved(repeats: int, runs: dict[str, Callable[[], None]]) -> dict[str, float]:
    """The best time of each run, the runs taking turns round by round.

    On a shared machine the speed drifts by tens of percent within a minute;
    taking turns exposes every system to the same drift, so their ratio holds.
    """
    best = dict.fromkeys(runs, float("inf"))
    for _ in range(repeats):
        for name, fn in runs.items():
            best[name] = min(best[name], timed(fn))
    return best


def memory_per_task(workers: int, n: int) -> dict[str, float]:
    """Bytes retained per task while futures are held; MB left once they are dropped."""
    with tempfile.TemporaryDirectory() as tmp, _kernel(workers, tmp) as kernel:
        app = flowkernel.python_app(inc)
        fk_independent({"inc": app}, 1000)  # warm up
        gc.collect()
        tracemalloc.start()
        base = tracemalloc.get_traced_memory()[0]
        futures = [app(i) for i in range(n)]
        for future in futures:
            future.result()
        kernel.wait_for_current_tasks()
        gc.collect()
        held = tracemalloc.get_traced_memory()[0] - base
        del futures, future
        gc.collect()
        left = tracemalloc.get_traced_memory()[0] - base
        tracemalloc.stop()
    return {"bytes_per_held_task": held / n, "mb_left_after_drop": left / 2**20}


def run(args: argparse.Namespace) -> dict[str, Any]:
    n, workers, repeats = args.tasks, args.workers, args.repeats
    sizes = [s for s in (1_000, 10_000, 100_000) if s <= n] or [n]
    results: dict[str, dict[str, float]] = {}

    def record(workload: str, system: str, seconds: float, count: int) -> None:
        results.setdefault(workload, {})[system] = seconds / count * 1e6

    plugins = [NoOpPlugin(i) for i in range(10)]
    with (
        tempfile.TemporaryDirectory() as tmp,
        cf.ThreadPoolExecutor(max_workers=workers) as pool,
        flowkernel.DataFlowKernel(_config(workers, os.path.join(tmp, "a"))) as kernel,
        flowkernel.DataFlowKernel(
            _config(workers, os.path.join(tmp, "b"), plugins=plugins)
        ) as hooked_kernel,
    ):
        apps, hooked = _fk_apps(kernel), _fk_apps(hooked_kernel)
        cf_independent(pool, 1000)
        fk_independent(apps, 1000)
        fk_independent(hooked, 1000)
        best = interleaved(
            repeats,
            {
                "cf independent": lambda: cf_independent(pool, n),
                "fk independent": lambda: fk_independent(apps, n),
                "hooks": lambda: fk_independent(hooked, n),
                "cf chain": lambda: cf_chain(pool, n),
                "fk chain": lambda: fk_chain(apps, n),
            },
        )
        record("independent", "concurrent.futures", best["cf independent"], n)
        record("independent", "flowkernel", best["fk independent"], n)
        record("chain", "concurrent.futures", best["cf chain"], n)
        record("chain", "flowkernel", best["fk chain"], n)
        record("hooks (10 no-op plugins)", "flowkernel", best["hooks"], n)
        for size in sizes:
            # Each sample covers as many tasks at every size (ten 10,000-task
            # fan-ins against one of 100,000): the best of short samples is
            # likelier to fall wholly into a fast moment of a shared machine,
            # which would flatter the small sizes and so the scaling ratio.
            times = max(1, sizes[-1] // size)

            def again(fn: Callable[[], None], times: int = times) -> Callable[[], None]:
                return lambda: [fn() for _ in range(times)] and None

            best = interleaved(
                repeats,
                {
                    "cf": again(lambda s=size: cf_fan_in(pool, s)),
                    "fk": again(lambda s=size: fk_fan_in(apps, s)),
                    "fk late": again(lambda s=size: fk_fan_in(apps, s, late=True)),
                },
            )
            record(f"fan-in {size}", "concurrent.futures", best["cf"], size * times)
            record(f"fan-in {size}", "flowkernel", best["fk"], size * times)
            record(f"fan-in {size} late", "flowkernel", best["fk late"], size * times)
        record("diamond", "flowkernel", best_of(repeats, lambda: fk_diamond(apps, n)), n)
        record("memo", "flowkernel", best_of(repeats, lambda: fk_memo(apps, n)), n)

        parsl_setup = _parsl(workers, os.path.join(tmp, "parsl"))
        if parsl_setup is not None:
            dfk, apps = parsl_setup
            small = min(n, 20_000)  # Parsl is slow enough that a smaller run suffices
            record("independent", "parsl", best_of(1, lambda: fk_independent(apps, small)), small)
            record("chain", "parsl", best_of(1, lambda: fk_chain(apps, small)), small)
            dfk.cleanup()

    client = _dask_client(workers)
    if client is not None:
        small = min(n, 20_000)
        record(
            "independent",
            "dask (LocalCluster threads)",
            best_of(1, lambda: dask_independent(client, small)),
            small,
        )
        record(
            "chain",
            "dask (LocalCluster threads)",
            best_of(1, lambda: dask_chain(client, small)),
            small,
        )
        record(
            "independent",
            "dask.delayed threaded",
            best_of(1, lambda: delayed_independent(small, workers)),
            small,
        )
        client.close()
        client.cluster.close()

    memory = memory_per_task(workers, n)
    return {
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "tasks": n,
        "workers": workers,
        "repeats": repeats,
        "flowkernel": flowkernel.__version__,
        "parsl": "installed" if _importable("parsl") else "not installed",
        "dask": "installed" if _importable("dask.distributed") else "not installed",
        "us_per_task": results,
        "memory": memory,
    }


def _importable(name: str) -> bool:
    try:
        __import__(name)
    except ImportError:
        return False
    return True


def print_table(report: dict[str, Any]) -> None:
    print(
        f"python {report['python']}, {report['cpus']} CPUs, {report['tasks']:,} tasks, "
        f"{report['workers']} workers, best of {report['repeats']}; "
        f"parsl {report['parsl']}, dask {report['dask']}"
    )
    print(f"{'workload':<28} {'system':<30} {'us/task':>9} {'vs cf':>7}")
    for workload, systems in report["us_per_task"].items():
        base_key = workload.replace(" late", "")
        base = report["us_per_task"].get(base_key, {}).get("concurrent.futures")
        if workload.startswith(("diamond", "memo", "hooks")):
            base = report["us_per_task"]["independent"]["concurrent.futures"]
        for system, micros in systems.items():
            ratio = f"{micros / base:6.2f}x" if base else ""
            print(f"{workload:<28} {system:<30} {micros:9.1f} {ratio:>7}")
    fk = report["us_per_task"]
    hooks = fk["hooks (10 no-op plugins)"]["flowkernel"] / fk["independent"]["flowkernel"]
    print(f"10 no-op plugins cost {100 * (hooks - 1):.0f}% of per-task time")
    sizes = sorted(int(k.split()[1]) for k in fk if k.startswith("fan-in") and "late" not in k)
    if len(sizes) > 1:
        for late in ("", " late"):
            small, big = sizes[-2], sizes[-1]
            grow = (fk[f"fan-in {big}{late}"]["flowkernel"] * big) / (
                fk[f"fan-in {small}{late}"]["flowkernel"] * small
            )
            print(f"fan-in{late or ''} {big:,} takes {grow:.1f}x the time of {small:,}")
    memory = report["memory"]
    print(
        f"memory: {memory['bytes_per_held_task']:.0f} bytes per task while its future is held; "
        f"{memory['mb_left_after_drop']:.1f} MB left after {report['tasks']:,} futures dropped"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=100_000)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = parser.parse_args()
    sys.setrecursionlimit(1000)  # the chain must not need more
    report = run(args)
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print_table(report)


if __name__ == "__main__":
    main()
