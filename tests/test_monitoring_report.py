"""Monitoring store, run report and progress display (contrib plugins built on state hooks)."""

from __future__ import annotations

import functools
import json
import logging
import os
import pty
import select
import shutil
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from _support import WAIT
from hypothesis import given, settings
from hypothesis import strategies as st

import flowkernel
from flowkernel import python_app
from flowkernel.contrib import monitoring, monitoring_writer
from flowkernel.contrib.report import load_run, render_html, timeline_png, write_report


def _workflow(config_factory, **fields) -> flowkernel.DataFlowKernel:  # type: ignore[no-untyped-def]
    """Seven tasks: two memo hits, one retried, one failure and the dependent it takes down."""
    tries: list[int] = []

    @python_app(cache=True)
    def square(x: int) -> int:
        return x * x

    @python_app
    def flaky() -> str:
        tries.append(1)
        if len(tries) == 1:
            raise OSError("first try fails")
        return "ok"

    @python_app
    def broken() -> int:
        raise ValueError("always")

    @python_app
    def add(a: int, b: int) -> int:
        return a + b

    with flowkernel.load(config_factory(retries=1, **fields)) as kernel:
        first = square(3)
        first.result(timeout=WAIT)
        hits = [square(3) for _ in range(2)]
        assert [h.result(timeout=WAIT) for h in hits] == [9, 9]
        assert flaky().result(timeout=WAIT) == "ok"
        assert add(first, hits[0]).result(timeout=WAIT) == 18
        with pytest.raises(flowkernel.DependencyError):
            add(broken(), 1).result(timeout=WAIT)
    return kernel


def test_the_monitoring_database_records_the_workflow_and_every_transition(
    config_factory,
) -> None:
    kernel = _workflow(config_factory, monitoring=True)
    db = sqlite3.connect(os.path.join(kernel.run_dir, "monitoring.db"))
    run_id, tasks, counts, ended = db.execute(
        "SELECT run_id, tasks, counts, ended FROM workflow"
    ).fetchone()
    assert run_id == kernel.run_id and tasks == 7 and ended is not None
    assert json.loads(counts) == {"exec_done": 3, "memo_done": 2, "failed": 1, "dep_fail": 1}
    rows = db.execute(
        "SELECT app, depends, fail_count, from_memo FROM task ORDER BY task_id"
    ).fetchall()
    assert [r[0] for r in rows] == ["square", "square", "square", "flaky", "add", "broken", "add"]
    by_app: dict[str, list[tuple[str, int, int]]] = {}
    for app, depends, fails, memo in rows:
        by_app.setdefault(app, []).append((depends, fails, memo))
    assert sorted(m for _, _, m in by_app["square"]) == [0, 1, 1]
    assert by_app["flaky"] == [("", 1, 0)]
    assert by_app["broken"] == [("", 2, 0)]  # failed, retried once, failed again
    assert [d for d, _, _ in by_app["add"]] == ["0,1", "5"]
    states = [
        s for (s,) in db.execute(
            "SELECT state FROM transition t JOIN task k USING (run_id, task_id) "
            "WHERE k.app = 'flaky' ORDER BY at"
        )
    ]  # fmt: skip
    assert states == ["pending", "launched", "fail_retryable", "pending", "launched", "exec_done"]
    # The task whose input failed never launched: its row says so, not an older time.
    assert db.execute(
        "SELECT pending > 0, launched, joining, ended >= pending "
        "FROM tries WHERE state = 'dep_fail'"
    ).fetchall() == [(1, None, None, 1)]


def test_every_try_of_many_concurrent_tasks_is_recorded_in_order(config_factory) -> None:
    @python_app
    def inc(x: int) -> int:
        return x + 1

    @flowkernel.join_app
    def fan(n: int) -> list[flowkernel.AppFuture]:
        return [inc(i) for i in range(n)]

    with flowkernel.load(config_factory(monitoring=True)) as kernel:
        futures = [inc(i) for i in range(2000)]
        joined = fan(3)
        assert [f.result(timeout=WAIT) for f in futures] == list(range(1, 2001))
        assert joined.result(timeout=WAIT) == [1, 2, 3]
    db = sqlite3.connect(os.path.join(kernel.run_dir, "monitoring.db"))
    (tasks,) = db.execute("SELECT count(*) FROM task WHERE app = 'inc'").fetchone()
    assert tasks == 2003
    out_of_order = db.execute(
        "SELECT count(*) FROM tries WHERE app = 'inc' AND NOT "
        "coalesce(0 < pending AND pending <= launched AND launched <= ended, 0)"
    ).fetchone()[0]
    assert out_of_order == 0
    states = [s for (s,) in db.execute(
        "SELECT state FROM transition t JOIN task k USING (run_id, task_id) "
        "WHERE k.app = 'fan' ORDER BY at"
    )]  # fmt: skip
    assert states == ["pending", "launched", "joining", "exec_done"]


