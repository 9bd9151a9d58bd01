"""A live progress display in the terminal: tasks pending, running, done and failed, per app.

On with ``Config(progress=True)``, or ``FLOWKERNEL_PROGRESS=1`` when the config
leaves it unset; shown only when standard output is a terminal (silent in logs,
pipes and CI).  Needs ``rich``: ``pip install 'flowkernel[progress]'``.

Like the monitoring plugin, it registers a display on the kernels that ask for
one, at ``flowkernel_kernel_started``, so other kernels pay nothing per task.
The state hook only moves counters under a lock; rich's own thread redraws the
table a few times a second.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
from collections import defaultdict
from typing import TYPE_CHECKING, Any

from flowkernel.markers import hookimpl
from flowkernel.states import States

if TYPE_CHECKING:
    from flowkernel.kernel import DataFlowKernel
    from flowkernel.task import TaskRecord

logger = logging.getLogger(__name__)

COLUMNS = ("pending", "running", "done", "failed")

_COLUMN_OF = {
    States.unsched: "pending",
    States.pending: "pending",
    States.fail_retryable: "pending",
    States.launched: "running",
    States.joining: "running",
    States.exec_done: "done",
    States.memo_done: "done",
    States.failed: "failed",
    States.dep_fail: "failed",
}


def wanted(kernel: DataFlowKernel) -> bool:
    """Whether this kernel's config (or the environment) asks for a display."""
    setting = kernel.config.progress
    if setting is None:
        setting = os.environ.get("FLOWKERNEL_PROGRESS", "") not in ("", "0")
    return bool(setting)


class Display:
    """Counts per app and column, drawn by rich.live while the kernel runs."""

    def __init__(self, kernel: DataFlowKernel, console: Any) -> None:
        from rich.live import Live

        self.kernel = kernel
        self.counts: dict[str, dict[str, int]] = defaultdict(lambda: dict.fromkeys(COLUMNS, 0))
        self._lock = threading.Lock()
        self._live = Live(
            get_renderable=self.render, console=console, refresh_per_second=4, transient=False
        )
        self._live.start()

    def render(self) -> Any:
        from rich.table import Table

        table = Table(title=f"flowkernel {self.kernel.run_id[:8]}", expand=False)
        table.add_column("app")
        for column in COLUMNS:
            table.add_column(column, justify="right")
        with self._lock:
            rows = sorted((app, dict(c)) for app, c in self.counts.items())
        for app, counts in rows:
            table.add_row(app, *(str(counts[c]) for c in COLUMNS))
        return table

    @hookimpl
    def flowkernel_task_state_changed(self, task: TaskRecord, old: States, new: States) -> None:
        with self._lock:
            row = self.counts[task.func_name]
            if old is not States.unsched:
                row[_COLUMN_OF[old]] -= 1
            row[_COLUMN_OF[new]] += 1

    @hookimpl
    def flowkernel_kernel_stopped(self, kernel: DataFlowKernel) -> None:
        if kernel is self.kernel:
            self._live.stop()  # draws the final counts once more


@hookimpl
def flowkernel_kernel_started(kernel: DataFlowKernel) -> None:
    if not wanted(kernel) or not sys.stdout.isatty():
        return
    try:
        from rich.console import Console
    except ImportError:
        logger.warning("progress display needs rich: pip install 'flowkernel[progress]'")
        return
    display = Display(kernel, Console(file=sys.stdout))
    kernel.plugins.register(display, name=f"progress-display-{kernel.run_id}")
