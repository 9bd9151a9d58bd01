"""Cancelling tasks that have not started, and what their dependents see."""

from __future__ import annotations

import threading
from concurrent.futures import CancelledError

import pytest
from _support import WAIT

import flowkernel
from flowkernel import python_app


@pytest.fixture
def one_thread(config_factory):  # type: ignore[no-untyped-def]
    """A kernel whose only executor has one thread, so queued tasks really wait."""
    kernel = flowkernel.load(
        config_factory(executors=[flowkernel.ThreadPoolExecutor(max_threads=1)])
    )
    yield kernel
    if not kernel.cleanup_called:
        kernel.cleanup()


@python_app
def wait_for(gate: threading.Event) -> str:
    assert gate.wait(WAIT)
    return "opened"


def test_cancelling_a_task_waiting_for_inputs_ends_it_and_its_dependents(
    dfk: flowkernel.DataFlowKernel,
) -> None:
    gate = threading.Event()
    ran: list[str] = []

    @python_app
    def step(x: str) -> str:
        ran.append(x)
        return x

    blocker = wait_for(gate)
    victim = step(blocker)
    dependent = step(victim)
    assert victim.cancel() is True
    assert victim.cancelled()
    with pytest.raises(CancelledError):
        victim.result(timeout=WAIT)
    with pytest.raises(flowkernel.DependencyError) as info:
        dependent.result(timeout=WAIT)
    assert isinstance(info.value.__cause__, CancelledError)
    gate.set()
    assert blocker.result(timeout=WAIT) == "opened"
    assert ran == []
    assert victim.task_status() == "failed"


def test_a_queued_task_is_cancelled_before_an_executor_thread_takes_it(
    one_thread: flowkernel.DataFlowKernel,
) -> None:
    gate = threading.Event()
    ran: list[int] = []

    @python_app
    def work(x: int) -> int:
        ran.append(x)
        return x

    busy = wait_for(gate)
    queued = work(1)  # ready, but the only thread is busy
    assert queued.task_status() == "launched"
    assert one_thread.outstanding()["threads"] == 2
    assert queued.cancel() is True
    assert one_thread.outstanding()["threads"] == 1
    gate.set()
    busy.result(timeout=WAIT)
    assert work(2).result(timeout=WAIT) == 2
    assert ran == [2]


def test_a_running_task_is_not_cancelled(dfk: flowkernel.DataFlowKernel) -> None:
    gate, started = threading.Event(), threading.Event()

    @python_app
    def running() -> str:
        started.set()
        assert gate.wait(WAIT)
        return "finished"

    future = running()
    assert started.wait(WAIT)
    assert future.cancel() is False
    gate.set()
    assert future.result(timeout=WAIT) == "finished"


def test_a_finished_task_is_not_cancelled(dfk: flowkernel.DataFlowKernel) -> None:
    @python_app
    def quick() -> int:
        return 1

    future = quick()
    future.result(timeout=WAIT)
    assert future.cancel() is False
    assert future.result() == 1


def test_cancel_all_cancels_everything_not_yet_running(
    one_thread: flowkernel.DataFlowKernel,
) -> None:
    gate, started = threading.Event(), threading.Event()

    @python_app
    def first() -> str:
        started.set()
        assert gate.wait(WAIT)
        return "ran"

    @python_app
    def later(x: int) -> int:
        return x

    running = first()
    assert started.wait(WAIT)
    queued = [later(i) for i in range(5)]
    waiting = later(queued[0])
    cancelled = one_thread.cancel_all()
    gate.set()
    assert running.result(timeout=WAIT) == "ran"
    assert all(f.cancelled() for f in queued)
    # The task waiting on a cancelled one ends either way: cancelled itself, or
    # failed with a DependencyError if its input's cancellation reached it first.
    if waiting.cancelled():
        assert cancelled == 6
    else:
        assert cancelled == 5
        with pytest.raises(flowkernel.DependencyError):
            waiting.result(timeout=WAIT)


def test_a_task_waiting_for_a_retry_can_be_cancelled(config_factory) -> None:
    tries: list[int] = []

    @python_app(retry_policy=flowkernel.RetryPolicy(count=3, delay=WAIT))
    def flaky() -> None:
        tries.append(1)
        raise RuntimeError("fails")

    with flowkernel.load(config_factory()):
        future = flaky()
        deadline = threading.Event()
        for _ in range(int(WAIT * 100)):
            if future.task_status() == "fail_retryable":
                break
            deadline.wait(0.01)
        assert future.task_status() == "fail_retryable"
        assert future.cancel() is True
        with pytest.raises(CancelledError):
            future.result(timeout=WAIT)
    assert tries == [1]


@python_app
def source(gate: threading.Event) -> int:
    assert gate.wait(WAIT)
    return 1


def _race_once() -> None:
    """The input completes on one thread while the dependent is cancelled on another."""
    ran: list[int] = []

    @python_app
    def sink(x: int) -> int:
        ran.append(x)
        return x

    gate = threading.Event()
    upstream = source(gate)
    target = sink(upstream)
    barrier = threading.Barrier(2, timeout=WAIT)
    outcome: list[bool] = []

    def cancel_it() -> None:
        barrier.wait()
        outcome.append(target.cancel())

    canceller = threading.Thread(target=cancel_it)
    canceller.start()
    barrier.wait()
    gate.set()
    canceller.join(WAIT)
    upstream.result(timeout=WAIT)
    # Either the cancel won (the body never runs, the future is cancelled) or it
    # lost (False, and the task finishes normally); never both, never neither.
    if outcome[0]:
        assert target.cancelled()
        assert ran == []
    else:
        assert target.result(timeout=WAIT) == 1
        assert ran == [1]


def test_cancel_racing_with_the_task_becoming_ready_never_runs_a_cancelled_task(
    dfk: flowkernel.DataFlowKernel,
) -> None:
    for _ in range(200):
        _race_once()
    assert dfk.wait_for_current_tasks(timeout=WAIT) == []


class FutureExecutor(flowkernel.Executor):
    """Hands tasks to a concurrent.futures pool, so cancel() reports through a callback."""

    label = "cf"

    def __init__(self) -> None:
        import concurrent.futures as cf

        self.pool = cf.ThreadPoolExecutor(max_workers=1)

    def submit(self, func, resource_specification, *args, **kwargs):  # type: ignore[no-untyped-def]
        return self.pool.submit(func, *args, **kwargs)

    def shutdown(self) -> None:
        self.pool.shutdown()

    @property
    def outstanding(self) -> int:
        return self.pool._work_queue.qsize()


def test_cancelling_on_an_executor_that_reports_the_cancel_at_once(config_factory) -> None:
    gate = threading.Event()

    @python_app
    def busy() -> None:
        assert gate.wait(WAIT)

    @python_app
    def queued() -> int:
        return 1

    with flowkernel.load(config_factory(executors=[FutureExecutor()], retries=3)):
        first = busy()
        second = queued()
        assert second.task_status() == "launched"
        assert second.cancel() is True
        assert second.cancelled()
        assert second.task_record.fail_count == 0  # not counted as a failed try
        gate.set()
        first.result(timeout=WAIT)
