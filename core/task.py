"""The task record: everything the kernel knows about one app invocation.

A plain object with slots, because the kernel creates one per task and reads
its fields on the hot path.  It also answers ``record['fail_count']`` and the
other keys of Parsl's dict-shaped task record, so retry handlers and monitoring
code written for Parsl keep working.

Threads: fields are written by the thread that submitted the task until it is
pending, and after that by one thread at a time: whichever carries the task's
current step (see the kernel's module docstring); ``status`` only under the
task's stripe lock in the kernel.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future
from typing import TYPE_CHECKING, Any

from flowkernel.states import States

if TYPE_CHECKING:
    from flowkernel.futures import AppFuture
    from flowkernel.kernel import DataFlowKernel
    from flowkernel.retry_policy import RetryPolicy

# Parsl key -> attribute, where they differ.
_KEY_ALIASES = {"dfk": "kernel"}


class TaskRecord:
    """One task: its function and arguments, where it is in its life, and its failures."""

    # Fields every task sets are slots.  Fields most tasks never change are
    # class attributes below: a task stores one (in its ``__dict__``, made on
    # demand) only once it is set, which saves time and memory per task.
    __slots__ = (
        "__dict__",
        "__weakref__",
        "app_fu",
        "args",
        "candidates",
        "depends",
        "exec_fu",
        "executor",
        "func",
        "id",
        "join",
        "kernel",
        "kwargs",
        "memoize",
        "resource_specification",
        "runner",
        "status",
        "time_invoked",
        "time_returned",
        "try_id",
        "try_time_launched",
        "try_time_returned",
    )

    joins: Future[Any] | list[Future[Any]] | None = None
    hashsum: str | None = None
    from_memo: bool | None = None
    fail_count: int = 0
    fail_cost: float = 0.0
    fail_history: Sequence[str] = ()  # a list from the first failure on
    priority: float = 0
    cancelling: bool = False
    retries: int | None = None  # this task's budget, when not the config's
    retry_policy: RetryPolicy | None = None  # this task's, when not the config's
    ignore_for_cache: Sequence[str] = ()
    # (mover, file) pairs to run after the app succeeds, before it completes.
    stage_outs: Sequence[tuple[Callable[..., Any], Any]] = ()
    # Inputs (or joined futures) not yet done, plus one guard held while
    # callbacks are being attached; see DataFlowKernel._count_down.
    _unfinished: int = 0
    # When a retry became pending; the first try did at ``time_invoked``.
    try_time_pending: float | None = None

    def __init__(
        self,
        *,
        task_id: int,
        kernel: DataFlowKernel,
        func: Callable[..., Any],
        runner: Callable[..., Any],
        args: tuple[Any, ...] | list[Any],
        kwargs: dict[str, Any],
        candidates: tuple[str, ...],
        memoize: bool,
        join: bool,
        resource_specification: dict[str, Any],
    ) -> None:
        self.id = task_id
        self.kernel = kernel
        self.func = func
        # What the executor calls: ``func`` itself, or a wrapper that runs a
        # shell command, captures streams or enforces a walltime.
        self.runner = runner
        self.args = args
        self.kwargs = kwargs
        self.candidates = candidates
        self.executor: str | None = None
        self.memoize = memoize
        self.join = join
        self.resource_specification = resource_specification
        self.status = States.unsched
        # Empty tuples stand for "none": a task carries no list it does not need.
        self.depends: Sequence[Future[Any]] = ()
        self.app_fu: AppFuture[Any] | None = None
        self.exec_fu: Any = None  # the executor's handle of the running try
        self.try_id = 0
        self.time_invoked = time.time()
        self.time_returned: float | None = None
        self.try_time_launched: float | None = None
        self.try_time_returned: float | None = None

    @property
    def func_name(self) -> str:
        """The function's name, for logs and reports."""
        func = self.func
        return getattr(func, "__name__", type(func).__name__)

    # -- Parsl's dict-shaped access ------------------------------------------

    def __getitem__(self, key: str) -> Any:
        name = _KEY_ALIASES.get(key, key)
        if name.startswith("_") or name not in _PUBLIC_FIELDS:
            raise KeyError(key)
        return getattr(self, name)

    def __setitem__(self, key: str, value: Any) -> None:
        name = _KEY_ALIASES.get(key, key)
        if name.startswith("_") or name not in _PUBLIC_FIELDS:
            raise KeyError(key)
        setattr(self, name, value)

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and _KEY_ALIASES.get(key, key) in _PUBLIC_FIELDS

    def get(self, key: str, default: Any = None) -> Any:
        try:
            return self[key]
        except KeyError:
            return default

    def keys(self) -> Iterator[str]:
        yield from sorted(_PUBLIC_FIELDS | set(_KEY_ALIASES))

    def __repr__(self) -> str:
        return f"<TaskRecord {self.id} {self.func_name} {self.status.name}>"


_PUBLIC_FIELDS = frozenset(
    name
    for name in (*TaskRecord.__slots__, *TaskRecord.__annotations__, "func_name")
    if not name.startswith("_")
)
