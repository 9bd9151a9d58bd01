"""Monitoring store: the workflow and every task transition, in a SQLite database.

On with ``Config(monitoring=True)`` (``<run dir>/monitoring.db``) or
``Config(monitoring="path.db")``.  At ``flowkernel_kernel_started`` this plugin
registers a :class:`Recorder` for that kernel only, so kernels without
monitoring pay nothing per task.

Tables and views:

``workflow``
    One row per kernel: run id, script name, user, host, run directory, start
    and end, task count, counts per state.
``tries`` (view of ``try_log``, the table the recorder writes)
    One row per try of a task: run id, task id, try, app, executor, the state
    that ended the try, and the times (seconds since the epoch; NULL where the
    try did not pass through that state) at which it became ``pending``
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

Why a row per try, written when the try ends: every microsecond of Python in
the state hook or the writer is taken from the workflow (one GIL), and a
workflow of trivial tasks spends only some 25 µs per task.  The kernel already
stamps a try's times on the task record (``time_invoked``,
``try_time_pending``, ``try_time_launched``, ``try_time_returned``, and
``time_returned`` before observers see a final state), so the recorder
observes only the transitions that end a try (``entering``).

Most tries are a task's first, and succeed.  For those the hook copies the
few fields that vary in one C call (``attrgetter``) and queues them; the
values every such row shares are literals in the statement, not bound.  Any
other try (failed, retried, a memo hit, a join) is queued with all its
values.  Either way the hook extends a flat list of numbers and strings: no
lock, no formatting, no object for the garbage collector, and the task's
record is freed as soon as the kernel lets go of it.  What needs thought
(which time a try became pending, whether a launch time is this try's) is left
to SQL in the ``tries`` view.

A thread takes the queued tries a few times a second and sends their values,
``marshal``-ed, to a process of its own (:mod:`~flowkernel.contrib.monitoring_writer`)
that inserts them, several hundred rows per statement.  Binding values to a
statement holds the GIL, and cost the workflow more than everything else the
recorder does when the thread did it.  Where that process cannot be started
or dies, the thread writes itself and the log says why.  ``try_log`` has no
index to keep up: a report reads a run whole.
"""

from __future__ import annotations

import getpass
import json
import logging
import operator
import os
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from typing import IO, TYPE_CHECKING, Any

from flowkernel.contrib import monitoring_writer
from flowkernel.contrib.monitoring_writer import apply, encode
from flowkernel.errors import ConfigurationError
from flowkernel.markers import entering, hookimpl
from flowkernel.states import FINAL_STATES, States

if TYPE_CHECKING:
    from flowkernel.kernel import DataFlowKernel
    from flowkernel.task import TaskRecord

logger = logging.getLogger(__name__)

DB_NAME = "monitoring.db"

SCHEMA_VERSION = 2
"""``PRAGMA user_version`` of a database this module writes."""

SCHEMA = """
CREATE TABLE IF NOT EXISTS workflow (
    run_id TEXT PRIMARY KEY, name TEXT, user TEXT, host TEXT, run_dir TEXT,
    began REAL, ended REAL, tasks INTEGER, counts TEXT
);
CREATE TABLE IF NOT EXISTS try_log (
    run_id TEXT, task_id INTEGER, try_id INTEGER, app TEXT, executor TEXT,
    invoked REAL, launched REAL, returned REAL, fail_count INTEGER, retried REAL,
    from_memo INTEGER, state TEXT, joined INTEGER, ended REAL, depends TEXT,
    fail_history TEXT
);
CREATE VIEW IF NOT EXISTS tries AS
    SELECT run_id, task_id, try_id, app, executor, state, pending,
        -- a try that ended before it launched still carries the last try's time
        CASE WHEN launched >= pending THEN launched END AS launched,
        CASE WHEN joined THEN returned END AS joining,
        ended, depends, fail_count, fail_history, from_memo
    FROM (
        SELECT *, CASE WHEN try_id = 0 OR retried = 0 THEN invoked ELSE retried END AS pending
        FROM try_log
    );
CREATE VIEW IF NOT EXISTS transition AS
    SELECT run_id, task_id, try_id, app, executor, 'pending' AS state, pending AS at
    FROM tries WHERE pending IS NOT NULL
    UNION ALL
    SELECT run_id, task_id, try_id, app, executor, 'launched', launched
    FROM tries WHERE launched IS NOT NULL
    UNION ALL
    SELECT run_id, task_id, try_id, app, executor, 'joining', joining
    FROM tries WHERE joining IS NOT NULL
    UNION ALL
    SELECT run_id, task_id, try_id, app, executor, state, ended FROM tries;
CREATE VIEW IF NOT EXISTS task AS
    SELECT run_id, task_id, app, depends, fail_count, fail_history, from_memo
    FROM tries WHERE state <> 'fail_retryable';
"""

