"""stdout= and stderr= on bash and python apps, AUTO_LOGNAME and std_autopath."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest
from _support import WAIT

import flowkernel
from flowkernel import AUTO_LOGNAME, bash_app, python_app


@bash_app
def say(text: str, stdout=None, stderr=None) -> str:  # type: ignore[no-untyped-def]
    return f"echo {text}; echo {text}-err >&2"


def test_stdout_and_stderr_paths_receive_the_command_output(
    dfk: flowkernel.DataFlowKernel, tmp_path: Path
) -> None:
    out, err = tmp_path / "o.txt", tmp_path / "e.txt"
    future = say("hello", stdout=str(out), stderr=str(err))
    future.result(timeout=WAIT)
    assert out.read_text() == "hello\n"
    assert err.read_text() == "hello-err\n"
    assert future.stdout == str(out) and future.stderr == str(err)


def test_a_plain_path_appends_so_earlier_output_is_kept(
    dfk: flowkernel.DataFlowKernel, tmp_path: Path
) -> None:
    out = tmp_path / "o.txt"
    out.write_text("before\n")
    say("after", stdout=str(out)).result(timeout=WAIT)
    assert out.read_text() == "before\nafter\n"


def test_a_path_and_mode_w_truncates(dfk: flowkernel.DataFlowKernel, tmp_path: Path) -> None:
    out = tmp_path / "o.txt"
    out.write_text("old content\n")
    say("fresh", stdout=(str(out), "w")).result(timeout=WAIT)
    assert out.read_text() == "fresh\n"


def test_stdout_and_stderr_to_the_same_file_keep_both(
    dfk: flowkernel.DataFlowKernel, tmp_path: Path
) -> None:
    both = tmp_path / "both.txt"
    say("x", stdout=(str(both), "w"), stderr=(str(both), "w")).result(timeout=WAIT)
    assert sorted(both.read_text().splitlines()) == ["x", "x-err"]


def test_missing_parent_folders_of_a_stream_file_are_created(
    dfk: flowkernel.DataFlowKernel, tmp_path: Path
) -> None:
    out = tmp_path / "deep" / "er" / "o.txt"
    say("nested", stdout=str(out)).result(timeout=WAIT)
    assert out.read_text() == "nested\n"


def test_a_path_like_object_is_accepted(dfk: flowkernel.DataFlowKernel, tmp_path: Path) -> None:
    out = tmp_path / "o.txt"
    future = say("pathlike", stdout=out)
    future.result(timeout=WAIT)
    assert out.read_text() == "pathlike\n"
    assert future.stdout == str(out)


def test_auto_logname_puts_logs_under_the_run_directory(
    dfk: flowkernel.DataFlowKernel,
) -> None:
    future = say("auto", stdout=AUTO_LOGNAME, stderr=AUTO_LOGNAME)
    future.result(timeout=WAIT)
    tid = future.tid
    folder = os.path.join(dfk.run_dir, "task_logs", "0000")
    assert future.stdout == os.path.join(folder, f"task_{tid:04d}_say.stdout")
    assert future.stderr == os.path.join(folder, f"task_{tid:04d}_say.stderr")
    assert Path(future.stdout).read_text() == "auto\n"
    assert Path(future.stderr).read_text() == "auto-err\n"


def test_auto_logname_includes_the_label_keyword_when_given(
    dfk: flowkernel.DataFlowKernel,
) -> None:
    @bash_app
    def tagged(label: str, stdout=AUTO_LOGNAME) -> str:  # type: ignore[no-untyped-def]
        return f"echo {label}"

    future = tagged(label="sample7")
    future.result(timeout=WAIT)
    assert future.stdout is not None
    assert os.path.basename(future.stdout) == f"task_{future.tid:04d}_tagged_sample7.stdout"


def test_auto_logname_is_left_out_of_the_memo_key(dfk: flowkernel.DataFlowKernel) -> None:
    future = say("m", stdout=AUTO_LOGNAME)
    future.result(timeout=WAIT)
    assert "stdout" in future.task_record.ignore_for_cache
    assert "stderr" not in future.task_record.ignore_for_cache


def test_std_autopath_decides_where_auto_logs_go(config_factory, tmp_path: Path) -> None:
    logs = tmp_path / "mylogs"

    def autopath(task, stream):  # type: ignore[no-untyped-def]
        return str(logs / f"{task.func_name}-{task.id}.{stream}")

    with flowkernel.load(config_factory(std_autopath=autopath)):
        future = say("custom", stdout=AUTO_LOGNAME)
        future.result(timeout=WAIT)
    assert future.stdout == str(logs / f"say-{future.tid}.stdout")
    assert Path(future.stdout).read_text() == "custom\n"


@pytest.mark.parametrize(
    "spec",
    [3, ("only-a-path",), ("p", "w", "extra"), ("p", "r"), (3, "w"), ["p", "w"]],
    ids=["int", "one-tuple", "three-tuple", "read-mode", "int-path", "list"],
)
def test_a_bad_stream_spec_fails_the_future_with_bad_std_stream_file(
    dfk: flowkernel.DataFlowKernel, spec: object
) -> None:
    future = say("never", stdout=spec)
    with pytest.raises(flowkernel.BadStdStreamFile, match="stdout"):
        future.result(timeout=WAIT)
    assert future.task_status() == "failed"


def test_a_stream_file_that_cannot_be_opened_fails_with_bad_std_stream_file(
    dfk: flowkernel.DataFlowKernel, tmp_path: Path
) -> None:
    with pytest.raises(flowkernel.BadStdStreamFile, match="cannot open") as info:
        say("x", stdout=str(tmp_path)).result(timeout=WAIT)  # a directory
    assert isinstance(info.value.__cause__, OSError)


def test_a_raising_std_autopath_fails_the_task_and_names_std_autopath(
    config_factory,
) -> None:
    def autopath(task, stream):  # type: ignore[no-untyped-def]
        raise RuntimeError("disk quota")

    with flowkernel.load(config_factory(std_autopath=autopath)):
        with pytest.raises(flowkernel.BadStdStreamFile, match="std_autopath") as info:
            say("x", stdout=AUTO_LOGNAME).result(timeout=WAIT)
    assert isinstance(info.value.__cause__, RuntimeError)


def test_print_in_a_python_app_goes_to_its_stdout_file(
    dfk: flowkernel.DataFlowKernel, tmp_path: Path
) -> None:
    @python_app
    def chatty(n: int) -> int:
        print(f"working on {n}")
        import sys

        print(f"warning about {n}", file=sys.stderr)
        return n

    out, err = tmp_path / "py.out", tmp_path / "py.err"
    assert chatty(5, stdout=str(out), stderr=str(err)).result(timeout=WAIT) == 5
    assert out.read_text() == "working on 5\n"
    assert err.read_text() == "warning about 5\n"


def test_concurrent_python_apps_each_capture_only_their_own_output(
    dfk: flowkernel.DataFlowKernel, tmp_path: Path
) -> None:
    barrier = threading.Barrier(4, timeout=WAIT)

    @python_app
    def talk(n: int) -> None:
        barrier.wait()  # all four print at the same time on different threads
        for i in range(50):
            print(f"task{n} line{i}")

    futures = [talk(n, stdout=str(tmp_path / f"{n}.out")) for n in range(4)]
    for future in futures:
        future.result(timeout=WAIT)
    for n in range(4):
        lines = (tmp_path / f"{n}.out").read_text().splitlines()
        assert lines == [f"task{n} line{i}" for i in range(50)]


def test_a_python_app_that_declares_stdout_receives_the_path(
    dfk: flowkernel.DataFlowKernel,
) -> None:
    @python_app
    def where(stdout=AUTO_LOGNAME):  # type: ignore[no-untyped-def]
        return stdout

    future = where()
    assert future.result(timeout=WAIT) == future.stdout
    assert future.stdout is not None and future.stdout.endswith("_where.stdout")


def test_a_python_app_without_stream_parameters_can_still_be_redirected(
    dfk: flowkernel.DataFlowKernel, tmp_path: Path
) -> None:
    @python_app
    def plain() -> str:
        print("captured")
        return "ok"

    out = tmp_path / "plain.out"
    assert plain(stdout=str(out)).result(timeout=WAIT) == "ok"
    assert out.read_text() == "captured\n"


def test_futures_without_redirection_report_no_stream_paths(
    dfk: flowkernel.DataFlowKernel,
) -> None:
    @python_app
    def quiet() -> int:
        return 1

    future = quiet()
    future.result(timeout=WAIT)
    assert future.stdout is None and future.stderr is None
