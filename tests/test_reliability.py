"""The kernel keeps its promises when things go wrong: random graphs, faulty executors, load."""

from __future__ import annotations

import inspect
import os
import stat
import subprocess
import sys
import textwrap
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from pathlib import Path
from typing import Any

import pytest
from _support import WAIT
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import flowkernel
from flowkernel import join_app, python_app

# -- Random graphs against a sequential evaluation ------------------------------------


class Boom(Exception):
    """The failure a node is told to raise."""


@st.composite
def graphs(draw: st.DrawFn) -> list[dict[str, Any]]:
    """Nodes in topological order: inputs among earlier nodes, a kind, failures, flags."""
    size = draw(st.integers(min_value=1, max_value=200))
    nodes = []
    for i in range(size):
        inputs = draw(st.lists(st.integers(0, i - 1), max_size=6, unique=True)) if i else []
        nodes.append(
            {
                "inputs": inputs,
                "kind": draw(st.sampled_from(["python", "python", "join"])),
                "fails": draw(st.integers(0, 3)),  # tries that raise before success
                "retries": draw(st.integers(0, 2)),
                "cache": draw(st.booleans()),
            }
        )
    return nodes


def _expected(nodes: list[dict[str, Any]]) -> list[Any]:
    """Evaluate the graph in plain Python: a value, or the exception type expected."""
    out: list[Any] = []
    for i, node in enumerate(nodes):
        if any(isinstance(out[j], type) for j in node["inputs"]):
            out.append(flowkernel.DependencyError)
        elif node["fails"] > node["retries"]:
            out.append(flowkernel.JoinError if node["kind"] == "join" else Boom)
        else:
            out.append(i + sum(out[j] for j in node["inputs"]))
    return out


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(nodes=graphs())
def test_every_future_of_a_random_graph_resolves_to_the_sequential_answer(
    config_factory, nodes: list[dict[str, Any]]
) -> None:
    attempts: dict[int, int] = {}
    lock = threading.Lock()

    def body(i: int, fails: int, parts: Sequence[int]) -> int:
        with lock:
            attempts[i] = attempts.get(i, 0) + 1
            attempt = attempts[i]
        if attempt <= fails:
            raise Boom(f"node {i} try {attempt}")
        return i + sum(parts)

    def leaf(i: int, fails: int, *parts: int) -> int:
        return body(i, fails, parts)

    def joined(i: int, fails: int, *parts: int) -> Future[int]:
        @python_app
        def inner() -> int:
            return body(i, fails, parts)

        return inner()

    apps: dict[tuple[str, bool, int], Any] = {}

    def app_for(kind: str, cache: bool, retries: int) -> Any:
        key = (kind, cache, retries)
        if key not in apps:
            if kind == "join":
                apps[key] = join_app(retries=retries)(joined)
            else:
                apps[key] = python_app(cache=cache, retries=retries)(leaf)
        return apps[key]

    executor = flowkernel.ThreadPoolExecutor(max_threads=4)
    futures: list[Future[Any]] = []
    with flowkernel.load(config_factory(executors=[executor])) as kernel:
        for i, node in enumerate(nodes):
            deps = [futures[j] for j in node["inputs"]]
            if node["kind"] == "join":
                # A join app retries its body, not the inner task, whose failure
                # is final: give joins no retries so "fails" means what it says.
                node["retries"] = 0
            app = app_for(node["kind"], node["cache"], node["retries"])
            futures.append(app(i, node["fails"], *deps))
        assert kernel.wait_for_current_tasks(timeout=WAIT) == []
        counts = dict(kernel.task_state_counts)
    for future, expected in zip(futures, _expected(nodes), strict=True):
        assert future.done()
        if isinstance(expected, type):
            assert isinstance(future.exception(), expected), (future.exception(), expected)
        else:
            assert future.result() == expected
    final = sum(
        counts[s]
        for s in (
            flowkernel.States.exec_done,
            flowkernel.States.memo_done,
            flowkernel.States.failed,
            flowkernel.States.dep_fail,
        )
    )
    assert final == sum(counts.values())  # nothing left in flight


