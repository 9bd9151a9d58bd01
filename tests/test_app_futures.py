"""AppFuture behaves as a concurrent.futures.Future under every interleaving.

An AppFuture makes its condition only when something has to wait (see
``flowkernel.futures``), so these tests mix waiting, callbacks, cancelling and
the standard library's ``wait``/``as_completed`` with completions on worker
threads, before and after the future is done.
"""

from __future__ import annotations

import concurrent.futures as cf
import logging
import threading
from typing import Any

import pytest
from _support import wait_until
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import flowkernel
from flowkernel.futures import AppFuture


@flowkernel.python_app
def wait_then(gate: threading.Event, value: Any) -> Any:
    if not gate.wait(30):
        raise RuntimeError("the test never opened the gate")
    return value


@flowkernel.python_app
def fail_after(gate: threading.Event) -> None:
    gate.wait(30)
    raise ValueError("boom")


def test_result_waits_and_times_out_before_the_task_ends(dfk) -> None:  # type: ignore[no-untyped-def]
    gate = threading.Event()
    future = wait_then(gate, 7)
    with pytest.raises(cf.TimeoutError):
        future.result(timeout=0.05)
    with pytest.raises(cf.TimeoutError):
        future.exception(timeout=0.05)
    assert not future.done() and not future.cancelled() and not future.running()
    gate.set()
    assert future.result(timeout=30) == 7
    assert future.exception() is None
    assert "state=finished returned int" in repr(future)


def test_a_failed_task_raises_its_exception_every_time(dfk) -> None:  # type: ignore[no-untyped-def]
    gate = threading.Event()
    future = fail_after(gate)
    gate.set()
    for _ in range(2):
        with pytest.raises(ValueError, match="boom"):
            future.result(timeout=30)
    assert isinstance(future.exception(), ValueError)
    assert "raised ValueError" in repr(future)


def test_callbacks_run_once_whether_added_before_or_after_completion(dfk) -> None:  # type: ignore[no-untyped-def]
    gate = threading.Event()
    future = wait_then(gate, "x")
    calls: list[tuple[str, Any]] = []
    future.add_done_callback(lambda f: calls.append(("before", f.result())))
    future.add_done_callback(lambda f: calls.append(("before 2", f.result())))
    gate.set()
    future.result(timeout=30)
    # Callbacks run on the worker after the result is set, as in concurrent.futures.
    wait_until(lambda: len(calls) == 2)
    future.add_done_callback(lambda f: calls.append(("after", f.result())))
    assert calls == [("before", "x"), ("before 2", "x"), ("after", "x")]


def test_a_raising_callback_is_logged_and_the_others_still_run(
    dfk, caplog: pytest.LogCaptureFixture
) -> None:  # type: ignore[no-untyped-def]
    gate = threading.Event()
    future = wait_then(gate, 1)
    seen: list[int] = []

    def bad(_f: cf.Future[Any]) -> None:
        raise RuntimeError("callback broke")

    future.add_done_callback(bad)
    future.add_done_callback(lambda f: seen.append(f.result()))
    with caplog.at_level(logging.ERROR, logger="flowkernel.futures"):
        gate.set()
        assert future.result(timeout=30) == 1
        wait_until(lambda: seen)
    assert seen == [1]
    assert any("exception calling callback" in r.getMessage() for r in caplog.records)


def test_cancel_of_a_waiting_task_wakes_waiters(dfk) -> None:  # type: ignore[no-untyped-def]
    gate = threading.Event()
    first = wait_then(gate, 1)
    second = wait_then(gate, first)
    woke: list[type[BaseException]] = []

    def waiter() -> None:
        try:
            second.result(timeout=30)
        except BaseException as exc:
            woke.append(type(exc))

    thread = threading.Thread(target=waiter)
    thread.start()
    assert second.cancel()
    thread.join(30)
    gate.set()
    assert woke == [cf.CancelledError]
    assert second.cancelled() and second.done()
    assert first.result(timeout=30) == 1


def test_stdlib_wait_and_as_completed_see_every_completion(dfk) -> None:  # type: ignore[no-untyped-def]
    gates = [threading.Event() for _ in range(20)]
    futures = [wait_then(g, i) for i, g in enumerate(gates)]
    done, not_done = cf.wait(futures, timeout=0.01)
    assert not done and len(not_done) == 20
    for gate in gates[:10]:
        gate.set()
    done, _ = cf.wait(futures[:10], timeout=30)
    assert {f.result() for f in done} == set(range(10))
    for gate in gates[10:]:
        gate.set()
    results = sorted(f.result() for f in cf.as_completed(futures, timeout=30))
    assert results == list(range(20))
    first = cf.wait(futures, return_when=cf.FIRST_COMPLETED, timeout=30)
    assert first.done


def test_many_threads_waiting_while_many_tasks_finish(dfk) -> None:  # type: ignore[no-untyped-def]
    """Waiters arrive before, during and after completion; none is missed."""
    gate = threading.Event()
    futures = [wait_then(gate, i) for i in range(200)]
    results: list[list[int]] = [[] for _ in range(8)]
    errors: list[BaseException] = []

    def reader(k: int) -> None:
        try:
            if k % 2:
                for f in futures[k::8]:
                    results[k].append(f.result(timeout=60))
            else:
                for f in cf.as_completed(futures[k::8], timeout=60):
                    results[k].append(f.result())
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=reader, args=(k,)) for k in range(8)]
    for i, thread in enumerate(threads):
        thread.start()
        if i == 3:
            gate.set()  # half the readers start before, half after the tasks can finish
    for thread in threads:
        thread.join(60)
    assert not errors
    for k in range(8):
        assert sorted(results[k]) == list(range(k, 200, 8))


_OPERATIONS = st.lists(
    st.sampled_from(["callback", "wait", "as_completed", "result", "done", "repr"]),
    min_size=1,
    max_size=12,
)


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(before=_OPERATIONS, after=_OPERATIONS, fail=st.booleans())
def test_any_mix_of_operations_around_completion(
    dfk, before: list[str], after: list[str], fail: bool
) -> None:  # type: ignore[no-untyped-def]
    """Whatever is done to a future before and after it completes, every
    callback runs exactly once and every waiter returns the task's outcome."""
    gate = threading.Event()
    future: AppFuture[Any] = fail_after(gate) if fail else wait_then(gate, 42)
    calls: list[int] = []
    threads: list[threading.Thread] = []
    outcomes: list[object] = []

    def apply(operation: str, index: int) -> None:
        if operation == "callback":
            future.add_done_callback(lambda _f, i=index: calls.append(i))
        elif operation in ("wait", "as_completed", "result"):

            def waiter() -> None:
                if operation == "wait":
                    cf.wait([future], timeout=60)
                elif operation == "as_completed":
                    list(cf.as_completed([future], timeout=60))
                outcomes.append(future.exception(timeout=60) or future.result(timeout=60))

            thread = threading.Thread(target=waiter)
            thread.start()
            threads.append(thread)
        elif operation == "done":
            future.done()
        else:
            repr(future)

    for i, operation in enumerate(before):
        apply(operation, i)
    gate.set()
    for i, operation in enumerate(after, start=len(before)):
        apply(operation, i)
    for thread in threads:
        thread.join(60)
    future.exception(timeout=60)
    expected = [i for i, op in enumerate(before + after) if op == "callback"]
    wait_until(lambda: len(calls) >= len(expected))
    assert sorted(calls) == expected
    assert len(outcomes) == len(threads)
    for outcome in outcomes:
        assert isinstance(outcome, ValueError) if fail else outcome == 42
