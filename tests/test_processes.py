"""The ``processes`` executor: worker loss, pickling by value, and sharing a kernel with threads.

What every executor does (results, exceptions, retries, bash apps, shutdown) is
in ``test_executors_conformance.py``; these are the process pool's own
behaviours.
"""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
from _support import WAIT, run_isolated, wait_for_file, wait_until

import flowkernel
from flowkernel import python_app
from flowkernel.contrib.processes import ProcessPoolExecutor, RemoteTraceback, WorkerLost


@python_app
def pid() -> int:
    return os.getpid()


@python_app
def square(x: int) -> int:
    return x * x


@python_app
def dies_on_first_try(marker: str) -> str:
    if not os.path.exists(marker):
        Path(marker).touch()
        os.kill(os.getpid(), signal.SIGKILL)
    return "survived"


@python_app
def dies() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


@python_app
def waits_on_first_try(pid_file: str) -> str:
    """First try: write this worker's pid and wait (to be killed); later tries return."""
    if os.path.exists(pid_file):
        return "second try"
    Path(pid_file + ".tmp").write_text(str(os.getpid()))
    os.replace(pid_file + ".tmp", pid_file)
    wait_for_file(pid_file + ".never")
    return "not killed"


@python_app
def dies_when_released(release: str, marker: str) -> str:
    if not os.path.exists(marker):
        Path(marker).touch()
        wait_for_file(release)
        os.kill(os.getpid(), signal.SIGKILL)
    return "first"


@python_app
def held(release: str) -> int:
    wait_for_file(release)
    return os.getpid()


@python_app
def anywhere() -> int:
    return os.getpid()


def _processes(label: str = "processes", max_workers: int = 1) -> flowkernel.Executor:
    return flowkernel.make_executor("processes", label=label, max_workers=max_workers)


# -- A worker lost in the middle of a task ------------------------------------------------


def test_a_worker_killed_by_its_own_task_fails_that_try_and_the_retry_succeeds(
    config_factory: Any, tmp_path: Path
) -> None:
    with flowkernel.load(config_factory(executors=[_processes("cpu")], retries=1)):
        future = dies_on_first_try(str(tmp_path / "killed"))
        assert future.result(timeout=WAIT) == "survived"
        assert future.task_record.fail_count == 1
        assert "WorkerLost" in future.task_record.fail_history[0]
        assert "executor 'cpu'" in future.task_record.fail_history[0]


def test_a_worker_killed_from_outside_mid_task_fails_that_try_and_the_retry_succeeds(
    config_factory: Any, tmp_path: Path
) -> None:
    pid_file = tmp_path / "worker.pid"
    with flowkernel.load(config_factory(executors=[_processes()], retries=1)):
        future = waits_on_first_try(str(pid_file))
        wait_for_file(str(pid_file))
        os.kill(int(pid_file.read_text()), signal.SIGKILL)
        assert future.result(timeout=WAIT) == "second try"
        assert "WorkerLost" in future.task_record.fail_history[0]


def test_a_killed_worker_without_retries_fails_the_task_with_worker_lost(
    config_factory: Any,
) -> None:
    with flowkernel.load(config_factory(executors=[_processes("cpu")])):
        with pytest.raises(WorkerLost, match="executor 'cpu': a worker process died"):
            dies().result(timeout=WAIT)


def test_after_a_worker_is_killed_the_pool_runs_later_tasks(config_factory: Any) -> None:
    with flowkernel.load(config_factory(executors=[_processes(max_workers=2)])):
        with pytest.raises(WorkerLost):
            dies().result(timeout=WAIT)
        assert [square(i).result(timeout=WAIT) for i in range(4)] == [0, 1, 4, 9]


def test_every_task_in_flight_on_a_broken_pool_fails_that_try_and_is_retried(
    config_factory: Any, tmp_path: Path
) -> None:
    release = tmp_path / "release"
    with flowkernel.load(config_factory(executors=[_processes("cpu")], retries=1)) as kernel:
        dying = dies_when_released(str(release), str(tmp_path / "died"))
        queued = square(5)  # waits in the pool behind the dying task
        wait_until(lambda: kernel.outstanding() == {"cpu": 2})
        release.touch()
        assert dying.result(timeout=WAIT) == "first"
        assert queued.result(timeout=WAIT) == 25
        assert "WorkerLost" in queued.task_record.fail_history[0]


