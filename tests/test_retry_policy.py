"""Per-app retry budgets and RetryPolicy: which failures, how many, how long between tries."""

from __future__ import annotations

import threading
import time

import pytest
from _support import WAIT

import flowkernel
from flowkernel import RetryPolicy, python_app


class Flaky:
    """Fails with the given exceptions in turn, then returns "ok"; records try times."""

    def __init__(self, *failures: BaseException) -> None:
        self.failures = list(failures)
        self.times: list[float] = []
        self.lock = threading.Lock()

    def __call__(self) -> str:
        with self.lock:
            self.times.append(time.monotonic())
            if self.failures:
                raise self.failures.pop(0)
        return "ok"


def test_app_retries_override_the_config(config_factory) -> None:
    flaky = Flaky(ValueError(), ValueError(), ValueError())
    app = python_app(retries=3)(flaky)
    with flowkernel.load(config_factory(retries=0)):
        future = app()
        assert future.result(timeout=WAIT) == "ok"
    assert len(flaky.times) == 4
    assert future.task_record.fail_count == 3


def test_app_retries_zero_overrides_a_generous_config(config_factory) -> None:
    flaky = Flaky(ValueError("once"))
    app = python_app(retries=0)(flaky)
    with flowkernel.load(config_factory(retries=5)):
        with pytest.raises(ValueError, match="once"):
            app().result(timeout=WAIT)
    assert len(flaky.times) == 1


def test_a_policy_retries_only_the_exception_types_it_names(config_factory) -> None:
    policy = RetryPolicy(count=5, retry_on=(ConnectionError,))
    retried = Flaky(ConnectionError(), ConnectionError())
    not_retried = Flaky(KeyError("bad input"), KeyError("bad input"))
    with flowkernel.load(config_factory()):
        assert python_app(retry_policy=policy)(retried)().result(timeout=WAIT) == "ok"
        with pytest.raises(KeyError):
            python_app(retry_policy=policy)(not_retried)().result(timeout=WAIT)
    assert len(retried.times) == 3
    assert len(not_retried.times) == 1


def test_a_config_policy_applies_to_apps_without_their_own(config_factory) -> None:
    flaky = Flaky(OSError(), OSError())
    with flowkernel.load(config_factory(retry_policy=RetryPolicy(count=2))):
        assert python_app(flaky)().result(timeout=WAIT) == "ok"
    assert len(flaky.times) == 3


def test_waits_between_tries_grow_with_backoff(config_factory) -> None:
    flaky = Flaky(OSError(), OSError(), OSError())
    policy = RetryPolicy(count=3, delay=0.1, backoff=2.0, jitter=0.0)
    with flowkernel.load(config_factory()):
        assert python_app(retry_policy=policy)(flaky)().result(timeout=WAIT) == "ok"
    gaps = [b - a for a, b in zip(flaky.times, flaky.times[1:], strict=False)]
    # Lower bounds only: a slow machine makes gaps longer, never shorter.
    assert gaps[0] >= 0.1 and gaps[1] >= 0.2 and gaps[2] >= 0.4


def test_a_retry_wait_blocks_no_thread_other_tasks_run_meanwhile(config_factory) -> None:
    flaky = Flaky(OSError())
    done_meanwhile = threading.Event()

    @python_app
    def other() -> None:
        done_meanwhile.set()

    policy = RetryPolicy(count=1, delay=WAIT / 2, jitter=0.0)
    executor = flowkernel.ThreadPoolExecutor(max_threads=1)
    with flowkernel.load(config_factory(executors=[executor])) as kernel:
        slow_retry = python_app(retry_policy=policy)(flaky)()
        while slow_retry.task_status() != "fail_retryable":
            time.sleep(0.01)
        other().result(timeout=WAIT)  # the only executor thread is free
        assert done_meanwhile.is_set()
        assert not slow_retry.done()
        slow_retry.cancel()
        assert kernel.wait_for_current_tasks(timeout=WAIT) == []


def test_retry_handler_costs_still_apply_under_a_policy(config_factory) -> None:
    flaky = Flaky(OSError(), OSError(), OSError())

    def costly(exception: BaseException, task: object) -> float:
        return 2.0  # each failure spends two of the policy's four

    with flowkernel.load(config_factory(retry_handler=costly)):
        with pytest.raises(OSError):
            python_app(retry_policy=RetryPolicy(count=4))(flaky)().result(timeout=WAIT)
    assert len(flaky.times) == 3


@pytest.mark.parametrize(
    "field, value",
    [("count", -1), ("delay", -0.5), ("backoff", 0.5), ("max_delay", -1), ("jitter", 1.5)],
)
def test_a_policy_value_out_of_range_names_the_field(field: str, value: float) -> None:
    with pytest.raises(flowkernel.ConfigurationError, match=f"RetryPolicy.{field}"):
        RetryPolicy(**{field: value})  # type: ignore[arg-type]


def test_a_policy_field_of_the_wrong_type_is_rejected_naming_it() -> None:
    with pytest.raises(Exception, match="delay"):
        RetryPolicy(delay="soon")  # type: ignore[arg-type]
