"""Executor kind ``processes``: a pool of worker processes on this machine.

For CPU-bound Python, which threads cannot run in parallel (the GIL).  Tasks
and results travel pickled with cloudpickle — the parent sends
``cloudpickle.dumps((func, args, kwargs))`` to :func:`run_pickled`, which sends
the pickled outcome back — so apps defined in ``__main__``, inside functions,
and closures work, and so do results the standard pickle refuses.  Install
with ``pip install 'flowkernel[processes]'``.

The pool is the standard library's :class:`concurrent.futures.ProcessPoolExecutor`
(no extra dependency; loky would add worker reuse across pools, which a kernel
that keeps one pool per executor does not need).  Workers are started with the
``forkserver`` method (``spawn`` where that does not exist): the kernel's
process runs several threads (dispatch, executors, timers), and ``fork`` would
copy their locks in whatever state they happen to be, so a child could hang on
one.  ``multiprocessing`` children started with ``spawn`` or ``forkserver``
normally import the parent's ``__main__`` again, which re-runs a workflow
script that has no ``if __name__ == "__main__":`` guard; tasks arrive by
value, so every worker of this pool is started without that step (see
:mod:`flowkernel.contrib.spawning`), including workers the pool starts later
on demand.

A worker that dies in the middle of a task (killed, out of memory, a crash in
C code) breaks the standard pool for every task in it: those tries fail with
:class:`WorkerLost`, naming the executor — so the kernel's retry budget
applies — and the next submission goes to a fresh pool.  A task submitted
while the broken pool is being replaced never reached a worker, so it is
resubmitted to the new pool rather than failed.

Threads: tasks are submitted from any thread; results are reported from the
pool's management thread.  ``_lock`` guards ``_pool`` and ``_outstanding``;
``done`` callbacks are called outside it.
"""

from __future__ import annotations

import concurrent.futures as cf
import logging
import multiprocessing
import threading
import traceback
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from concurrent.futures.process import BrokenProcessPool
from functools import partial
from typing import Any

from flowkernel.contrib.spawning import without_main_reimport
from flowkernel.errors import ConfigurationError, UnsupportedFeatureError
from flowkernel.executors import Executor
from flowkernel.markers import hookimpl

logger = logging.getLogger(__name__)

INSTALL_HINT = "pip install 'flowkernel[processes]'"

START_TIMEOUT = 60.0
"""Seconds :meth:`ProcessPoolExecutor.start` waits for the first worker to answer."""


class WorkerLost(RuntimeError):
    """The worker process running a task died before reporting a result."""


class RemoteTraceback(Exception):
    """The traceback of an exception raised in a worker, as text (its ``__cause__``)."""

    def __init__(self, text: str) -> None:
        super().__init__(text)
        self.text = text

    def __str__(self) -> str:
        return f'\n"""\n{self.text}"""'


def _cloudpickle() -> Any:
    try:
        import cloudpickle
    except ImportError as exc:
        raise ConfigurationError(
            f"executor kind 'processes' needs cloudpickle, which is not installed: {INSTALL_HINT}"
        ) from exc
    return cloudpickle


def _ready() -> bool:
    return True


def run_pickled(payload: bytes) -> bytes:
    """In a worker: unpickle ``(func, args, kwargs)``, run it, pickle the outcome back.

    The outcome is ``(True, result)`` or ``(False, exception, traceback_text)``.
    """
    import cloudpickle

    func, args, kwargs = cloudpickle.loads(payload)
    try:
        outcome: tuple[Any, ...] = (True, func(*args, **kwargs))
    except BaseException as exc:
        outcome = (False, exc, traceback.format_exc())
    try:
        return cloudpickle.dumps(outcome)  # type: ignore[no-any-return]
    except Exception as exc:  # the result (or exception) itself cannot travel
        what = "result" if outcome[0] else f"exception ({outcome[1]!r})"
        problem = TypeError(
            f"the task's {what} cannot be pickled to return it from the worker: {exc!r}"
        )
        return cloudpickle.dumps((False, problem, traceback.format_exc()))  # type: ignore[no-any-return]


class _Pool(cf.ProcessPoolExecutor):
    """The standard pool, starting each worker (also those it starts later) without ``__main__``.

    The standard pool starts workers on demand, one per submission while none
    is idle, from ``_adjust_process_count``; wrapping it covers every start.
    """

    def _adjust_process_count(self) -> None:
        with without_main_reimport():
            super()._adjust_process_count()


