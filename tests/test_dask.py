"""The ``dask`` executor: where its cluster comes from, resources, and what Dask is left to do.

What every executor does (results, exceptions, retries, bash apps, shutdown) is
in ``test_executors_conformance.py``; these are the Dask executor's own
behaviours, on real clusters started and closed by the tests.
"""

from __future__ import annotations

import logging
import os
import signal
import uuid
from collections.abc import Iterator
from concurrent.futures import CancelledError
from pathlib import Path
from typing import Any

import pytest
from _support import WAIT, run_isolated, wait_for_file, wait_until

import flowkernel
from flowkernel import python_app
from flowkernel.contrib.dask import DaskExecutor
from flowkernel.contrib.spawning import without_main_reimport

_NO_FIXED_PORT = {"dashboard_address": ":0"}
"""Clusters the tests start serve HTTP on a free port, not Dask's fixed 8787."""


@pytest.fixture(scope="module")
def dask_cluster() -> Iterator[Any]:
    """One LocalCluster of two worker processes, each offering two ``slots``."""
    from distributed import LocalCluster

    with without_main_reimport():
        cluster = LocalCluster(
            n_workers=2,
            threads_per_worker=1,
            processes=True,
            dashboard_address=":0",
            resources={"slots": 2},
        )
    yield cluster
    cluster.close()


@python_app
def square(x: int) -> int:
    return x * x


@python_app
def held(release: str, value: int) -> int:
    wait_for_file(release)
    return value


@python_app
def type_name(value: Any) -> str:
    return type(value).__name__


@python_app
def echo(*args: Any, **kwargs: Any) -> tuple[Any, ...]:
    return args, kwargs


@python_app
def fresh_id() -> str:
    return uuid.uuid4().hex


@python_app
def slots_free_while_running(
    parsl_resource_specification: dict[str, int] = {"slots": 1},  # noqa: B006
) -> float:
    from distributed import get_worker

    return float(get_worker().state.available_resources["slots"])


@python_app
def needs_a_gpu(parsl_resource_specification: dict[str, int] = {"gpu": 1}) -> None:  # noqa: B006
    return None


@python_app
def kills_its_worker_once(marker: str) -> str:
    if not os.path.exists(marker):
        Path(marker).touch()
        os.kill(os.getpid(), signal.SIGKILL)
    return "rescheduled"


# -- Where the cluster comes from ---------------------------------------------------------


def test_a_given_cluster_object_runs_the_tasks_and_is_left_running(
    config_factory: Any, dask_cluster: Any
) -> None:
    executor = flowkernel.make_executor("dask", cluster=dask_cluster)
    with flowkernel.load(config_factory(executors=[executor])):
        assert square(7).result(timeout=WAIT) == 49
    assert executor.client is None  # its own client is closed
    assert dask_cluster.status.name == "running"


def test_a_scheduler_address_is_connected_to_and_left_running(
    config_factory: Any, dask_cluster: Any
) -> None:
    executor = flowkernel.make_executor("dask", address=dask_cluster.scheduler_address)
    with flowkernel.load(config_factory(executors=[executor])):
        assert executor.client.scheduler.address == dask_cluster.scheduler_address
        assert square(6).result(timeout=WAIT) == 36
    assert dask_cluster.status.name == "running"


def test_without_address_or_cluster_it_starts_a_local_cluster_of_n_workers(
    config_factory: Any,
) -> None:
    executor = DaskExecutor(
        n_workers=2, threads_per_worker=1, processes=True, cluster_kwargs=_NO_FIXED_PORT
    )
    with flowkernel.load(config_factory(executors=[executor])):
        workers = executor.client.scheduler_info()["workers"].values()
        assert sorted(w["nthreads"] for w in workers) == [1, 1]
        pids = {f.result(timeout=WAIT) for f in [python_app(os.getpid)() for _ in range(4)]}
        assert os.getpid() not in pids


def test_the_local_cluster_it_started_is_closed_at_shutdown(config_factory: Any) -> None:
    executor = DaskExecutor(n_workers=1, processes=False, cluster_kwargs=_NO_FIXED_PORT)
    with flowkernel.load(config_factory(executors=[executor])):
        cluster = executor._own_cluster
        assert square(3).result(timeout=WAIT) == 9
    assert cluster.status.name == "closed"


