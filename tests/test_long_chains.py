"""Long chains need no recursion depth proportional to their length."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from _support import WAIT

CHAIN = """
import sys
import flowkernel

n, cached = int(sys.argv[1]), sys.argv[2] == "cached"
sys.setrecursionlimit(250)  # far below the chain's length


@flowkernel.python_app(cache=cached)
def step(x):
    return x + 1


config = flowkernel.Config(
    executors=[flowkernel.ThreadPoolExecutor(max_threads=4)],
    run_dir="runinfo",
    initialize_logging=False,
)
with flowkernel.load(config) as kernel:
    future = step(0)
    for _ in range(n - 1):
        future = step(future)
    print(future.result(timeout=600))
    if cached:
        # A second identical chain is answered entirely from the memo table:
        # every completion then completes the next task at once, on one thread.
        again = step(0)
        for _ in range(n - 1):
            again = step(again)
        print(again.result(timeout=600), kernel.task_state_counts[flowkernel.States.memo_done])
"""


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["plain", "cached"])
def test_a_chain_of_100000_tasks_runs_with_a_tiny_recursion_limit(
    tmp_path: Path, mode: str
) -> None:
    n = 100_000
    script = tmp_path / "chain.py"
    script.write_text(textwrap.dedent(CHAIN))
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLOWKERNEL_")}
    out = subprocess.run(
        [sys.executable, str(script), str(n), mode],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=WAIT * 20,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    lines = out.stdout.split()
    assert lines[0] == str(n)
    if mode == "cached":
        assert lines[1:] == [str(n), str(n)]
