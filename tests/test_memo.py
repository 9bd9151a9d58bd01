"""Memoization: identical calls of a cache=True app compute once."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import threading
from pathlib import Path
from typing import Any

import pytest
from _support import WAIT

import flowkernel
from flowkernel import python_app


class Counter:
    """Counts calls per argument, from any thread."""

    def __init__(self) -> None:
        self.calls: list[Any] = []
        self._lock = threading.Lock()

    def add(self, value: Any) -> None:
        with self._lock:
            self.calls.append(value)


def test_an_identical_call_is_answered_from_the_memo_table(dfk: flowkernel.DataFlowKernel) -> None:
    counter = Counter()

    @python_app(cache=True)
    def square(x: int) -> int:
        counter.add(x)
        return x * x

    first = square(7)
    assert first.result(timeout=WAIT) == 49
    second = square(7)
    assert second.result(timeout=WAIT) == 49
    assert counter.calls == [7]
    assert first.task_status() == "exec_done"
    assert second.task_status() == "memo_done"
    assert second.task_record.from_memo is True
    assert dfk.task_state_counts[flowkernel.States.memo_done] == 1


def test_different_arguments_are_computed_separately(dfk: flowkernel.DataFlowKernel) -> None:
    counter = Counter()

    @python_app(cache=True)
    def ident(x: Any) -> Any:
        counter.add(x)
        return x

    values: list[Any] = [1, 1.0, True, "1", b"1", (1,), [1], None]
    for value in values:
        assert ident(value).result(timeout=WAIT) == value
    assert len(counter.calls) == len(values)


def test_dict_key_order_and_set_order_do_not_change_the_key(
    dfk: flowkernel.DataFlowKernel,
) -> None:
    counter = Counter()

    @python_app(cache=True)
    def size(mapping: dict[str, int], tags: frozenset[str]) -> int:
        counter.add(1)
        return len(mapping) + len(tags)

    size({"a": 1, "b": 2}, frozenset({"x", "y", "z"})).result(timeout=WAIT)
    size({"b": 2, "a": 1}, frozenset({"z", "y", "x"})).result(timeout=WAIT)
    assert len(counter.calls) == 1


def test_apps_without_cache_always_run(dfk: flowkernel.DataFlowKernel) -> None:
    counter = Counter()

    @python_app
    def work(x: int) -> int:
        counter.add(x)
        return x

    work(1).result(timeout=WAIT)
    work(1).result(timeout=WAIT)
    assert counter.calls == [1, 1]


def test_config_app_cache_false_switches_memoization_off(config_factory) -> None:
    counter = Counter()

    @python_app(cache=True)
    def work(x: int) -> int:
        counter.add(x)
        return x

    with flowkernel.load(config_factory(app_cache=False)):
        work(1).result(timeout=WAIT)
        work(1).result(timeout=WAIT)
    assert counter.calls == [1, 1]


def test_ignore_for_cache_arguments_do_not_count(dfk: flowkernel.DataFlowKernel) -> None:
    counter = Counter()

    @python_app(cache=True, ignore_for_cache=["note"])
    def work(x: int, note: str = "") -> int:
        counter.add(x)
        return x

    work(1, note="first").result(timeout=WAIT)
    second = work(1, note="second")
    assert second.result(timeout=WAIT) == 1
    assert second.task_status() == "memo_done"
    assert counter.calls == [1]


def test_a_call_identical_to_a_running_one_waits_for_it_instead_of_running(
    dfk: flowkernel.DataFlowKernel,
) -> None:
    counter = Counter()
    started, release = threading.Event(), threading.Event()

    @python_app(cache=True)
    def slow(x: int) -> int:
        counter.add(x)
        started.set()
        assert release.wait(WAIT)
        return x + 100

    first = slow(1)
    assert started.wait(WAIT)
    second = slow(1)
    # The second stays pending while the first runs.
    assert not second.done()
    release.set()
    assert first.result(timeout=WAIT) == 101
    assert second.result(timeout=WAIT) == 101
    assert counter.calls == [1]
    assert second.task_status() == "memo_done"


def test_when_the_running_identical_task_fails_the_waiting_one_runs_itself(
    dfk: flowkernel.DataFlowKernel,
) -> None:
    counter = Counter()
    started, release = threading.Event(), threading.Event()

    @python_app(cache=True)
    def flaky(x: int) -> int:
        counter.add(x)
        if len(counter.calls) == 1:
            started.set()
            assert release.wait(WAIT)
            raise RuntimeError("first try breaks")
        return x

    first = flaky(5)
    assert started.wait(WAIT)
    second = flaky(5)
    release.set()
    with pytest.raises(RuntimeError, match="first try breaks"):
        first.result(timeout=WAIT)
    assert second.result(timeout=WAIT) == 5
    assert counter.calls == [5, 5]
    assert second.task_status() == "exec_done"


def test_failures_are_not_memoized(dfk: flowkernel.DataFlowKernel) -> None:
    counter = Counter()

    @python_app(cache=True)
    def fails_once(x: int) -> int:
        counter.add(x)
        if len(counter.calls) == 1:
            raise ValueError("once")
        return x

    with pytest.raises(ValueError):
        fails_once(1).result(timeout=WAIT)
    assert fails_once(1).result(timeout=WAIT) == 1
    assert counter.calls == [1, 1]


def test_an_argument_nothing_can_hash_fails_that_task_with_memo_key_error(
    dfk: flowkernel.DataFlowKernel,
) -> None:
    class Opaque:
        pass

    @python_app(cache=True)
    def takes(value: Any) -> str:
        return "ran"

    with pytest.raises(flowkernel.MemoKeyError, match="Opaque") as info:
        takes(Opaque()).result(timeout=WAIT)
    assert "flowkernel_id_for_memo" in str(info.value)
    assert "ignore_for_cache" in str(info.value)
    # Other tasks are not affected.
    assert takes(3).result(timeout=WAIT) == "ran"


def test_an_unhashable_argument_named_in_ignore_for_cache_is_fine(
    dfk: flowkernel.DataFlowKernel,
) -> None:
    @python_app(cache=True, ignore_for_cache=["handle"])
    def takes(x: int, handle: Any = None) -> int:
        return x

    assert takes(1, handle=object()).result(timeout=WAIT) == 1


def test_flowkernel_id_for_memo_from_a_flowconf_teaches_the_hasher_a_type(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, run_dir: str
) -> None:
    (tmp_path / "pyproject.toml").write_text("")
    (tmp_path / "flowconf.py").write_text(
        textwrap.dedent(
            """
            def flowkernel_id_for_memo(value, identify):
                if type(value).__name__ == "Sample":
                    # Only the sample's name matters, not its cached data.
                    return b"Sample:" + identify(value.name)
                return None
            """
        )
    )
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("FLOWKERNEL_NOCONF")

    class Sample:
        def __init__(self, name: str, data: object) -> None:
            self.name, self.data = name, data

    counter = Counter()

    @python_app(cache=True)
    def analyse(samples: list[Sample]) -> str:
        counter.add(1)
        return "+".join(s.name for s in samples)

    with flowkernel.load(flowkernel.Config(run_dir=run_dir)):
        # Sample sits inside a list: the default list handling asks the hook chain.
        assert analyse([Sample("a", object())]).result(timeout=WAIT) == "a"
        again = analyse([Sample("a", object())])
        assert again.result(timeout=WAIT) == "a"
        assert again.task_status() == "memo_done"
        assert analyse([Sample("b", object())]).result(timeout=WAIT) == "b"
    assert len(counter.calls) == 2


def test_flowkernel_memo_key_from_a_plugin_replaces_the_default(config_factory) -> None:
    class ByFirstArgument:
        @flowkernel.hookimpl
        def flowkernel_memo_key(self, task):  # type: ignore[no-untyped-def]
            return f"{task.func_name}:{task.args[0]}"

    counter = Counter()

    @python_app(cache=True)
    def work(x: int, salt: object) -> int:
        counter.add(x)
        return x

    with flowkernel.load(config_factory(plugins=[ByFirstArgument()])):
        work(1, object()).result(timeout=WAIT)  # object() would defeat the default
        second = work(1, object())
        assert second.result(timeout=WAIT) == 1
        assert second.task_status() == "memo_done"
    assert counter.calls == [1]


def test_flowkernel_memo_key_returning_none_leaves_the_task_uncached(config_factory) -> None:
    class NoOpinion:
        @flowkernel.hookimpl
        def flowkernel_memo_key(self, task):  # type: ignore[no-untyped-def]
            return None  # no opinion: the default decides

    counter = Counter()

    @python_app(cache=True)
    def work(x: int) -> int:
        counter.add(x)
        return x

    with flowkernel.load(config_factory(plugins=[NoOpinion()])):
        work(1).result(timeout=WAIT)
        work(1).result(timeout=WAIT)
    assert counter.calls == [1]  # the default still memoized


def _make_app(body: str) -> Any:
    """An app function named ``stage`` in module ``pipeline``, with the given body."""
    namespace: dict[str, Any] = {"__name__": "pipeline"}
    exec(compile(f"def stage(x):\n    {body}\n", "pipeline.py", "exec"), namespace)
    return namespace["stage"]


def test_editing_an_app_body_invalidates_its_cached_results(dfk: flowkernel.DataFlowKernel) -> None:
    old = python_app(cache=True)(_make_app("return x + 1"))
    new = python_app(cache=True)(_make_app("return x + 2"))
    same_as_old = python_app(cache=True)(_make_app("return x + 1"))
    assert old(1).result(timeout=WAIT) == 2
    edited = new(1)
    assert edited.result(timeout=WAIT) == 3
    assert edited.task_status() == "exec_done"
    unchanged = same_as_old(1)
    assert unchanged.result(timeout=WAIT) == 2
    assert unchanged.task_status() == "memo_done"


def test_memo_keys_are_the_same_in_every_process(tmp_path: Path) -> None:
    # Python salts str hashes per process; keys must not depend on that, or
    # checkpoints from one run would never match in the next.
    script = tmp_path / "key.py"
    script.write_text(
        textwrap.dedent(
            """
            import sys

            import flowkernel

            @flowkernel.python_app(cache=True)
            def stage(d, s):
                return 0

            with flowkernel.load(flowkernel.Config(run_dir=sys.argv[1], initialize_logging=False)):
                f = stage({"b": 1, "a": {"x", "y", "z"}}, frozenset({"p", "q", "r"}))
                f.result(timeout=30)
                print(f.task_record.hashsum)
            """
        )
    )
    keys = set()
    for seed in ("1", "2", "3"):
        env = dict(os.environ, PYTHONHASHSEED=seed)
        out = subprocess.run(
            [sys.executable, str(script), str(tmp_path / "runinfo")],
            env=env,
            capture_output=True,
            text=True,
            timeout=WAIT,
        )
        assert out.returncode == 0, out.stderr
        keys.add(out.stdout.strip())
    assert len(keys) == 1 and len(keys.pop()) == 64
