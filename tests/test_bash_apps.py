"""Bash apps: the body returns a command line; the task runs it in a shell."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from _support import WAIT

import flowkernel
from flowkernel import bash_app


@bash_app
def run(command: str) -> str:
    return command


def test_a_command_that_exits_zero_gives_result_zero(dfk: flowkernel.DataFlowKernel) -> None:
    assert run("true").result(timeout=WAIT) == 0


def test_the_command_really_runs_in_bash(dfk: flowkernel.DataFlowKernel, tmp_path: Path) -> None:
    target = tmp_path / "out.txt"
    # [[ ]] and $'...' are bash, not POSIX sh.
    run(f"[[ 1 -lt 2 ]] && echo $'a\\tb' > {target}").result(timeout=WAIT)
    assert target.read_text() == "a\tb\n"


def test_a_nonzero_exit_fails_with_bash_exit_failure_naming_app_and_code(
    dfk: flowkernel.DataFlowKernel,
) -> None:
    @bash_app
    def compile_step() -> str:
        return "exit 3"

    with pytest.raises(flowkernel.BashExitFailure) as info:
        compile_step().result(timeout=WAIT)
    assert info.value.exitcode == 3
    assert info.value.app_name == "compile_step"
    assert "compile_step" in str(info.value) and "3" in str(info.value)


def test_a_body_returning_none_fails_with_bash_app_no_return(
    dfk: flowkernel.DataFlowKernel,
) -> None:
    @bash_app
    def forgot_return() -> None:
        "echo hello"

    with pytest.raises(flowkernel.BashAppNoReturn, match="forgot_return"):
        forgot_return().result(timeout=WAIT)


def test_a_body_returning_a_non_string_fails_with_app_bad_formatting(
    dfk: flowkernel.DataFlowKernel,
) -> None:
    @bash_app
    def returns_list() -> list[str]:
        return ["echo", "hello"]

    with pytest.raises(flowkernel.AppBadFormatting, match=r"returns_list.*list"):
        returns_list().result(timeout=WAIT)


def test_a_body_that_fails_to_format_its_command_gives_app_bad_formatting(
    dfk: flowkernel.DataFlowKernel,
) -> None:
    @bash_app
    def picks(items: list[str]) -> str:
        return f"echo {items[5]}"

    with pytest.raises(flowkernel.AppBadFormatting, match="IndexError") as info:
        picks(["a"]).result(timeout=WAIT)
    assert isinstance(info.value.__cause__, IndexError)


def test_other_exceptions_from_the_body_reach_the_future_unchanged(
    dfk: flowkernel.DataFlowKernel,
) -> None:
    @bash_app
    def refuses() -> str:
        raise PermissionError("no licence for this tool")

    with pytest.raises(PermissionError, match="no licence"):
        refuses().result(timeout=WAIT)


def test_the_command_gets_no_stdin_so_it_cannot_wait_for_input(
    dfk: flowkernel.DataFlowKernel, tmp_path: Path
) -> None:
    target = tmp_path / "read.txt"
    run(f"cat > {target}").result(timeout=WAIT)
    assert target.read_text() == ""


def test_a_missing_declared_output_fails_with_missing_outputs(
    dfk: flowkernel.DataFlowKernel, tmp_path: Path
) -> None:
    made, missing = tmp_path / "made.txt", tmp_path / "never.txt"

    @bash_app
    def produce(outputs: list[str] = []) -> str:  # noqa: B006 - Parsl's outputs= idiom
        return f"touch {outputs[0]}"

    with pytest.raises(flowkernel.MissingOutputs) as info:
        produce(outputs=[str(made), str(missing)]).result(timeout=WAIT)
    assert [os.fspath(out) for out in info.value.outputs] == [str(missing)]
    assert made.exists()


def test_declared_outputs_that_exist_let_the_task_succeed(
    dfk: flowkernel.DataFlowKernel, tmp_path: Path
) -> None:
    @bash_app
    def produce(outputs: list[str] = []) -> str:  # noqa: B006 - Parsl's outputs= idiom
        return " && ".join(f"echo x > {o}" for o in outputs)

    paths = [str(tmp_path / f"{i}.txt") for i in range(3)]
    assert produce(outputs=paths).result(timeout=WAIT) == 0
    assert all(os.path.exists(p) for p in paths)


def test_arguments_that_are_futures_reach_the_body_as_values(
    dfk: flowkernel.DataFlowKernel, tmp_path: Path
) -> None:
    @flowkernel.python_app
    def word() -> str:
        return "resolved"

    target = tmp_path / "w.txt"

    @bash_app
    def write(text: str) -> str:
        return f"echo {text} > {target}"

    write(word()).result(timeout=WAIT)
    assert target.read_text() == "resolved\n"


def test_a_bash_app_failing_twice_then_succeeding_is_retried_to_success(
    config_factory, tmp_path: Path
) -> None:
    counter = tmp_path / "tries"
    counter.write_text("0")

    @bash_app
    def flaky() -> str:
        # Each run adds one to the counter file; the first two runs fail.
        return f'n=$(( $(cat {counter}) + 1 )); echo $n > {counter}; [ "$n" -ge 3 ]'

    with flowkernel.load(config_factory(retries=2)):
        future = flaky()
        assert future.result(timeout=WAIT) == 0
    assert counter.read_text().strip() == "3"
    assert future.task_record.fail_count == 2


def test_a_bash_app_that_keeps_failing_ends_with_its_last_exit_failure(
    config_factory, tmp_path: Path
) -> None:
    counter = tmp_path / "tries"

    @bash_app
    def always_fails() -> str:
        return f"echo x >> {counter}; exit 7"

    with flowkernel.load(config_factory(retries=2)):
        with pytest.raises(flowkernel.BashExitFailure) as info:
            always_fails().result(timeout=WAIT)
    assert info.value.exitcode == 7
    assert len(counter.read_text().splitlines()) == 3


def test_flowkernel_task_state_changed_reports_every_transition_of_a_bash_app(
    config_factory, tmp_path: Path
) -> None:
    seen: list[tuple[str, str, str]] = []

    class Observer:
        @flowkernel.hookimpl
        def flowkernel_task_state_changed(self, task, old, new):  # type: ignore[no-untyped-def]
            seen.append((task.func_name, old.name, new.name))

    counter = tmp_path / "tries"
    counter.write_text("0")

    @bash_app
    def once_flaky() -> str:
        return f'n=$(( $(cat {counter}) + 1 )); echo $n > {counter}; [ "$n" -ge 2 ]'

    with flowkernel.load(config_factory(retries=1, plugins=[Observer()])):
        once_flaky().result(timeout=WAIT)
    assert [(old, new) for name, old, new in seen if name == "once_flaky"] == [
        ("unsched", "pending"),
        ("pending", "launched"),
        ("launched", "fail_retryable"),
        ("fail_retryable", "pending"),
        ("pending", "launched"),
        ("launched", "exec_done"),
    ]
