"""flowkernel: a dataflow kernel for Python, built on pluggy hooks.

Decorate functions with :func:`python_app` or :func:`join_app`; calling one
returns an :class:`AppFuture` at once, and futures passed to other apps become
their dependencies.  :func:`load` starts a kernel that runs the resulting graph.

Plugins are not loaded by ``import flowkernel``; they load when a kernel starts,
when :func:`make_executor` is called, or when ``ThreadPoolExecutor`` is first
looked up here.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from flowkernel.apps import bash_app, join_app, python_app
from flowkernel.checkpoints import get_all_checkpoints, get_last_checkpoint
from flowkernel.config import Config
from flowkernel.errors import (
    AbortTask,
    AppBadFormatting,
    AppException,
    AppTimeout,
    BadStdStreamFile,
    BashAppNoReturn,
    BashExitFailure,
    ConfigurationError,
    ConfigurationTypeError,
    DataFlowException,
    DependencyError,
    FlowkernelError,
    HookError,
    JoinError,
    KernelShutdownError,
    MemoKeyError,
    MissingOutputs,
    NoDataFlowKernelError,
    PluginLoadError,
    StagingError,
    UnknownExecutorError,
    UnsupportedFeatureError,
)
from flowkernel.executors import Executor, make_executor
from flowkernel.files import File
from flowkernel.futures import AppFuture, DataFuture
from flowkernel.kernel import DataFlowKernel
from flowkernel.loader import DataFlowKernelLoader, clear, dfk, load, wait_for_current_tasks
from flowkernel.log import set_file_logger, set_stream_logger
from flowkernel.markers import hookimpl
from flowkernel.retry_policy import RetryPolicy
from flowkernel.states import States
from flowkernel.streams import AUTO_LOGNAME

if TYPE_CHECKING:  # the class lives in the default ``threads`` plugin
    from flowkernel.plugins.threads import ThreadPoolExecutor

__version__ = "0.1.0"

__all__ = [
    "AUTO_LOGNAME",
    "AbortTask",
    "AppBadFormatting",
    "AppException",
    "AppFuture",
    "AppTimeout",
    "BadStdStreamFile",
    "BashAppNoReturn",
    "BashExitFailure",
    "Config",
    "ConfigurationError",
    "ConfigurationTypeError",
    "DataFlowException",
    "DataFlowKernel",
    "DataFlowKernelLoader",
    "DataFuture",
    "DependencyError",
    "Executor",
    "File",
    "FlowkernelError",
    "HookError",
    "JoinError",
    "KernelShutdownError",
    "MemoKeyError",
    "MissingOutputs",
    "NoDataFlowKernelError",
    "PluginLoadError",
    "RetryPolicy",
    "StagingError",
    "States",
    "ThreadPoolExecutor",
    "UnknownExecutorError",
    "UnsupportedFeatureError",
    "__version__",
    "bash_app",
    "clear",
    "dfk",
    "get_all_checkpoints",
    "get_last_checkpoint",
    "hookimpl",
    "join_app",
    "load",
    "make_executor",
    "python_app",
    "set_file_logger",
    "set_stream_logger",
    "wait_for_current_tasks",
]


def __getattr__(name: str) -> Any:
    # The core does not import its plugins: the thread executor class is asked
    # of whichever plugin provides the ``threads`` kind.
    if name == "ThreadPoolExecutor":
        from flowkernel.pluginmanager import default_plugins

        kinds = default_plugins().executor_kinds()
        if "threads" not in kinds:
            raise AttributeError(
                "flowkernel.ThreadPoolExecutor comes from the plugin providing executor kind "
                "'threads', and no loaded plugin provides it (is the 'threads' plugin blocked?)"
            )
        return kinds["threads"][1]
    raise AttributeError(f"module 'flowkernel' has no attribute {name!r}")
