"""Python apps, their futures, and futures as dependencies."""

from __future__ import annotations

import threading
from concurrent.futures import Future
from typing import Any

import pytest
from _support import WAIT

import flowkernel
from flowkernel import python_app
from flowkernel.plugins.dependencies import DEEP_DEPENDENCY_RESOLVER


@python_app
def add(a: int, b: int = 0) -> int:
    return a + b


@python_app
def total(inputs: list[int] = []) -> int:  # noqa: B006 - Parsl's inputs= idiom
    return sum(inputs)


def test_an_app_call_returns_a_future_with_tid_and_task_record(
    dfk: flowkernel.DataFlowKernel,
) -> None:
    future = add(1, 2)
    assert isinstance(future, flowkernel.AppFuture) and isinstance(future, Future)
    assert future.result(timeout=WAIT) == 3
    assert isinstance(future.tid, int)
    record = future.task_record
    assert record.id == future.tid and record.func_name == "add"
    assert record["fail_count"] == 0 and record["id"] == future.tid
    assert record["dfk"] is dfk and record.get("nonexistent", "dflt") == "dflt"
    assert future.task_status() == "exec_done"
    assert future.outputs == []


def test_decorators_work_with_and_without_parentheses(dfk: flowkernel.DataFlowKernel) -> None:
    @python_app()
    def one() -> int:
        return 1

    @python_app
    def two() -> int:
        return 2

    assert (one().result(timeout=WAIT), two().result(timeout=WAIT)) == (1, 2)
    assert one.__name__ == "one" and "one" in repr(one)


def test_an_exception_in_the_app_reaches_its_future(dfk: flowkernel.DataFlowKernel) -> None:
    @python_app
    def broken() -> None:
        raise KeyError("missing sample")

    with pytest.raises(KeyError, match="missing sample"):
        broken().result(timeout=WAIT)


def test_futures_in_args_kwargs_and_inputs_are_dependencies(
    dfk: flowkernel.DataFlowKernel,
) -> None:
    a, b = add(1), add(2)
    assert add(a, b=b).result(timeout=WAIT) == 3
    assert total(inputs=[a, b, 10]).result(timeout=WAIT) == 13


def test_a_task_waits_for_inputs_finishing_after_it_was_submitted(
    dfk: flowkernel.DataFlowKernel,
) -> None:
    gate = threading.Event()

    @python_app
    def slow() -> int:
        assert gate.wait(WAIT)
        return 5

    dependent = add(slow(), 1)
    assert dependent.task_status() == "pending"
    gate.set()
    assert dependent.result(timeout=WAIT) == 6


def test_a_plain_concurrent_future_is_a_dependency_too(dfk: flowkernel.DataFlowKernel) -> None:
    outside: Future[int] = Future()
    dependent = add(outside, 1)
    assert not dependent.done()
    outside.set_result(41)
    assert dependent.result(timeout=WAIT) == 42


def test_a_failed_input_fails_the_task_with_dependency_error_without_running_it(
    dfk: flowkernel.DataFlowKernel,
) -> None:
    ran: list[int] = []

    @python_app
    def broken() -> int:
        raise ValueError("bad input")

    @python_app
    def consumer(x: int, y: int) -> int:
        ran.append(1)
        return x + y

    bad1, bad2, good = broken(), broken(), add(1)
    future = consumer(bad1, y=bad2)
    with pytest.raises(flowkernel.DependencyError) as info:
        future.result(timeout=WAIT)
    error = info.value
    assert ran == [] and future.task_status() == "dep_fail"
    assert f"task {bad1.tid}" in str(error) and f"task {bad2.tid}" in str(error)
    assert isinstance(error.__cause__, ValueError)
    assert good.result(timeout=WAIT) == 1


def test_dependency_failures_propagate_down_a_chain(dfk: flowkernel.DataFlowKernel) -> None:
    @python_app
    def broken() -> int:
        raise ValueError("root cause")

    first = add(broken(), 1)
    second = add(first, 1)
    with pytest.raises(flowkernel.DependencyError) as info:
        second.result(timeout=WAIT)
    assert f"task {first.tid}" in str(info.value)


