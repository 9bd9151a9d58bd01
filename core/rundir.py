"""Run directories: ``<run_dir>/000``, ``001``, ... one per kernel."""

from __future__ import annotations

import os


def make_rundir(base: str) -> str:
    """Create and return the next numbered run directory under ``base``.

    ``os.mkdir`` either creates the directory or fails, so two kernels starting
    at once (threads or processes) never share one.
    """
    os.makedirs(base, exist_ok=True)
    numbers = [int(name) for name in os.listdir(base) if name.isdigit()]
    number = max(numbers, default=-1) + 1
    while True:
        path = os.path.join(base, f"{number:03d}")
        try:
            os.mkdir(path)
        except FileExistsError:
            number += 1
            continue
        return os.path.abspath(path)
