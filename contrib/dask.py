"""Executor kind ``dask``: tasks run on a ``dask.distributed`` cluster.

Give it a scheduler ``address``, or a ``cluster`` object (a ``LocalCluster``, a
``dask-jobqueue`` SLURM/PBS cluster, a Kubernetes cluster — anything a
``distributed.Client`` accepts), or neither, and it starts a ``LocalCluster``
of its own and closes it at shutdown.  Install with
``pip install 'flowkernel[dask]'``.

Dependencies stay in flowkernel: a task reaches Dask only when its inputs are
done, with their values, so Dask sees independent tasks (submitted with
``pure=False``: two identical calls are two tasks).  A task's
``resource_specification`` becomes Dask worker ``resources=``, and its priority
Dask's ``priority=``.  Completion is reported from the client's callback
thread.
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


def call(func: Callable[..., Any], args: Sequence[Any], kwargs: dict[str, Any]) -> Any:
    """On a Dask worker: the task itself (keeps its keywords apart from ``client.submit``'s)."""
    return func(*args, **kwargs)


class _Handle:
    """What the kernel holds for a running try: ``cancel()`` asks Dask to drop it."""

    def __init__(self, future: Any) -> None:
        self.future = future

    def cancel(self) -> bool:
        if self.future.done():
            return False
        self.future.cancel()
        return True


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
    ) -> None:
        try:
            import distributed  # noqa: F401 - checked here, used in start()
        except ImportError as exc:
            raise ConfigurationError(
                f"executor kind 'dask' needs dask.distributed, which is not installed: "
                f"{INSTALL_HINT}"
            ) from exc
        if address is not None and cluster is not None:
            raise ConfigurationError("give the dask executor an address or a cluster, not both")
        self.label = label
        self.address = address
        self.cluster = cluster
        self.n_workers = n_workers
        self.threads_per_worker = threads_per_worker
        self.processes = processes
        self.client_kwargs = dict(client_kwargs or {})
        self.client: Any = None
        self._own_cluster: Any = None
        self._lock = threading.Lock()
        self._outstanding = 0

    def start(self) -> None:
        from distributed import Client, LocalCluster

        if self.client is not None:
            return
        target = self.address or self.cluster
        if target is None:
            with without_main_reimport():  # its workers get tasks by value
                self._own_cluster = LocalCluster(
                    n_workers=self.n_workers,
                    threads_per_worker=self.threads_per_worker,
                    processes=self.processes,
                    dashboard_address=None,
                )
            target = self._own_cluster
        self.client = Client(target, **self.client_kwargs)
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
        if self.client is None:
            raise RuntimeError(f"executor {self.label!r} was not started")
        with self._lock:
            self._outstanding += 1
        try:
            future = self.client.submit(
                call,
                func,
                list(args),
                kwargs,
                pure=False,
                resources=dict(resource_specification) or None,
                priority=priority,
            )
        except BaseException:
            with self._lock:
                self._outstanding -= 1
            raise
        future.add_done_callback(lambda f: self._report(f, done))
        return _Handle(future)

    def _report(self, future: Any, done: Callable[[Any, BaseException | None], None]) -> None:
        with self._lock:
            self._outstanding -= 1
        if future.status == "cancelled":
            done(None, CancelledError(f"cancelled on executor {self.label!r}"))
            return
        try:
            result = future.result()
        except BaseException as exc:
            done(None, exc)
        else:
            done(result, None)

    @property
    def outstanding(self) -> int:
        return self._outstanding

    def shutdown(self) -> None:
        client, self.client = self.client, None
        if client is not None:
            client.close()
        cluster, self._own_cluster = self._own_cluster, None
        if cluster is not None:
            cluster.close()


@hookimpl(trylast=True)
def flowkernel_executor_kinds() -> dict[str, Callable[..., Executor]]:
    return {"dask": DaskExecutor}
