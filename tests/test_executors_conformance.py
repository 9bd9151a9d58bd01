"""What every executor does: one set of behaviour tests, run against each executor kind.

:class:`ExecutorConformance` holds the tests; a subclass supplies the
``make_executor`` fixture (a factory of unstarted executors, by label) and
proves that its executor keeps the contract the kernel relies on: results and
exceptions come back, ``outstanding`` counts what has not finished, shutdown
lets submitted work finish and refuses more, and the kernel's dependencies,
retries, bash apps and stream capture work on it.  A third-party executor
proves itself with one more subclass.

Tasks signal each other through files (``_wait_for``), since they may run in
other processes or on other machines' workers; every wait is bounded.
"""

from __future__ import annotations

import concurrent.futures as cf
import os
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from _support import WAIT, wait_for_file

import flowkernel
from flowkernel import bash_app, python_app

MakeExecutor = Callable[[str], flowkernel.Executor]


# -- Task bodies (module level, so they travel to workers) ----------------------


def add(x: int, y: int = 0) -> int:
    return x + y


def fail_with(message: str) -> None:
    raise ValueError(message)


def wait_then_return(path: str, value: Any) -> Any:
    wait_for_file(path)
    return value


def workflow_reference() -> dict[str, Any]:
    """The workflow below, as plain Python: what every executor must give."""
    squares = [i * i for i in range(12)]
    return {
        "sum": sum(squares),
        "chain": 10 + sum(range(8)),
        "shapes": ("tuple", 2.5, {"k": [1, 2]}, None),
    }


@python_app
def square(x: int) -> int:
    return x * x


@python_app
def total(inputs: list[int] = []) -> int:  # noqa: B006 - Parsl's inputs= idiom
    return sum(inputs)


@python_app
def plus(x: int, y: int) -> int:
    return x + y


@python_app
def shapes() -> tuple[str, float, dict[str, list[int]], None]:
    return ("tuple", 2.5, {"k": [1, 2]}, None)


@python_app
def explode(message: str) -> int:
    raise ValueError(message)


@python_app
def fails_until(marker: str, failures: int) -> int:
    """Fail ``failures`` tries, then succeed; the count lives in a file (tries may move)."""
    tries = len(os.listdir(marker))
    Path(marker, f"try-{tries}").touch()
    if tries < failures:
        raise RuntimeError(f"try {tries} fails")
    return tries


@python_app
def held(path: str, value: Any) -> Any:
    wait_for_file(path)
    return value


@python_app
def chatty(word: str, stdout: str | None = None) -> str:
    print(f"said {word}")
    return word


@bash_app
def shout(word: str, outputs: list[str] = []) -> str:  # noqa: B006 - Parsl's outputs= idiom
    return f"echo {word} | tr a-z A-Z > {outputs[0]}"


@bash_app
def exit_with(code: int) -> str:
    return f"exit {code}"


# -- The suite ------------------------------------------------------------------


