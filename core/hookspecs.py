"""Hook specifications: the contract between the kernel and its plugins.

Every policy decision the kernel makes is one of these hooks.  The names are
fixed — plugin writers and ``flowconf.py`` files rely on them — and a spec may
later gain arguments: an implementation names only the arguments it uses.

Two kinds of hook:

* **Decision hooks** return a value and stop at the first non-None result.
  flowkernel's own plugins implement them with ``trylast=True``, so any other
  plugin is asked first.  If an implementation raises, the task it was asked
  about fails with :class:`~flowkernel.errors.HookError` naming the hook and the
  plugin (the original exception as its cause); raise
  :class:`~flowkernel.errors.AbortTask` to fail the task with an exception of
  your choosing instead.
* **Observer hooks** return nothing and every implementation is called.  One
  that raises is logged with its plugin's name and counted in the kernel's
  cleanup summary; the task is not affected.

The kernel calls each implementation itself, in pluggy's order (tryfirst,
then the most recently registered, then trylast), so that a failure can be
traced to one plugin.  Hook wrappers are therefore not supported.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from flowkernel.markers import hookspec

if TYPE_CHECKING:
    from flowkernel.checkpoints import CheckpointStore
    from flowkernel.config import Config
    from flowkernel.dependencies import DependencyResolver
    from flowkernel.executors import Executor
    from flowkernel.kernel import DataFlowKernel
    from flowkernel.staging import StagingProvider
    from flowkernel.states import States
    from flowkernel.task import TaskRecord


# -------------------------------------------------------------------------
# Executors
# -------------------------------------------------------------------------


@hookspec
def flowkernel_executor_kinds() -> dict[str, Callable[..., Executor]]:
    """Name the executor kinds this plugin provides.

    Called once per plugin manager, the first time an executor kind is looked up
    (``flowkernel.make_executor(kind, ...)``, a ``[[executors]]`` table with
    ``kind = ...`` in a config file, or a kernel built without executors, which
    makes one executor of kind ``threads``).

    :returns: a mapping ``{kind: factory}``; ``factory(**options)`` builds an
        :class:`~flowkernel.Executor`.

    Results of all implementations are merged; two plugins naming the same kind
    is a :class:`~flowkernel.errors.PluginLoadError` that names both.

    A ``flowconf.py`` may implement this hook.
    """


@hookspec(firstresult=True)
def flowkernel_select_executor(task: TaskRecord, candidates: Sequence[str]) -> str | None:
    """Choose the executor a task runs on.

    Called when the task's inputs are ready and it is about to launch, and again
    before each retry, so a retry may land on another executor.  Not called
    when the app allows a single executor: there is nothing to choose.

    :param task: the task record (its ``func_name``, ``fail_count``, ``kwargs``...).
    :param candidates: the labels the app allows (``executors=``), in config order;
        never empty.
    :returns: one of ``candidates``, or None to let the next plugin decide.  An
        answer outside ``candidates`` fails the task with a
        :class:`~flowkernel.errors.HookError`.

    Stops at the first non-None result.  The default picks the candidate with
    the fewest outstanding tasks.

    A ``flowconf.py`` may implement this hook.
    """


# -------------------------------------------------------------------------
# Failures and retries
# -------------------------------------------------------------------------


@hookspec(firstresult=True)
def flowkernel_retry_cost(exception: BaseException, task: TaskRecord) -> float | None:
    """Say what one failed try of a task costs against its retry budget.

    Called after every failed try, before the kernel decides whether to retry.
    ``task.fail_count`` already counts this failure.  The task is retried while
    the sum of costs (``task.fail_cost``) stays at or below ``Config.retries``.

    :param exception: what the try raised.
    :param task: the task record.
    :returns: a number (0 makes this failure free; anything above the budget
        stops retrying), or None to let the next plugin decide.

    Stops at the first non-None result.  The default costs 1 per failure, or
    asks ``Config.retry_handler(exception, task)`` when one is set; if that
    handler raises, retrying stops and its exception is what the future reports.

    A ``flowconf.py`` may implement this hook.
    """


# -------------------------------------------------------------------------
# Dependencies
# -------------------------------------------------------------------------


@hookspec(firstresult=True)
def flowkernel_dependency_resolver(config: Config) -> DependencyResolver | None:
    """Provide the object that finds futures among an app's arguments.

    Called once, when a kernel starts.  The resolver's ``traverse_to_gather(obj)``
    lists the futures inside one argument and ``traverse_to_unwrap(obj)``
    replaces them with their results (see
    :class:`flowkernel.dependencies.DependencyResolver`).

    :param config: the kernel's configuration (``config.dependency_resolver`` is
        the user's choice: ``"shallow"``, ``"deep"``, a resolver object, or None).
    :returns: a resolver, or None to let the next plugin decide.

    Stops at the first non-None result.  The default looks at top-level
    arguments only (shallow), or into lists, tuples, sets and dicts (deep).

    A ``flowconf.py`` may implement this hook.
    """


# -------------------------------------------------------------------------
# Memoization and checkpoints
# -------------------------------------------------------------------------


@hookspec(firstresult=True)
def flowkernel_memo_key(task: TaskRecord) -> str | None:
    """Compute the memo key of a task: equal keys mean "same work, same result".

    Called once per task, on the thread that made it ready, when its inputs are
    ready (arguments hold values, not futures) and before it launches — only
    for apps declared ``cache=True`` while ``Config.app_cache`` is on.  A task
    whose key matches a finished task (in this run or a loaded checkpoint) ends
    ``memo_done`` with that result without running; one whose key matches a
    task still running waits for it.

    :param task: the task record (``func``, ``args``, ``kwargs``,
        ``ignore_for_cache``).
    :returns: the key as a string, or None to let the next plugin decide.  When
        every plugin answers None the task is not memoized.

    Stops at the first non-None result.  The default hashes the function's code
    and each argument's :func:`flowkernel_id_for_memo`; raise
    :class:`~flowkernel.errors.AbortTask` to fail the task instead.

    A ``flowconf.py`` may implement this hook.
    """


@hookspec(firstresult=True)
def flowkernel_id_for_memo(value: object, identify: Callable[[object], bytes]) -> bytes | None:
    """Give the identity of one argument value, as bytes, for the memo key.

    Called by the default :func:`flowkernel_memo_key` for every argument of a
    memoized task, and for every item inside lists, tuples, sets and dicts, so
    implementing it teaches the hasher a new type wherever it appears.

    :param value: one argument value (or an item inside one).
    :param identify: asks the whole hook chain about another value; use it for
        the parts of a container type so their types are handled too.
    :returns: bytes that are equal exactly when two values should count as the
        same input, or None to let the next plugin decide.

    Stops at the first non-None result.  The default covers None, numbers,
    strings, bytes, lists, tuples, sets, dicts (in any key order), files and
    functions; a value no plugin can identify fails its task with
    :class:`~flowkernel.errors.MemoKeyError` naming the type.

    A ``flowconf.py`` may implement this hook.
    """


@hookspec(firstresult=True)
def flowkernel_checkpoint_store(config: Config, run_dir: str) -> CheckpointStore | None:
    """Provide the store that checkpointed results are written to and read from.

    Called once, when a kernel starts with ``Config.checkpoint_mode`` or
    ``Config.checkpoint_files`` set.  The store's ``load(sources)`` returns
    ``{memo key: result}`` from earlier runs, ``write(records)`` saves
    ``(key, result, task)`` records and ``close()`` ends its use (see
    :class:`flowkernel.checkpoints.CheckpointStore`).

    :param config: the kernel's configuration.
    :param run_dir: this kernel's run directory.
    :returns: a store, or None to let the next plugin decide.

    Stops at the first non-None result.  The default pickles records into
    ``<run_dir>/checkpoint/tasks.pkl``, the layout Parsl uses.

    A ``flowconf.py`` may implement this hook.
    """


# -------------------------------------------------------------------------
# Files
# -------------------------------------------------------------------------


@hookspec
def flowkernel_staging_providers() -> Sequence[StagingProvider]:
    """List the staging providers this plugin offers, for moving files by URL scheme.

    Called once per kernel, the first time a task has a
    :class:`~flowkernel.File` among its arguments or ``outputs``.  For each file
    the providers are asked in hook order (a ``flowconf.py`` first, flowkernel's
    own last) and the first whose ``can_stage_in(file)`` (or
    ``can_stage_out(file)``) is true moves it, as a separate staging task or
    inside the task (see :class:`flowkernel.staging.StagingProvider`).

    :returns: a list of providers (an empty list offers none).

    Results of all implementations are merged.  A provider that raises fails
    the task whose file it was handling, with a
    :class:`~flowkernel.errors.HookError` naming the plugin.  The defaults handle
    local paths and ``file://`` (nothing to move) and ``http``, ``https`` and
    ``ftp`` stage-in (a download before the task).

    A ``flowconf.py`` may implement this hook.
    """


# -------------------------------------------------------------------------
# Observation
# -------------------------------------------------------------------------


@hookspec
def flowkernel_task_state_changed(task: TaskRecord, old: States, new: States) -> None:
    """Observe one state transition of one task.

    Called once per transition, right after ``task.status`` changed and before
    the task's future completes, on the thread that made the transition (the
    submitting thread, an executor worker, or the thread that completed an
    input), so several may run at once: an implementation must be
    thread-safe.  Keep it quick: the kernel waits for it.

    :param task: the task record.
    :param old: the state it left.
    :param new: the state it entered.

    Every implementation is called, except one marked with
    :func:`flowkernel.markers.entering`, which is called only for transitions
    into the states it names (an observer of how tasks end then costs one
    call per task, not one per transition); a raise is logged and counted,
    never affects the task.

    A ``flowconf.py`` may implement this hook.
    """


@hookspec
def flowkernel_kernel_started(kernel: DataFlowKernel) -> None:
    """Observe a kernel that has started: executors are running, tasks may come.

    Called once per kernel, at the end of its construction (``flowkernel.load``),
    on the thread that built it.

    :param kernel: the kernel (``kernel.run_dir``, ``kernel.executors``,
        ``kernel.config``).

    Every implementation is called; a raise is logged and counted.

    A ``flowconf.py`` may implement this hook.
    """


@hookspec
def flowkernel_kernel_stopping(kernel: DataFlowKernel) -> None:
    """Observe a kernel at the start of its cleanup, before executors shut down.

    Called once per kernel, when ``cleanup()`` begins (also on leaving
    ``with kernel:``), on the thread that called it; tasks may still finish
    after it.

    :param kernel: the kernel.

    Every implementation is called; a raise is logged and counted.

    A ``flowconf.py`` may implement this hook.
    """


@hookspec
def flowkernel_kernel_stopped(kernel: DataFlowKernel) -> None:
    """Observe a kernel whose cleanup has finished: every task's future has ended.

    Called once per kernel, at the very end of ``cleanup()``, on the thread that
    called it; no task transition follows.  The place to flush and close what a
    plugin recorded about the run.

    :param kernel: the kernel (``kernel.task_state_counts`` are final).

    Every implementation is called; a raise is logged and counted.

    A ``flowconf.py`` may implement this hook.
    """


HOOK_NAMES: tuple[str, ...] = tuple(
    name for name in list(globals()) if name.startswith("flowkernel_")
)
"""All hook names, in the order they are documented above."""
