"""A plugin that raises, or answers nonsense, at the memo, checkpoint and staging hooks.

(The executor, selection, retry, dependency and observer hooks are in
test_hook_failures.py.)

The task the hook was asked about fails with a HookError naming the hook and
the plugin (the plugin's exception as its cause); every other task completes;
observer hooks that raise are logged and counted, never fail a task; nothing
hangs (every wait is bounded).
"""

from __future__ import annotations

from typing import Any

import pytest
from _support import WAIT

import flowkernel
from flowkernel import python_app


@python_app
def bystander(x: int = 0) -> int:
    return x + 100


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
