"""Where plugins come from, how they are blocked and replaced, and what observers see.

Sources other than flowconf files: modules named in ``FLOWKERNEL_PLUGINS``,
``Config(plugins=[...])`` (objects or module paths), blocking by name with
``Config(disable_plugins=[...])`` and ``FLOWKERNEL_DISABLE_PLUGINS``; the merged
``flowkernel_executor_kinds``; a replacement dependency resolver; the lifecycle
and transition observers; tracing; and lazy loading.
"""

from __future__ import annotations

import itertools
import sys
import textwrap
import threading
from collections.abc import Callable
from concurrent.futures import Future
from pathlib import Path
from typing import Any

import pytest
from _support import WAIT, run_isolated

import flowkernel
from flowkernel import hookspecs, python_app
from flowkernel.pluginmanager import Plugins, build_plugins
from flowkernel.states import FINAL_STATES, TRANSITIONS, States


def _write_module(folder: Path, name: str, text: str) -> Path:
    path = folder / f"{name}.py"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text).lstrip("\n"))
    return path


@pytest.fixture
def plugin_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A folder on ``sys.path`` to write plugin modules into."""
    folder = tmp_path / "site_plugins"
    folder.mkdir()
    monkeypatch.syspath_prepend(str(folder))
    return folder


@python_app
def flaky_until(counter: list[int], succeed_on: int, error: type[Exception] = TimeoutError) -> int:
    """Fails until its ``succeed_on``-th try; returns how many tries ran."""
    counter.append(1)
    if len(counter) < succeed_on:
        raise error(f"try {len(counter)}")
    return len(counter)


@python_app
def thread_name() -> str:
    return threading.current_thread().name


def _two_thread_pools() -> list[flowkernel.Executor]:
    return [
        flowkernel.ThreadPoolExecutor(label="left", thread_name_prefix="left"),
        flowkernel.ThreadPoolExecutor(label="right", thread_name_prefix="right"),
    ]


# ---------------------------------------------------------------------------
# FLOWKERNEL_PLUGINS
# ---------------------------------------------------------------------------


def test_flowkernel_retry_cost_from_a_flowkernel_plugins_module_prices_failures(
    plugin_dir: Path, monkeypatch: pytest.MonkeyPatch, config_factory: Callable[..., Any]
) -> None:
    _write_module(
        plugin_dir,
        "lab_retry_policy",
        """
        def flowkernel_retry_cost(exception, task):
            return 0.0 if isinstance(exception, TimeoutError) else None
        """,
    )
    monkeypatch.setenv("FLOWKERNEL_PLUGINS", "lab_retry_policy")
    with flowkernel.load(config_factory(retries=1)) as kernel:
        assert kernel.plugins.infos["lab_retry_policy"].source == "FLOWKERNEL_PLUGINS"
        assert flaky_until([], 5).result(timeout=WAIT) == 5  # four free retries
        with pytest.raises(ValueError):  # other errors keep the default cost of 1
            flaky_until([], 5, ValueError).result(timeout=WAIT)


def test_flowkernel_plugins_lists_several_modules_and_the_later_one_is_asked_first(
    plugin_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("site_a", "site_b"):
        _write_module(plugin_dir, name, "def flowkernel_retry_cost(exception, task):\n    pass\n")
    monkeypatch.setenv("FLOWKERNEL_PLUGINS", " site_a , site_b,")
    plugins = build_plugins(flowkernel.Config())
    assert plugins.implementers("flowkernel_retry_cost") == ["site_b", "site_a", "retries"]


def test_flowkernel_plugins_modules_load_with_autoload_switched_off(
    plugin_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _write_module(plugin_dir, "asked_by_name", "def flowkernel_kernel_started(kernel):\n    pass\n")
    monkeypatch.setenv("FLOWKERNEL_DISABLE_PLUGIN_AUTOLOAD", "1")
    monkeypatch.setenv("FLOWKERNEL_PLUGINS", "asked_by_name")
    assert "asked_by_name" in build_plugins(flowkernel.Config()).infos


def test_a_flowkernel_plugins_module_that_fails_to_import_is_named_with_its_error(
    plugin_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _write_module(plugin_dir, "half_done", "import json\nraise ImportError('needs numpy')\n")
    monkeypatch.setenv("FLOWKERNEL_PLUGINS", "half_done")
    with pytest.raises(flowkernel.PluginLoadError) as info:
        build_plugins(flowkernel.Config())
    message = str(info.value)
    assert "'half_done'" in message and "FLOWKERNEL_PLUGINS" in message
    assert "needs numpy" in message
    assert isinstance(info.value.__cause__, ImportError)


def test_a_misspelled_hook_in_a_flowkernel_plugins_module_names_file_line_and_the_right_name(
    plugin_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = _write_module(
        plugin_dir,
        "typo_plugin",
        """
        def flowkernel_kernel_start(kernel):
            pass
        """,
    )
    monkeypatch.setenv("FLOWKERNEL_PLUGINS", "typo_plugin")
    with pytest.raises(flowkernel.PluginLoadError) as info:
        build_plugins(flowkernel.Config())
    assert f"{path}:1" in str(info.value)
    assert "did you mean flowkernel_kernel_started?" in str(info.value)


# ---------------------------------------------------------------------------
# Config(plugins=[...])
# ---------------------------------------------------------------------------


def test_flowkernel_select_executor_from_a_config_plugin_object_chooses_where_tasks_run(
    config_factory: Callable[..., Any],
) -> None:
    class RightOnly:
        @flowkernel.hookimpl
        def flowkernel_select_executor(self, task, candidates):  # type: ignore[no-untyped-def]
            return "right"

    config = config_factory(executors=_two_thread_pools(), plugins=[RightOnly()])
    with flowkernel.load(config):
        futures = [thread_name() for _ in range(6)]
        assert all(f.result(timeout=WAIT).startswith("right-") for f in futures)
        assert {f.task_record.executor for f in futures} == {"right"}


def test_config_plugins_accept_a_module_path_inside_a_package(
    plugin_dir: Path, config_factory: Callable[..., Any]
) -> None:
    (plugin_dir / "lab").mkdir()
    (plugin_dir / "lab" / "__init__.py").write_text("")
    _write_module(
        plugin_dir / "lab",
        "placement",
        """
        def flowkernel_select_executor(task, candidates):
            return "left"
        """,
    )
    config = config_factory(executors=_two_thread_pools(), plugins=["lab.placement"])
    with flowkernel.load(config) as kernel:
        assert thread_name().result(timeout=WAIT).startswith("left-")
        info = kernel.plugins.infos["lab.placement"]
    assert info.source == "config" and info.path == str(plugin_dir / "lab" / "placement.py")


def test_config_plugins_accept_an_imported_module_object(
    plugin_dir: Path, config_factory: Callable[..., Any]
) -> None:
    _write_module(
        plugin_dir,
        "free_retries",
        """
        def flowkernel_retry_cost(exception, task):
            return 0.0
        """,
    )
    import free_retries  # type: ignore[import-not-found]

    with flowkernel.load(config_factory(retries=1, plugins=[free_retries])) as kernel:
        assert flaky_until([], 4).result(timeout=WAIT) == 4
        assert kernel.plugins.implementers("flowkernel_retry_cost")[0] == "free_retries"


def test_config_plugins_are_asked_before_flowkernel_plugins_modules(
    plugin_dir: Path, monkeypatch: pytest.MonkeyPatch, config_factory: Callable[..., Any]
) -> None:
    _write_module(
        plugin_dir, "env_policy", "def flowkernel_retry_cost(exception, task):\n    return 0\n"
    )
    monkeypatch.setenv("FLOWKERNEL_PLUGINS", "env_policy")

    class NoRetries:
        @flowkernel.hookimpl
        def flowkernel_retry_cost(self, exception, task):  # type: ignore[no-untyped-def]
            return 1000.0

    tries: list[int] = []
    with flowkernel.load(config_factory(retries=5, plugins=[NoRetries()])):
        with pytest.raises(TimeoutError):
            flaky_until(tries, 3).result(timeout=WAIT)
    assert len(tries) == 1


def test_two_instances_of_one_plugin_class_are_both_registered(
    config_factory: Callable[..., Any],
) -> None:
    started: list[str] = []

    class Announce:
        def __init__(self, who: str) -> None:
            self.who = who

        @flowkernel.hookimpl
        def flowkernel_kernel_started(self, kernel):  # type: ignore[no-untyped-def]
            started.append(self.who)

    with flowkernel.load(config_factory(plugins=[Announce("a"), Announce("b")])):
        assert sorted(started) == ["a", "b"]


def test_a_config_plugin_object_with_a_misspelled_hook_fails_at_load_naming_its_line(
    config_factory: Callable[..., Any],
) -> None:
    class Typo:
        @flowkernel.hookimpl
        def flowkernel_task_state_change(self, task, old, new):  # type: ignore[no-untyped-def]
            pass

    line = Typo.flowkernel_task_state_change.__code__.co_firstlineno
    with pytest.raises(flowkernel.PluginLoadError) as info:
        flowkernel.load(config_factory(plugins=[Typo()]))
    assert f"{__file__}:{line}" in str(info.value) or f"{__file__}:{line - 1}" in str(info.value)
    assert "did you mean flowkernel_task_state_changed?" in str(info.value)


# ---------------------------------------------------------------------------
# Blocking and replacing
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "blocked, hook, role",
    [
        ("retries", "flowkernel_retry_cost", "price a failed try"),
        ("selection", "flowkernel_select_executor", "choose an executor"),
        ("dependencies", "flowkernel_dependency_resolver", "find futures"),
    ],
)
def test_a_blocked_default_with_no_replacement_is_an_error_naming_the_missing_role(
    config_factory: Callable[..., Any], blocked: str, hook: str, role: str
) -> None:
    with pytest.raises(flowkernel.ConfigurationError) as info:
        flowkernel.load(config_factory(disable_plugins=[blocked]))
    message = str(info.value)
    assert hook in message and role in message
    assert f"blocked plugins: {blocked}" in message


def test_flowkernel_executor_kinds_with_threads_blocked_and_no_executors_says_it_is_blocked(
    config_factory: Callable[..., Any],
) -> None:
    # No executors configured: the kernel needs kind "threads", whose plugin is blocked.
    with pytest.raises(flowkernel.ConfigurationError) as info:
        flowkernel.load(config_factory(disable_plugins=["threads"]))
    message = str(info.value)
    assert "'threads'" in message
    assert "blocked plugins: threads" in message


def test_flowkernel_disable_plugins_blocks_a_default_by_name(
    monkeypatch: pytest.MonkeyPatch, config_factory: Callable[..., Any]
) -> None:
    monkeypatch.setenv("FLOWKERNEL_DISABLE_PLUGINS", "memo, retries")
    with pytest.raises(flowkernel.ConfigurationError) as info:
        flowkernel.load(config_factory())
    assert "flowkernel_retry_cost" in str(info.value)
    assert "blocked plugins: memo, retries" in str(info.value)


def test_flowkernel_retry_cost_from_a_replacement_for_the_blocked_retries_plugin(
    config_factory: Callable[..., Any],
) -> None:
    class Budgeted:
        @flowkernel.hookimpl(trylast=True)  # as a default would be: nothing else to beat
        def flowkernel_retry_cost(self, exception, task):  # type: ignore[no-untyped-def]
            return 0.5

    config = config_factory(retries=1, disable_plugins=["retries"], plugins=[Budgeted()])
    with flowkernel.load(config) as kernel:
        assert kernel.plugins.implementers("flowkernel_retry_cost") == [
            next(n for n in kernel.plugins.infos if n.endswith("Budgeted"))
        ]
        assert flaky_until([], 3).result(timeout=WAIT) == 3  # 0.5 + 0.5 fits a budget of 1
        with pytest.raises(TimeoutError):
            flaky_until([], 4).result(timeout=WAIT)


def test_a_blocked_default_plugin_is_never_imported(run_dir: str) -> None:
    code = """
        import sys
        import flowkernel

        class Free:
            @flowkernel.hookimpl
            def flowkernel_retry_cost(self, exception, task):
                return 0.0

        config = flowkernel.Config(
            run_dir=sys.argv[1], disable_plugins=["retries"], plugins=[Free()]
        )
        with flowkernel.load(config):
            pass
        loaded = sys.modules
        print("flowkernel.plugins.retries" in loaded, "flowkernel.plugins.selection" in loaded)
        """
    out = run_isolated(code, run_dir)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["False", "True"]


def test_a_flowkernel_plugins_module_is_blocked_by_its_name_before_it_is_imported(
    plugin_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _write_module(plugin_dir, "explodes_on_import", "raise RuntimeError('imported')\n")
    monkeypatch.setenv("FLOWKERNEL_PLUGINS", "explodes_on_import")
    monkeypatch.setenv("FLOWKERNEL_DISABLE_PLUGINS", "explodes_on_import")
    plugins = build_plugins(flowkernel.Config())
    assert "explodes_on_import" not in plugins.infos
    assert "explodes_on_import" not in sys.modules


class _InlineExecutor(flowkernel.Executor):
    """Runs each task at once on the submitting thread, and says so in its name."""

    def __init__(self, label: str = "threads") -> None:
        self.label = label
        self.ran = 0

    def submit(self, func, resource_specification, *args, **kwargs):  # type: ignore[no-untyped-def]
        future: Future[Any] = Future()
        self.ran += 1
        try:
            future.set_result(func(*args, **kwargs))
        except Exception as exc:
            future.set_exception(exc)
        return future

    def shutdown(self) -> None:
        pass

    @property
    def outstanding(self) -> int:
        return 0


def test_flowkernel_executor_kinds_blocking_threads_and_registering_another_threads_kind(
    config_factory: Callable[..., Any],
) -> None:
    made: list[_InlineExecutor] = []

    class InlineKinds:
        @flowkernel.hookimpl
        def flowkernel_executor_kinds(self):  # type: ignore[no-untyped-def]
            def factory(label: str = "threads") -> _InlineExecutor:
                made.append(_InlineExecutor(label))
                return made[-1]

            return {"threads": factory}

    config = config_factory(disable_plugins=["threads"], plugins=[InlineKinds()])
    with flowkernel.load(config) as kernel:  # no executors: one of kind "threads" is made
        caller = threading.current_thread().name
        assert thread_name().result(timeout=WAIT) == caller  # ran inline, not on a pool
        assert list(kernel.executors) == ["threads"]
        assert kernel.executors["threads"] is made[0] and made[0].ran == 1
    assert "flowkernel.plugins.threads" not in kernel.plugins.infos
    assert "threads" not in kernel.plugins.infos


def test_flowkernel_executor_kinds_clash_between_two_plugins_is_an_error_naming_both(
    config_factory: Callable[..., Any],
) -> None:
    class GpuFarm:
        @flowkernel.hookimpl
        def flowkernel_executor_kinds(self):  # type: ignore[no-untyped-def]
            return {"gpu": _InlineExecutor}

    class GpuCloud:
        @flowkernel.hookimpl
        def flowkernel_executor_kinds(self):  # type: ignore[no-untyped-def]
            return {"gpu": _InlineExecutor, "tpu": _InlineExecutor}

    plugins = build_plugins(config_factory(plugins=[GpuFarm(), GpuCloud()]))
    with pytest.raises(flowkernel.PluginLoadError) as info:
        plugins.make_executor("gpu")
    message = str(info.value)
    assert "'gpu'" in message and "GpuFarm" in message and "GpuCloud" in message


def test_flowkernel_executor_kinds_clash_with_a_default_kind_stops_the_kernel_naming_both(
    config_factory: Callable[..., Any],
) -> None:
    class MoreThreads:
        @flowkernel.hookimpl
        def flowkernel_executor_kinds(self):  # type: ignore[no-untyped-def]
            return {"threads": _InlineExecutor}

    with pytest.raises(flowkernel.PluginLoadError) as info:
        flowkernel.load(config_factory(plugins=[MoreThreads()]))
    message = str(info.value)
    assert "'threads'" in message and "MoreThreads" in message
    assert "disable_plugins" in message  # says how to fix it


def test_flowkernel_executor_kinds_from_several_plugins_are_merged(
    config_factory: Callable[..., Any],
) -> None:
    class Inline:
        @flowkernel.hookimpl
        def flowkernel_executor_kinds(self):  # type: ignore[no-untyped-def]
            return {"inline": _InlineExecutor}

    plugins = build_plugins(config_factory(plugins=[Inline()]))
    inline = plugins.make_executor("inline", label="here")
    assert isinstance(inline, _InlineExecutor) and inline.label == "here"
    assert isinstance(plugins.make_executor("threads", label="pool"), flowkernel.ThreadPoolExecutor)
    with pytest.raises(flowkernel.ConfigurationError, match=r"inline.*threads"):
        plugins.make_executor("quantum")


def test_flowkernel_dependency_resolver_from_a_plugin_replaces_the_default(
    config_factory: Callable[..., Any],
) -> None:
    class InsideLists:
        """Finds futures in top-level arguments and inside lists, one level deep."""

        def traverse_to_gather(self, obj: object) -> list[Future[Any]]:
            items = obj if isinstance(obj, list) else [obj]
            return [item for item in items if isinstance(item, Future)]

        def traverse_to_unwrap(self, obj: object) -> object:
            if isinstance(obj, list):
                return [i.result() if isinstance(i, Future) else i for i in obj]
            return obj.result() if isinstance(obj, Future) else obj

    resolver = InsideLists()

    class Plugin:
        @flowkernel.hookimpl
        def flowkernel_dependency_resolver(self, config):  # type: ignore[no-untyped-def]
            return resolver

    @python_app
    def double(x: int) -> int:
        return 2 * x

    @python_app
    def total(xs: list[int]) -> int:
        return sum(xs)

    # The default (shallow) resolver would hand the list of futures to sum() and fail.
    with flowkernel.load(config_factory(plugins=[Plugin()])) as kernel:
        assert total([double(1), double(2), 3]).result(timeout=WAIT) == 9
        assert kernel.plugins.implementers("flowkernel_dependency_resolver")[-1] == "dependencies"


def test_flowkernel_dependency_resolver_from_a_plugin_sees_the_config(
    config_factory: Callable[..., Any],
) -> None:
    seen: list[Any] = []

    class Plugin:
        @flowkernel.hookimpl
        def flowkernel_dependency_resolver(self, config):  # type: ignore[no-untyped-def]
            seen.append(config.dependency_resolver)
            return None  # leave the choice to the default

    with flowkernel.load(config_factory(dependency_resolver="deep", plugins=[Plugin()])):
        assert seen == ["deep"]


# ---------------------------------------------------------------------------
# Observers
# ---------------------------------------------------------------------------


def test_flowkernel_kernel_started_and_flowkernel_kernel_stopping_are_each_called_once(
    config_factory: Callable[..., Any],
) -> None:
    events: list[tuple[str, Any, bool, list[str]]] = []

    class Lifecycle:
        @flowkernel.hookimpl
        def flowkernel_kernel_started(self, kernel):  # type: ignore[no-untyped-def]
            events.append(("started", kernel, kernel.cleanup_called, sorted(kernel.executors)))

        @flowkernel.hookimpl
        def flowkernel_kernel_stopping(self, kernel):  # type: ignore[no-untyped-def]
            events.append(("stopping", kernel, kernel.cleanup_called, sorted(kernel.executors)))

    config = config_factory(executors=_two_thread_pools(), plugins=[Lifecycle()])
    with flowkernel.load(config) as kernel:
        assert [e[0] for e in events] == ["started"]
        assert thread_name().result(timeout=WAIT)
    assert events == [
        ("started", kernel, False, ["left", "right"]),
        ("stopping", kernel, True, ["left", "right"]),
    ]


def test_flowkernel_kernel_stopping_runs_before_the_executors_shut_down(
    config_factory: Callable[..., Any],
) -> None:
    late: list[Any] = []

    class LastWord:
        @flowkernel.hookimpl
        def flowkernel_kernel_stopping(self, kernel):  # type: ignore[no-untyped-def]
            # The executors still work here: a plugin may flush through them.
            late.append(kernel.executors["left"].submit(lambda: "flushed", {}))

    with flowkernel.load(config_factory(executors=_two_thread_pools(), plugins=[LastWord()])):
        pass
    assert late[0].result(timeout=WAIT) == "flushed"


class _Transitions:
    """Records every transition, and whether the future was already done at a final one."""

    def __init__(self) -> None:
        self.seen: dict[int, list[tuple[States, States]]] = {}
        self.done_at_final: list[bool] = []
        self.lock = threading.Lock()

    @flowkernel.hookimpl
    def flowkernel_task_state_changed(self, task, old, new):  # type: ignore[no-untyped-def]
        with self.lock:
            self.seen.setdefault(task.id, []).append((old, new))
            if new in FINAL_STATES:
                self.done_at_final.append(task.app_fu.done())


def _path(*states: States) -> list[tuple[States, States]]:
    return list(itertools.pairwise(states))


def test_flowkernel_task_state_changed_sees_each_transition_once_in_order(
    config_factory: Callable[..., Any],
) -> None:
    observer = _Transitions()

    @python_app
    def fails() -> None:
        raise ValueError("no")

    @python_app
    def after(x: object) -> None:
        pass

    @python_app(cache=True)
    def cached(x: int) -> int:
        return x

    with flowkernel.load(config_factory(retries=1, plugins=[observer])):
        ok = thread_name()
        retried = flaky_until([], 2)
        failed = fails()
        dependent = after(failed)
        first = cached(7)
        first.result(timeout=WAIT)
        again = cached(7)
        for future in (ok, retried, failed, dependent, again):
            future.exception(timeout=WAIT)
    u, p, la = States.unsched, States.pending, States.launched
    assert observer.seen[ok.tid] == _path(u, p, la, States.exec_done)
    assert observer.seen[retried.tid] == _path(
        u, p, la, States.fail_retryable, p, la, States.exec_done
    )
    assert observer.seen[failed.tid] == _path(u, p, la, States.fail_retryable, p, la, States.failed)
    assert observer.seen[dependent.tid] == _path(u, p, States.dep_fail)
    assert observer.seen[again.tid] == _path(u, p, States.memo_done)
    assert observer.done_at_final == [False] * 6  # called before each future completed


def test_flowkernel_task_state_changed_transitions_follow_the_table_for_many_concurrent_tasks(
    config_factory: Callable[..., Any],
) -> None:
    observer = _Transitions()

    @python_app
    def add(*xs: int) -> int:
        return sum(xs)

    executors = [flowkernel.ThreadPoolExecutor(label="pool", max_threads=4)]
    with flowkernel.load(config_factory(executors=executors, plugins=[observer])):
        layer = [add(i) for i in range(20)]
        for _ in range(5):
            layer = [add(layer[i], layer[(i + 1) % 20]) for i in range(20)]
        futures = layer
        for future in futures:
            future.result(timeout=WAIT)
    assert len(observer.seen) == 120
    for transitions in observer.seen.values():
        assert transitions[0][0] is States.unsched
        assert transitions[-1][1] in FINAL_STATES
        for (_, new), (next_old, _) in itertools.pairwise(transitions):
            assert new is next_old
        assert all(new in TRANSITIONS[old] for old, new in transitions)
        assert transitions == _path(
            States.unsched, States.pending, States.launched, States.exec_done
        )


def test_flowkernel_task_state_changed_implementation_may_ask_for_fewer_arguments(
    config_factory: Callable[..., Any],
) -> None:
    reached: list[States] = []

    class OnlyNew:
        @flowkernel.hookimpl
        def flowkernel_task_state_changed(self, new):  # type: ignore[no-untyped-def]
            reached.append(new)

    with flowkernel.load(config_factory(plugins=[OnlyNew()])):
        thread_name().result(timeout=WAIT)
    assert reached == [States.pending, States.launched, States.exec_done]


# ---------------------------------------------------------------------------
# Tracing, laziness, and hooks nobody implements
# ---------------------------------------------------------------------------


def test_flowkernel_trace_plugins_prints_hook_calls_with_the_answering_plugin(
    config_factory: Callable[..., Any],
    monkeypatch: pytest.MonkeyPatch,
    capfd: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("FLOWKERNEL_TRACE_PLUGINS", "1")
    with flowkernel.load(config_factory(executors=_two_thread_pools(), retries=1)):
        thread_name().result(timeout=WAIT)
        with pytest.raises(TimeoutError):
            flaky_until([], 10).result(timeout=WAIT)
    err = capfd.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("[flowkernel trace] ")]
    assert any(
        "flowkernel_select_executor(" in line and "<- selection: 'left'" in line for line in lines
    )
    assert any("flowkernel_retry_cost(" in line and "<- retries: 1.0" in line for line in lines)
    assert any("flowkernel_dependency_resolver(" in line for line in lines)


def test_flowkernel_trace_plugins_unset_prints_nothing(
    config_factory: Callable[..., Any], capfd: pytest.CaptureFixture[str]
) -> None:
    with flowkernel.load(config_factory(executors=_two_thread_pools())):
        thread_name().result(timeout=WAIT)
    assert "[flowkernel trace]" not in capfd.readouterr().err


def test_plugins_are_not_loaded_at_import_flowkernel() -> None:
    code = """
        import sys
        import flowkernel
        before = "flowkernel.plugins.threads" in sys.modules
        flowkernel.make_executor("threads")
        print(before, "flowkernel.plugins.threads" in sys.modules)
        """
    out = run_isolated(code)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["False", "True"]  # loaded on first need, not before


class _HookSpy:
    """Records the hook names the kernel asks its Plugins facade about while tasks run."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.asked: list[str] = []
        self.on = False
        spy = self
        original_first = Plugins.first
        original_notify = Plugins.notify
        original_states = Plugins.task_state_changed

        def first(plugins: Plugins, hook_name: str, **kwargs: Any) -> Any:
            if spy.on:
                spy.asked.append(hook_name)
            return original_first(plugins, hook_name, **kwargs)

        def notify(plugins: Plugins, hook_name: str, **kwargs: Any) -> None:
            if spy.on:
                spy.asked.append(hook_name)
            original_notify(plugins, hook_name, **kwargs)

        def task_state_changed(plugins: Plugins, task: Any, old: Any, new: Any) -> None:
            if spy.on:
                spy.asked.append("flowkernel_task_state_changed")
            original_states(plugins, task, old, new)

        monkeypatch.setattr(Plugins, "first", first)
        monkeypatch.setattr(Plugins, "notify", notify)
        monkeypatch.setattr(Plugins, "task_state_changed", task_state_changed)