class ExecutorConformance:
    """The behaviour tests; a subclass overrides the ``make_executor`` fixture."""

    @pytest.fixture
    def make_executor(self) -> MakeExecutor:
        raise NotImplementedError("a conformance subclass provides make_executor")

    @pytest.fixture
    def executor(self, make_executor: MakeExecutor, run_dir: str) -> Iterator[Any]:
        """A started executor, used directly (no kernel); shut down after the test."""
        executor = make_executor("conformance")
        executor.run_dir = run_dir
        executor.start()
        yield executor
        executor.shutdown()

    @pytest.fixture
    def kernel(
        self, make_executor: MakeExecutor, config_factory: Any
    ) -> Iterator[flowkernel.DataFlowKernel]:
        """A loaded kernel with this executor (label ``engine``) and one retry."""
        with flowkernel.load(
            config_factory(executors=[make_executor("engine")], retries=1)
        ) as kernel:
            yield kernel

    # The executor interface ------------------------------------------------

    def test_submit_returns_a_future_of_the_result(self, executor: Any) -> None:
        future = executor.submit(add, {}, 2, y=3)
        assert isinstance(future, cf.Future)
        assert future.result(timeout=WAIT) == 5

    def test_an_exception_raised_by_the_function_goes_into_the_future(self, executor: Any) -> None:
        future = executor.submit(fail_with, {}, "no such thing")
        with pytest.raises(ValueError, match="no such thing"):
            future.result(timeout=WAIT)

    def test_a_closure_defined_in_a_test_runs_with_its_captured_values(self, executor: Any) -> None:
        offset = 40

        def add_offset(x: int) -> int:
            return x + offset

        assert executor.submit(add_offset, {}, 2).result(timeout=WAIT) == 42

    def test_outstanding_counts_submitted_tasks_until_they_finish(
        self, executor: Any, tmp_path: Path
    ) -> None:
        release = str(tmp_path / "release")
        assert executor.outstanding == 0
        future = executor.submit(wait_then_return, {}, release, "done")
        assert executor.outstanding == 1
        Path(release).touch()
        assert future.result(timeout=WAIT) == "done"
        assert executor.outstanding == 0

    def test_submit_before_start_is_refused(self, make_executor: MakeExecutor) -> None:
        executor = make_executor("unstarted")
        try:
            with pytest.raises(RuntimeError, match="'unstarted' was not started"):
                executor.submit(add, {}, 1)
        finally:
            executor.shutdown()

    def test_shutdown_lets_submitted_tasks_finish(
        self, make_executor: MakeExecutor, tmp_path: Path
    ) -> None:
        executor = make_executor("closing")
        executor.start()
        release = tmp_path / "release"
        future = executor.submit(wait_then_return, {}, str(release), "finished")
        release.touch()
        executor.shutdown()
        assert future.done()
        assert future.result(timeout=0) == "finished"

    def test_shutdown_runs_every_task_still_queued(
        self, make_executor: MakeExecutor, tmp_path: Path
    ) -> None:
        """More tasks than workers, all waiting when shutdown begins: none is dropped."""
        executor = make_executor("draining")
        executor.start()
        release = tmp_path / "release"
        futures = [executor.submit(wait_then_return, {}, str(release), i) for i in range(12)]
        # Released from another thread once shutdown() is (very likely) waiting.
        opener = threading.Timer(0.3, release.touch)
        opener.start()
        executor.shutdown()
        opener.join()
        assert [f.result(timeout=0) for f in futures] == list(range(12))
        assert executor.outstanding == 0

    def test_submit_after_shutdown_is_refused(self, make_executor: MakeExecutor) -> None:
        executor = make_executor("closed")
        executor.start()
        executor.shutdown()
        with pytest.raises(RuntimeError, match="'closed' has been shut down"):
            executor.submit(add, {}, 1)

    # Through the kernel ----------------------------------------------------

    def test_a_workflow_gives_the_same_results_as_plain_python(
        self, kernel: flowkernel.DataFlowKernel
    ) -> None:
        fan_in = total(inputs=[square(i) for i in range(12)])
        chain = plus(10, 0)
        for i in range(1, 8):
            chain = plus(chain, i)
        results = {
            "sum": fan_in.result(timeout=WAIT),
            "chain": chain.result(timeout=WAIT),
            "shapes": shapes().result(timeout=WAIT),
        }
        assert results == workflow_reference()

    def test_every_task_runs_on_the_configured_executor(
        self, kernel: flowkernel.DataFlowKernel
    ) -> None:
        future = square(3)
        future.result(timeout=WAIT)
        assert future.task_record.executor == "engine"

    def test_a_failed_input_fails_the_task_with_dependency_error(
        self, kernel: flowkernel.DataFlowKernel
    ) -> None:
        with pytest.raises(flowkernel.DependencyError) as caught:
            square(explode("input broke")).result(timeout=WAIT)
        assert isinstance(caught.value.__cause__, ValueError)
        assert "input broke" in str(caught.value.__cause__)

    def test_a_failed_try_is_retried_and_the_retry_succeeds(
        self, kernel: flowkernel.DataFlowKernel, tmp_path: Path
    ) -> None:
        tries = tmp_path / "tries"
        tries.mkdir()
        future = fails_until(str(tries), 1)
        assert future.result(timeout=WAIT) == 1
        assert future.task_record.fail_count == 1

    def test_a_task_failing_every_try_fails_with_its_last_exception(
        self, kernel: flowkernel.DataFlowKernel, tmp_path: Path
    ) -> None:
        tries = tmp_path / "tries"
        tries.mkdir()
        with pytest.raises(RuntimeError, match="try 1 fails"):
            fails_until(str(tries), 5).result(timeout=WAIT)

    def test_a_bash_app_runs_its_command_and_writes_its_output(
        self, kernel: flowkernel.DataFlowKernel, tmp_path: Path
    ) -> None:
        out = tmp_path / "shout.txt"
        assert shout("quiet", outputs=[str(out)]).result(timeout=WAIT) == 0
        assert out.read_text() == "QUIET\n"

    def test_a_bash_app_exiting_non_zero_fails_with_bash_exit_failure(
        self, kernel: flowkernel.DataFlowKernel
    ) -> None:
        with pytest.raises(flowkernel.BashExitFailure, match="3"):
            exit_with(3).result(timeout=WAIT)

    def test_a_python_app_prints_into_its_stdout_file(
        self, kernel: flowkernel.DataFlowKernel, tmp_path: Path
    ) -> None:
        log = tmp_path / "chatty.out"
        assert chatty("hello", stdout=str(log)).result(timeout=WAIT) == "hello"
        assert log.read_text() == "said hello\n"

    def test_the_kernel_shows_the_executors_outstanding_tasks(
        self, kernel: flowkernel.DataFlowKernel, tmp_path: Path
    ) -> None:
        release = tmp_path / "release"
        future = held(str(release), 7)
        deadline = time.monotonic() + WAIT
        while kernel.outstanding() != {"engine": 1} and time.monotonic() < deadline:
            time.sleep(0.01)  # the launch happens on the kernel's thread
        assert kernel.outstanding() == {"engine": 1}
        release.touch()
        assert future.result(timeout=WAIT) == 7
        assert kernel.outstanding() == {"engine": 0}

    def test_cleanup_lets_a_running_task_finish(
        self, make_executor: MakeExecutor, config_factory: Any, tmp_path: Path
    ) -> None:
        release = tmp_path / "release"
        kernel = flowkernel.load(config_factory(executors=[make_executor("engine")]))
        future = held(str(release), "kept")
        deadline = time.monotonic() + WAIT
        while kernel.outstanding() != {"engine": 1} and time.monotonic() < deadline:
            time.sleep(0.01)
        release.touch()
        kernel.cleanup()
        assert future.result(timeout=0) == "kept"


# -- The executor kinds -----------------------------------------------------------


@pytest.fixture(scope="module")
def dask_cluster() -> Iterator[Any]:
    """One LocalCluster (two worker processes) for every Dask test of this module."""
    from distributed import LocalCluster

    from flowkernel.contrib.spawning import without_main_reimport

    with without_main_reimport():
        cluster = LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0"
        )
    yield cluster
    cluster.close()


class TestThreads(ExecutorConformance):
    @pytest.fixture
    def make_executor(self) -> MakeExecutor:
        return lambda label: flowkernel.make_executor("threads", label=label, max_threads=2)


class TestProcesses(ExecutorConformance):
    @pytest.fixture
    def make_executor(self) -> MakeExecutor:
        return lambda label: flowkernel.make_executor("processes", label=label, max_workers=2)


class TestDask(ExecutorConformance):
    @pytest.fixture
    def make_executor(self, dask_cluster: Any) -> MakeExecutor:
        return lambda label: flowkernel.make_executor("dask", label=label, cluster=dask_cluster)
