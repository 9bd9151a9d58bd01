"""The process that writes a monitored run's tries into its SQLite database.

:mod:`flowkernel.contrib.monitoring` starts it with this file as the script
(``python -I -S monitoring_writer.py DATABASE RUN_ID``) and sends it batches on
its standard input.  Why a process: binding values to an SQLite statement and
stepping it cost several µs per try, and in a thread of the workflow's process
the binding holds the GIL that every task needs (some 15 % of a workflow of
trivial tasks).  Here it costs the workflow only the copy of the values
(``marshal``, well under 1 µs per try) and runs on another core.

So that starting it is quick and cannot set off a workflow, the script imports
nothing but the standard library (not even flowkernel: a package import would
load the kernel), and runs without ``site`` (``-S``), whose ``.pth`` files can
take longer than everything else it does in a short run.  The recorder also
calls :func:`apply` itself, in its own process, when this process cannot be
started or has gone away.

Messages are ``marshal``-ed tuples, each after its length (4 bytes, little
endian):

``("rows", row, values)``
    Insert ``values`` into ``try_log``, in rows of the shape of ``row``: a
    parenthesised row of SQL values whose first ``?`` is the run id and whose
    other ``?`` are taken from ``values`` in order.
``("ended", time, tasks, counts)``
    Fill in the workflow row's end: when, how many tasks, counts per state (JSON).
``("stop",)``
    Commit and exit.  Sent rather than closing the pipe: a worker process
    forked from the workflow's process holds a copy of the pipe, and the end of
    the file would never come.
"""

from __future__ import annotations

import marshal
import signal
import sqlite3
import struct
import sys

TYPE_CHECKING = False  # not imported from typing, which would take longer to load than the rest
if TYPE_CHECKING:
    from collections.abc import Iterator
    from typing import IO, Any

_LENGTH = struct.Struct("<I")

ROWS_PER_INSERT = 512
"""Most rows per INSERT statement (written in the workflow's process, one GIL hand-off each)."""

# SQLite takes up to 32,766 parameters per statement since 3.32, 999 before.
_MAX_PARAMETERS = 32766 if sqlite3.sqlite_version_info >= (3, 32) else 999


def connect(path: str) -> sqlite3.Connection:
    db = sqlite3.connect(path, check_same_thread=False)
    # A record of a run, not a bank: losing the last batch to a power cut is
    # acceptable, waiting for the disk on every batch is not.
    db.execute("PRAGMA synchronous=OFF")
    return db


def insert(db: sqlite3.Connection, run_id: str, row: str, values: list[Any]) -> None:
    """Insert ``values`` into ``try_log``, many rows of the shape of ``row`` per statement.

    The run id is written into the statement as a literal, so each row binds
    only its own values.  Statements hold a power of two of rows, so the few
    distinct ones stay prepared in the connection's statement cache: parsing a
    statement of hundreds of rows costs more than inserting them.
    """
    run = "'" + run_id.replace("'", "''") + "'"
    one = row.replace("?", run, 1)
    width = row.count("?") - 1  # not counted in ``one``: the run id may hold a "?"
    rows = ROWS_PER_INSERT
    while rows * width > _MAX_PARAMETERS:
        rows //= 2
    done, left = 0, len(values) // width
    while left:
        while rows > left:
            rows //= 2
        step = rows * width
        end = done + left // rows * step
        batches = (values[i : i + step] for i in range(done, end, step))
        statement = _statements.get((one, rows))
        if statement is None:
            if len(_statements) >= 64:  # a process recording many runs, one after another
                _statements.clear()
            statement = _statements[one, rows] = "INSERT INTO try_log VALUES " + ",".join(
                [one] * rows
            )
        db.executemany(statement, batches)
        done, left = end, left % rows


_statements: dict[tuple[str, int], str] = {}
"""INSERT statements made so far, by row (with its run id) and rows: some ten per row of a run."""


def apply(db: sqlite3.Connection, run_id: str, message: tuple[Any, ...]) -> None:
    """Carry out one message (see the module's docstring) on ``db``, uncommitted."""
    kind = message[0]
    if kind == "rows":
        insert(db, run_id, message[1], message[2])
    elif kind == "ended":
        db.execute(
            "UPDATE workflow SET ended = ?, tasks = ?, counts = ? WHERE run_id = ?",
            (*message[1:4], run_id),
        )
    else:
        raise ValueError(f"unknown monitoring message {kind!r}")


def encode(message: tuple[Any, ...]) -> bytes:
    # Version 2: later versions look every value up in a table of the objects
    # written so far, to write repeats once, which costs the workflow's
    # process more than the repeats it saves here.
    data = marshal.dumps(message, 2)
    return _LENGTH.pack(len(data)) + data


def messages(stream: IO[bytes]) -> Iterator[tuple[Any, ...]]:
    """The messages on ``stream`` up to ``("stop",)`` (or the end, if it never comes)."""
    while True:
        head = stream.read(_LENGTH.size)
        if len(head) < _LENGTH.size:
            return
        (size,) = _LENGTH.unpack(head)
        message = marshal.loads(stream.read(size))
        if message[0] == "stop":
            return
        yield message


def main(argv: list[str]) -> int:
    path, run_id = argv
    # Ctrl-C in a terminal interrupts every process of the foreground group:
    # the workflow decides what an interrupt means, and this process writes
    # until it is told to stop (or its input ends, with the workflow's process).
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    db = connect(path)
    try:
        for message in messages(sys.stdin.buffer):
            apply(db, run_id, message)
            db.commit()
    finally:
        db.commit()
        db.close()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
