"""Join apps, and retries of failed tries (Config.retries and retry_handler)."""

from __future__ import annotations

import threading
from typing import Any

import pytest
from _support import WAIT

import flowkernel
from flowkernel import join_app, python_app


@python_app
def square(x: int) -> int:
    return x * x


@python_app
def broken(message: str) -> int:
    raise ValueError(message)


def test_a_join_app_returning_a_future_takes_its_result(dfk: flowkernel.DataFlowKernel) -> None:
    @join_app
    def outer(x: int) -> Any:
        return square(x)

    assert outer(7).result(timeout=WAIT) == 49


def test_a_join_app_returning_a_list_of_futures_takes_their_results(
    dfk: flowkernel.DataFlowKernel,
) -> None:
    @join_app
    def fan(n: int) -> Any:
        return [square(i) for i in range(n)]

    future = fan(4)
    assert future.result(timeout=WAIT) == [0, 1, 4, 9]
    assert future.task_status() == "exec_done"


def test_join_apps_nest(dfk: flowkernel.DataFlowKernel) -> None:
    @join_app
    def depth(n: int) -> Any:
        return square(n) if n == 0 else depth(n - 1)

    assert depth(20).result(timeout=WAIT) == 0


def test_an_inner_failure_gives_join_error(dfk: flowkernel.DataFlowKernel) -> None:
    @join_app
    def outer() -> Any:
        return [square(1), broken("inner broke")]

    with pytest.raises(flowkernel.JoinError) as info:
        outer().result(timeout=WAIT)
    assert isinstance(info.value.__cause__, ValueError)
    assert "Join failure for task" in str(info.value)


def test_a_join_body_returning_something_else_fails_clearly(
    dfk: flowkernel.DataFlowKernel,
) -> None:
    @join_app
    def not_a_future() -> Any:
        return 42

    with pytest.raises(TypeError, match="must return a Future or a list of Futures, got 42"):
        not_a_future().result(timeout=WAIT)


def test_a_join_body_runs_on_the_kernels_internal_pool(dfk: flowkernel.DataFlowKernel) -> None:
    @join_app
    def where() -> Any:
        name = threading.current_thread().name

        @python_app
        def echo() -> str:
            return name

        return echo()

    assert where().result(timeout=WAIT).startswith("flowkernel-internal")


def test_retries_run_a_failing_task_again_then_report_the_last_exception(
    config_factory,
) -> None:
    tries: list[int] = []

    @python_app
    def always() -> None:
        tries.append(1)
        raise RuntimeError(f"try {len(tries)}")

    with flowkernel.load(config_factory(retries=2)):
        future = always()
        with pytest.raises(RuntimeError, match="try 3"):
            future.result(timeout=WAIT)
    assert len(tries) == 3
    record = future.task_record
    assert record.fail_count == 3 and len(record.fail_history) == 3
    assert "try 1" in record.fail_history[0]


def test_a_task_failing_twice_then_succeeding_succeeds_within_its_budget(config_factory) -> None:
    tries: list[int] = []

    @python_app
    def flaky() -> str:
        tries.append(1)
        if len(tries) < 3:
            raise OSError("transient")
        return "ok"

    with flowkernel.load(config_factory(retries=2)):
        future = flaky()
        assert future.result(timeout=WAIT) == "ok"
    assert future.task_record["fail_count"] == 2


def test_retry_handler_prices_each_failure(config_factory) -> None:
    seen: list[tuple[str, int]] = []

    def handler(exception: BaseException, task_record: Any) -> float:
        seen.append((type(exception).__name__, task_record["fail_count"]))
        return 0.5 if isinstance(exception, OSError) else 10.0

    tries: list[int] = []

    @python_app
    def cheap_failures() -> str:
        tries.append(1)
        if len(tries) <= 4:
            raise OSError("cheap")
        return "ok"

    with flowkernel.load(config_factory(retries=2, retry_handler=handler)):
        assert cheap_failures().result(timeout=WAIT) == "ok"  # 4 x 0.5 = 2 <= 2
    assert seen == [("OSError", n) for n in range(1, 5)]


def test_a_retry_handler_that_raises_fails_the_task_with_its_exception(config_factory) -> None:
    def handler(exception: BaseException, task_record: Any) -> float:
        raise PermissionError("handler says no")

    with flowkernel.load(config_factory(retries=5, retry_handler=handler)):
        with pytest.raises(PermissionError, match="handler says no"):
            broken("x").result(timeout=WAIT)


def test_a_join_app_with_retries_runs_its_body_again(config_factory) -> None:
    calls: list[int] = []

    @join_app
    def outer() -> Any:
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("body failed once")
        return square(3)

    with flowkernel.load(config_factory(retries=1)):
        assert outer().result(timeout=WAIT) == 9
    assert len(calls) == 2