def test_the_shallow_resolver_does_not_look_inside_containers(
    dfk: flowkernel.DataFlowKernel,
) -> None:
    @python_app
    def kinds(items: list[Any]) -> list[str]:
        return [type(i).__name__ for i in items]

    assert kinds([add(1)]).result(timeout=WAIT) == ["AppFuture"]


def test_the_deep_resolver_finds_futures_in_nested_containers(config_factory) -> None:
    @python_app
    def flatten(data: dict[str, Any]) -> list[int]:
        return [data["a"][0], data["b"]["c"], *sorted(data["s"])]

    for resolver in ("deep", DEEP_DEPENDENCY_RESOLVER):
        with flowkernel.load(config_factory(dependency_resolver=resolver)):
            nested = {"a": [add(1)], "b": {"c": add(2)}, "s": (add(3), 4)}
            assert flatten(nested).result(timeout=WAIT) == [1, 2, 3, 4]
        flowkernel.clear()


def test_a_wide_fan_in_completes(dfk: flowkernel.DataFlowKernel) -> None:
    parts = [add(i) for i in range(2000)]
    assert total(inputs=parts).result(timeout=WAIT) == sum(range(2000))


@python_app
def fail_together(barrier: threading.Barrier) -> None:
    barrier.wait()
    raise RuntimeError("together")


def test_inputs_failing_at_the_same_instant_give_exactly_one_dep_fail(config_factory) -> None:
    # Parsl issue #2227: inputs that fail together on different threads must
    # neither launch the dependent twice nor leave it pending forever.
    transitions: list[tuple[int, str]] = []
    lock = threading.Lock()

    class Record:
        @flowkernel.hookimpl
        def flowkernel_task_state_changed(self, task, old, new):  # type: ignore[no-untyped-def]
            with lock:
                transitions.append((task.id, new.name))

    executor = flowkernel.ThreadPoolExecutor(max_threads=8)
    with flowkernel.load(config_factory(executors=[executor], plugins=[Record()])):
        for _ in range(20):
            barrier = threading.Barrier(8, timeout=WAIT)
            dependent = total(inputs=[fail_together(barrier) for _ in range(8)])
            with pytest.raises(flowkernel.DependencyError):
                dependent.result(timeout=WAIT)
            ends = [s for tid, s in transitions if tid == dependent.tid]
            assert ends == ["pending", "dep_fail"]


def test_an_unknown_executor_label_names_the_labels_that_exist(config_factory) -> None:
    executors = [
        flowkernel.ThreadPoolExecutor(label="cpu"),
        flowkernel.ThreadPoolExecutor(label="io"),
    ]

    @python_app(executors=["gpu"])
    def on_gpu() -> int:
        return 1

    with flowkernel.load(config_factory(executors=executors)):
        with pytest.raises(flowkernel.UnknownExecutorError) as info:
            on_gpu()
    assert "'gpu'" in str(info.value) and "'cpu'" in str(info.value) and "'io'" in str(info.value)


def test_apps_pinned_to_a_label_run_there(config_factory) -> None:
    executors = [
        flowkernel.ThreadPoolExecutor(label="cpu", thread_name_prefix="cpu"),
        flowkernel.ThreadPoolExecutor(label="io", thread_name_prefix="io"),
    ]

    @python_app(executors=["io"])
    def where() -> str:
        return threading.current_thread().name

    with flowkernel.load(config_factory(executors=executors)):
        futures = [where() for _ in range(5)]
        assert all(f.result(timeout=WAIT).startswith("io") for f in futures)
        assert {f.task_record.executor for f in futures} == {"io"}


def test_the_default_selection_spreads_tasks_to_the_least_busy_executor(config_factory) -> None:
    gate = threading.Event()
    executors = [flowkernel.ThreadPoolExecutor(label="a"), flowkernel.ThreadPoolExecutor(label="b")]

    @python_app
    def hold() -> str:
        assert gate.wait(WAIT)
        return "done"

    with flowkernel.load(config_factory(executors=executors)) as kernel:
        futures = [hold() for _ in range(4)]
        assert kernel.outstanding() == {"a": 2, "b": 2}
        gate.set()
        assert [f.result(timeout=WAIT) for f in futures] == ["done"] * 4
