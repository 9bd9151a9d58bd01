"""Checkpoints: results saved as tasks finish, so a later run can reuse them.

The kernel decides *when* a result is saved (``Config.checkpoint_mode``); a
store provided by the ``flowkernel_checkpoint_store`` hook decides *where and
how*.  Modes:

* ``"task_exit"`` — each result is written before its future completes, so
  code that sees the result can rely on it being saved;
* ``"periodic"`` — a timer thread writes what finished every
  ``checkpoint_period`` (``"HH:MM:SS"``), and once more at cleanup;
* ``"dfk_exit"`` — everything at cleanup;
* ``"manual"`` — when the program calls ``dfk().checkpoint()`` (and at cleanup
  nothing is written implicitly).

Threads: :meth:`Checkpointer.completed` runs on whichever thread finished the task;
the periodic timer and ``checkpoint()`` may run on others.  ``_lock`` guards
the list of unsaved records and serializes writes to the store.
"""

from __future__ import annotations

import logging
import os
import re
import threading
from collections.abc import Sequence
from typing import Any, Protocol, runtime_checkable

from flowkernel.errors import ConfigurationError
from flowkernel.task import TaskRecord

logger = logging.getLogger(__name__)

CHECKPOINT_DIR = "checkpoint"
"""Name of the folder inside a run directory that holds its checkpoint."""

_PERIOD = re.compile(r"^(\d+):([0-5]\d):([0-5]\d)$")

Record = tuple[str, Any, TaskRecord]
"""One saved result: ``(memo key, result, task record)``."""


@runtime_checkable
class CheckpointStore(Protocol):
    """Where checkpointed results live; provided by ``flowkernel_checkpoint_store``."""

    def load(self, sources: Sequence[str]) -> dict[str, Any]:
        """Read earlier results: ``{memo key: result}`` from each source (``checkpoint_files``).

        An unreadable or partly written source is reported with a warning and
        yields what could be read; it does not fail the kernel.
        """

    def write(self, records: Sequence[Record]) -> int:
        """Save records durably enough to survive the process being killed.

        :returns: how many were saved (a result that cannot be serialized is
            skipped with a warning naming its task).
        """

    def close(self) -> None:
        """Release files or connections; no write follows."""


def parse_period(period: str) -> float:
    """Seconds in an ``"HH:MM:SS"`` period; ``ConfigurationError`` naming the field otherwise."""
    match = _PERIOD.match(period.strip()) if isinstance(period, str) else None
    if match is None:
        raise ConfigurationError(
            f"Config.checkpoint_period must be 'HH:MM:SS' (e.g. '00:30:00'), got {period!r}"
        )
    hours, minutes, seconds = (int(part) for part in match.groups())
    total = hours * 3600 + minutes * 60 + seconds
    if total == 0:
        raise ConfigurationError("Config.checkpoint_period must be longer than 00:00:00")
    return float(total)


class Checkpointer:
    """Applies one kernel's checkpoint mode to its store."""

    def __init__(self, store: CheckpointStore, mode: str | None, period: str | None) -> None:
        self.store = store
        self.mode = mode
        self._unsaved: list[Record] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._timer: threading.Thread | None = None
        self.written = 0
        if mode == "periodic":
            assert period is not None
            interval = parse_period(period)
            self._timer = threading.Thread(
                target=self._periodic, args=(interval,), name="flowkernel-checkpoint", daemon=True
            )
            self._timer.start()

    def completed(self, key: str, result: Any, task: TaskRecord) -> None:
        """A memoized task succeeded: save its result now or remember it for later."""
        if self.mode == "task_exit":
            with self._lock:
                self.written += self.store.write([(key, result, task)])
        elif self.mode is not None:
            with self._lock:
                self._unsaved.append((key, result, task))

    def checkpoint(self) -> int:
        """Write every result not yet saved; return how many were written."""
        with self._lock:
            records, self._unsaved = self._unsaved, []
            if not records:
                return 0
            count = self.store.write(records)
            self.written += count
        logger.info("checkpointed %d result(s)", count)
        return count

    def _periodic(self, interval: float) -> None:
        while not self._stop.wait(interval):
            try:
                self.checkpoint()
            except Exception:
                logger.exception("periodic checkpoint failed; will try again next period")

    def close(self) -> None:
        """At kernel cleanup: stop the timer, write what the mode says, close the store."""
        self._stop.set()
        if self._timer is not None:
            self._timer.join()
        try:
            if self.mode in ("periodic", "dfk_exit"):
                self.checkpoint()
            elif self.mode == "manual" and self._unsaved:
                logger.info(
                    "%d result(s) were not checkpointed (checkpoint_mode='manual' and "
                    "checkpoint() was not called after they finished)",
                    len(self._unsaved),
                )
        finally:
            self.store.close()


def get_all_checkpoints(rundir: str = "runinfo") -> list[str]:
    """The checkpoint folders of every run under ``rundir``, oldest first.

    Pass the list as ``Config(checkpoint_files=...)`` to reuse every earlier result.
    """
    if not os.path.isdir(rundir):
        return []
    found = []
    # Numbered runs sort by number, so run 1000 comes after run 999.
    for name in sorted(os.listdir(rundir), key=lambda n: (len(n), n) if n.isdigit() else (0, n)):
        folder = os.path.join(rundir, name, CHECKPOINT_DIR)
        if os.path.isdir(folder):
            found.append(os.path.abspath(folder))
    return found


def get_last_checkpoint(rundir: str = "runinfo") -> list[str]:
    """The checkpoint folder of the most recent run under ``rundir`` (a list of at most one)."""
    return get_all_checkpoints(rundir)[-1:]