# -- Faulty executors ------------------------------------------------------------------


class RefusingExecutor(flowkernel.Executor):
    """Its submit always raises, as a broken connection to a cluster would."""

    label = "refusing"

    def submit(
        self,
        func: Callable[..., Any],
        resource_specification: dict[str, Any],
        *args: Any,
        **kwargs: Any,
    ) -> Future[Any]:
        raise ConnectionError("scheduler unreachable")

    def shutdown(self) -> None:
        pass

    @property
    def outstanding(self) -> int:
        return 0


class BlackHoleExecutor(flowkernel.Executor):
    """Accepts tasks and never completes them."""

    label = "blackhole"

    def __init__(self) -> None:
        self.futures: list[Future[Any]] = []

    def submit(
        self,
        func: Callable[..., Any],
        resource_specification: dict[str, Any],
        *args: Any,
        **kwargs: Any,
    ) -> Future[Any]:
        future: Future[Any] = Future()
        self.futures.append(future)
        return future

    def shutdown(self) -> None:
        pass

    @property
    def outstanding(self) -> int:
        return len(self.futures)


def test_an_executor_whose_submit_raises_fails_the_task_after_its_retries(
    config_factory,
) -> None:
    @python_app(executors=["refusing"])
    def doomed() -> int:
        return 1

    @python_app(executors=["threads"])
    def fine() -> int:
        return 2

    threads = flowkernel.ThreadPoolExecutor(label="threads")
    with flowkernel.load(config_factory(executors=[RefusingExecutor(), threads], retries=2)):
        future = doomed()
        with pytest.raises(ConnectionError, match="unreachable"):
            future.result(timeout=WAIT)
        assert future.task_record.fail_count == 3
        assert fine().result(timeout=WAIT) == 2


def test_tasks_an_executor_never_completes_are_reported_not_waited_for_forever(
    config_factory,
) -> None:
    hole = BlackHoleExecutor()

    @python_app(executors=["blackhole"])
    def lost() -> int:
        return 1

    kernel = flowkernel.load(config_factory(executors=[hole]))
    futures = [lost() for _ in range(3)]
    assert kernel.wait_for_current_tasks(timeout=0.5) == sorted(f.tid for f in futures)
    kernel.cleanup()
    for future in futures:
        with pytest.raises(flowkernel.KernelShutdownError, match="never reported back"):
            future.result(timeout=WAIT)


# -- Load ------------------------------------------------------------------------------


