"""Task states, the transition table, and the kernel's life: load, context, cleanup."""

from __future__ import annotations

import itertools
import os
import threading
from pathlib import Path

import pytest
from _support import WAIT

import flowkernel
from flowkernel import States, python_app
from flowkernel.markers import entering
from flowkernel.states import FINAL_STATES, TRANSITIONS


@python_app
def ok(x: int = 0) -> int:
    return x


def test_state_values_are_parsls() -> None:
    assert {s.name: s.value for s in States} == {
        "unsched": -1, "pending": 0, "running": 2, "exec_done": 3, "failed": 4,
        "dep_fail": 5, "launched": 7, "fail_retryable": 8, "memo_done": 9,
        "joining": 10, "running_ended": 11,
    }  # fmt: skip


def test_final_states_have_no_way_out_and_every_other_state_has_one() -> None:
    for state, targets in TRANSITIONS.items():
        if state in FINAL_STATES or state in (States.running, States.running_ended):
            assert targets == frozenset()
        else:
            assert targets


def test_every_reported_transition_is_in_the_table_and_reported_once(config_factory) -> None:
    seen: list[tuple[int, States, States]] = []
    lock = threading.Lock()

    class Record:
        @flowkernel.hookimpl
        def flowkernel_task_state_changed(self, task, old, new):  # type: ignore[no-untyped-def]
            with lock:
                seen.append((task.id, old, new))

    tries: list[int] = []

    @python_app
    def flaky() -> int:
        tries.append(1)
        if len(tries) == 1:
            raise OSError("once")
        return 1

    @python_app
    def broken() -> int:
        raise ValueError("x")

    @python_app(cache=True)
    def cached(x: int) -> int:
        return x

    with flowkernel.load(config_factory(retries=1, plugins=[Record()])) as kernel:
        futures = [flaky(), ok(broken()), cached(1)]
        kernel.wait_for_current_tasks()
        futures.append(cached(1))
        kernel.wait_for_current_tasks()
    for _, old, new in seen:
        assert new in TRANSITIONS[old], (old, new)
    by_task: dict[int, list[tuple[States, States]]] = {}
    for tid, old, new in seen:
        by_task.setdefault(tid, []).append((old, new))
    for path in by_task.values():  # each task walks a path: each step starts where the last ended
        assert path[0][0] is States.unsched and path[-1][1] in FINAL_STATES
        assert all(a[1] is b[0] for a, b in itertools.pairwise(path))
    assert by_task[futures[0].tid] == [
        (States.unsched, States.pending), (States.pending, States.launched),
        (States.launched, States.fail_retryable), (States.fail_retryable, States.pending),
        (States.pending, States.launched), (States.launched, States.exec_done),
    ]  # fmt: skip
    assert by_task[futures[1].tid][-1] == (States.pending, States.dep_fail)
    assert by_task[futures[3].tid][-1] == (States.pending, States.memo_done)


@pytest.mark.parametrize("trace", [False, True], ids=["fast-path", "traced"])
def test_an_observer_marked_entering_sees_only_transitions_into_its_states(
    config_factory, monkeypatch: pytest.MonkeyPatch, trace: bool
) -> None:
    if trace:  # tracing takes the keyword path through the plugin manager
        monkeypatch.setenv("FLOWKERNEL_TRACE_PLUGINS", "1")
    every: list[tuple[States, States]] = []
    ends: list[tuple[int, States]] = []

    class Everything:
        @flowkernel.hookimpl
        def flowkernel_task_state_changed(self, task, old, new):  # type: ignore[no-untyped-def]
            every.append((old, new))

    class Endings:
        @flowkernel.hookimpl
        @entering(States.exec_done, States.dep_fail)
        def flowkernel_task_state_changed(self, task, new):  # type: ignore[no-untyped-def]
            ends.append((task.id, new))

    @python_app
    def broken() -> int:
        raise ValueError("x")

    with flowkernel.load(config_factory(plugins=[Everything(), Endings()])):
        first, second = ok(1), ok(broken())
        assert first.result(timeout=WAIT) == 1
        with pytest.raises(flowkernel.DependencyError):
            second.result(timeout=WAIT)
    assert sorted(ends) == [(first.tid, States.exec_done), (second.tid, States.dep_fail)]
    assert len(every) == 8  # the unmarked observer still sees every transition
    assert {new for _, new in every} == {
        States.pending,
        States.launched,
        States.exec_done,
        States.failed,
        States.dep_fail,
    }


def test_entering_takes_states_only_and_marks_the_state_hook_only(config_factory) -> None:
    with pytest.raises(TypeError, match="one or more States"):
        entering()
    with pytest.raises(TypeError, match="one or more States"):
        entering("exec_done")  # type: ignore[arg-type]

    class Misplaced:
        @flowkernel.hookimpl
        @entering(States.exec_done)
        def flowkernel_kernel_started(self, kernel):  # type: ignore[no-untyped-def]
            pass

    with pytest.raises(flowkernel.PluginLoadError, match="marks flowkernel_kernel_started"):
        flowkernel.load(config_factory(plugins=[Misplaced()]))


