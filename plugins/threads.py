"""Executor kind ``threads``: a pool of threads in this process.

Right for I/O-bound work and for code that releases the GIL; the default
executor when a config names none.
"""

from __future__ import annotations

import concurrent.futures as cf
import threading
from collections.abc import Callable
from typing import Any

from typeguard import typechecked

from flowkernel.errors import UnsupportedFeatureError
from flowkernel.executors import Executor
from flowkernel.markers import hookimpl


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
        self._pool: cf.ThreadPoolExecutor | None = None
        self._outstanding = 0
        self._count_lock = threading.Lock()

    def start(self) -> None:
        if self._pool is None:
            self._pool = cf.ThreadPoolExecutor(
                max_workers=self.max_threads, thread_name_prefix=self.thread_name_prefix
            )

    def submit(
        self,
        func: Callable[..., Any],
        resource_specification: dict[str, Any],
        *args: Any,
        **kwargs: Any,
    ) -> cf.Future[Any]:
        if resource_specification:
            raise UnsupportedFeatureError(
                f"executor {self.label!r} (threads) takes no resource specification, "
                f"got {resource_specification!r}"
            )
        if self._pool is None:
            raise RuntimeError(f"executor {self.label!r} was not started")
        with self._count_lock:
            self._outstanding += 1
        try:
            future = self._pool.submit(func, *args, **kwargs)
        except BaseException:
            self._one_done(None)
            raise
        future.add_done_callback(self._one_done)
        return future

    def _one_done(self, _future: Any) -> None:
        with self._count_lock:
            self._outstanding -= 1

    @property
    def outstanding(self) -> int:
        return self._outstanding

    def shutdown(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True)


@hookimpl(trylast=True)
def flowkernel_executor_kinds() -> dict[str, Callable[..., Executor]]:
    return {"threads": ThreadPoolExecutor}
