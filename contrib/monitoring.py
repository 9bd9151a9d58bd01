"""Monitoring store: the workflow and every task transition, in a SQLite database.

On with ``Config(monitoring=True)`` (``<run dir>/monitoring.db``) or
``Config(monitoring="path.db")``.  At ``flowkernel_kernel_started`` this plugin
registers a :class:`Recorder` for that kernel only, so kernels without
monitoring pay nothing per task.

Tables and views:

``workflow``
    One row per kernel: run id, script name, user, host, run directory, start
    and end, task count, counts per state.
``tries``
    One row per try of a task: run id, task id, try, app, executor, the state
    that ended the try, and the times (nanoseconds since the epoch; 0 where
    the try did not pass through that state) at which it became ``pending``
    (submitted or retried, waiting for its inputs), ``launched``, ``joining``
    and ended; then the task's input task ids, and its fail count, fail
    history (JSON) and whether its result came from the memo table as they
    stood when the try ended.
``transition`` (view)
    One row per transition: run id, task id, try, app, executor, state, time
    (seconds since the epoch).
``task`` (view)
    One row per ended task (its last try): run id, task id, app, input task
    ids, fail count, fail history, from memo.

Why a row per try rather than per transition: every microsecond of Python in
the state hook or the writer is taken from the workflow (one GIL).  The hook
notes each transition's time in a dict and, when a try ends, appends its
values to one flat list — no lock, no formatting, no object per row for the
garbage collector to trace.  A writer thread takes the queued tries a few times
a second and inserts them several hundred rows per statement: the sqlite3
module lets go of the GIL for every statement it steps, and doing that once
per row (``executemany`` of single rows) cost more than the rows themselves on
two cores.  ``tries`` has no index to keep up: a report reads a run whole.
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
CREATE TABLE IF NOT EXISTS tries (
    run_id TEXT, task_id INTEGER, try_id INTEGER, app TEXT, executor TEXT,
    state TEXT, pending INTEGER, launched INTEGER, joining INTEGER, ended INTEGER,
    depends TEXT, fail_count INTEGER, fail_history TEXT, from_memo INTEGER
);
CREATE VIEW IF NOT EXISTS transition AS
    SELECT run_id, task_id, try_id, app, executor, 'pending' AS state, pending / 1e9 AS at
    FROM tries WHERE pending > 0
    UNION ALL
    SELECT run_id, task_id, try_id, app, executor, 'launched', launched / 1e9
    FROM tries WHERE launched > 0
    UNION ALL
    SELECT run_id, task_id, try_id, app, executor, 'joining', joining / 1e9
    FROM tries WHERE joining > 0
    UNION ALL
    SELECT run_id, task_id, try_id, app, executor, state, ended / 1e9 FROM tries;
CREATE VIEW IF NOT EXISTS task AS
    SELECT run_id, task_id, app, depends, fail_count, fail_history, from_memo
    FROM tries WHERE state <> 'fail_retryable';
"""

_COLUMNS = 13
"""Values per queued try (every column of ``tries`` but the run id)."""

# SQLite takes up to 32,766 parameters per statement since 3.32, 999 before.
_ROWS_PER_INSERT = min(500, (32766 if sqlite3.sqlite_version_info >= (3, 32) else 999) // _COLUMNS)
"""Rows per INSERT statement: one GIL hand-off per this many rows."""

FLUSH_INTERVAL = 0.25
"""Seconds between the writer's batches."""

_NAMES = {state: state.name for state in States}
_TRY_ENDS = frozenset(FINAL_STATES | {States.fail_retryable})
_PENDING = States.pending
_LAUNCHED = States.launched
_JOINING = States.joining
_RETRYABLE = States.fail_retryable
_UNSCHED = States.unsched
_now = time.time_ns


def _insert(db: sqlite3.Connection, run_id: str, values: list[Any]) -> None:
    """Insert rows of ``_COLUMNS`` values each into ``tries``, many per statement."""
    run = "'" + run_id.replace("'", "''") + "'"
    one = "(" + run + ",?" * _COLUMNS + ")"
    per = _ROWS_PER_INSERT
    step = per * _COLUMNS
    full = len(values) - len(values) % step
    if full:
        statement = "INSERT INTO tries VALUES " + ",".join([one] * per)
        db.executemany(statement, (values[i : i + step] for i in range(0, full, step)))
    if full < len(values):
        rest = values[full:]
        rows = len(rest) // _COLUMNS
        db.execute("INSERT INTO tries VALUES " + ",".join([one] * rows), rest)


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

    A try is everything from a task entering ``pending`` to the state that
    ends the try (``fail_retryable`` or a final state).  The hook keeps the
    times of the try's transitions in ``_pending``/``_launched``/``_joining``
    (task id -> nanoseconds) and at its end appends the ``_COLUMNS`` values
    of its ``tries`` row to ``_values``.

    The kernel finishes a transition's hooks before it starts what leads to
    the next transition, so one task's hooks never overlap.  Dict updates and
    ``list.extend`` are atomic, so hooks of different tasks need no lock, and
    the writer can take the first values off the list while hooks append.
    """

    def __init__(self, kernel: DataFlowKernel, path: str) -> None:
        self.kernel = kernel
        self.path = path
        self.run_id = kernel.run_id
        # The ended tries' values, row after row: a flat list of ints and
        # strings is one object for the garbage collector, however long.
        self._values: list[Any] = []
        self._add = self._values.extend
        self._pending: dict[int, int] = {}
        self._launched: dict[int, int] = {}
        self._joining: dict[int, int] = {}
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
        now = _now()
        tid = task.id
        if new is _PENDING:
            if old is _UNSCHED and task.depends:  # known now, forgotten at launch
                self._inputs[tid] = ",".join(str(f.tid) for f in task.depends if hasattr(f, "tid"))
            self._pending[tid] = now
        elif new is _LAUNCHED:
            self._launched[tid] = now
        elif new in _TRY_ENDS:
            # No None among the values: sqlite3 binds None by a slow path.
            history = task.fail_history
            self._add(
                (
                    tid, task.try_id, task.func_name, task.executor or "", _NAMES[new],
                    self._pending.pop(tid, 0), self._launched.pop(tid, 0),
                    self._joining.pop(tid, 0), now,
                    self._inputs.get(tid, "") if new is _RETRYABLE else self._inputs.pop(tid, ""),
                    task.fail_count, json.dumps(list(history)) if history else "[]",
                    1 if task.from_memo else 0,
                )
            )  # fmt: skip
        elif new is _JOINING:
            self._joining[tid] = now

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
            # Hooks only append, so the first ``taken`` values stay put.
            taken = len(self._values)
            values = self._values[:taken]
            del self._values[:taken]
            try:
                if values:
                    _insert(self._db, self.run_id, values)
                self._db.commit()
            except Exception:
                logger.exception("monitoring: writing %d tries failed", taken // _COLUMNS)
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