_FIELDS = (
    "id", "try_id", "func.__name__", "executor", "time_invoked", "try_time_launched",
    "try_time_returned", "fail_count",
)  # fmt: skip
_fields = operator.attrgetter(*_FIELDS)
"""The first ``try_log`` values, as a task record holds them, in one C call.

The hook makes the rest exact ``int``, ``float`` or ``str`` itself: sqlite3
binds ``None`` and ``bool`` through its adapter lookup, which cost the writer
more per row than everything else together.
"""
_named_fields = operator.attrgetter(*("func_name" if f == "func.__name__" else f for f in _FIELDS))
"""The same for a function without ``__name__`` (a ``functools.partial``, say)."""

_COLUMNS = 15
"""Values per queued try (every column of ``try_log`` but the run id)."""

_DONE_FIELDS = (
    "id", "func.__name__", "executor", "time_invoked", "try_time_launched", "try_time_returned",
    "time_returned",
)  # fmt: skip
_done_fields = operator.attrgetter(*_DONE_FIELDS)
"""What varies between the rows of first tries that succeeded, read from the record."""
_named_done_fields = operator.attrgetter(
    *("func_name" if f == "func.__name__" else f for f in _DONE_FIELDS)
)

_ROW = "(?" + ",?" * _COLUMNS + ")"
"""A row of ``try_log`` whose values are all bound (the run id first)."""
_DONE_ROW = "(?,?,0,?,?,?,?,?,0,0.0,0,'exec_done',0,?,'','[]')"
"""A first try that succeeded, with no inputs: only ``_DONE_FIELDS`` are bound."""
_LINKED_ROW = "(?,?,0,?,?,?,?,?,0,0.0,0,'exec_done',0,?,?,'[]')"
"""The same with the input task ids bound last."""

FLUSH_INTERVAL = 0.25
"""Seconds between the writer's batches."""

_TRY_ENDS = (*FINAL_STATES, States.fail_retryable)
_EXEC_DONE = States.exec_done
_JOINING = States.joining
_NAMES = {state: state.name for state in States}
_now = time.time
_record_id = operator.attrgetter("task_record.id")


def _input_ids(depends: Any) -> str:
    return ",".join(str(f.tid) for f in depends if hasattr(f, "tid"))