def test_a_chain_of_an_unnamed_callable_is_recorded_with_its_inputs_and_times(
    config_factory,
) -> None:
    def scale(x: int, factor: int) -> int:
        return x * factor

    double = python_app(functools.partial(scale, factor=2))  # no __name__
    with flowkernel.load(config_factory(monitoring=True)) as kernel:
        futures = [double(1)]
        for _ in range(3):
            futures.append(double(futures[-1]))
        assert futures[-1].result(timeout=WAIT) == 16
        records = {f.tid: f.task_record for f in futures}
        ended = {tid: record.time_returned for tid, record in records.items()}
    db = sqlite3.connect(os.path.join(kernel.run_dir, "monitoring.db"))
    rows = db.execute(
        "SELECT task_id, try_id, app, executor, state, depends, fail_count, fail_history, "
        "from_memo, joining, pending <= launched AND launched <= ended, ended "
        "FROM tries ORDER BY task_id"
    ).fetchall()
    ids = [f.tid for f in futures]
    assert [r[:11] for r in rows] == [
        (tid, 0, "partial", "threads", "exec_done", inputs, 0, "[]", 0, None, 1)
        for tid, inputs in zip(ids, ["", *map(str, ids[:-1])], strict=True)
    ]
    assert [r[11] for r in rows] == [ended[tid] for tid in ids]


@settings(max_examples=60, deadline=None)
@given(
    rows=st.integers(min_value=0, max_value=1500),
    # A kernel names its run with a uuid; any text SQL can hold (no NUL, no lone surrogate) works.
    run_id=st.text(
        st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"),
        min_size=1,
        max_size=12,
    ),
)
def test_the_writer_inserts_every_row_once_in_order_for_any_batch_size(
    rows: int, run_id: str
) -> None:
    # Batches are cut into statements of a power of two of rows; the run id is
    # written into each statement as a literal, so quotes must survive.
    db = sqlite3.connect(":memory:")
    db.executescript(monitoring.SCHEMA)
    values: list[object] = []
    for i in range(rows):
        values += [i, "app", "threads", 1.0, 2.0, 3.0, 4.0 + i]
    monitoring_writer.insert(db, run_id, monitoring._DONE_ROW, values)
    got = db.execute(
        "SELECT task_id, ended, state, depends FROM try_log WHERE run_id = ? ORDER BY rowid",
        (run_id,),
    ).fetchall()
    assert got == [(i, 4.0 + i, "exec_done", "") for i in range(rows)]
    assert db.execute("SELECT count(*) FROM try_log").fetchone() == (rows,)


