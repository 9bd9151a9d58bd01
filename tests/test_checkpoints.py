"""Checkpoints: results saved per mode, reused by later runs, safe against a killed process."""

from __future__ import annotations

import json
import logging
import os
import pickle
import signal
import stat
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from _support import WAIT

import flowkernel
from flowkernel import python_app
from flowkernel.plugins.pickle_checkpoints import PickleCheckpointStore

calls: list[int] = []
_calls_lock = threading.Lock()


@python_app(cache=True)
def square(x: int) -> int:
    with _calls_lock:
        calls.append(x)
    return x * x


@pytest.fixture(autouse=True)
def _reset_calls() -> None:
    calls.clear()


def _records(checkpoint_dir: str) -> dict[str, Any]:
    store = PickleCheckpointStore(os.path.dirname(checkpoint_dir))
    return store.load([checkpoint_dir])


def _checkpoint_dir(kernel: flowkernel.DataFlowKernel) -> str:
    return os.path.join(kernel.run_dir, "checkpoint")


def test_task_exit_writes_each_result_before_its_future_completes(config_factory) -> None:
    with flowkernel.load(config_factory(checkpoint_mode="task_exit")) as kernel:
        for x in range(5):
            future = square(x)
            future.result(timeout=WAIT)
            # Ordered completion: the record is on disk once the future is done.
            assert future.task_record.hashsum in _records(_checkpoint_dir(kernel))
    assert sorted(_records(_checkpoint_dir(kernel)).values()) == [0, 1, 4, 9, 16]


def test_checkpoint_folder_and_file_are_readable_by_their_owner_only(config_factory) -> None:
    with flowkernel.load(config_factory(checkpoint_mode="task_exit")) as kernel:
        square(3).result(timeout=WAIT)
    folder = _checkpoint_dir(kernel)
    assert stat.S_IMODE(os.stat(folder).st_mode) == 0o700
    assert stat.S_IMODE(os.stat(os.path.join(folder, "tasks.pkl")).st_mode) == 0o600


def test_dfk_exit_writes_everything_at_cleanup(config_factory) -> None:
    kernel = flowkernel.load(config_factory(checkpoint_mode="dfk_exit"))
    for x in range(3):
        square(x).result(timeout=WAIT)
    assert _records(_checkpoint_dir(kernel)) == {}
    kernel.cleanup()
    assert sorted(_records(_checkpoint_dir(kernel)).values()) == [0, 1, 4]


def test_manual_mode_writes_only_when_asked(config_factory) -> None:
    kernel = flowkernel.load(config_factory(checkpoint_mode="manual"))
    square(2).result(timeout=WAIT)
    square(3).result(timeout=WAIT)
    assert _records(_checkpoint_dir(kernel)) == {}
    assert kernel.checkpoint() == 2
    assert sorted(_records(_checkpoint_dir(kernel)).values()) == [4, 9]
    assert kernel.checkpoint() == 0  # nothing new
    square(4).result(timeout=WAIT)
    kernel.cleanup()
    # Manual means manual: cleanup does not write the unsaved result.
    assert sorted(_records(_checkpoint_dir(kernel)).values()) == [4, 9]


def test_periodic_mode_writes_on_its_period_without_cleanup(config_factory) -> None:
    kernel = flowkernel.load(
        config_factory(checkpoint_mode="periodic", checkpoint_period="00:00:01")
    )
    square(6).result(timeout=WAIT)
    deadline = time.monotonic() + WAIT
    while not _records(_checkpoint_dir(kernel)) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert list(_records(_checkpoint_dir(kernel)).values()) == [36]
    square(7).result(timeout=WAIT)
    kernel.cleanup()  # and once more at cleanup
    assert sorted(_records(_checkpoint_dir(kernel)).values()) == [36, 49]


@pytest.mark.parametrize("period", ["1:00", "00:60:00", "soon", "00:00:00", "-1:00:00"])
def test_a_bad_checkpoint_period_is_a_configuration_error_naming_the_field(
    period: str,
) -> None:
    with pytest.raises(flowkernel.ConfigurationError, match="checkpoint_period"):
        flowkernel.Config(checkpoint_mode="periodic", checkpoint_period=period)


def test_periodic_mode_without_a_period_is_a_configuration_error() -> None:
    with pytest.raises(flowkernel.ConfigurationError, match="checkpoint_period"):
        flowkernel.Config(checkpoint_mode="periodic")


def test_an_unknown_checkpoint_mode_is_rejected_naming_the_field() -> None:
    with pytest.raises(Exception, match="checkpoint_mode"):
        flowkernel.Config(checkpoint_mode="sometimes")  # type: ignore[arg-type]


