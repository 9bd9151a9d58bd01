"""The interface of a dependency resolver.

A resolver decides where futures may hide inside an app's arguments.  The
kernel asks the ``flowkernel_dependency_resolver`` hook for one when it starts;
the default plugin offers a shallow one (top-level arguments only) and a deep
one (into containers).
"""

from __future__ import annotations

from concurrent.futures import Future
from typing import Any, Protocol, runtime_checkable


@runtime_checkable
class DependencyResolver(Protocol):
    """Finds futures inside one argument and swaps them for their results."""

    def traverse_to_gather(self, obj: Any) -> list[Future[Any]]:
        """Every future inside ``obj`` that the task must wait for."""
        ...

    def traverse_to_unwrap(self, obj: Any) -> Any:
        """``obj`` with each future replaced by its result.

        Called only once every gathered future is done; it raises the first
        failed future's exception, which the kernel turns into a
        :class:`~flowkernel.errors.DependencyError`.
        """
        ...
