"""Apps: decorated functions whose calls become tasks.

``@python_app`` runs the function body as the task.  ``@join_app`` runs the
body (on the kernel's internal pool by default) to *build* more tasks: it
returns a future or a list of futures, and the app's future takes their
result(s).
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Sequence
from typing import Any, Generic, TypeVar, overload

from typeguard import typechecked

from flowkernel.futures import AppFuture
from flowkernel.kernel import INTERNAL_EXECUTOR, DataFlowKernel
from flowkernel.loader import DataFlowKernelLoader
from flowkernel.retry_policy import RetryPolicy
from flowkernel.runners import needs_runner, run_bash_app, run_python_app

R = TypeVar("R")

# Keyword parameters whose declared defaults are passed to every call, as in
# Parsl: a default ``inputs=[...]`` holding futures makes them dependencies.
_SPECIAL_KWARGS = (
    "inputs",
    "outputs",
    "stdout",
    "stderr",
    "walltime",
    "parsl_resource_specification",
)


class AppBase(Generic[R]):
    """A function turned into an app; calling it submits a task."""

    join = False

    def __init__(
        self,
        func: Callable[..., R],
        data_flow_kernel: DataFlowKernel | None = None,
        executors: str | Sequence[str] = "all",
        cache: bool = False,
        ignore_for_cache: Sequence[str] | None = None,
        priority: float = 0,
        retries: int | None = None,
        retry_policy: RetryPolicy | None = None,
    ) -> None:
        self.func = func
        self.data_flow_kernel = data_flow_kernel
        self.executors = executors if isinstance(executors, str) else list(executors)
        self.cache = cache
        self.ignore_for_cache = list(ignore_for_cache) if ignore_for_cache else None
        self.priority = priority
        self.retries = retries
        self.retry_policy = retry_policy
        functools.update_wrapper(self, func)
        try:
            params = inspect.signature(func).parameters
        except (TypeError, ValueError):
            params = {}  # type: ignore[assignment]
        self.kwargs = {
            name: params[name].default
            for name in _SPECIAL_KWARGS
            if name in params and params[name].default is not inspect.Parameter.empty
        }
        # ``priority=`` at call time is the kernel's, unless the function has
        # a parameter of that name.
        self._priority_is_ours = "priority" not in params

    def runner(self, kwargs: dict[str, Any]) -> Callable[..., Any]:
        """The callable the executor runs for one call with these keyword arguments."""
        return self.func

    def __call__(self, *args: Any, **kwargs: Any) -> AppFuture[R]:
        dfk = self.data_flow_kernel or DataFlowKernelLoader.dfk()
        if self.kwargs:
            merged = dict(self.kwargs)
            merged.update(kwargs)
            kwargs = merged
        priority = self.priority
        if "priority" in kwargs and self._priority_is_ours:
            priority = kwargs.pop("priority")
        return dfk.submit(
            self.func,
            runner=self.runner(kwargs),
            app_args=args,
            executors=self.executors,
            cache=self.cache,
            ignore_for_cache=self.ignore_for_cache,
            app_kwargs=kwargs,
            join=self.join,
            priority=priority,
            retries=self.retries,
            retry_policy=self.retry_policy,
        )

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {getattr(self.func, '__qualname__', self.func)!r}>"


class PythonApp(AppBase[R]):
    """An app whose body is the task."""

    def runner(self, kwargs: dict[str, Any]) -> Callable[..., Any]:
        if needs_runner(kwargs):
            return functools.partial(run_python_app, self.func)
        return self.func


class BashApp(AppBase[int]):
    """An app whose body returns a command line; the task runs it in a shell.

    The future's result is the exit code (0); any other exit code fails it with
    :class:`~flowkernel.errors.BashExitFailure`.
    """

    def runner(self, kwargs: dict[str, Any]) -> Callable[..., Any]:
        return functools.partial(run_bash_app, self.func)


class JoinApp(AppBase[R]):
    """An app whose body returns the future(s) its result is taken from."""

    join = True


def _decorate(cls: type[AppBase[Any]], function: Callable[..., Any] | None, *options: Any) -> Any:
    """The app for ``function``, or, without one, a decorator that makes it."""

    def decorate(func: Callable[..., Any]) -> AppBase[Any]:
        return cls(func, *options)

    return decorate(function) if function is not None else decorate


@overload
def python_app(function: Callable[..., R]) -> PythonApp[R]: ...
@overload
def python_app(
    function: None = None,
    data_flow_kernel: DataFlowKernel | None = None,
    cache: bool = False,
    executors: str | Sequence[str] = "all",
    ignore_for_cache: Sequence[str] | None = None,
    priority: float = 0,
    retries: int | None = None,
    retry_policy: RetryPolicy | None = None,
) -> Callable[[Callable[..., R]], PythonApp[R]]: ...


@typechecked
def python_app(
    function: Callable[..., Any] | None = None,
    data_flow_kernel: DataFlowKernel | None = None,
    cache: bool = False,
    executors: str | Sequence[str] = "all",
    ignore_for_cache: Sequence[str] | None = None,
    priority: float = 0,
    retries: int | None = None,
    retry_policy: RetryPolicy | None = None,
) -> Any:
    """Make a function an app: each call returns an :class:`AppFuture` at once.

    :param executors: ``"all"`` or the labels the task may run on.
    :param cache: reuse the result of an identical earlier call (when the
        config's ``app_cache`` allows).
    :param ignore_for_cache: keyword arguments that do not count for caching.
    :param priority: among ready tasks waiting for an executor slot, higher
        launches first; a call can pass ``priority=`` to override it.
    :param retries: this app's retry budget, instead of ``Config.retries``.
    :param retry_policy: a :class:`~flowkernel.RetryPolicy` (budget, which
        exceptions, waits between tries), instead of the config's.
    """

    return _decorate(
        PythonApp,
        function,
        data_flow_kernel,
        executors,
        cache,
        ignore_for_cache,
        priority,
        retries,
        retry_policy,
    )


@overload
def bash_app(function: Callable[..., Any]) -> BashApp: ...
@overload
def bash_app(
    function: None = None,
    data_flow_kernel: DataFlowKernel | None = None,
    cache: bool = False,
    executors: str | Sequence[str] = "all",
    ignore_for_cache: Sequence[str] | None = None,
    priority: float = 0,
    retries: int | None = None,
    retry_policy: RetryPolicy | None = None,
) -> Callable[[Callable[..., Any]], BashApp]: ...


@typechecked
def bash_app(
    function: Callable[..., Any] | None = None,
    data_flow_kernel: DataFlowKernel | None = None,
    cache: bool = False,
    executors: str | Sequence[str] = "all",
    ignore_for_cache: Sequence[str] | None = None,
    priority: float = 0,
    retries: int | None = None,
    retry_policy: RetryPolicy | None = None,
) -> Any:
    """Make a function a bash app: its body returns a command line, which the task runs.

    The command runs in ``/bin/bash`` with stdin closed.  ``stdout=`` and
    ``stderr=`` redirect its output (a path, ``(path, mode)`` or
    :data:`~flowkernel.AUTO_LOGNAME`); ``walltime=`` kills it, and everything
    it started, after that many seconds.  ``stdout``, ``stderr``, ``walltime``,
    ``inputs`` and ``outputs`` reach the body when it declares them, so it can
    use them to build the command.
    """

    return _decorate(
        BashApp,
        function,
        data_flow_kernel,
        executors,
        cache,
        ignore_for_cache,
        priority,
        retries,
        retry_policy,
    )


@overload
def join_app(function: Callable[..., R]) -> JoinApp[Any]: ...
@overload
def join_app(
    function: None = None,
    data_flow_kernel: DataFlowKernel | None = None,
    cache: bool = False,
    executors: str | Sequence[str] = (INTERNAL_EXECUTOR,),
    ignore_for_cache: Sequence[str] | None = None,
    priority: float = 0,
    retries: int | None = None,
    retry_policy: RetryPolicy | None = None,
) -> Callable[[Callable[..., R]], JoinApp[Any]]: ...


@typechecked
def join_app(
    function: Callable[..., Any] | None = None,
    data_flow_kernel: DataFlowKernel | None = None,
    cache: bool = False,
    executors: str | Sequence[str] = (INTERNAL_EXECUTOR,),
    ignore_for_cache: Sequence[str] | None = None,
    priority: float = 0,
    retries: int | None = None,
    retry_policy: RetryPolicy | None = None,
) -> Any:
    """Make a function a join app: its body returns a future or a list of futures.

    The app's future completes with the inner future's result (or the list of
    results); if an inner future fails, with :class:`~flowkernel.JoinError`.  A
    body returning anything else fails the task with a ``TypeError``.  The body
    runs on the kernel's internal pool unless ``executors`` says otherwise.
    """

    return _decorate(
        JoinApp,
        function,
        data_flow_kernel,
        executors,
        cache,
        ignore_for_cache,
        priority,
        retries,
        retry_policy,
    )
