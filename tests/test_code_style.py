"""The code base stays ruff-clean and ruff-formatted (mypy: see test_typing.py)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from _support import WAIT

ROOT = Path(__file__).resolve().parent.parent
TREES = ["core", "plugins", "contrib", "tests", "docs"]


def _ruff(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "ruff", *args, *TREES],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=WAIT * 2,
    )


def test_ruff_finds_nothing() -> None:
    out = _ruff("check", "--no-cache")
    assert out.returncode == 0, out.stdout + out.stderr


def test_the_code_is_formatted() -> None:
    out = _ruff("format", "--check", "--no-cache")
    assert out.returncode == 0, out.stdout + out.stderr
