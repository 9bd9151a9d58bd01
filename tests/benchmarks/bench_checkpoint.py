"""Cost of task_exit checkpointing per task, against memoization alone and no caching.

Run: ``python tests/benchmarks/bench_checkpoint.py [--tasks N] [--repeats R] [--json]``

Each variant runs N trivial tasks (``x + 1`` on distinct arguments, so nothing
is a memo hit) on a 4-thread executor and reports the best of R repeats:

* ``plain``      — ``cache=False``: no memo key, no checkpoint;
* ``memo``       — ``cache=True``: a memo key per task, no checkpoint;
* ``task_exit``  — ``cache=True`` and ``checkpoint_mode="task_exit"``: each
  result is pickled and appended to the checkpoint file before its future
  completes.

It prints µs per task and the difference against ``plain``; the difference of
``task_exit`` and ``memo`` is the cost of the checkpoint write itself.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time

import flowkernel


def _run(n: int, cache: bool, mode: str | None) -> float:
    @flowkernel.python_app(cache=cache)
    def inc(x: int) -> int:
        return x + 1

    with tempfile.TemporaryDirectory() as tmp:
        config = flowkernel.Config(
            executors=[flowkernel.ThreadPoolExecutor(max_threads=4)],
            run_dir=tmp,
            initialize_logging=False,
            checkpoint_mode=mode,  # type: ignore[arg-type]
        )
        with flowkernel.load(config):
            start = time.perf_counter()
            futures = [inc(x) for x in range(n)]
            for future in futures:
                future.result()
            elapsed = time.perf_counter() - start
        if mode is not None:
            size = os.path.getsize(os.path.join(tmp, "000", "checkpoint", "tasks.pkl"))
            assert size > 0
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=20_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    variants = {"plain": (False, None), "memo": (True, None), "task_exit": (True, "task_exit")}
    _run(1000, True, "task_exit")  # warm-up
    best = {
        name: min(_run(args.tasks, cache, mode) for _ in range(args.repeats))
        for name, (cache, mode) in variants.items()
    }
    per_task = {name: seconds / args.tasks * 1e6 for name, seconds in best.items()}
    if args.json:
        print(json.dumps({"tasks": args.tasks, "us_per_task": per_task}, indent=2))
        return
    print(
        f"python {platform.python_version()}, {os.cpu_count()} CPUs, flowkernel "
        f"{flowkernel.__version__}, {args.tasks:,} tasks, best of {args.repeats}"
    )
    for name, micros in per_task.items():
        extra = micros - per_task["plain"]
        print(f"  {name:<10} {micros:8.1f} us/task   {extra:+8.1f} us vs plain")
    print(f"  checkpoint write alone: {per_task['task_exit'] - per_task['memo']:+.1f} us/task")


if __name__ == "__main__":
    sys.exit(main())
