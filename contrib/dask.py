"""Executor kind ``dask``: tasks run on a ``dask.distributed`` cluster.

Give it a scheduler ``address``, or a ``cluster`` object (a ``LocalCluster``, a
``dask-jobqueue`` SLURM/PBS cluster, a Kubernetes cluster — anything a
``distributed.Client`` accepts), or neither, and it starts a ``LocalCluster``
of its own (``n_workers``, ``threads_per_worker``, ``processes``, and any other
``LocalCluster`` options in ``cluster_kwargs``) and closes it at shutdown; a
cluster or scheduler it was given lives on.  Shutdown lets running tasks
finish; ``shutdown_timeout`` bounds that wait (what is left is cancelled).
``client_kwargs`` go to the ``Client``.  Install with
``pip install 'flowkernel[dask]'``.

Dependencies stay in flowkernel: a task reaches Dask only when its inputs are
done, with their values, so Dask sees independent tasks, submitted with
``pure=False`` (two identical calls are two tasks).  The function and its
arguments travel inside one opaque :class:`Call` object, so Dask never looks
into them (older Dask releases read a tuple whose first item is callable as a
task of its own).  A task's ``resource_specification`` becomes Dask worker
``resources=`` (a task needing a resource no worker has waits until such a
worker joins, as in Dask; a warning says so), and its priority Dask's
``priority=``.

Threads: tasks are submitted from any thread.  Dask calls each future's done
callback on its callback thread; that callback only queues the future, and
this executor's *fetcher* thread takes everything queued, fetches the results
with one ``client.gather`` for the lot (one round trip to the workers per
batch, not per task), and reports each to the kernel.  ``submit`` (from the
base class) turns those reports into :class:`concurrent.futures.Future`
objects.  ``_lock`` guards the running futures, the queue and the count of
tries not yet reported; ``_changed`` (its condition) wakes the fetcher and
:meth:`shutdown`, which waits until every try has been reported before closing
the client.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import CancelledError
from typing import Any

from flowkernel.contrib.spawning import without_main_reimport
from flowkernel.errors import ConfigurationError
from flowkernel.executors import Executor
from flowkernel.markers import hookimpl

logger = logging.getLogger(__name__)

INSTALL_HINT = "pip install 'flowkernel[dask]'"

CANCEL_WAIT = 30.0
"""Seconds shutdown waits for Dask to report tries it cancelled at ``shutdown_timeout``."""

_Done = Callable[[Any, BaseException | None], None]
"""The kernel's report callback: ``done(result, None)`` or ``done(None, exception)``."""


class Call:
    """On a Dask worker: the task itself, opaque to Dask's argument parsing."""

    __slots__ = ("args", "func", "kwargs")

    def __init__(
        self, func: Callable[..., Any], args: Sequence[Any], kwargs: dict[str, Any]
    ) -> None:
        self.func = func
        self.args = args
        self.kwargs = kwargs

    def __call__(self) -> Any:
        return self.func(*self.args, **self.kwargs)


def call(task: Call) -> Any:
    """Run one :class:`Call` (a named function, so Dask's task keys say ``call-...``)."""
    return task()


class _Handle:
    """What the kernel holds for a running try: ``cancel()`` asks Dask to drop it."""

    __slots__ = ("future",)

    def __init__(self, future: Any) -> None:
        self.future = future

    def cancel(self) -> bool:
        if self.future.done():
            return False
        self.future.cancel()
        return True


def _require_distributed() -> None:
    try:
        import distributed  # noqa: F401 - only checking that it is there
    except ImportError as exc:
        raise ConfigurationError(
            f"executor kind 'dask' needs dask.distributed, which is not installed: {INSTALL_HINT}"
        ) from exc


