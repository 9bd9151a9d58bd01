"""The executor interface, and building executors by kind.

An executor runs a function somewhere and hands back a
:class:`concurrent.futures.Future`.  The kernel decides *when* a task runs; the
executor decides *where* and *how*.  Executors come from plugins through the
``flowkernel_executor_kinds`` hook, so ``make_executor("threads")`` and a config
file's ``[[executors]] kind = "threads"`` find the same factory.
"""

from __future__ import annotations

import abc
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any

from typeguard import typechecked


class Executor(abc.ABC):
    """Base class of executors.

    A subclass sets ``label`` and implements :meth:`submit`, :meth:`shutdown`
    and :attr:`outstanding`; :meth:`start` is optional.  The kernel calls
    ``start()`` once before the first submit and ``shutdown()`` once at cleanup,
    both from the thread that owns the kernel; ``submit()`` is called from the
    kernel's dispatch thread only.
    """

    label: str = "executor"
    run_dir: str | None = None
    """Set by the kernel before ``start()``: the kernel's run directory."""

    def start(self) -> None:  # noqa: B027 - optional hook for subclasses
        """Acquire resources (threads, processes, a connection)."""

    @abc.abstractmethod
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
        """

    @abc.abstractmethod
    def shutdown(self) -> None:
        """Release resources; tasks already running may finish first."""

    @property
    @abc.abstractmethod
    def outstanding(self) -> int:
        """How many submitted tasks have not finished yet."""

    def __repr__(self) -> str:
        return f"<{type(self).__name__} label={self.label!r}>"


@typechecked
def make_executor(kind: str, **options: Any) -> Executor:
    """Build an executor of a registered ``kind`` (``"threads"``, or a plugin's).

    The kinds come from the plugins discovered for this process (entry points,
    ``FLOWKERNEL_PLUGINS``, ``flowconf.py``).  An unknown kind is a
    :class:`~flowkernel.errors.ConfigurationError` listing the known ones.
    """
    from flowkernel.pluginmanager import default_plugins

    return default_plugins().make_executor(kind, **options)
