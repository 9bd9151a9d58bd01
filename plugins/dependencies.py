"""Default dependency resolution: shallow, or deep on request.

Shallow looks only at each argument itself (and each item of ``inputs=``),
which costs one ``isinstance`` per argument.  Deep also looks inside lists,
tuples, sets and dicts, at any depth, and rebuilds them with the results.
"""

from __future__ import annotations

from concurrent.futures import Future
from typing import Any

from flowkernel.config import Config
from flowkernel.markers import hookimpl


class ShallowDependencyResolver:
    """Futures passed directly as arguments."""

    def traverse_to_gather(self, obj: Any) -> list[Future[Any]]:
        return [obj] if isinstance(obj, Future) else []

    def traverse_to_unwrap(self, obj: Any) -> Any:
        return obj.result() if isinstance(obj, Future) else obj

    def __repr__(self) -> str:
        return "SHALLOW_DEPENDENCY_RESOLVER"


class DeepDependencyResolver:
    """Futures anywhere inside lists, tuples, sets and dicts (keys and values)."""

    def traverse_to_gather(self, obj: Any) -> list[Future[Any]]:
        found: list[Future[Any]] = []
        stack = [obj]
        while stack:
            item = stack.pop()
            if isinstance(item, Future):
                found.append(item)
            elif isinstance(item, (list, tuple, set, frozenset)):
                stack.extend(item)
            elif isinstance(item, dict):
                stack.extend(item.keys())
                stack.extend(item.values())
        return found

    def traverse_to_unwrap(self, obj: Any) -> Any:
        if isinstance(obj, Future):
            return obj.result()
        if isinstance(obj, list):
            return [self.traverse_to_unwrap(x) for x in obj]
        if isinstance(obj, tuple):
            items = [self.traverse_to_unwrap(x) for x in obj]
            return type(obj)(*items) if hasattr(obj, "_fields") else tuple(items)
        if isinstance(obj, (set, frozenset)):
            return type(obj)(self.traverse_to_unwrap(x) for x in obj)
        if isinstance(obj, dict):
            return {self.traverse_to_unwrap(k): self.traverse_to_unwrap(v) for k, v in obj.items()}
        return obj

    def __repr__(self) -> str:
        return "DEEP_DEPENDENCY_RESOLVER"


SHALLOW_DEPENDENCY_RESOLVER = ShallowDependencyResolver()
DEEP_DEPENDENCY_RESOLVER = DeepDependencyResolver()


@hookimpl(trylast=True)
def flowkernel_dependency_resolver(config: Config) -> Any:
    choice = config.dependency_resolver
    if choice is None or choice == "shallow":
        return SHALLOW_DEPENDENCY_RESOLVER
    if choice == "deep":
        return DEEP_DEPENDENCY_RESOLVER
    return choice