# -- Tasks and results travel by value ---------------------------------------------------


def test_tasks_run_in_worker_processes_not_in_the_kernels(config_factory: Any) -> None:
    with flowkernel.load(config_factory(executors=[_processes(max_workers=2)])):
        pids = {f.result(timeout=WAIT) for f in [pid() for _ in range(6)]}
    assert os.getpid() not in pids
    assert 1 <= len(pids) <= 2


def test_a_result_the_standard_pickle_refuses_comes_back(config_factory: Any) -> None:
    offset = 41

    @python_app
    def make_adder() -> Any:
        return lambda x: x + offset

    with flowkernel.load(config_factory(executors=[_processes()])):
        assert make_adder().result(timeout=WAIT)(1) == 42


def test_an_exception_from_a_worker_carries_the_remote_traceback_as_its_cause(
    config_factory: Any,
) -> None:
    @python_app
    def deep_failure() -> None:
        def inner() -> None:
            raise KeyError("missing")

        inner()

    with flowkernel.load(config_factory(executors=[_processes()])):
        with pytest.raises(KeyError) as caught:
            deep_failure().result(timeout=WAIT)
    cause = caught.value.__cause__
    assert isinstance(cause, RemoteTraceback)
    assert "in inner" in cause.text


def test_an_argument_that_cannot_be_pickled_fails_the_try_naming_the_executor(
    config_factory: Any,
) -> None:
    @python_app
    def takes(value: Any) -> str:
        return type(value).__name__

    with flowkernel.load(config_factory(executors=[_processes("cpu")])):
        with pytest.raises(TypeError, match="executor 'cpu': the task cannot be pickled"):
            takes(threading.Lock()).result(timeout=WAIT)


def test_a_result_that_cannot_be_pickled_fails_the_task_with_type_error(
    config_factory: Any,
) -> None:
    @python_app
    def make_lock() -> Any:
        return threading.Lock()

    with flowkernel.load(config_factory(executors=[_processes()])):
        with pytest.raises(TypeError, match="result cannot be pickled"):
            make_lock().result(timeout=WAIT)


