"""The executor interface, and building executors by kind.

An executor runs a function somewhere and hands back a
:class:`concurrent.futures.Future`.  The kernel decides *when* a task runs; the
executor decides *where* and *how*.  Executors come from plugins through the
``flowkernel_executor_kinds`` hook, so ``make_executor("threads")`` and a config
file's ``[[executors]] kind = "threads"`` find the same factory.
"""

from __future__ import annotations

import abc
from collections.abc import Callable, Sequence
from concurrent.futures import CancelledError, Future
from functools import partial
from typing import Any

from typeguard import typechecked


class Executor(abc.ABC):
    """Base class of executors.

    A subclass sets ``label`` and implements :meth:`submit` (or
    :meth:`submit_task`), :meth:`shutdown` and :attr:`outstanding`;
    :meth:`start` is optional.  The kernel calls
    ``start()`` once before the first task and ``shutdown()`` once at cleanup,
    both from the thread that owns the kernel.  Tasks arrive through
    :meth:`submit_task`, from any thread (the one that made the task ready):
    ``submit`` and ``submit_task`` must be thread-safe.

    :meth:`submit_task` is the kernel's entry point.  Its default calls
    :meth:`submit` and attaches a callback to the future; an executor that can
    report completion without building a ``Future`` per task (as the thread
    pool does) overrides it and saves that cost.
    """

    label: str = "executor"
    run_dir: str | None = None
    """Set by the kernel before ``start()``: the kernel's run directory."""

    def start(self) -> None:  # noqa: B027 - optional hook for subclasses
        """Acquire resources (threads, processes, a connection)."""

    def submit(
        self,
        func: Callable[..., Any],
        resource_specification: dict[str, Any],
        *args: Any,
        **kwargs: Any,
    ) -> Future[Any]:
        """Run ``func(*args, **kwargs)`` and return a future of its result.

        An exception raised by ``func`` goes into the future.  An exception
        raised by ``submit`` itself counts as a failed try of the task.
        Implement this or :meth:`submit_task` (each has a default in terms of
        the other).
        """
        if type(self).submit_task is Executor.submit_task:
            raise NotImplementedError(
                f"{type(self).__name__} must implement submit() or submit_task()"
            )
        future: Future[Any] = Future()
        future.set_running_or_notify_cancel()

        def done(result: Any, exc: BaseException | None) -> None:
            if exc is not None:
                future.set_exception(exc)
            else:
                future.set_result(result)

        self.submit_task(func, resource_specification, args, kwargs, done)
        return future

    def submit_task(
        self,
        func: Callable[..., Any],
        resource_specification: dict[str, Any],
        args: Sequence[Any],
        kwargs: dict[str, Any],
        done: Callable[[Any, BaseException | None], None],
        priority: float = 0,
    ) -> Any:
        """Run ``func(*args, **kwargs)``; call ``done(result, None)`` or ``done(None, exc)``.

        ``done`` may be called on any thread, exactly once.  ``priority`` orders
        tasks waiting for a free slot (higher first) where the executor can.

        :returns: a handle whose ``cancel()`` stops the task if it has not
            started (returning True, after which ``done`` is never called), or
            returns False.
        """
        future = self.submit(func, resource_specification, *args, **kwargs)
        future.add_done_callback(partial(_report, done))
        return future

    @abc.abstractmethod
    def shutdown(self) -> None:
        """Release resources; tasks already running may finish first."""

    @property
    @abc.abstractmethod
    def outstanding(self) -> int:
        """How many submitted tasks have not finished yet."""

    def __repr__(self) -> str:
        return f"<{type(self).__name__} label={self.label!r}>"


def _report(done: Callable[[Any, BaseException | None], None], future: Future[Any]) -> None:
    if future.cancelled():
        done(None, CancelledError(f"{future!r} was cancelled by its executor"))
        return
    exc = future.exception()
    if exc is not None:
        done(None, exc)
    else:
        done(future.result(), None)


@typechecked
def make_executor(kind: str, **options: Any) -> Executor:
    """Build an executor of a registered ``kind`` (``"threads"``, or a plugin's).

    The kinds come from the plugins discovered for this process (entry points,
    ``FLOWKERNEL_PLUGINS``, ``flowconf.py``).  An unknown kind is a
    :class:`~flowkernel.errors.ConfigurationError` listing the known ones.
    """
    from flowkernel.pluginmanager import default_plugins

    return default_plugins().make_executor(kind, **options)