def test_checkpoint_without_a_mode_says_what_to_set(dfk: flowkernel.DataFlowKernel) -> None:
    with pytest.raises(flowkernel.ConfigurationError, match="checkpoint_mode"):
        dfk.checkpoint()


def test_a_later_run_reuses_checkpointed_results_without_computing(
    config_factory, run_dir: str
) -> None:
    with flowkernel.load(config_factory(checkpoint_mode="task_exit")):
        for x in range(4):
            square(x).result(timeout=WAIT)
    assert sorted(calls) == [0, 1, 2, 3]
    calls.clear()
    checkpoints = flowkernel.get_all_checkpoints(run_dir)
    assert len(checkpoints) == 1
    with flowkernel.load(config_factory(checkpoint_files=checkpoints)):
        futures = [square(x) for x in range(6)]
        assert [f.result(timeout=WAIT) for f in futures] == [0, 1, 4, 9, 16, 25]
        assert [f.task_status() for f in futures] == ["memo_done"] * 4 + ["exec_done"] * 2
    assert sorted(calls) == [4, 5]


def test_get_all_and_last_checkpoints_list_runs_in_order(config_factory, run_dir: str) -> None:
    assert flowkernel.get_all_checkpoints(run_dir) == []
    assert flowkernel.get_last_checkpoint(run_dir) == []
    kernels = []
    for x in range(3):
        with flowkernel.load(config_factory(checkpoint_mode="task_exit")) as kernel:
            square(x).result(timeout=WAIT)
        kernels.append(kernel)
    with flowkernel.load(config_factory()):  # a run without checkpoints
        pass
    expected = [os.path.abspath(_checkpoint_dir(k)) for k in kernels]
    assert flowkernel.get_all_checkpoints(run_dir) == expected
    assert flowkernel.get_last_checkpoint(run_dir) == expected[-1:]


def test_a_torn_last_record_is_skipped_with_a_warning(
    config_factory, run_dir: str, caplog: pytest.LogCaptureFixture
) -> None:
    with flowkernel.load(config_factory(checkpoint_mode="task_exit")) as kernel:
        for x in range(5):
            square(x).result(timeout=WAIT)
    path = Path(_checkpoint_dir(kernel)) / "tasks.pkl"
    data = path.read_bytes()
    path.write_bytes(data[:-7])  # as if killed in the middle of the last write
    calls.clear()
    caplog.set_level(logging.WARNING)
    with flowkernel.load(config_factory(checkpoint_files=[_checkpoint_dir(kernel)])):
        assert [square(x).result(timeout=WAIT) for x in range(5)] == [0, 1, 4, 9, 16]
    assert len(calls) == 1  # only the torn record's task ran again
    assert any("incomplete or corrupt" in r.getMessage() for r in caplog.records)


def test_garbage_after_good_records_keeps_the_good_ones(tmp_path: Path) -> None:
    folder = tmp_path / "checkpoint"
    folder.mkdir()
    good = b"".join(
        pickle.dumps({"hash": f"k{i}", "exception": None, "result": i}) for i in range(3)
    )
    (folder / "tasks.pkl").write_bytes(good + b"\x80\x04garbage that is not a pickle")
    assert _records(str(folder)) == {"k0": 0, "k1": 1, "k2": 2}


def test_a_result_that_cannot_be_pickled_is_delivered_and_the_warning_names_the_task(
    config_factory, caplog: pytest.LogCaptureFixture
) -> None:
    @python_app(cache=True)
    def make_lock(x: int) -> Any:
        return threading.Lock()

    caplog.set_level(logging.WARNING)
    with flowkernel.load(config_factory(checkpoint_mode="task_exit")) as kernel:
        future = make_lock(1)
        lock = future.result(timeout=WAIT)
        assert hasattr(lock, "acquire")
        assert square(2).result(timeout=WAIT) == 4
    messages = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any(f"task {future.tid} (make_lock)" in m and "pickled" in m for m in messages)
    assert list(_records(_checkpoint_dir(kernel)).values()) == [4]


