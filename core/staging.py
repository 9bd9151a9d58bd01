"""Moving files in and out of tasks, by URL scheme, through staging providers.

When a task is submitted, every :class:`~flowkernel.File` among its positional
arguments, keyword arguments and ``inputs`` is offered to the providers from
the ``flowkernel_staging_providers`` hook, in hook order; the first whose
``can_stage_in(file)`` is true handles it, in one of two ways:

* **as a separate task** — ``stage_in(file)`` returns a function; the kernel
  runs it on its own staging executor (apart from the user's executors) with a
  clean copy of the file, and the app receives that copy, which now has a
  ``local_path``, once the staging task has finished: the app depends on it;
* **inside the task** — ``wrap_stage_in(file, runner)`` returns a replacement
  for the callable the executor runs, which stages the file and then calls the
  original.

Each entry of ``outputs=[...]`` becomes a :class:`~flowkernel.futures.DataFuture`
in ``AppFuture.outputs``; a provider that can stage it out does so inside the
task, or after the app succeeds on the staging executor — and in both cases
before the app's future completes, so whoever sees the result finds the file
shipped.  A task submitted with ``_parsl_staging_inhibit=True``
is left alone, as in Parsl.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from flowkernel.errors import HookError, StagingError
from flowkernel.files import File
from flowkernel.futures import DataFuture

if TYPE_CHECKING:
    from flowkernel.futures import AppFuture
    from flowkernel.task import TaskRecord

STAGING_INHIBIT = "_parsl_staging_inhibit"

SubmitStaging = Callable[[Callable[..., Any], tuple[Any, ...]], "AppFuture[Any]"]
"""How the stager asks the kernel for a staging task: ``submit(function, args)``."""


class StagingProvider:
    """Base class for staging providers: override the methods your schemes need.

    ``schemes`` lists the URL schemes handled; the default ``can_stage_in``
    accepts them and ``can_stage_out`` accepts none.
    """

    schemes: tuple[str, ...] = ()

    def can_stage_in(self, file: File) -> bool:
        return file.scheme in self.schemes

    def can_stage_out(self, file: File) -> bool:
        return False

    def stage_in(self, file: File) -> Callable[[File], Any] | None:
        """A function that fetches ``file`` and sets its ``local_path``, run as its own task."""
        return None

    def wrap_stage_in(self, file: File, runner: Callable[..., Any]) -> Callable[..., Any] | None:
        """A replacement for ``runner`` that fetches ``file`` inside the task first."""
        return None

    def stage_out(self, file: File) -> Callable[[File], Any] | None:
        """A function that ships ``file`` away after the app succeeded, run as its own task."""
        return None

    def wrap_stage_out(self, file: File, runner: Callable[..., Any]) -> Callable[..., Any] | None:
        """A replacement for ``runner`` that ships ``file`` away inside the task, afterwards."""
        return None


def stage_in_task(mover: Callable[[File], Any], file: File) -> File:
    """The body of a stage-in task: fetch the file, hand the (now local) file on."""
    mover(file)
    return file


def stage_out_task(mover: Callable[[File], Any], file: File) -> File:
    """The body of a stage-out step, run after the app succeeded."""
    mover(file)
    return file


def has_files(task: TaskRecord) -> bool:
    """Whether a task has anything for the stager to look at (cheap: no provider is asked)."""
    # Plain loops: this runs for every task, and generator expressions cost more.
    for arg in task.args:
        if isinstance(arg, File):
            return True
    kwargs = task.kwargs
    if not kwargs:
        return False
    if kwargs.get("outputs"):
        return True
    for value in kwargs.values():
        if isinstance(value, File):
            return True
    for item in kwargs.get("inputs") or ():
        if isinstance(item, File):
            return True
    return False


class Stager:
    """Applies the staging providers to one kernel's tasks."""

    def __init__(self, providers: Sequence[tuple[str, Any]], submit: SubmitStaging) -> None:
        self.providers = list(providers)
        self._submit = submit

    def _provider(self, file: File, direction: str) -> tuple[str, Any] | None:
        method = "can_stage_in" if direction == "in" else "can_stage_out"
        for plugin, provider in self.providers:
            try:
                accepted = getattr(provider, method)(file)
            except Exception as exc:
                raise HookError(
                    "flowkernel_staging_providers",
                    plugin,
                    f"{type(provider).__name__}.{method}({file!r}) raised "
                    f"{type(exc).__name__}: {exc}",
                ) from exc
            if accepted:
                return plugin, provider
        return None

    def _call(self, plugin: str, provider: Any, method: str, *args: Any) -> Any:
        try:
            return getattr(provider, method)(*args)
        except Exception as exc:
            raise HookError(
                "flowkernel_staging_providers",
                plugin,
                f"{type(provider).__name__}.{method} raised {type(exc).__name__}: {exc}",
            ) from exc

    def _stage_in_one(self, task: TaskRecord, value: Any) -> Any:
        if not isinstance(value, File):
            return value
        found = self._provider(value, "in")
        if found is None:
            names = ", ".join(p for p, _ in self.providers) or "none"
            raise StagingError(
                f"task {task.id} ({task.func_name}): no staging provider can stage in "
                f"{value.url!r} (scheme {value.scheme!r}); providers: {names}"
            )
        plugin, provider = found
        wrapped = self._call(plugin, provider, "wrap_stage_in", value, task.runner)
        if wrapped is not None:
            task.runner = wrapped
        mover = self._call(plugin, provider, "stage_in", value)
        if mover is None:
            return value
        copy = value.cleancopy()
        staging = self._submit(stage_in_task, (mover, copy))
        return DataFuture(staging, copy, tid=staging.tid)

    def stage_inputs(self, task: TaskRecord) -> None:
        """Replace files among the task's arguments with what staging makes of them."""
        task.args = [self._stage_in_one(task, arg) for arg in task.args]
        kwargs = task.kwargs
        for key, value in kwargs.items():
            if key not in ("inputs", "outputs", "stdout", "stderr"):
                kwargs[key] = self._stage_in_one(task, value)
        if kwargs.get("inputs"):
            kwargs["inputs"] = [self._stage_in_one(task, item) for item in kwargs["inputs"]]

    def stage_outputs(self, task: TaskRecord, app_fu: AppFuture[Any]) -> list[DataFuture]:
        """Data futures for the task's declared outputs (files given as paths become Files)."""
        outputs = [o if isinstance(o, File) else File(o) for o in task.kwargs["outputs"]]
        task.kwargs["outputs"] = outputs
        futures = []
        for file in outputs:
            found = self._provider(file, "out") if file.scheme != "file" else None
            if found is not None:
                plugin, provider = found
                wrapped = self._call(plugin, provider, "wrap_stage_out", file, task.runner)
                if wrapped is not None:
                    task.runner = wrapped
                mover = self._call(plugin, provider, "stage_out", file)
                if mover is not None:
                    # Run by the kernel after the app succeeds, before its future
                    # completes: whoever sees the result finds the file shipped.
                    task.stage_outs = [*task.stage_outs, (mover, file)]
            elif file.scheme != "file":
                raise StagingError(
                    f"task {task.id} ({task.func_name}): no staging provider can stage out "
                    f"{file.url!r} (scheme {file.scheme!r})"
                )
            futures.append(DataFuture(app_fu, file, tid=app_fu.tid))
        return futures
