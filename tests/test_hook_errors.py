"""A plugin that raises, or answers nonsense, at each hook point.

The task the hook was asked about fails with a HookError naming the hook and
the plugin (the plugin's exception as its cause); every other task completes;
observer hooks that raise are logged and counted, never fail a task; nothing
hangs (every wait is bounded).
"""

from __future__ import annotations

import logging
from typing import Any

import pytest
from _support import WAIT
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import flowkernel
from flowkernel import python_app


@python_app
def victim(x: int = 0) -> int:
    return x


@python_app
def bystander(x: int = 0) -> int:
    return x + 100


def _two_executors() -> list[flowkernel.Executor]:
    # Two candidates, so the selection hook is really asked.
    return [
        flowkernel.ThreadPoolExecutor(label="a"),
        flowkernel.ThreadPoolExecutor(label="b"),
    ]


class Bug(RuntimeError):
    """What the broken plugins raise."""


def _assert_hook_error(future: Any, hook: str, plugin_part: str) -> flowkernel.HookError:
    with pytest.raises(flowkernel.HookError) as info:
        future.result(timeout=WAIT)
    error = info.value
    assert error.hook == hook
    assert plugin_part in (error.plugin or "")
    assert hook in str(error) and plugin_part in str(error)
    return error


def test_flowkernel_select_executor_raising_fails_only_its_task(config_factory) -> None:
    class Picky:
        @flowkernel.hookimpl
        def flowkernel_select_executor(self, task, candidates):  # type: ignore[no-untyped-def]
            if task.func_name == "victim":
                raise Bug("selection exploded")
            return None

    with flowkernel.load(config_factory(executors=_two_executors(), plugins=[Picky()])):
        bad, good = victim(), bystander()
        error = _assert_hook_error(bad, "flowkernel_select_executor", "Picky")
        assert isinstance(error.__cause__, Bug)
        assert good.result(timeout=WAIT) == 100


def test_flowkernel_select_executor_naming_no_candidate_fails_the_task(config_factory) -> None:
    class Wrong:
        @flowkernel.hookimpl
        def flowkernel_select_executor(self, task, candidates):  # type: ignore[no-untyped-def]
            return "gpu-cluster"

    with flowkernel.load(config_factory(executors=_two_executors(), plugins=[Wrong()])):
        error = _assert_hook_error(victim(), "flowkernel_select_executor", "Wrong")
        assert "'gpu-cluster'" in str(error) and "'a'" in str(error)


def test_flowkernel_retry_cost_raising_fails_the_task_and_keeps_its_exception(
    config_factory,
) -> None:
    class Pricing:
        @flowkernel.hookimpl
        def flowkernel_retry_cost(self, exception, task):  # type: ignore[no-untyped-def]
            raise Bug("pricing exploded")

    @python_app
    def fails() -> None:
        raise ValueError("the task's own failure")

    with flowkernel.load(config_factory(retries=3, plugins=[Pricing()])):
        error = _assert_hook_error(fails(), "flowkernel_retry_cost", "Pricing")
        assert isinstance(error.__cause__, Bug)
        assert isinstance(error.task_exception, ValueError)  # type: ignore[attr-defined]
        assert bystander().result(timeout=WAIT) == 100


def test_flowkernel_retry_cost_returning_garbage_fails_the_task(config_factory) -> None:
    class Garbage:
        @flowkernel.hookimpl
        def flowkernel_retry_cost(self, exception, task):  # type: ignore[no-untyped-def]
            return "cheap"

    @python_app
    def fails() -> None:
        raise ValueError("x")

    with flowkernel.load(config_factory(retries=3, plugins=[Garbage()])):
        error = _assert_hook_error(fails(), "flowkernel_retry_cost", "Garbage")
        assert "'cheap'" in str(error)


def test_flowkernel_dependency_resolver_raising_fails_the_tasks_it_looks_at(
    config_factory,
) -> None:
    class Resolver:
        def traverse_to_gather(self, obj: object) -> list[Any]:
            if obj == "poison":
                raise Bug("cannot look inside")
            return []

        def traverse_to_unwrap(self, obj: object) -> object:
            return obj

    class Plugin:
        @flowkernel.hookimpl
        def flowkernel_dependency_resolver(self, config):  # type: ignore[no-untyped-def]
            return Resolver()

    @python_app
    def echo(x: object) -> object:
        return x

    with flowkernel.load(config_factory(plugins=[Plugin()])):
        error = _assert_hook_error(echo("poison"), "flowkernel_dependency_resolver", "Plugin")
        assert isinstance(error.__cause__, Bug)
        assert echo("fine").result(timeout=WAIT) == "fine"


def test_flowkernel_dependency_resolver_returning_garbage_is_a_clear_error(
    config_factory,
) -> None:
    class Plugin:
        @flowkernel.hookimpl
        def flowkernel_dependency_resolver(self, config):  # type: ignore[no-untyped-def]
            return object()

    with pytest.raises(flowkernel.HookError, match="traverse_to_gather"):
        flowkernel.load(config_factory(plugins=[Plugin()]))


