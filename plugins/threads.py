"""Executor kind ``threads``: a pool of threads in this process.

Right for I/O-bound work and for code that releases the GIL; the default
executor when a config names none.

The pool is its own, not ``concurrent.futures``': the kernel already keeps a
future per task, so a second one per task (with its condition variable and
callback list) would be pure overhead.  Work waits in a heap ordered by
priority, then submission order, guarded by ``_lock``; a ``SimpleQueue`` of
wake-up tokens (one per item) lets idle workers sleep.  Workers report each
result straight to the kernel's ``done`` callback.

A task that becomes ready *on a worker* (its input just finished there) goes
to that worker's own "next" slot instead of the heap, unless something of
higher priority is waiting: the worker runs it as soon as it has reported,
without waking another thread.  A chain of tasks then runs on one warm
thread, as a chain of callbacks would.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import queue
import threading
from collections.abc import Callable, Sequence
from typing import Any

from typeguard import typechecked

from flowkernel.errors import UnsupportedFeatureError
from flowkernel.executors import Executor
from flowkernel.markers import hookimpl

logger = logging.getLogger(__name__)

_STOP = object()


class _Work:
    """One queued task; ``cancel()`` removes it if no worker has taken it yet."""

    __slots__ = ("args", "cancelled", "done", "executor", "func", "kwargs", "started")

    def __init__(
        self,
        executor: ThreadPoolExecutor,
        func: Callable[..., Any],
        args: Sequence[Any],
        kwargs: dict[str, Any],
        done: Callable[[Any, BaseException | None], None],
    ) -> None:
        self.executor = executor
        self.func = func
        self.args = args
        self.kwargs = kwargs
        self.done = done
        self.started = False
        self.cancelled = False

    def cancel(self) -> bool:
        return self.executor._cancel(self)

    def __lt__(self, other: _Work) -> bool:  # heap ties never reach here (seq is unique)
        return False


class ThreadPoolExecutor(Executor):
    """Runs tasks on ``max_threads`` threads (Parsl's ``ThreadPoolExecutor``)."""

    @typechecked
    def __init__(
        self,
        label: str = "threads",
        max_threads: int = 2,
        thread_name_prefix: str = "",
        storage_access: list[Any] | None = None,
        working_dir: str | None = None,
    ) -> None:
        if max_threads < 1:
            raise ValueError(f"max_threads must be at least 1, got {max_threads}")
        self.label = label
        self.max_threads = max_threads
        self.thread_name_prefix = thread_name_prefix or f"flowkernel-{label}"
        self.storage_access = storage_access
        self.working_dir = working_dir
        self._heap: list[tuple[float, int, _Work]] = []
        self._seq = itertools.count()
        self._lock = threading.Lock()
        self._wakeup: queue.SimpleQueue[object] = queue.SimpleQueue()
        self._threads: list[threading.Thread] = []
        self._outstanding = 0
        self._shut = False
        self._worker = threading.local()  # on worker threads: ``next``, the slot above

    def start(self) -> None:
        if self._threads:
            return
        for n in range(self.max_threads):
            thread = threading.Thread(
                target=self._work_loop, name=f"{self.thread_name_prefix}-{n}", daemon=True
            )
            thread.start()
            self._threads.append(thread)

    def submit_task(
        self,
        func: Callable[..., Any],
        resource_specification: dict[str, Any],
        args: Sequence[Any],
        kwargs: dict[str, Any],
        done: Callable[[Any, BaseException | None], None],
        priority: float = 0,
    ) -> _Work:
        if resource_specification:
            raise UnsupportedFeatureError(
                f"executor {self.label!r} (threads) takes no resource specification, "
                f"got {resource_specification!r}"
            )
        if not self._threads:
            raise RuntimeError(f"executor {self.label!r} was not started")
        work = _Work(self, func, args, kwargs, done)
        worker = self._worker
        keep = getattr(worker, "next", False) is None  # a worker of ours with a free slot
        with self._lock:
            if self._shut:
                raise RuntimeError(f"executor {self.label!r} has been shut down")
            self._outstanding += 1
            if keep and (not self._heap or -self._heap[0][0] <= priority):
                worker.next = work
                return work
            heapq.heappush(self._heap, (-priority, next(self._seq), work))
        self._wakeup.put(None)
        return work

    def _cancel(self, work: _Work) -> bool:
        with self._lock:
            if work.started or work.cancelled:
                return False
            work.cancelled = True
            self._outstanding -= 1
        return True

    def _work_loop(self) -> None:
        get = self._wakeup.get
        slot = self._worker
        slot.next = None
        while True:
            kept = slot.next
            if kept is not None:
                slot.next = None
                with self._lock:
                    if kept.cancelled:
                        continue
                    kept.started = True
                work = kept
            else:
                if get() is _STOP:
                    return
                with self._lock:
                    if not self._heap:
                        continue
                    work = heapq.heappop(self._heap)[2]
                    if work.cancelled:
                        continue
                    work.started = True
            try:
                result = work.func(*work.args, **work.kwargs)
            except BaseException as exc:
                outcome: tuple[Any, BaseException | None] = (None, exc)
            else:
                outcome = (result, None)
            with self._lock:
                self._outstanding -= 1
            try:
                work.done(*outcome)
            except BaseException:  # the kernel handles its own errors; this is a last resort
                logger.exception("executor %r: reporting a result failed", self.label)
            del work, kept, outcome

    @property
    def outstanding(self) -> int:
        return self._outstanding

    def shutdown(self) -> None:
        """Let queued and running tasks finish, then stop the threads."""
        with self._lock:
            self._shut = True
        for _ in self._threads:
            self._wakeup.put(_STOP)  # after every queued item's token
        for thread in self._threads:
            if thread is not threading.current_thread():
                thread.join()


@hookimpl(trylast=True)
def flowkernel_executor_kinds() -> dict[str, Callable[..., Executor]]:
    return {"threads": ThreadPoolExecutor}