def test_a_script_without_a_main_guard_is_not_rerun_by_its_workers(tmp_path: Path) -> None:
    # More tasks than workers, each holding its worker a moment, so the pool
    # starts its second worker on demand (after the first).
    script = tmp_path / "flow.py"
    script.write_text(
        "import time\n"
        "import flowkernel\n"
        "print('script body ran', flush=True)\n"
        "@flowkernel.python_app\n"
        "def defined_in_main(x):\n"
        "    time.sleep(0.05)\n"
        "    return x + 1\n"
        "ex = flowkernel.make_executor('processes', max_workers=2)\n"
        "with flowkernel.load(flowkernel.Config(executors=[ex], run_dir='runinfo')):\n"
        "    print(sum(f.result(timeout=60) for f in [defined_in_main(i) for i in range(6)]))\n"
    )
    out = run_isolated(
        "import runpy, sys; sys.argv = [sys.argv[1]]; runpy.run_path(sys.argv[0], "
        "run_name='__main__')",
        str(script),
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines() == ["script body ran", "21"]


# -- Options and set-up ---------------------------------------------------------------


def test_a_resource_specification_is_refused(config_factory: Any) -> None:
    @python_app
    def wants(parsl_resource_specification: dict[str, int] = {"cores": 2}) -> None:  # noqa: B006
        return None

    with flowkernel.load(config_factory(executors=[_processes("cpu")])):
        with pytest.raises(
            flowkernel.errors.UnsupportedFeatureError, match="takes no resource specification"
        ):
            wants().result(timeout=WAIT)


def test_max_workers_below_one_is_a_configuration_error() -> None:
    with pytest.raises(flowkernel.ConfigurationError, match="max_workers must be at least 1"):
        flowkernel.make_executor("processes", max_workers=0)


def test_an_unavailable_start_method_is_a_configuration_error() -> None:
    with pytest.raises(flowkernel.ConfigurationError, match="'teleport' is not available"):
        flowkernel.make_executor("processes", start_method="teleport")


def test_the_kind_without_cloudpickle_says_what_to_install() -> None:
    out = run_isolated(
        """
        import sys
        sys.modules["cloudpickle"] = None  # as if it were not installed
        import flowkernel
        try:
            flowkernel.make_executor("processes")
        except flowkernel.ConfigurationError as exc:
            print(exc)
        """
    )
    assert out.returncode == 0, out.stderr
    assert "pip install 'flowkernel[processes]'" in out.stdout


def test_a_config_file_names_the_processes_kind(tmp_path: Path) -> None:
    path = tmp_path / "flow.toml"
    path.write_text('[[executors]]\nkind = "processes"\nlabel = "cpu"\nmax_workers = 1\n')
    (executor,) = flowkernel.Config.from_toml(path).executors
    assert isinstance(executor, ProcessPoolExecutor)
    assert (executor.label, executor.max_workers) == ("cpu", 1)


def test_the_class_is_importable_and_is_an_executor() -> None:
    from flowkernel.contrib import processes

    assert processes.flowkernel_executor_kinds() == {"processes": ProcessPoolExecutor}
    assert issubclass(ProcessPoolExecutor, flowkernel.Executor)


# -- Threads and processes in one kernel -------------------------------------------------


def _both() -> list[flowkernel.Executor]:
    return [
        flowkernel.make_executor("threads", label="io", max_threads=1),
        _processes("cpu"),
    ]


def test_apps_pinned_by_label_run_on_their_executor(config_factory: Any) -> None:
    @python_app(executors=["cpu"])
    def on_cpu() -> int:
        return os.getpid()

    @python_app(executors=["io"])
    def on_io() -> int:
        return os.getpid()

    with flowkernel.load(config_factory(executors=_both())):
        io, cpu = on_io(), on_cpu()
        assert io.result(timeout=WAIT) == os.getpid()
        assert cpu.result(timeout=WAIT) != os.getpid()
        assert (io.task_record.executor, cpu.task_record.executor) == ("io", "cpu")


def test_the_kernel_shows_outstanding_tasks_per_executor(
    config_factory: Any, tmp_path: Path
) -> None:
    release = tmp_path / "release"
    pinned = python_app(executors=["io"])(held.func)
    with flowkernel.load(config_factory(executors=_both())) as kernel:
        assert kernel.outstanding() == {"io": 0, "cpu": 0}
        future = pinned(str(release))
        wait_until(lambda: kernel.outstanding() == {"io": 1, "cpu": 0})
        release.touch()
        future.result(timeout=WAIT)
        assert kernel.outstanding() == {"io": 0, "cpu": 0}


def test_by_default_a_task_goes_to_the_executor_with_fewest_outstanding_tasks(
    config_factory: Any, tmp_path: Path
) -> None:
    release = tmp_path / "release"
    busy = python_app(executors=["io"])(held.func)
    with flowkernel.load(config_factory(executors=_both())) as kernel:
        blocker = busy(str(release))
        wait_until(lambda: kernel.outstanding()["io"] == 1)
        chosen = anywhere()  # allowed on both: "io" has one task running, "cpu" none
        assert chosen.result(timeout=WAIT) != os.getpid()
        assert chosen.task_record.executor == "cpu"
        release.touch()
        blocker.result(timeout=WAIT)


def test_a_select_executor_plugin_chooses_among_the_candidates(config_factory: Any) -> None:
    asked: list[tuple[str, tuple[str, ...]]] = []

    class SendSquaresToProcesses:
        @flowkernel.hookimpl
        def flowkernel_select_executor(self, task: Any, candidates: Sequence[str]) -> str:
            asked.append((task.func_name, tuple(candidates)))
            return "cpu" if task.func_name == "square" else "io"

    plugin = SendSquaresToProcesses()
    with flowkernel.load(config_factory(executors=_both(), plugins=[plugin])):
        squared, where = square(4), anywhere()
        assert squared.result(timeout=WAIT) == 16
        assert where.result(timeout=WAIT) == os.getpid()
    assert (squared.task_record.executor, where.task_record.executor) == ("cpu", "io")
    assert sorted(asked) == [("anywhere", ("io", "cpu")), ("square", ("io", "cpu"))]


def test_the_executor_can_be_built_directly(config_factory: Any) -> None:
    executor = ProcessPoolExecutor(label="direct", max_workers=1)
    with flowkernel.load(config_factory(executors=[executor])):
        assert square(9).result(timeout=WAIT) == 81
