"""The same workflows on threads, a process pool and a Dask cluster (real engines)."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from _support import WAIT

import flowkernel
from flowkernel import bash_app, python_app
from flowkernel.contrib.processes import WorkerLost


@pytest.fixture(scope="module")
def dask_cluster() -> Iterator[Any]:
    from distributed import LocalCluster

    from flowkernel.contrib.spawning import without_main_reimport

    with without_main_reimport():
        cluster = LocalCluster(
            n_workers=2,
            threads_per_worker=1,
            processes=True,
            dashboard_address=None,
            resources={"slots": 2},
        )
    yield cluster
    cluster.close()


def _executor(kind: str, cluster: Any) -> flowkernel.Executor:
    if kind == "dask":
        return flowkernel.make_executor("dask", label="engine", cluster=cluster)
    if kind == "processes":
        return flowkernel.make_executor("processes", label="engine", max_workers=2)
    return flowkernel.make_executor("threads", label="engine", max_threads=2)


@pytest.fixture(params=["threads", "processes", "dask"])
def engine(request: pytest.FixtureRequest, config_factory: Any) -> Iterator[str]:
    cluster = request.getfixturevalue("dask_cluster") if request.param == "dask" else None
    with flowkernel.load(config_factory(executors=[_executor(request.param, cluster)], retries=1)):
        yield request.param


@python_app
def square(x: int) -> int:
    return x * x


@python_app
def total(inputs: list[int] = []) -> int:  # noqa: B006 - Parsl's inputs= idiom
    return sum(inputs)


@python_app
def pid() -> int:
    return os.getpid()


@python_app
def fails_once(marker: str) -> str:
    # State lives in a file: the retry may run in another process.
    if not os.path.exists(marker):
        open(marker, "w").close()
        raise RuntimeError("first try fails")
    return "second try"


@bash_app
def shout(word: str, outputs: list[str] = []) -> str:  # noqa: B006 - Parsl's inputs= idiom
    return f"echo {word} | tr a-z A-Z > {outputs[0]}"


def test_the_same_workflow_gives_the_same_results_on_every_engine(
    engine: str, tmp_path: Path
) -> None:
    squares = [square(i) for i in range(20)]
    assert total(inputs=squares).result(timeout=WAIT) == sum(i * i for i in range(20))
    assert fails_once(str(tmp_path / "marker")).result(timeout=WAIT) == "second try"
    out = tmp_path / "shout.txt"
    shout("quiet", outputs=[str(out)]).result(timeout=WAIT)
    assert out.read_text() == "QUIET\n"
    with pytest.raises(flowkernel.DependencyError):

        @python_app
        def broken() -> int:
            raise ValueError("x")

        square(broken()).result(timeout=WAIT)


def test_tasks_run_in_other_processes_except_on_threads(engine: str) -> None:
    pids = {p.result(timeout=WAIT) for p in [pid() for _ in range(6)]}
    if engine == "threads":
        assert pids == {os.getpid()}
    else:
        assert os.getpid() not in pids


def test_closures_and_unpicklable_results_travel_by_value(engine: str) -> None:
    offset = 41

    @python_app
    def make_adder() -> Any:
        return lambda x: x + offset  # a lambda result: the standard pickle refuses it

    adder = make_adder().result(timeout=WAIT)
    assert adder(1) == 42


def test_a_worker_killed_mid_task_fails_that_try_and_the_retry_succeeds(
    config_factory: Any, tmp_path: Path
) -> None:
    marker = str(tmp_path / "killed")

    @python_app
    def dies_once() -> str:
        import signal

        if not os.path.exists(marker):
            open(marker, "w").close()
            os.kill(os.getpid(), signal.SIGKILL)
        return "survived"

    executor = flowkernel.make_executor("processes", max_workers=1)
    with flowkernel.load(config_factory(executors=[executor], retries=1)):
        future = dies_once()
        assert future.result(timeout=WAIT) == "survived"
        assert "WorkerLost" in future.task_record.fail_history[0]
        assert square(7).result(timeout=WAIT) == 49  # the pool recovered


def test_a_killed_worker_without_retries_fails_with_worker_lost(
    config_factory: Any, tmp_path: Path
) -> None:
    @python_app
    def dies() -> None:
        import signal

        os.kill(os.getpid(), signal.SIGKILL)

    executor = flowkernel.make_executor("processes", max_workers=1)
    with flowkernel.load(config_factory(executors=[executor])):
        with pytest.raises(WorkerLost, match="worker process died"):
            dies().result(timeout=WAIT)
        assert square(3).result(timeout=WAIT) == 9


def test_resource_specification_becomes_dask_worker_resources(
    config_factory: Any, dask_cluster: Any
) -> None:
    @python_app
    def needs_a_slot(parsl_resource_specification: dict[str, int] = {"slots": 1}) -> str:  # noqa: B006
        from distributed import get_worker

        return str(get_worker().state.total_resources)

    executor = flowkernel.make_executor("dask", cluster=dask_cluster)
    with flowkernel.load(config_factory(executors=[executor])):
        assert "slots" in needs_a_slot().result(timeout=WAIT)


def test_threads_and_processes_together_apps_pinned_by_label(config_factory: Any) -> None:
    @python_app(executors=["cpu"])
    def on_cpu() -> int:
        return os.getpid()

    @python_app(executors=["io"])
    def on_io() -> int:
        return os.getpid()

    executors = [
        flowkernel.make_executor("processes", label="cpu", max_workers=1),
        flowkernel.make_executor("threads", label="io"),
    ]
    with flowkernel.load(config_factory(executors=executors)) as kernel:
        assert on_io().result(timeout=WAIT) == os.getpid()
        assert on_cpu().result(timeout=WAIT) != os.getpid()
        assert set(kernel.outstanding()) == {"cpu", "io"}


def test_the_dask_kind_without_dask_says_what_to_install(tmp_path: Path) -> None:
    code = (
        "import sys; sys.modules['distributed'] = None\n"
        "import flowkernel\n"
        "try:\n"
        "    flowkernel.make_executor('dask')\n"
        "except flowkernel.ConfigurationError as exc:\n"
        "    print(exc)\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLOWKERNEL_")}
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True,
        timeout=WAIT,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert "pip install 'flowkernel[dask]'" in out.stdout


def test_a_script_without_a_main_guard_runs_on_processes(tmp_path: Path) -> None:
    script = tmp_path / "flow.py"
    script.write_text(
        "import flowkernel\n"
        "print('script body ran')\n"
        "@flowkernel.python_app\n"
        "def f(x):\n"
        "    return x + 1\n"
        "ex = flowkernel.make_executor('processes', max_workers=2)\n"
        "with flowkernel.load(flowkernel.Config(executors=[ex], run_dir='runinfo')):\n"
        "    print(f(1).result(timeout=60))\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLOWKERNEL_")}
    out = subprocess.run(
        [sys.executable, str(script)], cwd=tmp_path, env=env, capture_output=True, text=True,
        timeout=WAIT * 2,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines() == ["script body ran", "2"]  # workers did not re-run it


def test_the_dask_executor_connects_to_a_scheduler_address(
    config_factory: Any, dask_cluster: Any
) -> None:
    executor = flowkernel.make_executor("dask", address=dask_cluster.scheduler_address)
    with flowkernel.load(config_factory(executors=[executor])):
        assert total(inputs=[square(i) for i in range(5)]).result(timeout=WAIT) == 30
    assert executor.client is None  # closed at cleanup; the cluster itself lives on
    assert dask_cluster.status.name == "running"


def test_the_dask_executor_starts_and_stops_its_own_local_cluster(config_factory: Any) -> None:
    executor = flowkernel.make_executor("dask", n_workers=1, processes=False)
    with flowkernel.load(config_factory(executors=[executor])):
        cluster = executor._own_cluster
        assert cluster is not None
        assert square(6).result(timeout=WAIT) == 36
    assert cluster.status.name == "closed"
