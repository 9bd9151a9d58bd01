"""The demo workflow behind ``flowkernel demo``.

It counts primes below a bound by splitting the range into chunks (fan-out),
adds the chunk counts (fan-in), sums them again with awk in a bash app whose
output the kernel captures, reads a "calibration" that fails on its first
try and is retried, checks the total against a join app that recomputes it
another way, and shows that a task whose input failed ends with a
DependencyError without running.  It returns a summary; the CLI prints it.
"""

from __future__ import annotations

import math
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from flowkernel.apps import bash_app, join_app, python_app
from flowkernel.config import Config
from flowkernel.errors import DependencyError
from flowkernel.loader import load
from flowkernel.streams import AUTO_LOGNAME


class TransientError(RuntimeError):
    """Stands in for a flaky network read."""


@dataclass
class DemoSummary:
    bound: int
    chunks: int
    primes: int
    primes_by_join: int
    primes_by_bash: int
    calibration_tries: int
    dependent_error: str
    state_counts: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0
    run_dir: str = ""

    def lines(self) -> list[str]:
        return [
            f"primes below {self.bound:,}: {self.primes:,} "
            f"(fan-out over {self.chunks} tasks, fan-in by one)",
            f"join app recount:         {self.primes_by_join:,} "
            f"({'agrees' if self.primes == self.primes_by_join else 'DISAGREES'})",
            f"bash (awk) recount:       {self.primes_by_bash:,} "
            f"({'agrees' if self.primes == self.primes_by_bash else 'DISAGREES'}; "
            "output captured to the run directory)",
            f"flaky calibration:        succeeded on try {self.calibration_tries} (retried)",
            f"task after a failed input: {self.dependent_error}",
            "task states:              "
            + ", ".join(f"{k}={v}" for k, v in sorted(self.state_counts.items())),
            f"wall time:                {self.seconds:.2f}s   run directory: {self.run_dir}",
        ]


def _is_prime(n: int) -> bool:
    if n < 2:
        return False
    if n % 2 == 0:
        return n == 2
    return all(n % d for d in range(3, math.isqrt(n) + 1, 2))


def run_demo(bound: int = 200_000, chunks: int = 16, run_dir: str | None = None) -> DemoSummary:
    tries: Counter[str] = Counter()
    tries_lock = threading.Lock()

    @python_app
    def count_primes(lo: int, hi: int) -> int:
        return sum(1 for n in range(lo, hi) if _is_prime(n))

    @python_app
    def total(inputs: list[int] = []) -> int:  # noqa: B006 - Parsl's inputs= idiom
        return sum(inputs)

    @python_app
    def calibration() -> float:
        with tries_lock:
            tries["calibration"] += 1
            attempt = tries["calibration"]
        if attempt == 1:
            raise TransientError("calibration server timed out (simulated)")
        return 1.0

    @python_app
    def scale(count: int, factor: float) -> int:
        return int(count * factor)

    @join_app
    def recount(lo: int, hi: int, parts: int) -> Any:
        # A join body builds more tasks and hands back their futures.
        step = math.ceil((hi - lo) / parts)
        futures = [count_primes(a, min(a + step, hi)) for a in range(lo, hi, step)]
        return total(inputs=futures)

    @bash_app
    def bash_sum(*counts: int, stdout: Any = AUTO_LOGNAME) -> str:
        # A bash app returns a command line; its output goes to a log file
        # the kernel names under the run directory.
        numbers = " ".join(str(c) for c in counts)
        return f"echo {numbers} | tr ' ' '\\n' | awk '{{s += $1}} END {{print s}}'"

    @python_app
    def broken_sensor() -> float:
        raise ValueError("sensor offline (simulated)")

    start = time.perf_counter()
    config = Config(
        retries=2,
        progress=True,  # a live table when run in a terminal; silent otherwise
        run_dir=run_dir or tempfile.mkdtemp(prefix="flowkernel-demo-"),
    )
    with load(config) as kernel:
        step = math.ceil(bound / chunks)
        counts = [count_primes(lo, min(lo + step, bound)) for lo in range(0, bound, step)]
        primes = scale(total(inputs=counts), calibration())
        by_join = recount(0, bound, max(2, chunks // 2))
        summed = bash_sum(*counts)
        dependent = scale(10, broken_sensor())
        primes_value = primes.result()
        by_join_value = by_join.result()
        summed.result()
        with open(summed.stdout or "") as log:
            by_bash_value = int(log.read().split()[-1])
        try:
            dependent.result()
            dependent_error = "ran (unexpected)"
        except DependencyError as exc:
            dependent_error = f"{type(exc).__name__}: {exc}"
        states = {s.name: n for s, n in kernel.task_state_counts.items() if n}
        run = kernel.run_dir
    return DemoSummary(
        bound=bound,
        chunks=len(counts),
        primes=primes_value,
        primes_by_join=by_join_value,
        primes_by_bash=by_bash_value,
        calibration_tries=tries["calibration"],
        dependent_error=dependent_error,
        state_counts=states,
        seconds=time.perf_counter() - start,
        run_dir=run,
    )