def test_no_hook_is_called_for_tasks_that_no_plugin_implements(
    config_factory: Callable[..., Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    spy = _HookSpy(monkeypatch)

    @python_app(cache=True)
    def cached(x: int) -> int:
        return x

    # memo blocked: nobody implements flowkernel_memo_key; nobody observes transitions.
    config = config_factory(executors=_two_thread_pools(), retries=1, disable_plugins=["memo"])
    with flowkernel.load(config) as kernel:
        spy.on = True
        assert cached(1).result(timeout=WAIT) == 1
        with pytest.raises(TimeoutError):
            flaky_until([], 10).result(timeout=WAIT)
        spy.on = False
        implemented = {name for name in hookspecs.HOOK_NAMES if kernel.plugins.implements(name)}
    assert "flowkernel_memo_key" not in implemented
    assert "flowkernel_task_state_changed" not in implemented
    assert set(spy.asked) == {"flowkernel_select_executor", "flowkernel_retry_cost"}
    assert set(spy.asked) <= implemented


def test_flowkernel_task_state_changed_is_called_once_a_plugin_observes_it(
    config_factory: Callable[..., Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    spy = _HookSpy(monkeypatch)
    observer = _Transitions()
    with flowkernel.load(config_factory(plugins=[observer])):
        spy.on = True
        thread_name().result(timeout=WAIT)
        spy.on = False
    assert spy.asked.count("flowkernel_task_state_changed") == 3


def test_flowkernel_kernel_stopped_comes_last_after_the_sweep_of_stranded_tasks(
    config_factory,
) -> None:
    events: list[tuple[str, object]] = []

    class Lifecycle:
        @flowkernel.hookimpl
        def flowkernel_kernel_started(self, kernel):  # type: ignore[no-untyped-def]
            events.append(("started", kernel.cleanup_called))

        @flowkernel.hookimpl
        def flowkernel_kernel_stopping(self, kernel):  # type: ignore[no-untyped-def]
            events.append(("stopping", kernel.cleanup_called))
            gate.set()  # the running task ends now; its dependent can no longer launch

        @flowkernel.hookimpl
        def flowkernel_kernel_stopped(self, kernel):  # type: ignore[no-untyped-def]
            counts = {s.name: n for s, n in kernel.task_state_counts.items() if n}
            events.append(("stopped", counts))

    gate = threading.Event()

    @python_app
    def waits() -> None:
        assert gate.wait(WAIT)

    with flowkernel.load(config_factory(plugins=[Lifecycle()])):
        assert events == [("started", False)]
        stranded = ok_after(waits())  # still pending when cleanup begins
    assert events[1] == ("stopping", True)
    # Called last: even the task the cleanup ended is counted.
    assert events[2] == ("stopped", {"exec_done": 1, "failed": 1})
    assert stranded.done()


@python_app
def ok_after(x: object) -> int:
    return 1
