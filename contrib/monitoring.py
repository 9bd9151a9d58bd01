"""Monitoring store: the workflow and every task transition, in a SQLite database.

On with ``Config(monitoring=True)`` (``<run dir>/monitoring.db``) or
``Config(monitoring="path.db")``.  At ``flowkernel_kernel_started`` this plugin
registers a :class:`Recorder` for that kernel only, so kernels without
monitoring pay nothing per task.

The recorder's state hook only appends a finished row to a list; a writer
thread takes the list a few times a second and writes it in one
``executemany`` and one commit, so the workflow's threads never wait for the
disk.  At
``flowkernel_kernel_stopped`` — after the last transition — the writer drains
the queue, records the final counts and closes the database.

Tables: ``workflow`` (one row per kernel: run id, script name, user, host, run
directory, start and end, task count, counts per state) and ``transition``
(run id, task id, try, app, executor, state, time); ``task`` (run id, task id,
app, input task ids, fail count, fail history, whether it came from the memo
table) is written when a task ends.
"""

from __future__ import annotations

import getpass
import json
import logging
import os
import socket
import sqlite3
import sys
import threading
import time
from typing import TYPE_CHECKING, Any

from flowkernel.markers import hookimpl
from flowkernel.states import FINAL_STATES, States

if TYPE_CHECKING:
    from flowkernel.kernel import DataFlowKernel
    from flowkernel.task import TaskRecord

logger = logging.getLogger(__name__)

DB_NAME = "monitoring.db"

SCHEMA = """
CREATE TABLE IF NOT EXISTS workflow (
    run_id TEXT PRIMARY KEY, name TEXT, user TEXT, host TEXT, run_dir TEXT,
    began REAL, ended REAL, tasks INTEGER, counts TEXT
);
CREATE TABLE IF NOT EXISTS transition (
    run_id TEXT, task_id INTEGER, try_id INTEGER, app TEXT, executor TEXT,
    state TEXT, at REAL
);
CREATE TABLE IF NOT EXISTS task (
    run_id TEXT, task_id INTEGER, app TEXT, depends TEXT, fail_count INTEGER,
    fail_history TEXT, from_memo INTEGER, PRIMARY KEY (run_id, task_id)
);
CREATE INDEX IF NOT EXISTS transition_task ON transition (run_id, task_id);
"""

FLUSH_INTERVAL = 0.25
"""Seconds between the writer's batches."""

_NAMES = {state: state.name for state in States}


def database_path(kernel: DataFlowKernel) -> str | None:
    """Where a kernel's config says to record, or None when monitoring is off."""
    setting = kernel.config.monitoring
    if setting is False or setting is None:
        return None
    if setting is True:
        return os.path.join(kernel.run_dir, DB_NAME)
    return os.fspath(setting)


class Recorder:
    """Records one kernel's run; registered on that kernel's plugins only.

    The state hook appends finished rows to two lists under ``_lock`` (a short
    critical section); every ``FLUSH_INTERVAL`` seconds the writer thread swaps
    the lists for empty ones and hands them to ``executemany`` whole, so the
    writer does no Python work per row and competes little for the GIL.
    """

    def __init__(self, kernel: DataFlowKernel, path: str) -> None:
        self.kernel = kernel
        self.path = path
        self.run_id = kernel.run_id
        self._lock = threading.Lock()
        self._rows: list[tuple[Any, ...]] = []  # transition rows
        self._ended: list[tuple[Any, ...]] = []  # task rows
        self._inputs: dict[int, str] = {}  # task id -> its input task ids, until it ends
        self._stop = threading.Event()
        self._writer = threading.Thread(
            target=self._write_loop, name="flowkernel-monitoring", daemon=True
        )
        folder = os.path.dirname(os.path.abspath(path))
        os.makedirs(folder, exist_ok=True)
        self._db = sqlite3.connect(path, check_same_thread=False)
        # A record of a run, not a bank: losing the last batch to a power cut is
        # acceptable, waiting for the disk on every batch is not.
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=OFF")
        self._db.executescript(SCHEMA)
        self._db.execute(
            "INSERT OR REPLACE INTO workflow VALUES (?, ?, ?, ?, ?, ?, NULL, 0, NULL)",
            (
                self.run_id,
                os.path.basename(sys.argv[0]) if sys.argv and sys.argv[0] else "python",
                getpass.getuser(),
                socket.gethostname(),
                kernel.run_dir,
                kernel.time_began,
            ),
        )
        self._db.commit()
        self._writer.start()

    # -- hooks (this kernel only) ----------------------------------------------

    @hookimpl
    def flowkernel_task_state_changed(self, task: TaskRecord, old: States, new: States) -> None:
        row = (self.run_id, task.id, task.try_id, task.func_name, task.executor,
               _NAMES[new], time.time())  # fmt: skip
        if old is States.unsched:
            if task.depends:  # known now, forgotten at launch
                ids = ",".join(str(f.tid) for f in task.depends if hasattr(f, "tid"))
                with self._lock:
                    self._inputs[task.id] = ids
                    self._rows.append(row)
                return
        elif new in FINAL_STATES:
            with self._lock:
                inputs = self._inputs.pop(task.id, "")
            ended = (self.run_id, task.id, task.func_name, inputs, task.fail_count,
                     json.dumps(list(task.fail_history)), int(bool(task.from_memo)))  # fmt: skip
            with self._lock:
                self._rows.append(row)
                self._ended.append(ended)
            return
        with self._lock:
            self._rows.append(row)

    @hookimpl
    def flowkernel_kernel_stopped(self, kernel: DataFlowKernel) -> None:
        if kernel is not self.kernel:
            return
        self._stop.set()
        self._writer.join()

    # -- the writer thread ---------------------------------------------------------

    def _write_loop(self) -> None:
        while True:
            stopping = self._stop.wait(FLUSH_INTERVAL)
            with self._lock:
                rows, self._rows = self._rows, []
                ended, self._ended = self._ended, []
            try:
                if rows:
                    self._db.executemany(
                        "INSERT INTO transition VALUES (?, ?, ?, ?, ?, ?, ?)", rows
                    )
                if ended:
                    self._db.executemany(
                        "INSERT OR REPLACE INTO task VALUES (?, ?, ?, ?, ?, ?, ?)", ended
                    )
                self._db.commit()
            except Exception:
                logger.exception("monitoring: writing %d transition(s) failed", len(rows))
            if stopping:
                self._finish()
                return

    def _finish(self) -> None:
        kernel = self.kernel
        counts = {state.name: n for state, n in kernel.task_state_counts.items() if n}
        self._db.execute(
            "UPDATE workflow SET ended = ?, tasks = ?, counts = ? WHERE run_id = ?",
            (
                kernel.time_completed or time.time(),
                kernel.task_count,
                json.dumps(counts),
                self.run_id,
            ),
        )
        self._db.commit()
        self._db.close()


@hookimpl
def flowkernel_kernel_started(kernel: DataFlowKernel) -> None:
    path = database_path(kernel)
    if path is None:
        return
    recorder = Recorder(kernel, path)
    kernel.plugins.register(recorder, name=f"monitoring-recorder-{kernel.run_id}")
    logger.info("monitoring kernel %s into %s", kernel.run_id, path)