def test_task_state_counts_add_up_after_a_run(dfk: flowkernel.DataFlowKernel) -> None:
    @python_app
    def broken() -> int:
        raise ValueError("x")

    futures = [ok(i) for i in range(5)] + [broken()] + [ok(broken())]
    dfk.wait_for_current_tasks(timeout=WAIT)
    counts = dfk.task_state_counts
    assert counts[States.exec_done] == 5
    assert counts[States.failed] == 2
    assert counts[States.dep_fail] == 1
    assert sum(counts.values()) == len(futures) + 1 == dfk.task_count


def test_counts_are_exact_after_many_threads_submit_chains_and_cancel_at_once(
    dfk: flowkernel.DataFlowKernel,
) -> None:
    gate = threading.Event()

    @python_app
    def held() -> int:
        gate.wait(WAIT)
        return 0

    heads = [held() for _ in range(4)]
    chains: list[list[flowkernel.AppFuture]] = [[] for _ in range(4)]

    def submit_chain(n: int) -> None:
        future = heads[n]
        for _ in range(300):
            future = ok(future)
            chains[n].append(future)

    threads = [threading.Thread(target=submit_chain, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert dfk.cancel(chains[0][150])  # waiting for its input: cancelled at once
    gate.set()
    dfk.wait_for_current_tasks(timeout=WAIT)
    counts = dfk.task_state_counts
    assert dfk.task_count == 4 + 4 * 300 == sum(counts.values())
    assert counts[States.exec_done] == 4 + 3 * 300 + 150
    assert counts[States.dep_fail] == 149
    assert counts[States.failed] == 1  # the cancelled one
    assert all(n == 0 for s, n in counts.items() if s not in FINAL_STATES)


def test_loading_twice_without_clear_is_an_error(config_factory) -> None:
    flowkernel.load(config_factory())
    with pytest.raises(flowkernel.ConfigurationError, match="already"):
        flowkernel.load(config_factory())


def test_dfk_without_a_loaded_kernel_is_an_error() -> None:
    with pytest.raises(flowkernel.NoDataFlowKernelError):
        flowkernel.dfk()
    with pytest.raises(flowkernel.NoDataFlowKernelError):
        ok(1)


def test_cleanup_twice_is_an_error_and_submitting_after_cleanup_too(config_factory) -> None:
    kernel = flowkernel.DataFlowKernel(config_factory())
    kernel.cleanup()
    with pytest.raises(flowkernel.NoDataFlowKernelError, match="already"):
        kernel.cleanup()
    with pytest.raises(flowkernel.NoDataFlowKernelError, match="cleaned up"):
        kernel.submit(lambda: 1, app_args=())


def test_exit_mode_cleanup_ends_tasks_that_have_not_launched(config_factory) -> None:
    gate = threading.Event()

    @python_app
    def slow() -> int:
        assert gate.wait(WAIT)
        return 1

    with flowkernel.load(config_factory(exit_mode="cleanup")):
        running = slow()
        waiting = ok(running)
        threading.Timer(0.2, gate.set).start()
    assert running.result(timeout=WAIT) == 1  # running tasks finish
    with pytest.raises(flowkernel.KernelShutdownError):
        waiting.result(timeout=WAIT)


def test_exit_mode_wait_lets_every_task_finish(config_factory) -> None:
    gate = threading.Event()

    @python_app
    def slow() -> int:
        assert gate.wait(WAIT)
        return 1

    with flowkernel.load(config_factory(exit_mode="wait")):
        waiting = ok(slow())
        threading.Timer(0.2, gate.set).start()
    assert waiting.result(timeout=WAIT) == 1


def test_exit_mode_skip_leaves_the_kernel_running(config_factory) -> None:
    with flowkernel.load(config_factory(exit_mode="skip")) as kernel:
        future = ok(3)
    assert not kernel.cleanup_called
    assert future.result(timeout=WAIT) == 3
    kernel.cleanup()


def test_wait_for_current_tasks_waits_for_tasks_submitted_meanwhile(
    dfk: flowkernel.DataFlowKernel,
) -> None:
    @flowkernel.join_app
    def spawner(n: int) -> object:
        return [ok(i) for i in range(n)]

    futures = [spawner(3) for _ in range(3)]
    flowkernel.wait_for_current_tasks()
    assert all(f.done() for f in futures)
    assert dfk.task_state_counts[States.exec_done] == 12


def test_each_kernel_gets_the_next_numbered_run_directory_with_its_log(
    config_factory, run_dir: str
) -> None:
    dirs = []
    for _ in range(3):
        with flowkernel.load(config_factory()) as kernel:
            ok(1).result(timeout=WAIT)
        dirs.append(kernel.run_dir)
    assert [os.path.basename(d) for d in dirs] == ["000", "001", "002"]
    log = Path(dirs[0]) / "flowkernel.log"
    assert "starting in" in log.read_text()


def test_no_log_file_without_initialize_logging(config_factory) -> None:
    with flowkernel.load(config_factory(initialize_logging=False)) as kernel:
        ok(1).result(timeout=WAIT)
    assert not (Path(kernel.run_dir) / "flowkernel.log").exists()


def test_finished_task_records_are_released_unless_garbage_collect_is_off(
    config_factory,
) -> None:
    with flowkernel.load(config_factory()) as kernel:
        [ok(i).result(timeout=WAIT) for i in range(10)]
        assert kernel.tasks == {}
    flowkernel.clear()
    with flowkernel.load(config_factory(garbage_collect=False)) as kernel:
        [ok(i).result(timeout=WAIT) for i in range(10)]
        assert len(kernel.tasks) == 10