class ProcessPoolExecutor(Executor):
    """Runs tasks in ``max_workers`` processes (default: one per CPU)."""

    def __init__(
        self,
        label: str = "processes",
        max_workers: int | None = None,
        start_method: str | None = None,
    ) -> None:
        self._pickle = _cloudpickle()
        if max_workers is not None and max_workers < 1:
            raise ConfigurationError(f"max_workers must be at least 1, got {max_workers}")
        methods = multiprocessing.get_all_start_methods()
        method = start_method or ("forkserver" if "forkserver" in methods else "spawn")
        if method not in methods:
            raise ConfigurationError(
                f"start_method {method!r} is not available here; choose one of {methods}"
            )
        self.label = label
        self.max_workers = max_workers
        self.start_method = method
        self._pool: cf.ProcessPoolExecutor | None = None
        self._lock = threading.Lock()
        self._outstanding = 0
        self._shut = False

    def start(self) -> None:
        with self._lock:
            if self._pool is not None:
                return
            if self._shut:
                raise RuntimeError(f"executor {self.label!r} has been shut down")
            self._pool = self._new_pool()
            pool = self._pool
        try:  # start a worker now, so that a broken set-up fails here, not in a task
            pool.submit(_ready).result(timeout=START_TIMEOUT)
        except BaseException as exc:
            raise RuntimeError(
                f"executor {self.label!r}: the first worker process did not start: {exc!r}"
            ) from exc

    def _new_pool(self) -> cf.ProcessPoolExecutor:
        context = multiprocessing.get_context(self.start_method)
        if self.start_method == "fork":  # forked children do not re-import __main__
            return cf.ProcessPoolExecutor(max_workers=self.max_workers, mp_context=context)
        return _Pool(max_workers=self.max_workers, mp_context=context)

    def submit_task(
        self,
        func: Callable[..., Any],
        resource_specification: dict[str, Any],
        args: Sequence[Any],
        kwargs: dict[str, Any],
        done: Callable[[Any, BaseException | None], None],
        priority: float = 0,
    ) -> Future[bytes]:
        if resource_specification:
            raise UnsupportedFeatureError(
                f"executor {self.label!r} (processes) takes no resource specification, "
                f"got {resource_specification!r}"
            )
        try:
            payload = self._pickle.dumps((func, tuple(args), kwargs))
        except Exception as exc:
            raise TypeError(
                f"executor {self.label!r}: the task cannot be pickled to send it to a worker "
                f"process: {exc!r}"
            ) from exc
        for _attempt in range(3):
            with self._lock:
                if self._shut:
                    raise RuntimeError(f"executor {self.label!r} has been shut down")
                if self._pool is None:
                    raise RuntimeError(f"executor {self.label!r} was not started")
                pool = self._pool
                self._outstanding += 1
            try:
                future = pool.submit(run_pickled, payload)
            except BrokenProcessPool:
                # The pool broke before this task reached it: nothing ran, so
                # send it to the replacement instead of failing a try.
                with self._lock:
                    self._outstanding -= 1
                self._replace(pool)
                continue
            except BaseException:
                with self._lock:
                    self._outstanding -= 1
                raise
            future.add_done_callback(partial(self._report, pool, done=done))
            return future
        raise WorkerLost(f"executor {self.label!r}: its process pool keeps breaking")

    def _report(
        self,
        pool: cf.ProcessPoolExecutor,
        future: Future[bytes],
        *,
        done: Callable[[Any, BaseException | None], None],
    ) -> None:
        with self._lock:
            self._outstanding -= 1
        if future.cancelled():
            done(None, cf.CancelledError(f"cancelled on executor {self.label!r}"))
            return
        exc = future.exception()
        if isinstance(exc, BrokenProcessPool):
            self._replace(pool)
            lost = WorkerLost(
                f"executor {self.label!r}: a worker process died while this task was in the "
                f"pool ({exc}); the pool was restarted"
            )
            lost.__cause__ = exc
            done(None, lost)
        elif exc is not None:
            done(None, exc)
        else:
            try:
                outcome = self._pickle.loads(future.result())
            except BaseException as problem:  # e.g. a result class the kernel cannot import
                done(None, problem)
                return
            if outcome[0]:
                done(outcome[1], None)
            else:
                error = outcome[1]
                if error.__cause__ is None:  # a pickled exception keeps no cause or traceback
                    error.__cause__ = RemoteTraceback(outcome[2])
                done(None, error)

    def _replace(self, broken: cf.ProcessPoolExecutor) -> None:
        """Swap a broken pool for a fresh one (once, however many tasks report it)."""
        with self._lock:
            if self._pool is not broken or self._shut:
                return
            logger.warning("executor %r: a worker died; starting a new process pool", self.label)
            self._pool = self._new_pool()  # its workers start on its first submission
        broken.shutdown(wait=False)

    @property
    def outstanding(self) -> int:
        return self._outstanding

    def shutdown(self) -> None:
        """Let submitted tasks finish, then stop the workers."""
        with self._lock:
            self._shut = True
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=True)


@hookimpl(trylast=True)
def flowkernel_executor_kinds() -> dict[str, Callable[..., Executor]]:
    return {"processes": ProcessPoolExecutor}