@pytest.mark.slow
def test_eight_threads_submitting_concurrently_with_cross_dependencies(config_factory) -> None:
    per_thread = 12_500  # 100,000 tasks in all
    launches: list[int] = []
    seen_lock = threading.Lock()

    class CountLaunches:
        @flowkernel.hookimpl
        def flowkernel_task_state_changed(self, task, old, new):  # type: ignore[no-untyped-def]
            if new is flowkernel.States.launched:
                with seen_lock:
                    launches.append(task.id)

    @python_app
    def add(a: int, b: int = 0) -> int:
        return a + b

    shared: list[Future[int]] = [add(0) for _ in range(0)]
    results: dict[int, list[Future[int]]] = {}
    start = threading.Barrier(8, timeout=WAIT)

    def producer(n: int) -> None:
        start.wait()
        mine: list[Future[int]] = []
        for k in range(per_thread):
            if k % 100 == 0 and shared:
                mine.append(add(1, shared[-1]))  # depends on another thread's task
            else:
                mine.append(add(1))
            if k % 1000 == 0:
                shared.append(mine[-1])
        results[n] = mine

    executor = flowkernel.ThreadPoolExecutor(max_threads=4)
    with flowkernel.load(config_factory(executors=[executor], plugins=[CountLaunches()])) as k:
        threads = [threading.Thread(target=producer, args=(n,)) for n in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(WAIT * 4)
        assert k.wait_for_current_tasks(timeout=WAIT * 4) == []
        counts = dict(k.task_state_counts)
    futures = [f for mine in results.values() for f in mine]
    assert len(futures) == 8 * per_thread
    assert all(f.done() and f.exception() is None for f in futures)
    assert len(launches) == len(set(launches)) == 8 * per_thread  # none launched twice
    assert counts[flowkernel.States.exec_done] == 8 * per_thread


# -- Security ------------------------------------------------------------------------------


def test_a_checkpoint_others_can_write_is_refused_unless_trusted(
    config_factory, run_dir: str
) -> None:
    @python_app(cache=True)
    def value(x: int) -> int:
        return x

    with flowkernel.load(config_factory(checkpoint_mode="task_exit")) as kernel:
        value(1).result(timeout=WAIT)
    folder = Path(kernel.run_dir) / "checkpoint"
    os.chmod(folder, 0o777)  # as if left in a shared scratch space
    with pytest.raises(flowkernel.ConfigurationError, match="trust_shared_checkpoints"):
        flowkernel.load(config_factory(checkpoint_files=[str(folder)]))
    flowkernel.clear()
    with flowkernel.load(
        config_factory(checkpoint_files=[str(folder)], trust_shared_checkpoints=True)
    ):
        reused = value(1)
        assert reused.result(timeout=WAIT) == 1
        assert reused.task_status() == "memo_done"
    assert stat.S_IMODE(os.stat(folder).st_mode) == 0o777


def test_everything_a_run_writes_stays_inside_its_run_directory(
    config_factory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    work = tmp_path / "cwd"
    work.mkdir()
    monkeypatch.chdir(work)

    @python_app(cache=True)
    def value(x: int, stdout: Any = flowkernel.AUTO_LOGNAME) -> int:
        print(x)
        return x

    run_root = tmp_path / "runs"
    with flowkernel.load(config_factory(run_dir=str(run_root), checkpoint_mode="task_exit")):
        assert value(3).result(timeout=WAIT) == 3
    assert list(work.iterdir()) == []
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cwd", "runs"]


# -- No network unless asked ------------------------------------------------------------------


def test_a_workflow_without_remote_files_opens_no_network_connection(tmp_path: Path) -> None:
    script = tmp_path / "offline.py"
    script.write_text(
        textwrap.dedent(
            """
            import sys

            connections = []

            def audit(event, args):
                if event in ("socket.connect", "socket.getaddrinfo", "urllib.Request"):
                    connections.append((event, args))

            sys.addaudithook(audit)

            import flowkernel

            @flowkernel.python_app(cache=True)
            def work(x):
                return x + 1

            @flowkernel.bash_app
            def shell(outputs=()):
                return f"echo hi > {outputs[0]}"

            config = flowkernel.Config(run_dir="runinfo", checkpoint_mode="task_exit")
            with flowkernel.load(config):
                assert work(1).result(timeout=30) == 2
                shell(outputs=[flowkernel.File("out.txt")]).result(timeout=30)
            print(connections)
            """
        )
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLOWKERNEL_")}
    out = subprocess.run(
        [sys.executable, str(script)], cwd=tmp_path, env=env, capture_output=True, text=True,
        timeout=WAIT,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


@pytest.mark.parametrize(
    "field",
    [
        name
        for name, parameter in inspect.signature(flowkernel.Config).parameters.items()
        if "object" not in str(parameter.annotation) and "Callable" not in str(parameter.annotation)
    ],
)
def test_every_config_field_given_a_wrong_type_names_the_field(field: str) -> None:
    class Wrong:
        pass

    with pytest.raises(flowkernel.ConfigurationTypeError, match=f'"{field}"'):
        flowkernel.Config(**{field: Wrong()})
