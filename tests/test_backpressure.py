"""Config(max_pending_tasks=N): submitting blocks while N tasks are unfinished."""

from __future__ import annotations

import threading

import pytest
from _support import WAIT

import flowkernel
from flowkernel import join_app, python_app


def test_submitting_blocks_at_the_limit_and_resumes_when_a_task_finishes(
    config_factory,
) -> None:
    gates = [threading.Event() for _ in range(3)]

    @python_app
    def hold(i: int) -> int:
        assert gates[i].wait(WAIT)
        return i

    @python_app
    def quick() -> str:
        return "late"

    submitted = threading.Event()
    late: list[flowkernel.AppFuture[str]] = []

    def submit_one_more() -> None:
        late.append(quick())
        submitted.set()

    with flowkernel.load(config_factory(max_pending_tasks=3)):
        held = [hold(i) for i in range(3)]
        submitter = threading.Thread(target=submit_one_more)
        submitter.start()
        assert not submitted.wait(0.3)  # at the limit: the fourth submit waits
        gates[1].set()
        assert held[1].result(timeout=WAIT) == 1
        assert submitted.wait(WAIT)  # one finished, so it went through
        for gate in gates:
            gate.set()
        assert late[0].result(timeout=WAIT) == "late"
        submitter.join(WAIT)


def test_join_bodies_may_submit_beyond_the_limit_without_deadlock(config_factory) -> None:
    @python_app
    def leaf(x: int) -> int:
        return x

    @join_app
    def fan(n: int) -> list[flowkernel.AppFuture[int]]:
        return [leaf(i) for i in range(n)]

    with flowkernel.load(config_factory(max_pending_tasks=2)):
        assert [f.result(timeout=WAIT) for f in [fan(5), fan(5)]] == [[0, 1, 2, 3, 4]] * 2


def test_every_task_ending_releases_its_slot_including_failures(config_factory) -> None:
    @python_app
    def fails() -> None:
        raise RuntimeError("x")

    @python_app
    def after(x: None) -> None:
        return None

    with flowkernel.load(config_factory(max_pending_tasks=2)):
        for _ in range(20):  # would block for good if a failure kept its slot
            bad = fails()
            dependent = after(bad)
            with pytest.raises(flowkernel.DependencyError):
                dependent.result(timeout=WAIT)


def test_a_limit_below_one_is_a_configuration_error() -> None:
    with pytest.raises(flowkernel.ConfigurationError, match="max_pending_tasks"):
        flowkernel.Config(max_pending_tasks=0)
