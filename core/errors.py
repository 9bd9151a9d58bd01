"""Errors flowkernel raises or puts into futures.

Names and messages follow Parsl's where Parsl has the same error, so code that
catches ``DependencyError`` or ``JoinError`` keeps working.  Every error that a
future can carry says which task it belongs to and, where another exception is
the real cause, chains it as ``__cause__``.
"""

from __future__ import annotations

from collections.abc import Sequence


class FlowkernelError(Exception):
    """Base class of every error raised by flowkernel itself."""


class ConfigurationError(FlowkernelError):
    """A configuration value, a config file or a plugin set-up is wrong."""


class NoDataFlowKernelError(FlowkernelError):
    """No kernel is loaded, or the kernel has been cleaned up."""


class DataFlowException(FlowkernelError):
    """Base class of errors about the task graph (Parsl's name)."""


class UnknownExecutorError(ConfigurationError, ValueError):
    """An app named an executor label that the kernel does not have."""

    def __init__(self, unknown: Sequence[str], known: Sequence[str]) -> None:
        self.unknown = list(unknown)
        self.known = list(known)
        super().__init__(
            f"unknown executor label(s) {', '.join(map(repr, self.unknown))}; "
            f"the executors of this kernel are: {', '.join(map(repr, self.known)) or 'none'}"
        )


def _describe(exceptions_tids: Sequence[tuple[BaseException, str | None]]) -> str:
    return ", ".join(tid if tid is not None else repr(exc) for exc, tid in exceptions_tids)


class _InputsFailed(DataFlowException):
    """Futures a task needed failed; ``dependent_exceptions_tids`` pairs each
    exception with a description of its future (``"task 3"``), and the first
    exception is also the ``__cause__``."""

    _kind = "Dependency"

    def __init__(
        self, dependent_exceptions_tids: Sequence[tuple[BaseException, str | None]], task_id: int
    ) -> None:
        self.dependent_exceptions_tids = list(dependent_exceptions_tids)
        self.task_id = task_id
        super().__init__(self.dependent_exceptions_tids, task_id)
        if self.dependent_exceptions_tids:
            self.__cause__ = self.dependent_exceptions_tids[0][0]

    def __str__(self) -> str:
        what = "dependencies" if self._kind == "Dependency" else "join dependencies"
        return (
            f"{self._kind} failure for task {self.task_id} with failed {what} from "
            f"{_describe(self.dependent_exceptions_tids)}"
        )


class DependencyError(_InputsFailed):
    """A task did not run because one or more of its inputs failed."""


class JoinError(_InputsFailed):
    """A join app's inner futures failed; the causes are in ``dependent_exceptions_tids``."""

    _kind = "Join"


class HookError(FlowkernelError):
    """A plugin's hook implementation raised, or answered with something unusable.

    ``hook`` is the hook name, ``plugin`` the registered name of the plugin
    whose implementation was at fault; the plugin's own exception, if any, is
    the ``__cause__``.
    """

    def __init__(self, hook: str, plugin: str | None, problem: str) -> None:
        self.hook = hook
        self.plugin = plugin
        self.problem = problem
        where = f"plugin {plugin!r}" if plugin is not None else "no plugin"
        super().__init__(f"hook {hook} in {where}: {problem}")


class PluginLoadError(ConfigurationError):
    """A plugin could not be loaded or registered; the message names it and where it came from."""


class AbortTask(Exception):
    """Raised by a decision hook to fail the task with ``exception`` itself.

    Any other exception from a hook is reported as a :class:`HookError` (a
    plugin bug); this one says "the task has failed, and this is why".  The
    default retry plugin uses it so that an exception raised by
    ``Config.retry_handler`` is what the task's future reports, as in Parsl.
    """

    def __init__(self, exception: BaseException) -> None:
        self.exception = exception
        super().__init__(exception)


class KernelShutdownError(NoDataFlowKernelError):
    """The kernel was cleaned up before this task could finish."""

    def __init__(self, task_id: int, state: str) -> None:
        self.task_id = task_id
        super().__init__(
            f"task {task_id} was still {state} when the kernel was cleaned up, so it never ran "
            "to completion; wait for tasks (exit_mode='wait' or wait_for_current_tasks()) "
            "before cleanup to let them finish"
        )


class UnsupportedFeatureError(FlowkernelError):
    """An executor was asked for something it does not do (e.g. a resource specification)."""


# -- Errors raised while running an app's body (on the executor side) --------


class AppException(FlowkernelError):
    """Base class of the errors that come from running an app (Parsl's name)."""


class BashExitFailure(AppException):
    """A bash app's command exited with a non-zero code."""

    def __init__(self, app_name: str, exitcode: int) -> None:
        self.app_name = app_name
        self.exitcode = exitcode
        super().__init__(app_name, exitcode)

    def __str__(self) -> str:
        return f"bash_app {self.app_name} failed with unix exit code {self.exitcode}"


class AppTimeout(AppException):
    """An app ran longer than its ``walltime``."""


class BashAppNoReturn(AppException):
    """A bash app's body returned nothing, so there is no command to run."""


class AppBadFormatting(AppException):
    """A bash app's body failed to build its command line, or built something that is not one."""


class MissingOutputs(AppException):
    """An app finished but did not produce every file it declared in ``outputs=``."""

    def __init__(self, reason: str, outputs: Sequence[object]) -> None:
        self.reason = reason
        self.outputs = list(outputs)
        super().__init__(reason, self.outputs)

    def __str__(self) -> str:
        return f"Missing Outputs: {self.outputs}, Reason: {self.reason}"


class BadStdStreamFile(AppException):
    """A ``stdout=``/``stderr=`` value is not a usable stream specification or file."""

    def __init__(self, reason: str, exception: BaseException | None = None) -> None:
        self.reason = reason
        self.exception = exception
        super().__init__(reason)
        if exception is not None:
            self.__cause__ = exception

    def __str__(self) -> str:
        if self.exception is None:
            return f"Bad stream file: {self.reason}"
        return f"Bad stream file: {self.reason} ({type(self.exception).__name__}: {self.exception})"


class MemoKeyError(FlowkernelError, TypeError):
    """A memoized task's arguments include a value the memo hasher cannot identify."""


class StagingError(FlowkernelError):
    """A file could not be staged in or out (no provider for its scheme, or the transfer failed)."""


class ConfigurationTypeError(ConfigurationError, TypeError):
    """A configuration field was given a value of the wrong type; the message names the field."""
