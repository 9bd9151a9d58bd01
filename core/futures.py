"""AppFuture: the future an app call returns.

It is a :class:`concurrent.futures.Future`, so ``result()``, ``exception()``,
``add_done_callback()`` and ``concurrent.futures.wait`` work as usual.  Only the
kernel completes it, and only after it has finished with the task (state hooks
called, task record released), so code that waits on the future and then looks
at the kernel sees the task's final state.
"""

from __future__ import annotations

from concurrent.futures import Future
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from flowkernel.streams import stream_paths

if TYPE_CHECKING:
    from flowkernel.task import TaskRecord

T = TypeVar("T")


class AppFuture(Future, Generic[T]):  # type: ignore[type-arg]
    """The eventual result of one app invocation (one task)."""

    def __init__(self, task_record: TaskRecord) -> None:
        super().__init__()
        self.task_record = task_record

    @property
    def tid(self) -> int:
        """The task id, unique within its kernel."""
        return self.task_record.id

    def task_status(self) -> str:
        """The name of the task's current state (``"pending"``, ``"exec_done"``...)."""
        return self.task_record.status.name

    @property
    def outputs(self) -> list[Any]:
        """Futures for the task's declared output files (none until file staging exists)."""
        return []

    @property
    def stdout(self) -> str | None:
        """The file the task's standard output goes to, if it was redirected."""
        return stream_paths(self.task_record.kwargs)["stdout"]

    @property
    def stderr(self) -> str | None:
        """The file the task's standard error goes to, if it was redirected."""
        return stream_paths(self.task_record.kwargs)["stderr"]

    def cancel(self) -> bool:
        """Refuse: the kernel does not cancel tasks yet.

        A bare ``Future.cancel()`` would mark the future cancelled behind the
        kernel's back, leaving the task to run and its dependents to wait; so
        this returns False, as ``concurrent.futures`` does for a running task.
        """
        return False

    def result(self, timeout: float | None = None) -> T:
        return super().result(timeout)  # type: ignore[no-any-return]

    def __repr__(self) -> str:
        base = super().__repr__()
        return f"<AppFuture task {self.tid} {self.task_record.func_name}: {base[1:-1]}>"