def test_an_address_and_a_cluster_together_are_a_configuration_error(dask_cluster: Any) -> None:
    with pytest.raises(flowkernel.ConfigurationError, match="an address or a cluster, not both"):
        flowkernel.make_executor(
            "dask", address=dask_cluster.scheduler_address, cluster=dask_cluster
        )


def test_the_kind_without_dask_says_what_to_install() -> None:
    out = run_isolated(
        """
        import sys
        sys.modules["dask"] = None  # as if it were not installed
        import flowkernel
        try:
            flowkernel.make_executor("dask")
        except flowkernel.ConfigurationError as exc:
            print(exc)
        """
    )
    assert out.returncode == 0, out.stderr
    assert "pip install 'flowkernel[dask]'" in out.stdout


def test_the_class_is_importable_and_is_an_executor() -> None:
    from flowkernel.contrib import dask

    assert dask.flowkernel_executor_kinds() == {"dask": DaskExecutor}
    assert issubclass(DaskExecutor, flowkernel.Executor)


# -- What Dask sees ------------------------------------------------------------------------


@pytest.fixture
def on_dask(config_factory: Any, dask_cluster: Any) -> Iterator[DaskExecutor]:
    executor = DaskExecutor(label="dask", cluster=dask_cluster)
    with flowkernel.load(config_factory(executors=[executor])):
        yield executor


def test_a_task_reaches_dask_only_when_its_inputs_are_done(
    on_dask: DaskExecutor, tmp_path: Path
) -> None:
    release = tmp_path / "release"
    first = held(str(release), 5)
    second = square(first)
    wait_until(lambda: on_dask.outstanding == 1)
    assert on_dask.outstanding == 1  # the dependent is still in flowkernel
    release.touch()
    assert second.result(timeout=WAIT) == 25


def test_a_task_receives_the_values_of_its_inputs_not_futures(on_dask: DaskExecutor) -> None:
    assert type_name(square(2)).result(timeout=WAIT) == "int"


def test_arguments_reach_the_function_as_they_were_given(on_dask: DaskExecutor) -> None:
    # Older Dask reads a tuple starting with a callable as a task of its own.
    args = ((len, [1, 2]), [(len, "ab")])
    kwargs = {"spec": (len, "abc")}
    assert echo(*args, **kwargs).result(timeout=WAIT) == (args, kwargs)


def test_identical_calls_run_as_separate_dask_tasks(on_dask: DaskExecutor) -> None:
    first, second = fresh_id(), fresh_id()
    assert first.result(timeout=WAIT) != second.result(timeout=WAIT)


def test_a_resource_specification_becomes_dask_worker_resources(on_dask: DaskExecutor) -> None:
    # Each worker offers two slots; the running task holds one of them.
    assert slots_free_while_running().result(timeout=WAIT) == 1.0


def test_a_resource_no_worker_offers_is_warned_about_and_the_task_can_be_cancelled(
    on_dask: DaskExecutor, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="flowkernel.contrib.dask"):
        future = needs_a_gpu()
        wait_until(lambda: on_dask.outstanding == 1)
    assert "no Dask worker offers the resource(s) ['gpu']" in caplog.text
    assert future.cancel()
    wait_until(lambda: on_dask.outstanding == 0)


def test_shutdown_timeout_cancels_a_task_that_can_never_start(
    config_factory: Any, dask_cluster: Any
) -> None:
    executor = DaskExecutor(cluster=dask_cluster, shutdown_timeout=0.5)
    with flowkernel.load(config_factory(executors=[executor])):
        future = needs_a_gpu()
        wait_until(lambda: executor.outstanding == 1)
    # cleanup() returned: the try was cancelled, and the task's future ended.
    with pytest.raises(CancelledError, match="cancelled on executor"):
        future.result(timeout=WAIT)
    assert executor.outstanding == 0


def test_a_negative_shutdown_timeout_is_a_configuration_error() -> None:
    with pytest.raises(flowkernel.ConfigurationError, match="shutdown_timeout"):
        DaskExecutor(shutdown_timeout=-1)


def test_a_worker_killed_mid_task_is_replaced_and_dask_reruns_the_task(
    config_factory: Any, tmp_path: Path
) -> None:
    executor = DaskExecutor(n_workers=1, processes=True, cluster_kwargs=_NO_FIXED_PORT)
    with flowkernel.load(config_factory(executors=[executor])):
        future = kills_its_worker_once(str(tmp_path / "killed"))
        assert future.result(timeout=WAIT) == "rescheduled"
        assert future.task_record.fail_count == 0  # Dask re-ran it: no try was spent