def test_flowkernel_checkpoint_store_from_a_plugin_replaces_the_pickle_store(
    config_factory, tmp_path: Path
) -> None:
    journal = tmp_path / "journal.jsonl"

    class JsonLinesStore:
        def load(self, sources):  # type: ignore[no-untyped-def]
            results = {}
            for source in sources:
                for line in Path(source).read_text().splitlines():
                    record = json.loads(line)
                    results[record["key"]] = record["result"]
            return results

        def write(self, records):  # type: ignore[no-untyped-def]
            with journal.open("a") as out:
                for key, result, _task in records:
                    out.write(json.dumps({"key": key, "result": result}) + "\n")
            return len(records)

        def close(self) -> None:
            pass

    class JsonPlugin:
        @flowkernel.hookimpl
        def flowkernel_checkpoint_store(self, config, run_dir):  # type: ignore[no-untyped-def]
            return JsonLinesStore()

    with flowkernel.load(config_factory(checkpoint_mode="task_exit", plugins=[JsonPlugin()])):
        square(8).result(timeout=WAIT)
    assert [json.loads(line)["result"] for line in journal.read_text().splitlines()] == [64]
    calls.clear()
    with flowkernel.load(
        config_factory(checkpoint_files=[str(journal)], plugins=[JsonPlugin()])
    ) as kernel:
        assert square(8).result(timeout=WAIT) == 64
    assert calls == []
    assert not os.path.exists(_checkpoint_dir(kernel))


def test_the_checkpoints_command_lists_checkpoints_and_their_sizes(
    config_factory, run_dir: str
) -> None:
    with flowkernel.load(config_factory(checkpoint_mode="task_exit")) as kernel:
        for x in range(3):
            square(x).result(timeout=WAIT)
    out = subprocess.run(
        [sys.executable, "-m", "flowkernel", "checkpoints", run_dir, "--json"],
        capture_output=True,
        text=True,
        timeout=WAIT,
    )
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout) == [
        {"checkpoint": os.path.abspath(_checkpoint_dir(kernel)), "results": 3}
    ]
    text = subprocess.run(
        [sys.executable, "-m", "flowkernel", "checkpoints", kernel.run_dir],
        capture_output=True,
        text=True,
        timeout=WAIT,
    )
    assert text.returncode == 0 and "3 result(s)" in text.stdout


_WORKFLOW = textwrap.dedent(
    """
    import os, sys, time
    import flowkernel

    run_dir, ran_log, n = sys.argv[1], sys.argv[2], int(sys.argv[3])

    @flowkernel.python_app(cache=True)
    def step(x):
        # Record that the body ran, in one append, then do some "work".
        fd = os.open(ran_log, os.O_WRONLY | os.O_APPEND | os.O_CREAT)
        os.write(fd, f"{x}\\n".encode())
        os.close(fd)
        time.sleep(0.01)
        return x * 3

    config = flowkernel.Config(
        run_dir=run_dir,
        checkpoint_mode="task_exit",
        checkpoint_files=flowkernel.get_all_checkpoints(run_dir),
        executors=[flowkernel.ThreadPoolExecutor(max_threads=2)],
    )
    with flowkernel.load(config):
        results = [step(x).result() for x in range(n)]
    print(sum(results))
    """
)


@pytest.mark.parametrize("kill_after", [5, 40, 120])
def test_a_run_killed_with_sigkill_resumes_without_recomputing_checkpointed_results(
    tmp_path: Path, kill_after: int
) -> None:
    n = 150
    script = tmp_path / "workflow.py"
    script.write_text(_WORKFLOW)
    run_dir, ran_log = tmp_path / "runinfo", tmp_path / "ran.log"
    args = [sys.executable, str(script), str(run_dir), str(ran_log), str(n)]

    victim = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + WAIT
    while time.monotonic() < deadline:
        if ran_log.exists() and len(ran_log.read_text().splitlines()) >= kill_after:
            break
        time.sleep(0.005)
    victim.send_signal(signal.SIGKILL)
    victim.wait(timeout=WAIT)
    assert victim.returncode == -signal.SIGKILL

    saved = {}
    for folder in flowkernel.get_all_checkpoints(str(run_dir)):
        saved.update(_records(folder))
    first_run = [int(x) for x in ran_log.read_text().split()]
    assert len(saved) >= 1
    assert len(saved) <= len(set(first_run)) < n

    ran_log.write_text("")
    resumed = subprocess.run(args, capture_output=True, text=True, timeout=WAIT * 2)
    assert resumed.returncode == 0, resumed.stderr
    assert int(resumed.stdout) == sum(x * 3 for x in range(n))
    second_run = [int(x) for x in ran_log.read_text().split()]
    # Every saved result was reused (none of those bodies ran again), and every
    # other task ran exactly once.
    assert len(second_run) == len(set(second_run)) == n - len(saved)
    assert set(saved.values()).isdisjoint(x * 3 for x in second_run)
