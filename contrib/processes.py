"""Executor kind ``processes``: a pool of worker processes on this machine.

For CPU-bound Python, which threads cannot run in parallel (the GIL).  Tasks
and results travel pickled with cloudpickle, so apps defined in ``__main__``,
inside functions, and closures work, and so do results the standard pickle
refuses.  Install with ``pip install 'flowkernel[processes]'``.

Workers are started with the ``forkserver`` method (``spawn`` where that does
not exist): forking the kernel's process itself would copy its threads' locks
in whatever state they happen to be, and a child could hang on one.  Since
tasks arrive by value, workers do not re-run the user's script as
``multiprocessing`` children normally do, so a workflow script needs no
``if __name__ == "__main__":`` guard.

A worker that dies in the middle of a task (killed, out of memory, a crash in
C code) breaks the standard pool for every task in it; this executor fails
those tries with :class:`WorkerLost` — so the kernel's retry budget applies —
and starts a fresh pool for what comes next.
"""

from __future__ import annotations

import concurrent.futures as cf
import logging
import multiprocessing
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from concurrent.futures.process import BrokenProcessPool
from typing import Any

from flowkernel.contrib.spawning import without_main_reimport
from flowkernel.errors import ConfigurationError, UnsupportedFeatureError
from flowkernel.executors import Executor
from flowkernel.markers import hookimpl

logger = logging.getLogger(__name__)


class WorkerLost(RuntimeError):
    """The worker process running a task died before reporting a result."""


def _cloudpickle() -> Any:
    try:
        import cloudpickle
    except ImportError as exc:
        raise ConfigurationError(
            "executor kind 'processes' needs cloudpickle: pip install 'flowkernel[processes]'"
        ) from exc
    return cloudpickle


def _ready() -> bool:
    return True


def run_pickled(payload: bytes) -> bytes:
    """In a worker: unpickle ``(func, args, kwargs)``, run it, pickle ``(ok, value)`` back."""
    import cloudpickle

    func, args, kwargs = cloudpickle.loads(payload)
    try:
        outcome = (True, func(*args, **kwargs))
    except BaseException as exc:
        outcome = (False, exc)
    try:
        return cloudpickle.dumps(outcome)  # type: ignore[no-any-return]
    except Exception as exc:  # the result (or exception) itself cannot travel
        problem = TypeError(f"the task's {'result' if outcome[0] else 'exception'} cannot be "
                            f"pickled to return it from the worker: {exc!r}")  # fmt: skip
        return cloudpickle.dumps((False, problem))  # type: ignore[no-any-return]


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

    def start(self) -> None:
        with self._lock:
            if self._pool is None:
                self._pool = self._new_pool()

    def _new_pool(self) -> cf.ProcessPoolExecutor:
        context = multiprocessing.get_context(self.start_method)
        pool = cf.ProcessPoolExecutor(max_workers=self.max_workers, mp_context=context)
        with without_main_reimport():
            pool.submit(_ready).result()  # starts every worker now, under the patch
        return pool

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
        payload = self._pickle.dumps((func, tuple(args), kwargs))
        with self._lock:
            if self._pool is None:
                raise RuntimeError(f"executor {self.label!r} was not started")
            pool = self._pool
            self._outstanding += 1
        try:
            future = pool.submit(run_pickled, payload)
        except BrokenProcessPool:
            with self._lock:
                self._outstanding -= 1
            self._replace(pool)
            raise WorkerLost(
                f"executor {self.label!r}: the worker pool had broken; it was restarted, "
                "and this try is lost"
            ) from None
        except BaseException:
            with self._lock:
                self._outstanding -= 1
            raise
        future.add_done_callback(lambda f: self._report(pool, f, done))
        return future

    def _report(
        self,
        pool: cf.ProcessPoolExecutor,
        future: Future[bytes],
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
            ok, value = self._pickle.loads(future.result())
            if ok:
                done(value, None)
            else:
                done(None, value)

    def _replace(self, broken: cf.ProcessPoolExecutor) -> None:
        """Swap a broken pool for a fresh one (once, however many tasks report it)."""
        with self._lock:
            if self._pool is not broken:
                return
            logger.warning("executor %r: a worker died; starting a new process pool", self.label)
            self._pool = self._new_pool()
        broken.shutdown(wait=False)

    @property
    def outstanding(self) -> int:
        return self._outstanding

    def shutdown(self) -> None:
        with self._lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=True)


@hookimpl(trylast=True)
def flowkernel_executor_kinds() -> dict[str, Callable[..., Executor]]:
    return {"processes": ProcessPoolExecutor}
