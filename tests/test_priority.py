"""Priorities order ready tasks that wait for a free executor slot."""

from __future__ import annotations

import threading

from _support import WAIT
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import flowkernel
from flowkernel import python_app


def _order_of_runs(config_factory, submit) -> list[str]:  # type: ignore[no-untyped-def]
    gate, started = threading.Event(), threading.Event()
    order: list[str] = []

    @python_app
    def blocker() -> None:
        started.set()
        assert gate.wait(WAIT)

    executor = flowkernel.ThreadPoolExecutor(max_threads=1)
    with flowkernel.load(config_factory(executors=[executor])):
        busy = blocker()
        assert started.wait(WAIT)
        futures = submit(order)  # all ready, all waiting for the one thread
        gate.set()
        busy.result(timeout=WAIT)
        for future in futures:
            future.result(timeout=WAIT)
    return order


def test_higher_priority_tasks_launch_first(config_factory) -> None:
    def submit(order: list[str]) -> list[flowkernel.AppFuture[None]]:
        def app(name: str, priority: float) -> flowkernel.AppFuture[None]:
            @python_app(priority=priority)
            def record() -> None:
                order.append(name)

            return record()

        return [app("low", 1), app("high", 10), app("middle", 5), app("low2", 1)]

    assert _order_of_runs(config_factory, submit) == ["high", "middle", "low", "low2"]


def test_priority_given_per_call_overrides_the_app(config_factory) -> None:
    def submit(order: list[str]) -> list[flowkernel.AppFuture[None]]:
        @python_app(priority=1)
        def record(name: str) -> None:
            order.append(name)

        return [record("a"), record("urgent", priority=99), record("b")]

    assert _order_of_runs(config_factory, submit) == ["urgent", "a", "b"]


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(st.lists(st.sampled_from([-2.5, -1, 0, 0, 0, 1, 4]), min_size=1, max_size=10))
def test_waiting_tasks_run_by_priority_then_in_submission_order(
    config_factory, priorities: list[float]
) -> None:
    # Priority 0 (the default) and other priorities wait in different places
    # in the thread pool; the order across them must still be one order.
    def submit(order: list[str]) -> list[flowkernel.AppFuture[None]]:
        @python_app
        def record(name: str) -> None:
            order.append(name)

        return [record(str(n), priority=p) for n, p in enumerate(priorities)]

    ranked = sorted(range(len(priorities)), key=lambda n: -priorities[n])  # stable
    assert _order_of_runs(config_factory, submit) == [str(n) for n in ranked]


def test_a_function_with_its_own_priority_parameter_receives_it(
    dfk: flowkernel.DataFlowKernel,
) -> None:
    @python_app
    def triage(priority: str) -> str:
        return priority

    assert triage(priority="high").result(timeout=WAIT) == "high"
