"""Executor kind ``inline``: runs each task at once, in the thread that launches it.

Useful for debugging (a traceback shows the caller) and as the smallest
possible executor: everything an executor must do, nothing more.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any

import flowkernel


class InlineExecutor(flowkernel.Executor):
    """Runs tasks synchronously; ``tag`` is stamped on results when ``stamp`` is set."""

    def __init__(self, label: str = "inline", stamp: bool = False) -> None:
        self.label = label
        self.stamp = stamp
        self.ran: list[str] = []
        self._lock = threading.Lock()
        self._outstanding = 0

    def submit(
        self,
        func: Callable[..., Any],
        resource_specification: dict[str, Any],
        *args: Any,
        **kwargs: Any,
    ) -> Future[Any]:
        future: Future[Any] = Future()
        with self._lock:
            self._outstanding += 1
        try:
            result = func(*args, **kwargs)
        except Exception as exc:
            future.set_exception(exc)
        else:
            future.set_result((self.label, result) if self.stamp else result)
        finally:
            with self._lock:
                self._outstanding -= 1
                self.ran.append(getattr(func, "__name__", "?"))
        return future

    def shutdown(self) -> None:
        pass

    @property
    def outstanding(self) -> int:
        return self._outstanding


@flowkernel.hookimpl
def flowkernel_executor_kinds() -> dict[str, Callable[..., flowkernel.Executor]]:
    return {"inline": InlineExecutor}
