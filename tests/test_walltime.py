"""walltime=: a task that runs too long fails with AppTimeout, and a bash command is killed."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from _support import WAIT

import flowkernel
from flowkernel import bash_app, python_app


def _gone(pid: int) -> bool:
    """True once no live process has this pid (a zombie awaiting its reaper counts as gone)."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] == "Z"
    except FileNotFoundError:
        return True


def _wait_until_gone(pids: list[int]) -> list[int]:
    deadline = time.monotonic() + WAIT
    while time.monotonic() < deadline:
        alive = [pid for pid in pids if not _gone(pid)]
        if not alive:
            return []
        time.sleep(0.05)
    return alive


def test_a_bash_app_past_its_walltime_fails_with_app_timeout_and_is_killed(
    dfk: flowkernel.DataFlowKernel, tmp_path: Path
) -> None:
    pids = tmp_path / "pids"

    @bash_app
    def stuck(walltime: float = 1.0) -> str:
        # The shell and a child it started both record their pids, then wait.
        return f"sleep 300 & echo $$ $! > {pids}; wait"

    with pytest.raises(flowkernel.AppTimeout, match=r"stuck.*walltime"):
        stuck().result(timeout=WAIT)
    recorded = [int(p) for p in pids.read_text().split()]
    assert len(recorded) == 2
    assert _wait_until_gone(recorded) == []


def test_walltime_given_at_call_time_applies_to_a_bash_app(
    dfk: flowkernel.DataFlowKernel,
) -> None:
    @bash_app
    def sleeper(seconds: int) -> str:
        return f"sleep {seconds}"

    with pytest.raises(flowkernel.AppTimeout):
        sleeper(300, walltime=0.5).result(timeout=WAIT)
    assert sleeper(0, walltime=WAIT).result(timeout=WAIT) == 0


def test_a_command_that_ignores_sigterm_is_still_killed(
    dfk: flowkernel.DataFlowKernel, tmp_path: Path
) -> None:
    pids = tmp_path / "pids"

    @bash_app
    def stubborn(walltime: float = 0.5) -> str:
        return f"trap '' TERM; echo $$ > {pids}; while true; do sleep 0.1; done"

    with pytest.raises(flowkernel.AppTimeout):
        stubborn().result(timeout=WAIT)
    assert _wait_until_gone([int(pids.read_text())]) == []


def test_a_python_app_past_its_walltime_fails_with_app_timeout(
    dfk: flowkernel.DataFlowKernel,
) -> None:
    @python_app
    def spin(walltime: float = 0.5) -> None:
        while True:
            time.sleep(0.01)

    with pytest.raises(flowkernel.AppTimeout, match=r"spin.*walltime"):
        spin().result(timeout=WAIT)


def test_the_body_of_a_timed_out_python_app_is_stopped(
    dfk: flowkernel.DataFlowKernel,
) -> None:
    ticks: list[int] = []

    @python_app
    def counting(walltime: float = 0.3) -> None:
        while True:
            ticks.append(1)
            time.sleep(0.01)

    with pytest.raises(flowkernel.AppTimeout):
        counting().result(timeout=WAIT)
    # The body's thread gets AppTimeout raised inside it, so the count stops growing.
    deadline = time.monotonic() + WAIT
    while time.monotonic() < deadline:
        before = len(ticks)
        time.sleep(0.2)
        if len(ticks) == before:
            break
    assert len(ticks) == before


def test_a_python_app_within_its_walltime_returns_normally(
    dfk: flowkernel.DataFlowKernel,
) -> None:
    @python_app
    def quick(x: int, walltime: float = WAIT) -> int:
        return x * 2

    assert quick(21).result(timeout=WAIT) == 42


def test_an_exception_inside_a_python_app_with_walltime_reaches_the_future(
    dfk: flowkernel.DataFlowKernel,
) -> None:
    @python_app
    def broken(walltime: float = WAIT) -> None:
        raise KeyError("the real problem")

    with pytest.raises(KeyError, match="the real problem"):
        broken().result(timeout=WAIT)


def test_a_timed_out_task_is_retried_like_any_failure(config_factory, tmp_path: Path) -> None:
    counter = tmp_path / "tries"
    counter.write_text("0")

    @bash_app
    def slow_first(walltime: float = 0.5) -> str:
        # The first try hangs; the second finishes at once.
        return f'n=$(( $(cat {counter}) + 1 )); echo $n > {counter}; [ "$n" -ge 2 ] || sleep 300'

    with flowkernel.load(config_factory(retries=1)):
        future = slow_first()
        assert future.result(timeout=WAIT) == 0
    assert future.task_record.fail_count == 1
    assert "AppTimeout" in future.task_record.fail_history[0]


def test_a_task_that_always_times_out_fails_after_its_retries(config_factory) -> None:
    calls: list[int] = []

    @python_app
    def hangs(walltime: float = 0.2) -> None:
        calls.append(1)
        time.sleep(300)

    with flowkernel.load(config_factory(retries=2)):
        future = hangs()
        with pytest.raises(flowkernel.AppTimeout):
            future.result(timeout=WAIT)
    assert len(calls) == 3
    assert future.task_record.fail_count == 3


def test_walltime_is_passed_to_a_body_that_declares_it(dfk: flowkernel.DataFlowKernel) -> None:
    @python_app
    def budget(walltime: float = 12.5) -> float:
        return walltime

    assert budget().result(timeout=WAIT) == 12.5
