"""The kernel: a task state machine that asks plugins for every decision.

Threads and what they do
------------------------
There is no kernel thread.  Each step of a task runs on the thread that made
it possible:

* a **submitting thread** (any user thread) creates the task record, finds its
  inputs and, if they are all done already, launches it (asks the selection
  hook, hands the task to an executor);
* the **thread that completes an input** (an executor worker, usually) counts
  the waiting task down and, if it took the count to zero, launches it;
* an **executor worker** reports a result through the ``done`` callback of
  :meth:`Executor.submit_task`, and on that same thread the kernel finishes
  the task (success, retry or failure) and completes its future.

No handoff to another thread costs anything per task, and no thread is a
bottleneck.  Completing one future can make another task ready, whose launch
can complete a future at once (a memoized result), and so on: to keep a chain
of 100,000 such steps off the call stack, kernel work started while a thread is
already doing kernel work is queued on that thread (``_do``) and run when the
outer step returns — a loop, never recursion.

Locks
-----
No lock is shared by every task.  A task's transitions (old state checked and
new state set in one step) and its countdown (``TaskRecord._unfinished``) are
guarded by one of 64 *stripe* locks, picked by task id, so the thread
submitting tasks and the threads finishing other tasks rarely meet at one;
with a single kernel-wide lock they met on every task, and under the GIL that
became a convoy of thread switches (see :mod:`flowkernel.statecounts`, which
counts tasks per state per thread for the same reason).  Because a transition
is checked against :data:`flowkernel.states.TRANSITIONS` under its stripe, two
threads racing to move one task (a completion and a cancel, or the cleanup
sweep) cannot both win: the loser is refused and does nothing.  Only the thread
that takes a countdown to zero launches the task, so inputs that finish in the
same instant on different threads cannot both launch it (Parsl issue #2227).
The task table is changed and read by single dict operations, which are
atomic.  ``self._lock`` guards the memo table and ``cleanup_called``.  No lock
is held while calling a plugin, an executor or a future.
"""

from __future__ import annotations

import atexit
import collections
import concurrent.futures as cf
import gc
import heapq
import itertools
import logging
import os
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import CancelledError, Future
from functools import partial
from typing import Any

from typeguard import typechecked

from flowkernel.checkpoints import Checkpointer
from flowkernel.config import Config
from flowkernel.errors import (
    AbortTask,
    BadStdStreamFile,
    ConfigurationError,
    DependencyError,
    HookError,
    JoinError,
    KernelShutdownError,
    NoDataFlowKernelError,
    StagingError,
    UnknownExecutorError,
)
from flowkernel.executors import Executor
from flowkernel.futures import AppFuture
from flowkernel.log import FILE_LOG_NAME, remove_handler, set_file_logger
from flowkernel.pluginmanager import Plugins, build_plugins
from flowkernel.retry_policy import RetryPolicy
from flowkernel.rundir import make_rundir
from flowkernel.staging import STAGING_INHIBIT, Stager, has_files, stage_out_task
from flowkernel.statecounts import SLOT as _SLOT
from flowkernel.statecounts import SUBMITTED as _SUBMITTED
from flowkernel.statecounts import StateCounts
from flowkernel.states import FINAL_STATES, TRANSITIONS, States
from flowkernel.streams import resolve_streams
from flowkernel.task import TaskRecord

logger = logging.getLogger(__name__)

INTERNAL_EXECUTOR = "_flowkernel_internal"
"""Label of the kernel's own thread pool, where join-app bodies run by default."""

STAGING_EXECUTOR = "_flowkernel_staging"
"""Label of the kernel's thread pool for staging tasks, apart from the user's executors."""

_OWN_EXECUTORS = (INTERNAL_EXECUTOR, STAGING_EXECUTOR)

_Step = Callable[[TaskRecord, Any], None]

_local = threading.local()
"""Per thread: ``steps``, its :class:`_Steps`; ``internal``, true on the
kernel's own pool threads (exempt from backpressure)."""


class _Steps:
    """One thread's kernel steps: whether it is running one, and those started meanwhile.

    One object with slots, so that a step costs one thread-local lookup
    (about as dear as a dict lookup) instead of four.
    """

    __slots__ = ("busy", "queue")

    def __init__(self) -> None:
        self.busy = False
        self.queue: collections.deque[tuple[_Step, TaskRecord, Any]] = collections.deque()


_STRIPE_MASK = 63
"""Task ``id & _STRIPE_MASK`` picks the lock for the task's transitions (64 locks)."""

_UNSCHED_SLOT = _SLOT[States.unsched]


def _mark_internal() -> None:
    _local.internal = True


def _exception_of(future: Future[Any]) -> BaseException | None:
    """The exception of a done future, treating cancellation as one."""
    try:
        return future.exception(timeout=0)
    except CancelledError:
        return CancelledError(f"{future!r} was cancelled")


def _step_failed(step: _Step, task: TaskRecord, exc: BaseException) -> None:
    name = getattr(step, "__name__", repr(step))
    logger.exception("kernel error in %s for task %s", name, task.id)
    if task.status not in FINAL_STATES:
        task.kernel._fail(task, exc)