class DaskExecutor(Executor):
    """Runs tasks on a Dask cluster (an address, a Cluster object, or a LocalCluster it starts)."""

    def __init__(
        self,
        label: str = "dask",
        address: str | None = None,
        cluster: Any = None,
        n_workers: int = 2,
        threads_per_worker: int = 1,
        processes: bool = True,
        client_kwargs: dict[str, Any] | None = None,
        cluster_kwargs: dict[str, Any] | None = None,
        shutdown_timeout: float | None = None,
    ) -> None:
        _require_distributed()
        if address is not None and cluster is not None:
            raise ConfigurationError("give the dask executor an address or a cluster, not both")
        if shutdown_timeout is not None and shutdown_timeout < 0:
            raise ConfigurationError(
                f"shutdown_timeout must be at least 0 seconds, got {shutdown_timeout}"
            )
        if n_workers < 1 or threads_per_worker < 1:
            raise ConfigurationError(
                f"n_workers and threads_per_worker must be at least 1, "
                f"got {n_workers} and {threads_per_worker}"
            )
        self.label = label
        self.address = address
        self.cluster = cluster
        self.n_workers = n_workers
        self.threads_per_worker = threads_per_worker
        self.processes = processes
        self.client_kwargs = dict(client_kwargs or {})
        self.cluster_kwargs = dict(cluster_kwargs or {})
        self.shutdown_timeout = shutdown_timeout
        self.client: Any = None
        self._own_cluster: Any = None
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._running: set[Any] = set()  # Dask futures not finished (``outstanding``)
        self._finished: list[tuple[Any, _Done]] = []
        self._unreported = 0  # tries whose ``done`` has not returned yet
        self._fetcher: threading.Thread | None = None
        self._shut = False
        self._resources_checked: set[frozenset[str]] = set()

    def start(self) -> None:
        from distributed import Client, LocalCluster

        if self.client is not None:
            return
        if self._shut:
            raise RuntimeError(f"executor {self.label!r} has been shut down")
        target = self.address or self.cluster
        if target is None:
            with without_main_reimport():  # its workers get tasks by value
                self._own_cluster = LocalCluster(
                    n_workers=self.n_workers,
                    threads_per_worker=self.threads_per_worker,
                    processes=self.processes,
                    **self.cluster_kwargs,
                )
            target = self._own_cluster
        try:
            self.client = Client(target, set_as_default=False, **self.client_kwargs)
        except BaseException:
            self._close_own_cluster()
            raise
        self._fetcher = threading.Thread(
            target=self._fetch_loop, name=f"flowkernel-{self.label}-fetch", daemon=True
        )
        self._fetcher.start()
        logger.info("executor %r: connected to %s", self.label, self.client.scheduler.address)

    def submit_task(
        self,
        func: Callable[..., Any],
        resource_specification: dict[str, Any],
        args: Sequence[Any],
        kwargs: dict[str, Any],
        done: Callable[[Any, BaseException | None], None],
        priority: float = 0,
    ) -> _Handle:
        resources = dict(resource_specification) or None
        with self._lock:
            client = self.client
            if self._shut:
                raise RuntimeError(f"executor {self.label!r} has been shut down")
            if client is None:
                raise RuntimeError(f"executor {self.label!r} was not started")
            self._unreported += 1  # from here on, shutdown() waits for this try
        try:
            if resources is not None:
                self._check_resources(client, resources)
            future = client.submit(
                call,
                Call(func, tuple(args), kwargs),
                pure=False,
                resources=resources,
                priority=priority,
            )
        except BaseException:
            self._reported()
            raise
        with self._lock:
            self._running.add(future)
        future.add_done_callback(lambda f: self._report(f, done))
        return _Handle(future)

    def _check_resources(self, client: Any, resources: dict[str, Any]) -> None:
        names = frozenset(resources)
        if names in self._resources_checked:
            return
        self._resources_checked.add(names)
        try:
            workers = client.scheduler_info().get("workers", {}).values()
        except Exception:  # only a warning is at stake
            return
        offered = {name for worker in workers for name in worker.get("resources", {})}
        missing = sorted(names - offered)
        if missing:
            logger.warning(
                "executor %r: no Dask worker offers the resource(s) %s; tasks needing them "
                "wait until such a worker joins",
                self.label,
                missing,
            )

    def _report(self, future: Any, done: Callable[[Any, BaseException | None], None]) -> None:
        """On Dask's callback thread: hand the finished future to the fetcher."""
        with self._changed:
            self._running.discard(future)
            self._finished.append((future, done))
            self._changed.notify_all()

    def _fetch_loop(self) -> None:
        while True:
            with self._changed:
                while not self._finished and not (self._shut and self._unreported == 0):
                    self._changed.wait()
                if not self._finished:
                    return  # shut down, and everything reported
                batch, self._finished = self._finished, []
            self._deliver(batch)
            with self._changed:
                self._unreported -= len(batch)
                self._changed.notify_all()

    def _deliver(
        self, batch: list[tuple[Any, Callable[[Any, BaseException | None], None]]]
    ) -> None:
        """Fetch the batch's results (one gather for all that succeeded) and report each."""
        ok: list[tuple[Any, _Done]] = []
        rest: list[tuple[Any, _Done]] = []
        for item in batch:
            (ok if item[0].status == "finished" else rest).append(item)
        if len(ok) > 1:
            try:
                results = ok[0][0].client.gather([f for f, _ in ok])
            except BaseException:  # one of them went missing meanwhile: go one by one
                rest = ok + rest
            else:
                for (_, done), result in zip(ok, results, strict=True):
                    self._call(done, result, None)
        else:
            rest = ok + rest
        for future, done in rest:
            self._deliver_one(future, done)

    def _deliver_one(self, future: Any, done: Callable[[Any, BaseException | None], None]) -> None:
        if future.status == "cancelled":
            self._call(done, None, CancelledError(f"cancelled on executor {self.label!r}"))
            return
        try:
            result = future.result()
        except BaseException as exc:
            self._call(done, None, exc)
        else:
            self._call(done, result, None)

    def _call(
        self,
        done: Callable[[Any, BaseException | None], None],
        result: Any,
        exc: BaseException | None,
    ) -> None:
        try:
            done(result, exc)
        except BaseException:  # the kernel handles its own errors; this is a last resort
            logger.exception("executor %r: reporting a result failed", self.label)

    def _reported(self) -> None:
        with self._changed:
            self._unreported -= 1
            self._changed.notify_all()

    @property
    def outstanding(self) -> int:
        return len(self._running)

    def shutdown(self) -> None:
        """Let submitted tasks finish, then close the client (and the cluster it started).

        With ``shutdown_timeout``, tasks still unfinished after that many
        seconds (e.g. waiting for a resource no worker offers) are cancelled
        and their tries fail with :class:`concurrent.futures.CancelledError`.
        """
        with self._changed:
            self._shut = True
            self._changed.notify_all()
            reported = self._changed.wait_for(
                lambda: self._unreported == 0, timeout=self.shutdown_timeout
            )
            if not reported:
                left = list(self._running)
                logger.warning(
                    "executor %r: %d task(s) unfinished after shutdown_timeout=%ss; cancelling",
                    self.label,
                    len(left),
                    self.shutdown_timeout,
                )
            else:
                left = []
        for future in left:  # their done callbacks report the cancellation
            future.cancel()
        if left:
            with self._changed:
                # Bounded: a try never reported is failed by the kernel's sweep.
                self._changed.wait_for(lambda: self._unreported == 0, timeout=CANCEL_WAIT)
        if self._fetcher is not None:
            self._fetcher.join(timeout=CANCEL_WAIT)  # it ends once all is reported
            self._fetcher = None
        client, self.client = self.client, None
        if client is not None:
            client.close()
        self._close_own_cluster()

    def _close_own_cluster(self) -> None:
        cluster, self._own_cluster = self._own_cluster, None
        if cluster is not None:
            cluster.close()


@hookimpl(trylast=True)
def flowkernel_executor_kinds() -> dict[str, Callable[..., Executor]]:
    return {"dask": DaskExecutor}
