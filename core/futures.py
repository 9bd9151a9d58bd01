"""AppFuture: the future an app call returns.

It is a :class:`concurrent.futures.Future`, so ``result()``, ``exception()``,
``add_done_callback()`` and ``concurrent.futures.wait`` work as usual.  Only the
kernel completes it, and only after it has finished with the task (state hooks
called, task record released), so code that waits on the future and then looks
at the kernel sees the task's final state.
"""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import CancelledError, Future
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from flowkernel.streams import stream_paths

if TYPE_CHECKING:
    from flowkernel.files import File
    from flowkernel.task import TaskRecord

T = TypeVar("T")


class AppFuture(Future, Generic[T]):  # type: ignore[type-arg]
    """The eventual result of one app invocation (one task)."""

    def __init__(self, task_record: TaskRecord) -> None:
        super().__init__()
        self.task_record = task_record
        self._outputs: Sequence[DataFuture] = ()

    @property
    def tid(self) -> int:
        """The task id, unique within its kernel."""
        return self.task_record.id

    def task_status(self) -> str:
        """The name of the task's current state (``"pending"``, ``"exec_done"``...)."""
        return self.task_record.status.name

    @property
    def outputs(self) -> list[DataFuture]:
        """One :class:`DataFuture` per entry of the task's ``outputs=[...]``, in order."""
        return list(self._outputs)

    @property
    def stdout(self) -> str | None:
        """The file the task's standard output goes to, if it was redirected."""
        return stream_paths(self.task_record.kwargs)["stdout"]

    @property
    def stderr(self) -> str | None:
        """The file the task's standard error goes to, if it was redirected."""
        return stream_paths(self.task_record.kwargs)["stderr"]

    def cancel(self) -> bool:
        """Cancel the task if it has not started; see :meth:`DataFlowKernel.cancel`.

        Tasks that depend on it then fail with a ``DependencyError`` whose
        cause is the cancellation.  A running or finished task is not
        cancelled and this returns False, as ``concurrent.futures`` does.
        """
        if self.done():
            return False
        return self.task_record.kernel.cancel(self)

    def result(self, timeout: float | None = None) -> T:
        return super().result(timeout)  # type: ignore[no-any-return]

    def __repr__(self) -> str:
        base = super().__repr__()
        return f"<AppFuture task {self.tid} {self.task_record.func_name}: {base[1:-1]}>"


class DataFuture(Future):  # type: ignore[type-arg]
    """The eventual :class:`~flowkernel.File` an app produces or a staging task brings in.

    It completes with the file when the task behind it succeeds, and with that
    task's exception when it fails.  Passed to another app, it is a dependency
    like any future.
    """

    def __init__(self, parent: Future[Any], file_obj: File, tid: int | None = None) -> None:
        super().__init__()
        self.parent = parent
        self.file_obj = file_obj
        self._tid = tid
        parent.add_done_callback(self._parent_done)

    def _parent_done(self, parent: Future[Any]) -> None:
        if parent.cancelled():
            self.set_exception(
                CancelledError(f"the task producing {self.file_obj!r} was cancelled")
            )
            return
        exc = parent.exception()
        if exc is not None:
            self.set_exception(exc)
        else:
            self.set_result(self.file_obj)

    @property
    def tid(self) -> int | None:
        """The id of the task that produces (or stages) the file."""
        return self._tid

    @property
    def filepath(self) -> str:
        return self.file_obj.filepath

    @property
    def filename(self) -> str:
        return self.file_obj.filename

    def cancel(self) -> bool:
        """Refuse: a data future follows its task and is not cancelled on its own."""
        return False

    def __repr__(self) -> str:
        state = "done" if self.done() else "pending"
        return f"<DataFuture {self.file_obj.url!r} of task {self._tid} ({state})>"
