"""A script written for Parsl's local subset runs with ``import flowkernel as parsl``."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

from _support import WAIT

PARSL_STYLE_SCRIPT = """
import os

import flowkernel as parsl
from flowkernel import bash_app, join_app, python_app
from flowkernel import Config, ThreadPoolExecutor, File, AUTO_LOGNAME


@python_app
def double(x):
    return 2 * x


@python_app
def add(inputs=[]):
    return sum(inputs)


@bash_app
def echo(message, stdout=AUTO_LOGNAME):
    return f"echo {message}"


@join_app
def doubled_sum(n):
    return add(inputs=[double(i) for i in range(n)])


def retry_handler(exception, task_record):
    return 0.5 if task_record["fail_count"] < 3 else 10


tries = []


@python_app
def flaky():
    tries.append(1)
    if len(tries) < 3:
        raise RuntimeError("try again")
    return "steady"


config = Config(
    executors=[ThreadPoolExecutor(max_threads=2, label="local_threads")],
    retries=2,
    retry_handler=retry_handler,
    app_cache=True,
    checkpoint_mode="task_exit",
    run_dir="runinfo",
)
dfk = parsl.load(config)
print(add(inputs=[double(i) for i in range(10)]).result())
print(doubled_sum(4).result())
future = echo("from bash")
future.result()
print(open(future.stdout).read().strip())
print(flaky().result(), len(tries))
print(double(3).tid, type(double(3).task_record).__name__)
print(sorted(s.name for s, n in parsl.dfk().task_state_counts.items() if n))
parsl.wait_for_current_tasks()
print(parsl.States.exec_done.value, os.path.isdir(dfk.run_dir))
parsl.dfk().cleanup()
parsl.clear()
"""


def test_a_parsl_style_script_runs_unchanged(tmp_path: Path) -> None:
    script = tmp_path / "workflow.py"
    script.write_text(textwrap.dedent(PARSL_STYLE_SCRIPT))
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLOWKERNEL_")}
    out = subprocess.run(
        [sys.executable, str(script)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=WAIT * 2,
    )
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[:4] == ["90", "12", "from bash", "steady 3"]
    assert lines[4].endswith(" TaskRecord")
    assert "exec_done" in lines[5]
    assert lines[6] == "3 True"
