"""AppFuture: the future an app call returns.

It is a :class:`concurrent.futures.Future`, so ``result()``, ``exception()``,
``add_done_callback()`` and ``concurrent.futures.wait`` work as usual.  Only the
kernel completes it, and only after it has finished with the task (state hooks
called, task record released), so code that waits on the future and then looks
at the kernel sees the task's final state.

Why it does not simply call ``Future.__init__``
-----------------------------------------------
A plain ``Future`` builds a ``threading.Condition`` (with a reentrant lock, a
deque and five bound methods) and two lists when it is created: ten objects for
the garbage collector to track, about 2.7 µs on a 2-core machine, and most of
them never used, because nobody blocks on the future of a task that feeds
another task.  Measured on a chain of 100,000 tasks, building and scanning
those objects was a fifth of the kernel's cost per task.

So an :class:`AppFuture` starts without a condition.  Until one exists, its
state changes and callback list are guarded by one of 64 shared plain locks
(picked by the future's ``id``), held only for a few attribute assignments,
never while calling anything.  The condition is made, under that same lock,
the first time something needs to *wait*: ``result()`` or ``exception()``
on a future not yet done, ``concurrent.futures.wait``/``as_completed`` (which
take ``_condition`` themselves), or ``cancel``.  From then on every change
happens under the condition, exactly as in ``concurrent.futures``.  Because the
switch to the condition is made under the shared lock and every operation
checks for a condition under that lock first, the two regimes never overlap.
Reading a finished future (``done()``, and ``result()`` once it is done) takes
no lock at all: a finished future's state never changes again.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import CancelledError, Future
from concurrent.futures._base import (
    _STATE_TO_DESCRIPTION_MAP,
    CANCELLED,
    CANCELLED_AND_NOTIFIED,
    FINISHED,
    PENDING,
    RUNNING,
    InvalidStateError,
)
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from flowkernel.streams import stream_paths

if TYPE_CHECKING:
    from flowkernel.files import File
    from flowkernel.task import TaskRecord

logger = logging.getLogger(__name__)

T = TypeVar("T")
_Callback = Callable[[Future[Any]], object]

_DONE_STATES = frozenset((CANCELLED, CANCELLED_AND_NOTIFIED, FINISHED))
_LOCKS = tuple(threading.Lock() for _ in range(64))
"""Guard futures that have no condition yet; ``id(future) >> 4 & 63`` picks one."""


class AppFuture(Future, Generic[T]):  # type: ignore[type-arg]
    """The eventual result of one app invocation (one task)."""

    def __init__(self, task_record: TaskRecord) -> None:
        # Future.__init__ is not called: see the module docstring.
        self._cond: threading.Condition | None = None
        self._state = PENDING
        self._result: Any = None
        self._exception: BaseException | None = None
        # None, one callback, or a list of them: most futures get one, and a
        # list per future would be one more object for the garbage collector.
        self._callbacks: _Callback | list[_Callback] | None = None
        self._waiter_list: list[Any] | None = None
        self.task_record = task_record
        self._outputs: Sequence[DataFuture] = ()

    # -- the lazily made condition, for concurrent.futures' own code -----------

    @property
    def _condition(self) -> threading.Condition:  # type: ignore[override]
        cond = self._cond
        if cond is None:
            with _LOCKS[id(self) >> 4 & 63]:
                cond = self._cond
                if cond is None:
                    cond = self._cond = threading.Condition()
        return cond

    @property
    def _waiters(self) -> list[Any]:  # type: ignore[override]
        # Only used under the condition (by concurrent.futures.wait and friends).
        waiters = self._waiter_list
        if waiters is None:
            waiters = self._waiter_list = []
        return waiters

    @property
    def _done_callbacks(self) -> list[_Callback]:
        # Read by Future's own methods, which run under the condition (and
        # then no other code changes _callbacks).
        callbacks = self._callbacks
        if not isinstance(callbacks, list):
            callbacks = self._callbacks = [] if callbacks is None else [callbacks]
        return callbacks

    # -- completing ---------------------------------------------------------------

    def set_result(self, result: Any) -> None:
        if not self._finish(result, None):
            super().set_result(result)  # someone may be waiting: the usual way

    def set_exception(self, exception: BaseException | None) -> None:
        if not self._finish(None, exception):
            super().set_exception(exception)

    def _finish(self, result: Any, exception: BaseException | None) -> bool:
        """Complete a future nobody waits on; False if it has a condition (use Future's way)."""
        with _LOCKS[id(self) >> 4 & 63]:
            if self._cond is not None:
                return False
            if self._state in _DONE_STATES:
                raise InvalidStateError(f"{self._state}: {self!r}")
            self._result = result
            self._exception = exception
            self._state = FINISHED
            callbacks, self._callbacks = self._callbacks, None
        if callbacks is not None:
            self._call(callbacks)
        return True

    def add_done_callback(self, fn: Callable[[Future[Any]], object]) -> None:
        with _LOCKS[id(self) >> 4 & 63]:
            if self._cond is None:
                if self._state not in _DONE_STATES:
                    callbacks = self._callbacks
                    if callbacks is None:
                        self._callbacks = fn
                    elif isinstance(callbacks, list):
                        callbacks.append(fn)
                    else:
                        self._callbacks = [callbacks, fn]
                    return
                use_condition = False
            else:
                use_condition = True
        if use_condition:
            super().add_done_callback(fn)
        else:
            self._call(fn)

    def _call(self, callbacks: _Callback | list[_Callback]) -> None:
        if not isinstance(callbacks, list):  # the usual case, without a loop
            try:
                callbacks(self)
            except Exception:
                logger.exception("exception calling callback for %r", self)
            return
        for callback in callbacks:
            try:
                callback(self)
            except Exception:
                logger.exception("exception calling callback for %r", self)

    def _invoke_callbacks(self) -> None:
        callbacks = self._callbacks
        if callbacks is not None:
            self._call(callbacks)

    # -- reading --------------------------------------------------------------------

    def done(self) -> bool:
        return self._state in _DONE_STATES

    def cancelled(self) -> bool:
        return self._state in (CANCELLED, CANCELLED_AND_NOTIFIED)

    def running(self) -> bool:
        return self._state == RUNNING

    def result(self, timeout: float | None = None) -> T:
        if self._state == FINISHED:  # final: no lock needed
            exc = self._exception
            if exc is None:
                return self._result  # type: ignore[no-any-return]
            try:
                raise exc
            finally:
                # The traceback holds this frame: drop its references, as
                # Future.result does, so no cycle keeps the exception alive.
                exc = None
                self = None  # type: ignore[assignment]
        return super().result(timeout)  # type: ignore[no-any-return]

    def exception(self, timeout: float | None = None) -> BaseException | None:
        if self._state == FINISHED:
            return self._exception
        return super().exception(timeout)

    # -- flowkernel's own -----------------------------------------------------------

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

    def __repr__(self) -> str:
        state = self._state  # read once: no lock needed for a description
        detail = f"state={_STATE_TO_DESCRIPTION_MAP[state]}"
        if state == FINISHED:
            if self._exception is not None:
                detail += f" raised {type(self._exception).__name__}"
            else:
                detail += f" returned {type(self._result).__name__}"
        return f"<AppFuture task {self.tid} {self.task_record.func_name}: {detail}>"


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