_DEFAULT_GC_THRESHOLDS = (700, 10, 10)
_TUNED_GC_THRESHOLDS = (700, 1000, 10)
_gc_users = 0
_gc_lock = threading.Lock()


def _tune_gc() -> bool:
    """Make older-generation collections rarer while kernels run, if nobody else tuned them.

    A kernel keeps many live objects per pending task, and CPython's default
    thresholds then rescan all of them over and over: on a 2-core machine that
    doubled the cost of submitting a task.  The middle generation is collected
    a hundred times more rarely than by default, so that the records of tasks
    that wait only briefly (a chain) are mostly freed before it is scanned:
    in a chain of 100,000 tasks the collector then took 2.8 µs per task,
    against 5.1 when it was collected ten times more rarely than by default
    (measured with ``gc.callbacks``).
    A full collection is considered every 7,000,000 net allocations instead of
    70,000 (and runs only once the long-lived objects grew by a quarter, as
    always); young objects are collected as often as by default.
    Thresholds someone else has set are left alone.
    """
    global _gc_users
    with _gc_lock:
        if _gc_users == 0:
            if gc.get_threshold() != _DEFAULT_GC_THRESHOLDS:
                return False
            gc.set_threshold(*_TUNED_GC_THRESHOLDS)
            logger.debug("garbage collector thresholds set to %s", _TUNED_GC_THRESHOLDS)
        _gc_users += 1
        return True


def _untune_gc(tuned: bool) -> None:
    global _gc_users
    if not tuned:
        return
    with _gc_lock:
        _gc_users -= 1
        if _gc_users == 0 and gc.get_threshold() == _TUNED_GC_THRESHOLDS:
            gc.set_threshold(*_DEFAULT_GC_THRESHOLDS)


class _PoolExecutor(Executor):
    """One of the kernel's own thread pools, seen through the executor interface."""

    def __init__(self, label: str, threads: int) -> None:
        self.label = label
        self._pool = cf.ThreadPoolExecutor(
            max_workers=threads,
            thread_name_prefix=label.strip("_").replace("_", "-"),
            initializer=_mark_internal,
        )
        self._running = 0
        self._lock = threading.Lock()

    def submit(
        self, func: Callable[..., Any], resource_specification: dict[str, Any], *args: Any,
        **kwargs: Any,
    ) -> Future[Any]:  # fmt: skip
        with self._lock:
            self._running += 1
        future = self._pool.submit(func, *args, **kwargs)
        future.add_done_callback(self._one_done)
        return future

    def _one_done(self, _future: Future[Any]) -> None:
        with self._lock:
            self._running -= 1

    @property
    def outstanding(self) -> int:
        return self._running

    def shutdown(self) -> None:
        self._pool.shutdown(wait=True)


class _Timer:
    """Runs callbacks after a delay on one thread, so a retry's wait blocks nobody."""

    def __init__(self) -> None:
        self._heap: list[tuple[float, int, Callable[[], None]]] = []
        self._seq = itertools.count()
        self._cond = threading.Condition()
        self._stopped = False
        self._thread: threading.Thread | None = None

    def call_later(self, delay: float, fn: Callable[[], None]) -> None:
        with self._cond:
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._loop, name="flowkernel-timer", daemon=True
                )
                self._thread.start()
            heapq.heappush(self._heap, (time.monotonic() + delay, next(self._seq), fn))
            self._cond.notify()

    def _loop(self) -> None:
        while True:
            with self._cond:
                while not self._stopped and (not self._heap or self._heap[0][0] > time.monotonic()):
                    timeout = self._heap[0][0] - time.monotonic() if self._heap else None
                    self._cond.wait(timeout)
                if self._stopped:
                    return
                fn = heapq.heappop(self._heap)[2]
            try:
                fn()
            except Exception:
                logger.exception("a delayed kernel step failed")

    def stop(self) -> None:
        """Drop what is still waiting (the cleanup sweep ends those tasks)."""
        with self._cond:
            self._stopped = True
            self._heap.clear()
            self._cond.notify()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join()


