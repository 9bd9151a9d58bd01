"""The task record: everything the kernel knows about one app invocation.

A plain object with slots, because the kernel creates one per task and reads
its fields on the hot path.  It also answers ``record['fail_count']`` and the
other keys of Parsl's dict-shaped task record, so retry handlers and monitoring
code written for Parsl keep working.

Threads: fields are written by the thread that submitted the task until it is
pending, and after that by one thread at a time: whichever carries the task's
current step (see the kernel's module docstring); ``status`` only under the
kernel's lock.
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

    __slots__ = (
        "__weakref__",
        "_unfinished",
        "app_fu",
        "args",
        "cancelling",
        "candidates",
        "depends",
        "exec_fu",
        "executor",
        "fail_cost",
        "fail_count",
        "fail_history",
        "from_memo",
        "func",
        "func_name",
        "hashsum",
        "id",
        "ignore_for_cache",
        "join",
        "joins",
        "kernel",
        "kwargs",
        "memoize",
        "priority",
        "resource_specification",
        "retries",
        "retry_policy",
        "runner",
        "stage_outs",
        "status",
        "time_invoked",
        "time_returned",
        "try_id",
        "try_time_launched",
        "try_time_returned",
    )

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
        ignore_for_cache: Sequence[str],
        join: bool,
        resource_specification: dict[str, Any],
    ) -> None:
        self.id = task_id
        self.kernel = kernel
        self.func = func
        self.func_name: str = getattr(func, "__name__", type(func).__name__)
        # What the executor calls: ``func`` itself, or a wrapper that runs a
        # shell command, captures streams or enforces a walltime.
        self.runner = runner
        self.args = args
        self.kwargs = kwargs
        self.candidates = candidates
        self.executor: str | None = None
        self.memoize = memoize
        self.ignore_for_cache = ignore_for_cache
        self.join = join
        self.joins: Future[Any] | list[Future[Any]] | None = None
        self.resource_specification = resource_specification
        self.status = States.unsched
        # Empty tuples stand for "none" below: a task carries no list it does
        # not need, which is most of them (memory per pending task counts).
        self.depends: Sequence[Future[Any]] = ()
        self.app_fu: AppFuture[Any] | None = None
        self.exec_fu: Any = None  # the executor's handle of the running try
        self.hashsum: str | None = None
        self.from_memo: bool | None = None
        self.fail_count = 0
        self.fail_cost = 0.0
        self.fail_history: Sequence[str] = ()  # a list from the first failure on
        self.try_id = 0
        self.priority: float = 0
        self.cancelling = False
        self.retries: int | None = None  # this task's budget, when not the config's
        self.retry_policy: RetryPolicy | None = None
        # (mover, file) pairs to run after the app succeeds, before it completes.
        self.stage_outs: Sequence[tuple[Callable[..., Any], Any]] = ()
        self.time_invoked = time.time()
        self.time_returned: float | None = None
        self.try_time_launched: float | None = None
        self.try_time_returned: float | None = None
        # Inputs (or joined futures) not yet done, plus one guard held while
        # callbacks are being attached; see DataFlowKernel._count_down.
        self._unfinished = 0

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


_PUBLIC_FIELDS = frozenset(name for name in TaskRecord.__slots__ if not name.startswith("_"))