def test_flowkernel_memo_key_raising_fails_only_memoized_tasks(config_factory) -> None:
    class Keys:
        @flowkernel.hookimpl
        def flowkernel_memo_key(self, task):  # type: ignore[no-untyped-def]
            raise Bug("hashing exploded")

    @python_app(cache=True)
    def cached(x: int) -> int:
        return x

    with flowkernel.load(config_factory(plugins=[Keys()])):
        error = _assert_hook_error(cached(1), "flowkernel_memo_key", "Keys")
        assert isinstance(error.__cause__, Bug)
        assert bystander().result(timeout=WAIT) == 100


def test_flowkernel_memo_key_returning_garbage_fails_the_task(config_factory) -> None:
    class Keys:
        @flowkernel.hookimpl
        def flowkernel_memo_key(self, task):  # type: ignore[no-untyped-def]
            return 42

    @python_app(cache=True)
    def cached(x: int) -> int:
        return x

    with flowkernel.load(config_factory(plugins=[Keys()])):
        _assert_hook_error(cached(1), "flowkernel_memo_key", "Keys")


def test_flowkernel_id_for_memo_raising_fails_the_task(config_factory) -> None:
    class Ids:
        @flowkernel.hookimpl
        def flowkernel_id_for_memo(self, value):  # type: ignore[no-untyped-def]
            if value == "bad":
                raise Bug("identity exploded")
            return None

    @python_app(cache=True)
    def cached(x: object) -> object:
        return x

    with flowkernel.load(config_factory(plugins=[Ids()])):
        _assert_hook_error(cached("bad"), "flowkernel_id_for_memo", "Ids")
        assert cached("good").result(timeout=WAIT) == "good"


def test_flowkernel_checkpoint_store_raising_fails_kernel_start_naming_it(
    config_factory,
) -> None:
    class Store:
        @flowkernel.hookimpl
        def flowkernel_checkpoint_store(self, config, run_dir):  # type: ignore[no-untyped-def]
            raise Bug("no disk")

    with pytest.raises(flowkernel.HookError, match=r"flowkernel_checkpoint_store.*Store"):
        flowkernel.load(config_factory(checkpoint_mode="task_exit", plugins=[Store()]))


def test_flowkernel_staging_providers_returning_garbage_fails_tasks_with_files(
    config_factory,
) -> None:
    class Providers:
        @flowkernel.hookimpl
        def flowkernel_staging_providers(self):  # type: ignore[no-untyped-def]
            return "not a list"

    @python_app
    def read(f: flowkernel.File) -> str:
        return str(f)

    with flowkernel.load(config_factory(plugins=[Providers()])):
        _assert_hook_error(read(flowkernel.File("/tmp/x")), "flowkernel_staging_providers", "Prov")
        assert bystander().result(timeout=WAIT) == 100


def test_flowkernel_executor_kinds_raising_is_a_clear_error_naming_the_plugin(
    config_factory,
) -> None:
    class Kinds:
        @flowkernel.hookimpl
        def flowkernel_executor_kinds(self):  # type: ignore[no-untyped-def]
            raise Bug("kinds exploded")

    with pytest.raises(flowkernel.HookError, match=r"flowkernel_executor_kinds.*Kinds"):
        flowkernel.load(config_factory(plugins=[Kinds()]))


class StateObserver:
    @flowkernel.hookimpl
    def flowkernel_task_state_changed(self, task, old, new):  # type: ignore[no-untyped-def]
        raise Bug("flowkernel_task_state_changed exploded")


class StartObserver:
    @flowkernel.hookimpl
    def flowkernel_kernel_started(self, kernel):  # type: ignore[no-untyped-def]
        raise Bug("flowkernel_kernel_started exploded")


class StopObserver:
    @flowkernel.hookimpl
    def flowkernel_kernel_stopping(self, kernel):  # type: ignore[no-untyped-def]
        raise Bug("flowkernel_kernel_stopping exploded")


@pytest.mark.parametrize(
    "hook, observer",
    [
        ("flowkernel_task_state_changed", StateObserver),
        ("flowkernel_kernel_started", StartObserver),
        ("flowkernel_kernel_stopping", StopObserver),
    ],
)
def test_an_observer_that_raises_is_logged_and_counted_and_tasks_are_unaffected(
    config_factory, hook: str, observer: type, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.ERROR)
    with flowkernel.load(config_factory(plugins=[observer()])) as kernel:
        assert [bystander(i).result(timeout=WAIT) for i in range(3)] == [100, 101, 102]
    assert kernel.hook_errors >= 1
    logged = [r.getMessage() for r in caplog.records if hook in r.getMessage()]
    assert logged and observer.__name__ in logged[0]


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(victims=st.lists(st.booleans(), min_size=1, max_size=30))
def test_property_exactly_the_tasks_a_raising_selection_hook_sees_fail(
    config_factory, victims: list[bool]
) -> None:
    class Selective:
        @flowkernel.hookimpl
        def flowkernel_select_executor(self, task, candidates):  # type: ignore[no-untyped-def]
            if task.args and task.args[0] < 0:
                raise Bug("negative")
            return None

    with flowkernel.load(config_factory(executors=_two_executors(), plugins=[Selective()])):
        futures = [bystander(-1 if bad else i) for i, bad in enumerate(victims)]
        for future, bad in zip(futures, victims, strict=True):
            if bad:
                assert isinstance(future.exception(timeout=WAIT), flowkernel.HookError)
            else:
                assert future.result(timeout=WAIT) >= 100