def _take(items: list[Any]) -> list[Any]:
    """Take what is in ``items`` now; hooks appending meanwhile only add at the end."""
    taken = len(items)
    first = items[:taken]
    del items[:taken]
    return first


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
    ends the try (``fail_retryable`` or a final state).  When it ends, the
    hook extends ``_done`` (a first try that succeeded, no inputs: the values
    of ``_DONE_FIELDS``), ``_linked`` (the same and its input task ids) or
    ``_values`` (any other try: the ``_COLUMNS`` values of its row).

    One ``list.extend`` of a tuple is atomic, so hooks of different tasks need
    no lock and never interleave their values, and the writer can take the
    first values off a list while hooks append.
    """

    def __init__(self, kernel: DataFlowKernel, path: str) -> None:
        self.kernel = kernel
        self.path = path
        self.run_id = kernel.run_id
        self._values: list[Any] = []
        self._add = self._values.extend
        self._done: list[Any] = []
        self._add_done = self._done.extend
        self._linked: list[Any] = []
        self._add_linked = self._linked.extend
        self._stop = threading.Event()
        self._writer = threading.Thread(
            target=self._write_loop, name="flowkernel-monitoring", daemon=True
        )
        folder = os.path.dirname(os.path.abspath(path))
        os.makedirs(folder, exist_ok=True)
        db = monitoring_writer.connect(path)
        # Before anything is changed: a database of another layout is left as it was.
        (version,) = db.execute("PRAGMA user_version").fetchone()
        (tables,) = db.execute("SELECT count(*) FROM sqlite_master").fetchone()
        if tables and version != SCHEMA_VERSION:
            db.close()
            raise ConfigurationError(
                f"monitoring database {path} has layout {version}, this flowkernel writes "
                f"layout {SCHEMA_VERSION}: set Config(monitoring=...) to a new path"
            )
        # Readers (a report) do not block the writer, and the writer does not block them.
        db.execute("PRAGMA journal_mode=WAL")
        db.executescript(SCHEMA)
        db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        db.execute(
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
        db.commit()
        self._errors: IO[bytes] | None = None
        self._child = self._start_writer_process()
        self._here: sqlite3.Connection | None = None
        """Where batches go when there is no writer process (opened on demand)."""
        if self._child is not None:
            db.close()
        else:
            self._here = db
        self._writer.start()

    # -- hooks (this kernel only) ----------------------------------------------

    @hookimpl
    @entering(*_TRY_ENDS)
    def flowkernel_task_state_changed(self, task: TaskRecord, old: States, new: States) -> None:
        depends = task.depends
        if new is _EXEC_DONE and not task.try_id and old is not _JOINING:
            try:
                fields = _done_fields(task)
            except AttributeError:
                fields = _named_done_fields(task)
            if depends:
                # _input_ids without its frame, when every input is an AppFuture;
                # one input's id goes as a number: the column's TEXT affinity
                # stores it as its digits, and no string is made here.
                try:
                    if len(depends) == 1:
                        ids: int | str = _record_id(depends[0])
                    else:
                        ids = ",".join(map(str, map(_record_id, depends)))
                except AttributeError:  # a DataFuture, say
                    ids = _input_ids(depends)
                self._add_linked((*fields, ids))
            else:
                self._add_done(fields)
            return
        history = task.fail_history
        try:
            fields = _fields(task)
        except AttributeError:
            fields = _named_fields(task)
        self._add(
            (
                *fields, task.try_time_pending or 0.0, 1 if task.from_memo else 0,
                _NAMES[new], 1 if old is _JOINING else 0, _now(),
                _input_ids(depends) if depends else "",
                json.dumps(list(history)) if history else "[]",
            )
        )  # fmt: skip

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
            # Hooks only append whole rows, so what is taken is whole rows.
            batches = (
                (_ROW, _take(self._values)),
                (_DONE_ROW, _take(self._done)),
                (_LINKED_ROW, _take(self._linked)),
            )
            for row, values in batches:
                if values:
                    self._send(("rows", row, values))
            if stopping:
                self._finish()
                return

    # -- where batches go ----------------------------------------------------------

    def _start_writer_process(self) -> subprocess.Popen[bytes] | None:
        """Start :mod:`~flowkernel.contrib.monitoring_writer`, or None where it cannot run."""
        script = monitoring_writer.__file__
        if not sys.executable or not os.path.isfile(script):
            return None  # an interpreter embedded in an application, or a zipped install
        self._errors = tempfile.TemporaryFile()
        try:
            return subprocess.Popen(
                [sys.executable, "-I", "-S", script, self.path, self.run_id],
                stdin=subprocess.PIPE,
                stdout=subprocess.DEVNULL,
                stderr=self._errors,
            )
        except OSError as exc:
            self._errors.close()
            self._errors = None
            logger.warning("monitoring: cannot start the writer process (%s); writing here", exc)
            return None

    def _send(self, message: tuple[Any, ...]) -> None:
        """Hand a message to the writer process, or carry it out here without one."""
        child = self._child
        if child is not None:
            assert child.stdin is not None
            try:
                child.stdin.write(encode(message))
                child.stdin.flush()
                return
            except (OSError, ValueError):
                self._child = None
                if child.poll() is None:  # alive but not reading: it would wait for input forever
                    child.kill()
                self._report_end(child, "stopped early; the tries it had not written are lost")
        try:
            if self._here is None:
                self._here = monitoring_writer.connect(self.path)
            apply(self._here, self.run_id, message)
            self._here.commit()
        except Exception:
            logger.exception("monitoring: writing a %s message failed", message[0])

    def _report_end(self, child: subprocess.Popen[bytes], how: str) -> None:
        """Log how the writer process ended, when that was not well."""
        code = child.wait()
        errors = b""
        if self._errors is not None:
            self._errors.seek(0)
            errors = self._errors.read()
            self._errors.close()
            self._errors = None
        if code or errors:
            logger.error(
                "monitoring: the writer process for %s %s (exit code %s)%s",
                self.path,
                how,
                code,
                ":\n" + errors.decode(errors="replace") if errors else "",
            )

    def _finish(self) -> None:
        kernel = self.kernel
        counts = {state.name: n for state, n in kernel.task_state_counts.items() if n}
        ended = kernel.time_completed or time.time()
        self._send(("ended", ended, kernel.task_count, json.dumps(counts)))
        child = self._child
        if child is not None:
            assert child.stdin is not None
            try:
                child.stdin.write(encode(("stop",)))
                child.stdin.close()
            except (OSError, ValueError):
                pass  # it ended already: _report_end says how
            self._report_end(child, "failed")
        if self._here is not None:
            self._here.close()


@hookimpl
def flowkernel_kernel_started(kernel: DataFlowKernel) -> None:
    path = database_path(kernel)
    if path is None:
        return
    recorder = Recorder(kernel, path)
    kernel.plugins.register(recorder, name=f"monitoring-recorder-{kernel.run_id}")
    logger.info("monitoring kernel %s into %s", kernel.run_id, path)
