"""Helpers shared by the tests (importable because pytest puts tests/ on sys.path)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable

WAIT = 30.0
"""Every wait in the suite is bounded by this, so a bug shows up as a failure, not a hang."""


def run_isolated(code: str, *args: str) -> subprocess.CompletedProcess[str]:
    """Run Python ``code`` in a fresh interpreter that sees only flowkernel's own plugins."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLOWKERNEL_")}
    env.update(FLOWKERNEL_NOCONF="1", FLOWKERNEL_DISABLE_PLUGIN_AUTOLOAD="1")
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code), *args],
        capture_output=True,
        text=True,
        timeout=WAIT,
        env=env,
    )


def wait_until(condition: Callable[[], object]) -> None:
    """Poll ``condition`` until it holds; a :class:`TimeoutError` after ``WAIT`` seconds."""
    deadline = time.monotonic() + WAIT
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError("condition never held")
        time.sleep(0.01)


def wait_for_file(path: str) -> None:
    """Block until ``path`` exists: how a test releases a task body, in any process."""
    deadline = time.monotonic() + WAIT
    while not os.path.exists(path):
        if time.monotonic() > deadline:
            raise TimeoutError(f"{path} never appeared")
        time.sleep(0.01)
