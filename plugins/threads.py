"""Executor kind ``threads``: a pool of threads in this process.

Right for I/O-bound work and for code that releases the GIL; the default
executor when a config names none.

The pool is its own, not ``concurrent.futures``': the kernel already keeps a
future per task, so a second one per task (with its condition variable and
callback list) would be pure overhead.  Work runs by priority, then in
submission order.  Most work has the default priority 0: it waits in a plain
FIFO (``_fifo``, a deque), and only work with another priority goes to a
heap (``_heap``), both guarded by ``_lock``.  With 100,000 tasks queued, the
push and pop of a heap cost some 2 µs per task, and its entry tuple was one
more object per task for the garbage collector to scan.  A worker takes work
until both are empty and only then sleeps, on a ``SimpleQueue`` of
wake-up tokens; a submission puts a token only when a worker is asleep and no
token is already on its way to it.  With one token per item instead, as
``concurrent.futures`` does, a burst of submissions woke a sleeping thread for
nearly every task, and each of those context switches cost more than the task.
Workers report each result straight to the kernel's ``done`` callback.

A task that becomes ready *on a worker* (its input just finished there) goes
to that worker's own "next" slot instead of the queue, unless something of
higher priority is waiting: the worker runs it as soon as it has reported,
without waking another thread.  A chain of tasks then runs on one warm
thread, as a chain of callbacks would.
"""

from __future__ import annotations

import collections
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


class _Slot:
    """A worker's "next" slot (see the module docstring); None when empty.

    An object with a slot rather than an attribute of the ``threading.local``:
    the worker keeps it in a local variable, and a thread-local attribute costs
    about a dict lookup each time.
    """

    __slots__ = ("next",)

    def __init__(self) -> None:
        self.next: _Work | None = None


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
        self._fifo: collections.deque[_Work] = collections.deque()  # priority 0
        self._heap: list[tuple[float, int, _Work]] = []  # any other priority, negated
        self._seq = itertools.count()
        self._lock = threading.Lock()
        self._wakeup: queue.SimpleQueue[object] = queue.SimpleQueue()
        self._threads: list[threading.Thread] = []
        self._asleep = 0  # workers waiting for a token; guarded by _lock
        self._tokens = 0  # wake-up tokens put and not yet taken; guarded by _lock
        self._submitted = 0  # guarded by _lock, as is _cancelled
        self._cancelled = 0
        # Tasks finished, per worker: each worker adds to its own slot only,
        # so finishing a task takes no lock.
        self._finished = [0] * max_threads
        self._shut = False
        self._worker = threading.local()  # on worker threads: ``slot``, their _Slot

    def start(self) -> None:
        if self._threads:
            return
        for n in range(self.max_threads):
            thread = threading.Thread(
                target=self._work_loop,
                args=(n,),
                name=f"{self.thread_name_prefix}-{n}",
                daemon=True,
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
        slot: _Slot | None = getattr(self._worker, "slot", None)  # on a worker of ours
        with self._lock:
            if self._shut:
                raise RuntimeError(f"executor {self.label!r} has been shut down")
            self._submitted += 1
            if slot is not None and slot.next is None and not self._waiting_before(priority):
                slot.next = work
                return work
            if priority:
                heapq.heappush(self._heap, (-priority, next(self._seq), work))
            else:
                self._fifo.append(work)
            wake = self._asleep > self._tokens
            if wake:
                self._tokens += 1
        if wake:
            self._wakeup.put(None)
        return work

    def _waiting_before(self, priority: float) -> bool:
        """Whether queued work would run before work of ``priority``; under ``_lock``."""
        heap = self._heap
        if heap and -heap[0][0] > priority:
            return True
        return priority < 0 and bool(self._fifo)

    def _take(self) -> _Work | None:
        """The queued work to run next, or None when none is queued; under ``_lock``."""
        heap, fifo = self._heap, self._fifo
        if heap and (not fifo or heap[0][0] < 0):  # the heap's first outranks priority 0
            return heapq.heappop(heap)[2]
        return fifo.popleft() if fifo else None

    def _cancel(self, work: _Work) -> bool:
        with self._lock:
            if work.started or work.cancelled:
                return False
            work.cancelled = True
            self._cancelled += 1
        return True

    def _work_loop(self, number: int) -> None:
        get = self._wakeup.get
        slot = self._worker.slot = _Slot()
        finished = self._finished
        stopping = False  # a stop token came: run what is left queued, then return
        work: _Work | None
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
                with self._lock:
                    work = self._take()
                    if work is not None:
                        if work.cancelled:
                            continue
                        work.started = True
                    elif stopping:
                        return
                    else:
                        self._asleep += 1
                if work is None:
                    token = get()
                    with self._lock:
                        self._asleep -= 1
                        if token is not _STOP:
                            self._tokens -= 1
                    stopping = token is _STOP
                    continue
            try:
                result = work.func(*work.args, **work.kwargs)
            except BaseException as exc:
                outcome: tuple[Any, BaseException | None] = (None, exc)
            else:
                outcome = (result, None)
            finished[number] += 1
            try:
                work.done(*outcome)
            except BaseException:  # the kernel handles its own errors; this is a last resort
                logger.exception("executor %r: reporting a result failed", self.label)
            del work, kept, outcome

    @property
    def outstanding(self) -> int:
        # A gauge: exact when the pool is quiet, a moment behind while it runs.
        return self._submitted - self._cancelled - sum(self._finished)

    def shutdown(self) -> None:
        """Let queued and running tasks finish, then stop the threads."""
        with self._lock:
            self._shut = True
        for _ in self._threads:
            self._wakeup.put(_STOP)  # a worker takes it only once nothing is queued
        for thread in self._threads:
            if thread is not threading.current_thread():
                thread.join()


@hookimpl(trylast=True)
def flowkernel_executor_kinds() -> dict[str, Callable[..., Executor]]:
    return {"threads": ThreadPoolExecutor}