class DataFlowKernel:
    """Runs tasks when their inputs are ready, on executors chosen by plugins.

    Build one with :func:`flowkernel.load` (the usual way, which also makes it
    the kernel apps use by default) or directly, and use it as a context
    manager so that it is cleaned up according to ``Config.exit_mode``.
    """

    @typechecked
    def __init__(self, config: Config | None = None) -> None:
        self._config = config if config is not None else Config()
        self.plugins: Plugins = build_plugins(self._config)
        self.plugins.require("flowkernel_select_executor", "choose an executor for each task")
        self.plugins.require("flowkernel_retry_cost", "price a failed try")
        self.plugins.require("flowkernel_dependency_resolver", "find futures among arguments")
        self._resolver, self._resolver_plugin = self.plugins.dependency_resolver(self._config)
        # Memo table: key -> result of a finished task (this run or a checkpoint),
        # and key -> future of the task computing it now.  Guarded by _lock.
        self._memo_enabled = self._config.app_cache and self.plugins.implements(
            "flowkernel_memo_key"
        )
        self._memo: dict[str, Any] = {}
        self._memo_running: dict[str, AppFuture[Any]] = {}

        self.run_id = str(uuid.uuid4())
        self.run_dir = make_rundir(self._config.run_dir)
        self._log_handler: logging.Handler | None = None
        if self._config.initialize_logging:
            # INFO, not DEBUG: per-task lines are DEBUG, and writing one per
            # transition to disk would dominate the cost of small tasks.
            self._log_handler = set_file_logger(
                os.path.join(self.run_dir, FILE_LOG_NAME), level=logging.INFO
            )
        logger.info("kernel %s starting in %s", self.run_id, self.run_dir)
        self._checkpointer: Checkpointer | None = None
        if self._config.checkpoint_mode is not None or self._config.checkpoint_files:
            try:
                self._checkpointer = self._start_checkpoints()
            except BaseException:
                self._remove_log_handler()
                raise

        self._lock = threading.Lock()
        self._ids = itertools.count()
        self.tasks: dict[int, TaskRecord] = {}
        # Per task: a stripe lock (by id) makes a transition's check-and-set
        # and a countdown atomic; counts are per thread (statecounts.py).
        self._stripes = tuple(threading.Lock() for _ in range(_STRIPE_MASK + 1))
        self._counts = StateCounts()
        self.cleanup_called = False
        self._closing = False
        self.time_began = time.time()
        self.time_completed: float | None = None
        # Backpressure: unfinished tasks, counted when Config.max_pending_tasks is set.
        self._limit = self._config.max_pending_tasks
        self._room = threading.Condition() if self._limit is not None else None
        self._unfinished_tasks = 0
        self._timer = _Timer()
        self._gc_tuned = _tune_gc() if self._config.tune_gc else None

        self.executors: dict[str, Executor] = {}
        executors = self._config.executors
        try:
            if executors is None:
                self.plugins.require("flowkernel_executor_kinds", "make the default executor")
                executors = [self.plugins.make_executor("threads", label="threads")]
            for executor in executors:
                executor.run_dir = self.run_dir
                executor.start()
                self.executors[executor.label] = executor
        except BaseException:
            logger.exception("an executor failed to start; shutting down the others")
            self._shutdown_executors()
            self._remove_log_handler()
            if self._gc_tuned is not None:
                _untune_gc(self._gc_tuned)
            raise
        self._labels = tuple(self.executors)
        self._own: dict[str, Executor] = {
            label: _PoolExecutor(label, self._config.internal_tasks_max_threads)
            for label in _OWN_EXECUTORS
        }
        self._stager: Stager | None = None
        # Bound once, here: a bound method made per waiting task would be one
        # more object per task for the garbage collector to scan (_wait_then).
        self._launch_step: _Step = self._launch
        self._do_bound = self._do
        self._exec_done_step: _Step = self._exec_done
        atexit.register(self._atexit_warning)
        self.plugins.kernel_started(self)

    # ------------------------------------------------------------------
    # Public surface
    # ------------------------------------------------------------------

    @property
    def config(self) -> Config:
        """The configuration this kernel was built from."""
        return self._config

    @property
    def hook_errors(self) -> int:
        """How many times an observer hook raised (each was logged)."""
        return self.plugins.observer_errors

    def checkpoint(self) -> int:
        """Save every memoized result not yet checkpointed; return how many were written.

        This is what ``checkpoint_mode="manual"`` relies on; in the other modes it
        writes whatever the mode has not written yet (nothing, for ``task_exit``).
        """
        if self._checkpointer is None:
            raise ConfigurationError(
                "checkpoint() needs Config.checkpoint_mode (e.g. 'manual') to be set"
            )
        return self._checkpointer.checkpoint()

    @property
    def task_count(self) -> int:
        """How many tasks were submitted to this kernel."""
        return self._counts.submitted()

    @property
    def task_state_counts(self) -> dict[States, int]:
        """How many tasks are in each state now (a fresh dict on each read).

        Exact once the kernel is quiet; while tasks move, a task in
        mid-transition may be missing from the figures for an instant.
        """
        return self._counts.per_state()

    def _records(self) -> list[TaskRecord]:
        """The task table's records now (``list()`` of a dict view is one atomic step)."""
        return list(self.tasks.values())

    def outstanding(self) -> dict[str, int]:
        """Unfinished tasks per executor label, as each executor reports it."""
        return {label: ex.outstanding for label, ex in self.executors.items()}

    def __enter__(self) -> DataFlowKernel:
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        mode = self._config.exit_mode
        logger.debug("leaving the kernel's context with exit_mode %r", mode)
        if mode == "skip":
            return
        if mode == "wait" and exc_type is None:
            self.wait_for_current_tasks()
        self.cleanup()

    def submit(
        self,
        func: Callable[..., Any],
        app_args: Sequence[Any],
        executors: str | Sequence[str] = "all",
        cache: bool = False,
        ignore_for_cache: Sequence[str] | None = None,
        app_kwargs: dict[str, Any] | None = None,
        join: bool = False,
        runner: Callable[..., Any] | None = None,
        priority: float = 0,
        retries: int | None = None,
        retry_policy: RetryPolicy | None = None,
    ) -> AppFuture[Any]:
        """Add one task; return its future at once.

        Futures among ``app_args``, the values of ``app_kwargs`` and the items of
        ``app_kwargs["inputs"]`` (and deeper, with a deep resolver) become inputs:
        the task launches when all of them are done, or fails with a
        :class:`DependencyError` without running if any of them failed.
        ``runner`` is what the executor calls (the function itself by default;
        apps pass a wrapper that handles streams, walltime or a shell command).
        ``priority`` orders ready tasks waiting for an executor slot (higher
        first); ``retries`` and ``retry_policy`` override the config's for this
        task.  With ``Config.max_pending_tasks`` set, this blocks while that
        many tasks are unfinished.
        """
        if self.cleanup_called:
            raise NoDataFlowKernelError("Cannot submit to a DFK that has been cleaned up")
        candidates = self._labels if executors == "all" else self._candidates(executors)
        if self._room is not None:
            self._wait_for_room()
        kwargs = app_kwargs if app_kwargs is not None else {}
        task_id = next(self._ids)  # atomic: count.__next__ is one C call
        task = TaskRecord(
            task_id=task_id,
            kernel=self,
            func=func,
            runner=runner if runner is not None else func,
            # A tuple (as app calls pass) is kept: one list fewer per task.
            args=app_args if isinstance(app_args, tuple) else list(app_args),
            kwargs=kwargs,
            candidates=candidates,
            memoize=cache,
            join=join,
            resource_specification=kwargs.get("parsl_resource_specification") or {},
        )
        # Set only when not the default, so the task stores nothing for them.
        if ignore_for_cache:
            task.ignore_for_cache = ignore_for_cache
        if priority:
            task.priority = priority
        if retries is not None:
            task.retries = retries
        if retry_policy is not None:
            task.retry_policy = retry_policy
        future: AppFuture[Any] = AppFuture(task)
        task.app_fu = future
        self.tasks[task_id] = task  # one dict operation: atomic
        counts = self._counts.mine()
        counts[_SUBMITTED] += 1
        counts[_UNSCHED_SLOT] += 1

        if "stdout" in kwargs or "stderr" in kwargs:
            try:
                resolve_streams(task, self.run_dir, self._config.std_autopath)
            except BadStdStreamFile as exc:
                self._fail(task, exc)
                return future
        inhibit = kwargs.pop(STAGING_INHIBIT, False) if STAGING_INHIBIT in kwargs else False
        if not inhibit and has_files(task):
            try:
                self._stage(task, future)
            except (StagingError, HookError) as exc:
                self._fail(task, exc)
                return future
        try:
            inputs = self._gather(task)
        except Exception as exc:
            self._fail(
                task, self._resolver_error(exc, "looking for futures in the arguments", task)
            )
            return future
        task.depends = inputs
        if self._transition(task, States.pending):
            if inputs:
                self._wait_then(task, inputs, self._launch_step)
            else:
                self._do(self._launch_step, task, None)
        return future

    def _wait_for_room(self) -> None:
        assert self._room is not None and self._limit is not None
        # Join bodies and staging run on the kernel's own threads and are
        # exempt: blocking them could wait on themselves.
        exempt = getattr(_local, "internal", False)
        with self._room:
            while not exempt and self._unfinished_tasks >= self._limit:
                self._room.wait()
            self._unfinished_tasks += 1

    def cancel(self, future: AppFuture[Any]) -> bool:
        """Cancel a task that has not started; its dependents fail with ``DependencyError``.

        A task still waiting for its inputs or for a retry is cancelled at once.
        One handed to an executor is cancelled if the executor can still stop
        it (it has not started running); a running or finished task is not,
        and this returns False, as ``concurrent.futures`` does.
        """
        task = future.task_record
        status = task.status
        if status is States.launched:
            handle = task.exec_fu
            cancel = getattr(handle, "cancel", None)
            # An executor may report the cancelled try at once, from inside
            # cancel(); that report is ours to handle, not a failed try.
            task.cancelling = True
            try:
                if cancel is None or not cancel():
                    return False
            finally:
                task.cancelling = False
        elif status not in (States.unsched, States.pending, States.fail_retryable):
            return False
        if not self._transition(task, States.failed):
            return False
        logger.info("task %d (%s) cancelled", task.id, task.func_name)
        self._ended(task)
        cancelled = Future.cancel(future)
        self._let_go(task)
        return cancelled

    def cancel_all(self) -> int:
        """Cancel every task that has not started yet; return how many were cancelled."""
        waiting = [t.app_fu for t in self._records() if t.status not in FINAL_STATES]
        return sum(1 for f in waiting if f is not None and self.cancel(f))

    def _stage(self, task: TaskRecord, future: AppFuture[Any]) -> None:
        if self._stager is None:
            self._stager = Stager(self.plugins.staging_providers(), self._submit_staging)
        self._stager.stage_inputs(task)
        if task.kwargs.get("outputs"):
            future._outputs = self._stager.stage_outputs(task, future)

    def _submit_staging(self, func: Callable[..., Any], args: tuple[Any, ...]) -> AppFuture[Any]:
        return self.submit(
            func, app_args=args, executors=(STAGING_EXECUTOR,), app_kwargs={STAGING_INHIBIT: True}
        )

    def wait_for_current_tasks(self, timeout: float | None = None) -> list[int]:
        """Wait until every task submitted so far (and any they submit) has finished.

        :param timeout: give up after this many seconds.
        :returns: the ids of tasks still unfinished (empty when all finished);
            they are also logged as a warning.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            waiting = [t.app_fu for t in self._records() if t.status not in FINAL_STATES]
            futures = [f for f in waiting if f is not None and not f.done()]
            if not futures:
                return []
            remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
            _, not_done = cf.wait(futures, timeout=remaining)
            if not_done and deadline is not None and time.monotonic() >= deadline:
                ids = sorted(f.tid for f in not_done if isinstance(f, AppFuture))
                logger.warning(
                    "%d task(s) still unfinished after %.1fs: %s", len(ids), timeout, ids[:50]
                )
                return ids

    def cleanup(self) -> None:
        """Shut the kernel down; every task's future ends.

        Tasks already running on an executor finish (executors shut down
        gracefully).  A task that had not launched yet — its inputs were not
        ready, or it was waiting for a retry — fails with
        :class:`~flowkernel.errors.KernelShutdownError`; use
        ``exit_mode="wait"`` or :meth:`wait_for_current_tasks` first to let it
        run.  A second call is an error.
        """
        with self._lock:
            if self.cleanup_called:
                raise NoDataFlowKernelError("cleanup() was already called on this kernel")
            self.cleanup_called = True
        logger.info("kernel %s cleaning up", self.run_id)
        self.plugins.kernel_stopping(self)
        self._closing = True
        self._timer.stop()
        self._shutdown_executors()
        for own in self._own.values():
            own.shutdown()
        self._sweep()
        if self._gc_tuned is not None:
            _untune_gc(self._gc_tuned)
        if self._checkpointer is not None:
            try:
                self._checkpointer.close()
            except Exception:
                logger.exception("writing the final checkpoint failed")
        self.time_completed = time.time()
        self.plugins.kernel_stopped(self)  # before the summary, so its errors are counted
        self._log_summary()
        atexit.unregister(self._atexit_warning)
        from flowkernel.loader import DataFlowKernelLoader

        DataFlowKernelLoader._forget(self)
        logger.info("kernel %s cleaned up", self.run_id)
        self._remove_log_handler()

    # ------------------------------------------------------------------
    # Waiting for inputs
    # ------------------------------------------------------------------

    def _candidates(self, executors: str | Sequence[str]) -> tuple[str, ...]:
        """The labels a task names (``"all"`` is answered by ``submit`` itself, inline)."""
        labels = (executors,) if isinstance(executors, str) else tuple(executors)
        unknown = [lb for lb in labels if lb not in self.executors and lb not in _OWN_EXECUTORS]
        if unknown or not labels:
            raise UnknownExecutorError(unknown or ["(none given)"], self._labels)
        return labels

    def _gather(self, task: TaskRecord) -> Sequence[Future[Any]]:
        gather = self._resolver.traverse_to_gather
        found: list[Future[Any]] = []
        for arg in task.args:
            found.extend(gather(arg))
        if not task.kwargs:
            return found or ()
        for key, value in task.kwargs.items():
            if key != "inputs":
                found.extend(gather(value))
        for item in task.kwargs.get("inputs") or ():
            found.extend(gather(item))
        return found or ()

    def _wait_then(self, task: TaskRecord, futures: Iterable[Future[Any]], then: _Step) -> None:
        """Run ``then(task)`` once every future in ``futures`` is done.

        The count starts one above the number of futures; that extra guard is
        released last, so callbacks firing while we attach them cannot reach
        zero early.
        """
        futures = list(futures)
        if len(futures) == 1:
            # One input (a chain): its callback fires once, so no count is needed.
            # The future is passed as ``_future``: no frame in between.
            futures[0].add_done_callback(partial(self._do_bound, then, task, None))
            return
        with self._stripes[task.id & _STRIPE_MASK]:
            task._unfinished = len(futures) + 1
        callback = partial(self._count_down, task, then)
        for future in futures:
            future.add_done_callback(callback)
        self._count_down(task, then, None)

    def _count_down(self, task: TaskRecord, then: _Step, _future: Any) -> None:
        with self._stripes[task.id & _STRIPE_MASK]:
            task._unfinished -= 1
            ready = task._unfinished == 0
        if ready:
            self._do(then, task, None)

    def _do(self, step: _Step, task: TaskRecord, arg: Any, _future: Any = None) -> None:
        """Run a kernel step now, or after the one this thread is already running.

        ``_future`` is there so that this can be a future's done-callback itself.
        """
        steps: _Steps | None = getattr(_local, "steps", None)
        if steps is None:
            steps = _local.steps = _Steps()
        elif steps.busy:
            steps.queue.append((step, task, arg))
            return
        queue = steps.queue
        steps.busy = True
        try:
            while True:
                try:
                    step(task, arg)
                except BaseException as exc:  # a kernel bug must not strand the task
                    _step_failed(step, task, exc)
                if not queue:
                    break
                step, task, arg = queue.popleft()
        finally:
            steps.busy = False

    # ------------------------------------------------------------------
    # Launching
    # ------------------------------------------------------------------

    def _launch(self, task: TaskRecord, _arg: Any = None) -> None:
        if task.status is not States.pending:
            if task.status not in FINAL_STATES:  # a cancelled task is not an error
                logger.error("task %d is %s, not pending: launch refused", task.id, task.status)
            return
        if self._closing:
            self._fail(task, KernelShutdownError(task.id, "waiting to launch"))
            return
        depends = task.depends
        if depends and not task.try_id:  # inputs are replaced once, before the first try
            # A plain loop, _exception_of written out: this runs for every input.
            failures = []
            for dep in depends:
                try:
                    exc = dep.exception(timeout=0)
                except CancelledError:
                    exc = CancelledError(f"{dep!r} was cancelled")
                if exc is not None:
                    failures.append((exc, self._describe(dep)))
            if failures:
                logger.info("task %d failed because inputs failed", task.id)
                self._fail(task, DependencyError(failures, task.id), States.dep_fail)
                return
            try:
                self._unwrap(task)
            except Exception as exc:
                self._fail(task, self._resolver_error(exc, "replacing the inputs", task))
                return
        if task.memoize and self._memo_enabled and task.from_memo is None:
            if self._memoized(task):
                return
        self._submit(task)

    def _memoized(self, task: TaskRecord) -> bool:
        """Compute the task's memo key; True if the memo table took care of the task."""
        try:
            key = self.plugins.memo_key(task)
        except AbortTask as abort:
            self._fail(task, abort.exception)
            return True
        except HookError as exc:
            self._fail(task, exc)
            return True
        task.from_memo = False
        if key is None:
            return False
        task.hashsum = key
        return self._reuse(task)

    def _reuse(self, task: TaskRecord) -> bool:
        """Finish the task from the memo table, or make it wait for an identical one running."""
        key = task.hashsum
        assert key is not None and task.app_fu is not None
        with self._lock:
            hit = key in self._memo
            result = self._memo.get(key)
            running = None if hit else self._memo_running.get(key)
            if not hit and running is None:
                self._memo_running[key] = task.app_fu
        if hit:
            task.from_memo = True
            logger.debug("task %d: memo hit", task.id)
            self._succeed(task, result, States.memo_done)
            return True
        if running is not None and running is not task.app_fu:
            logger.debug("task %d waits for task %d, which computes the same", task.id, running.tid)
            self._wait_then(task, [running], self._after_identical)
            return True
        return False

    def _after_identical(self, task: TaskRecord, _arg: Any = None) -> None:
        if task.status is not States.pending:
            return  # cancelled meanwhile
        if self._closing:
            self._fail(task, KernelShutdownError(task.id, "waiting for an identical task"))
            return
        if not self._reuse(task):  # the identical task failed: compute it here
            self._submit(task)

    def _memo_done(self, task: TaskRecord, result: Any) -> None:
        key = task.hashsum
        assert key is not None
        with self._lock:
            self._memo[key] = result
            if self._memo_running.get(key) is task.app_fu:
                del self._memo_running[key]
        if self._checkpointer is not None:
            try:
                self._checkpointer.completed(key, result, task)
            except Exception:
                logger.exception(
                    "task %d (%s): checkpointing its result failed; the result is still delivered",
                    task.id,
                    task.func_name,
                )

    def _start_checkpoints(self) -> Checkpointer:
        config = self._config
        store = self.plugins.checkpoint_store(config, self.run_dir)
        if config.checkpoint_files:
            loaded = store.load(config.checkpoint_files)
            self._memo.update(loaded)
            logger.info("%d result(s) loaded from checkpoints", len(loaded))
        return Checkpointer(store, config.checkpoint_mode, config.checkpoint_period)

    def _submit(self, task: TaskRecord) -> None:
        """Choose an executor and hand the task to it."""
        candidates = task.candidates
        if len(candidates) == 1:
            # One candidate: the answer is forced, so no plugin is asked.
            label = candidates[0]
            executor = self._own.get(label) or self.executors[label]
        else:
            try:
                label = self.plugins.select_executor(task, candidates)
            except AbortTask as abort:
                self._fail(task, abort.exception)
                return
            except HookError as exc:
                self._fail(task, exc)
                return
            executor = self.executors[label]
        task.executor = executor.label
        if not self._transition(task, States.launched):
            return
        task.try_time_launched = time.time()
        done = partial(self._on_done, task, task.try_id)
        try:
            task.exec_fu = executor.submit_task(
                task.runner,
                task.resource_specification,
                task.args,
                task.kwargs,
                done,
                task.priority,
            )
        except Exception as exc:
            logger.info("task %d: executor %r refused it: %r", task.id, task.executor, exc)
            self._failed_try(task, exc)

    # ------------------------------------------------------------------
    # Results
    # ------------------------------------------------------------------

    def _on_done(
        self, task: TaskRecord, try_id: int, result: Any, exc: BaseException | None
    ) -> None:
        self._do(self._exec_done_step, task, (try_id, result, exc))

    def _exec_done(self, task: TaskRecord, outcome: tuple[int, Any, BaseException | None]) -> None:
        try_id, result, exc = outcome
        if task.cancelling and isinstance(exc, CancelledError):
            return  # cancel() is finishing the task
        if task.status is not States.launched or try_id != task.try_id:
            if task.status not in FINAL_STATES:
                logger.error(
                    "task %d: a result of try %d arrived while it was %s (try %d); ignored",
                    task.id,
                    try_id,
                    task.status.name,
                    task.try_id,
                )
            return
        task.try_time_returned = time.time()
        task.exec_fu = None
        if exc is not None:
            self._failed_try(task, exc)
        elif task.join:
            self._start_join(task, result)
        elif task.stage_outs:
            self._stage_out(task, result)
        else:
            self._succeed(task, result)

    def _stage_out(self, task: TaskRecord, result: Any) -> None:
        """Ship the task's outputs, then let it succeed with ``result``."""
        pool = self._own[STAGING_EXECUTOR]
        shipped = [pool.submit(stage_out_task, {}, mover, file) for mover, file in task.stage_outs]
        task.stage_outs = ()
        self._wait_then(task, shipped, partial(self._staged_out, shipped=shipped, result=result))

    def _staged_out(
        self, task: TaskRecord, _arg: Any, shipped: list[Future[Any]], result: Any
    ) -> None:
        if task.status is not States.launched:
            return  # ended meanwhile (cleanup)
        failed = [exc for f in shipped if (exc := _exception_of(f)) is not None]
        if failed:
            error = StagingError(
                f"task {task.id} ({task.func_name}): stage-out failed: {failed[0]}"
            )
            error.__cause__ = failed[0]
            self._fail(task, error)
        else:
            self._succeed(task, result)

    def _failed_try(self, task: TaskRecord, exc: BaseException) -> None:
        task.fail_count += 1
        task.fail_history = [*task.fail_history, repr(exc)]
        final: BaseException = exc
        retry = False
        policy = task.retry_policy
        if policy is None:
            policy = self._config.retry_policy
        budget = task.retries
        if budget is None:
            budget = (
                policy.count
                if policy is not None and policy.count is not None
                else (self._config.retries)
            )
        if policy is not None and not policy.retries(exc):
            logger.debug("task %d: %s is not retried by its policy", task.id, type(exc).__name__)
        elif budget > 0:
            try:
                cost = self.plugins.retry_cost(exc, task)
            except AbortTask as abort:
                final = abort.exception
            except HookError as hook_error:
                # Keep the try's own exception in view next to the plugin's.
                hook_error.task_exception = exc  # type: ignore[attr-defined]
                final = hook_error
            else:
                task.fail_cost += cost
                retry = task.fail_cost <= budget and not self._closing
        if not retry:
            logger.info(
                "task %d failed after %d tr%s",
                task.id,
                task.fail_count,
                "y" if task.fail_count == 1 else "ies",
            )
            self._fail(task, final)
            return
        if not self._transition(task, States.fail_retryable):
            return
        task.try_id += 1
        wait = policy.wait_before(task.fail_count) if policy is not None else 0.0
        logger.info(
            "task %d try %d failed (%r); retrying%s",
            task.id,
            task.try_id - 1,
            exc,
            f" in {wait:.2f}s" if wait else "",
        )
        if wait > 0:
            self._timer.call_later(wait, partial(self._do, self._retry, task, None))
        else:
            self._retry(task)

    def _retry(self, task: TaskRecord, _arg: Any = None) -> None:
        task.try_time_pending = time.time()
        if self._transition(task, States.pending):
            self._launch(task)

    def _start_join(self, task: TaskRecord, joinable: Any) -> None:
        if isinstance(joinable, Future):
            inner: list[Future[Any]] = [joinable]
        elif isinstance(joinable, list) and all(isinstance(f, Future) for f in joinable):
            inner = joinable
        else:
            self._fail(
                task,
                TypeError(
                    "join_app body must return a Future or a list of Futures, got "
                    f"{joinable!r} of type {type(joinable).__name__}"
                ),
            )
            return
        task.joins = joinable
        if self._transition(task, States.joining):
            self._wait_then(task, inner, self._join_done)

    def _join_done(self, task: TaskRecord, _arg: Any = None) -> None:
        if task.status is not States.joining:
            return  # ended meanwhile (cleanup)
        joins = task.joins
        inner = [joins] if isinstance(joins, Future) else list(joins or [])
        failures = [
            (exc, self._describe(f)) for f in inner if (exc := _exception_of(f)) is not None
        ]
        if failures:
            error = JoinError(failures, task.id)
            task.fail_count += 1
            task.fail_history = [*task.fail_history, repr(error)]
            self._fail(task, error)
        elif isinstance(joins, Future):
            self._succeed(task, joins.result())
        else:
            self._succeed(task, [f.result() for f in inner])

    def _sweep(self) -> None:
        """At cleanup: end every task that can no longer finish by itself."""
        stranded = [t for t in self._records() if t.status not in FINAL_STATES]
        for task in stranded:
            state = {
                States.pending: "waiting for its inputs",
                States.launched: "running on an executor that never reported back",
                States.joining: "waiting for the futures its join body returned",
                States.fail_retryable: "waiting to be retried",
            }.get(task.status, task.status.name)
            self._fail(task, KernelShutdownError(task.id, state))

    # ------------------------------------------------------------------
    # Transitions and endings
    # ------------------------------------------------------------------

    def _transition(self, task: TaskRecord, new: States) -> bool:
        with self._stripes[task.id & _STRIPE_MASK]:
            old = task.status
            allowed = new in TRANSITIONS[old]
            if allowed:
                task.status = new
        if allowed:
            counts = self._counts.mine()
            counts[_SLOT[old]] -= 1
            counts[_SLOT[new]] += 1
            if new in FINAL_STATES:
                # Stamped before observers are called, so they can read when it ended.
                task.time_returned = time.time()
                # Ended: forget the record and any claim on the memo key
                # (an identical task waiting on it then runs itself).
                if self._config.garbage_collect:
                    self.tasks.pop(task.id, None)
                key = task.hashsum
                if key is not None:
                    with self._lock:
                        if self._memo_running.get(key) is task.app_fu:
                            del self._memo_running[key]
        else:
            # Losing a race to a cancel or the cleanup sweep is normal; anything
            # else is a bug worth seeing.
            level = logging.DEBUG if old in FINAL_STATES else logging.ERROR
            logger.log(level, "task %d: transition %s -> %s refused", task.id, old.name, new.name)
            return False
        if self.plugins.state_observers[new]:
            self.plugins.task_state_changed(task, old, new)
        return True

    def _succeed(self, task: TaskRecord, result: Any, state: States = States.exec_done) -> None:
        if task.hashsum is not None and state is States.exec_done:
            # Before the transition releases the task's claim on its key, so an
            # identical task arriving in between finds the result.
            self._memo_done(task, result)
        if self._transition(task, state):
            self._ended(task)
            assert task.app_fu is not None
            task.app_fu.set_result(result)
            self._let_go(task)

    def _fail(self, task: TaskRecord, exc: BaseException, state: States = States.failed) -> None:
        if self._transition(task, state):
            self._ended(task)
            assert task.app_fu is not None
            task.app_fu.set_exception(exc)
            self._let_go(task)

    def _let_go(self, task: TaskRecord) -> None:
        """Break the record <-> future cycle, so a dropped future is freed at once.

        Without this every finished task would wait for the cyclic garbage
        collector, which then has ever more to scan.  With
        ``garbage_collect=False`` the records are kept whole, for inspection.
        """
        if self._config.garbage_collect:
            task.app_fu = None
            # Inputs stay listed while the task lives (observers read them),
            # but an ended task must not keep a chain of futures alive.
            task.depends = ()

    def _ended(self, task: TaskRecord) -> None:
        """Bookkeeping once a task reached a final state, before its future completes."""
        if self._room is not None:
            with self._room:
                self._unfinished_tasks -= 1
                self._room.notify()

    # ------------------------------------------------------------------
    # Small helpers
    # ------------------------------------------------------------------

    def _resolver_error(self, exc: Exception, doing: str, task: TaskRecord) -> HookError:
        error = HookError(
            "flowkernel_dependency_resolver",
            self._resolver_plugin,
            f"the resolver raised {type(exc).__name__} while {doing} of task {task.id}: {exc}",
        )
        error.__cause__ = exc
        return error

    def _unwrap(self, task: TaskRecord) -> None:
        unwrap = self._resolver.traverse_to_unwrap
        task.args = list(map(unwrap, task.args))  # map: no comprehension frame per task
        kwargs = task.kwargs
        if not kwargs:
            return
        for key, value in kwargs.items():
            if key != "inputs":
                kwargs[key] = unwrap(value)
        if kwargs.get("inputs"):
            kwargs["inputs"] = list(map(unwrap, kwargs["inputs"]))

    def _describe(self, future: Future[Any]) -> str:
        if isinstance(future, AppFuture) and future.task_record.kernel is self:
            return f"task {future.tid}"
        return repr(future)

    def _shutdown_executors(self) -> None:
        for label, executor in self.executors.items():
            try:
                executor.shutdown()
            except Exception:
                logger.exception("executor %r raised while shutting down", label)

    def _log_summary(self) -> None:
        counts = {s.name: n for s, n in self.task_state_counts.items() if n}
        logger.info(
            "kernel %s ran %d task(s): %s; observer hook errors: %d",
            self.run_id,
            self.task_count,
            counts,
            self.plugins.observer_errors,
        )

    def _remove_log_handler(self) -> None:
        if self._log_handler is not None:
            remove_handler(self._log_handler)
            self._log_handler = None

    def _atexit_warning(self) -> None:
        logger.warning(
            "Python is exiting with kernel %s not cleaned up; call cleanup() or use it as a "
            "context manager to release its executors",
            self.run_id,
        )

    def __repr__(self) -> str:
        return f"<DataFlowKernel {self.run_id} run_dir={self.run_dir!r}>"