def test_without_its_writer_process_the_recorder_writes_every_try_itself_and_says_why(
    config_factory, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    # An "interpreter" that exits at once: the writer process is gone long
    # before the first batch (a quarter second later) is sent to it.
    monkeypatch.setattr(sys, "executable", shutil.which("false") or "/bin/false")

    @python_app
    def inc(x: int) -> int:
        return x + 1

    with caplog.at_level(logging.ERROR, logger="flowkernel.contrib.monitoring"):
        with flowkernel.load(config_factory(monitoring=True)) as kernel:
            assert [inc(i).result(timeout=WAIT) for i in range(50)] == list(range(1, 51))
    db = sqlite3.connect(os.path.join(kernel.run_dir, "monitoring.db"))
    assert db.execute("SELECT count(*) FROM tries").fetchone() == (50,)
    assert db.execute("SELECT tasks, ended IS NOT NULL FROM workflow").fetchone() == (50, 1)
    (message,) = [r.getMessage() for r in caplog.records]
    assert "writer process" in message and "stopped early" in message and "exit code 1" in message


@pytest.mark.skipif(not hasattr(signal, "SIGINT") or os.name != "posix", reason="POSIX signals")
def test_an_interrupt_from_the_terminal_does_not_stop_the_writer_process(
    config_factory, caplog: pytest.LogCaptureFixture
) -> None:
    # Ctrl-C reaches every process of the terminal's foreground group.
    @python_app
    def inc(x: int) -> int:
        return x + 1

    with caplog.at_level(logging.ERROR, logger="flowkernel.contrib.monitoring"):
        with flowkernel.load(config_factory(monitoring=True)) as kernel:
            (recorder,) = [
                plugin
                for name, plugin in kernel.plugins.pm.list_name_plugin()
                if name.startswith("monitoring-recorder")
            ]
            first = [inc(i) for i in range(20)]
            assert [f.result(timeout=WAIT) for f in first] == list(range(1, 21))
            time.sleep(0.5)  # the writer process is up and has had a batch
            os.kill(recorder._child.pid, signal.SIGINT)
            later = [inc(i) for i in range(30)]
            assert [f.result(timeout=WAIT) for f in later] == list(range(1, 31))
    assert caplog.records == []
    db = sqlite3.connect(os.path.join(kernel.run_dir, "monitoring.db"))
    assert db.execute("SELECT count(*) FROM tries").fetchone() == (50,)


def test_a_run_with_forked_workers_ends_with_its_tries_written(tmp_path: Path) -> None:
    # Forked workers hold a copy of the writer process's input pipe, so the
    # writer cannot wait for the pipe to close: cleanup must still end.
    script = tmp_path / "forked.py"
    script.write_text(
        textwrap.dedent(
            """
            import sqlite3, sys
            import flowkernel

            def square(x):
                return x * x

            pool = flowkernel.make_executor("processes", max_workers=2, start_method="fork")
            config = flowkernel.Config(
                executors=[pool],
                run_dir=sys.argv[1],
                monitoring=True,
            )
            with flowkernel.load(config) as kernel:
                app = flowkernel.python_app(square)
                assert sum(app(i).result() for i in range(20)) == 2470
            db = sqlite3.connect(kernel.run_dir + "/monitoring.db")
            print(db.execute("SELECT count(*) FROM tries WHERE state = 'exec_done'").fetchone()[0])
            """
        )
    )
    done = subprocess.run(
        [sys.executable, str(script), str(tmp_path / "runs")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["20"]


def test_two_runs_into_one_database_keep_their_own_rows(config_factory, tmp_path: Path) -> None:
    shared = str(tmp_path / "runs.db")
    first = _workflow(config_factory, monitoring=shared)
    second = _workflow(config_factory, monitoring=shared)
    db = sqlite3.connect(shared)
    counts = dict(db.execute("SELECT run_id, count(*) FROM task GROUP BY run_id").fetchall())
    assert counts == {first.run_id: 7, second.run_id: 7}
    assert load_run(shared, first.run_id).workflow["run_id"] == first.run_id


def test_monitoring_to_a_chosen_path_and_not_at_all_by_default(
    config_factory, tmp_path: Path
) -> None:
    chosen = tmp_path / "store" / "flows.db"
    kernel = _workflow(config_factory, monitoring=str(chosen))
    assert chosen.exists()
    assert not os.path.exists(os.path.join(kernel.run_dir, "monitoring.db"))
    plain = _workflow(config_factory)
    assert not os.path.exists(os.path.join(plain.run_dir, "monitoring.db"))
    assert not any(name.startswith("monitoring-recorder") for name in plain.plugins.infos)


def test_a_database_of_another_layout_is_left_alone_with_an_error_naming_it(
    config_factory, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    old = tmp_path / "old.db"
    db = sqlite3.connect(old)
    db.execute("CREATE TABLE tries (run_id TEXT, task_id INTEGER)")
    db.execute("INSERT INTO tries VALUES ('earlier', 1)")
    db.commit()
    db.close()
    with caplog.at_level(logging.ERROR):
        kernel = _workflow(config_factory, monitoring=str(old))
    assert kernel.task_state_counts[flowkernel.States.exec_done] == 3  # the run went on
    assert f"monitoring database {old} has layout 0" in caplog.text
    db = sqlite3.connect(old)
    assert db.execute("SELECT * FROM tries").fetchall() == [("earlier", 1)]
    assert db.execute("SELECT count(*) FROM sqlite_master").fetchone() == (1,)
    assert db.execute("PRAGMA journal_mode").fetchone() == ("delete",)  # not switched to WAL


def test_the_report_holds_the_runs_numbers(config_factory, tmp_path: Path) -> None:
    kernel = _workflow(config_factory, monitoring=True)
    html_path, png_path = write_report(kernel.run_dir, png=True)
    page = Path(html_path).read_text()
    assert kernel.run_id in page
    assert '<td id="task-count">7</td>' in page
    assert "dep_fail: 1, exec_done: 3, failed: 1, memo_done: 2" in page
    # per app: tasks, failed, retries, memo hits
    assert "<tr><td>square</td><td>3</td><td>0</td><td>0</td><td>2</td>" in page
    assert "<tr><td>flaky</td><td>1</td><td>0</td><td>1</td><td>0</td>" in page
    assert "<tr><td>broken</td><td>1</td><td>1</td><td>1</td><td>0</td>" in page
    assert page.count("<svg") == 2 and "http://" not in page.replace(
        'xmlns="http://www.w3.org/2000/svg"', ""
    )
    png = Path(png_path).read_bytes()
    assert png.startswith(b"\x89PNG\r\n\x1a\n") and len(png) > 100


def test_the_report_command_writes_the_page(config_factory, tmp_path: Path) -> None:
    kernel = _workflow(config_factory, monitoring=True)
    out = subprocess.run(
        [sys.executable, "-m", "flowkernel", "report", str(Path(kernel.run_dir).parent), "--png"],
        capture_output=True,
        text=True,
        timeout=WAIT,
    )
    assert out.returncode == 0, out.stderr
    written = out.stdout.split()
    assert written[0].endswith("report.html") and written[1].endswith(".png")
    missing = subprocess.run(
        [sys.executable, "-m", "flowkernel", "report", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=WAIT,
    )
    assert missing.returncode == 1 and "monitoring=True" in missing.stderr


def test_the_timeline_png_is_a_valid_image_for_an_empty_run(config_factory) -> None:
    with flowkernel.load(config_factory(monitoring=True)) as kernel:
        pass
    run = load_run(os.path.join(kernel.run_dir, "monitoring.db"))
    assert run.attempts == [] and "No task ran" in render_html(run)
    assert timeline_png(run).startswith(b"\x89PNG")


def _chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        if shutil.which(name):
            return shutil.which(name)
    return None


def test_the_report_opens_in_headless_chromium_offline_without_errors(
    config_factory, tmp_path: Path
) -> None:
    browser = _chromium()
    if browser is None:
        pytest.skip("chromium is not installed here (.ci/run installs Debian's chromium)")
    kernel = _workflow(config_factory, monitoring=True)
    (html_path,) = write_report(kernel.run_dir)
    out = subprocess.run(
        [
            browser, "--headless", "--no-sandbox", "--disable-gpu", "--enable-logging=stderr",
            "--host-resolver-rules=MAP * ~NOTFOUND", f"--user-data-dir={tmp_path / 'profile'}",
            "--dump-dom", f"file://{html_path}",
        ],
        capture_output=True,
        text=True,
        timeout=WAIT * 2,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr[-2000:]
    assert "flowkernel run report" in out.stdout and out.stdout.count("<svg") == 2
    console = [line for line in out.stderr.splitlines() if "CONSOLE" in line]
    assert console == []


def test_the_progress_display_renders_in_a_terminal(tmp_path: Path) -> None:
    script = tmp_path / "flow.py"
    script.write_text(
        textwrap.dedent(
            """
            import flowkernel

            @flowkernel.python_app
            def measure(x):
                return x

            with flowkernel.load(flowkernel.Config(progress=True, run_dir="runinfo")):
                print(sum(f.result() for f in [measure(i) for i in range(12)]))
            """
        )
    )
    master, slave = pty.openpty()
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLOWKERNEL_")}
    env["COLUMNS"] = "100"
    process = subprocess.Popen(
        [sys.executable, str(script)], cwd=tmp_path, stdout=slave, stderr=slave, env=env
    )
    os.close(slave)
    output = b""
    while True:
        ready, _, _ = select.select([master], [], [], WAIT)
        if not ready:
            break
        try:
            chunk = os.read(master, 65536)
        except OSError:
            break
        if not chunk:
            break
        output += chunk
    assert process.wait(timeout=WAIT) == 0
    text = output.decode(errors="replace")
    assert "measure" in text and "done" in text and "pending" in text
    assert "│ measure │       0 │       0 │   12 │      0 │" in text
    assert "66\r\n" in text


def test_the_progress_display_stays_silent_when_output_is_not_a_terminal(
    tmp_path: Path,
) -> None:
    script = tmp_path / "flow.py"
    script.write_text(
        "import flowkernel\n"
        "@flowkernel.python_app\n"
        "def one():\n    return 1\n"
        "with flowkernel.load(flowkernel.Config(run_dir='runinfo')):\n"
        "    print(one().result())\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLOWKERNEL_")}
    env["FLOWKERNEL_PROGRESS"] = "1"
    out = subprocess.run(
        [sys.executable, str(script)], cwd=tmp_path, env=env, capture_output=True, text=True,
        timeout=WAIT,
    )  # fmt: skip
    assert out.returncode == 0 and out.stdout == "1\n"
