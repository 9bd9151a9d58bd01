"""A plugin that raises, or answers garbage, at each hook point.

The broken plugins here misbehave only for tasks whose function is named
``victim``, so ordinary tasks run alongside in the same kernel.  What must
hold: the victim's future fails with a :class:`~flowkernel.HookError` naming the
hook and the plugin, with the plugin's own exception as ``__cause__``; every
other task completes; nothing hangs (every wait is bounded, cleanup returns);
an observer hook that raises is logged with its plugin's name and counted in
``kernel.hook_errors`` and the cleanup summary, and never fails a task.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from typing import Any

import pytest
from _support import WAIT, run_isolated
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import flowkernel
from flowkernel import python_app
from flowkernel.loader import DataFlowKernelLoader


class Bug(RuntimeError):
    """What the broken plugins raise."""


@python_app
def victim(*xs: int) -> int:
    return sum(xs) + 1


@python_app
def bystander(*xs: int) -> int:
    return sum(xs) + 100


def _is_victim(task: Any) -> bool:
    return bool(task.func_name == "victim")


def _two_executors() -> list[flowkernel.Executor]:
    # Two candidates, so the selection hook is really asked.
    return [
        flowkernel.ThreadPoolExecutor(label="a", max_threads=2),
        flowkernel.ThreadPoolExecutor(label="b", max_threads=2),
    ]


@pytest.fixture
def load(config_factory: Callable[..., Any]) -> Iterator[Callable[..., flowkernel.DataFlowKernel]]:
    """``load(*plugins, **fields)``: a loaded kernel with two executors and these plugins."""
    kernels: list[flowkernel.DataFlowKernel] = []

    def make(*plugins: Any, **fields: Any) -> flowkernel.DataFlowKernel:
        fields.setdefault("executors", _two_executors())
        kernels.append(flowkernel.load(config_factory(plugins=list(plugins), **fields)))
        return kernels[-1]

    yield make
    for kernel in kernels:
        if not kernel.cleanup_called:
            kernel.cleanup()


def _hook_error(future: Future[Any], hook: str, plugin_class: type) -> flowkernel.HookError:
    """The future's HookError, checked to name ``hook`` and the plugin of ``plugin_class``."""
    error = future.exception(timeout=WAIT)
    assert isinstance(error, flowkernel.HookError), repr(error)
    assert error.hook == hook
    assert error.plugin is not None and error.plugin.endswith(plugin_class.__qualname__)
    assert hook in str(error) and plugin_class.__qualname__ in str(error)
    return error


def _bystanders_complete(n: int = 6) -> None:
    futures = [bystander(i) for i in range(n)]
    assert [f.result(timeout=WAIT) for f in futures] == [100 + i for i in range(n)]


# ---------------------------------------------------------------------------
# flowkernel_select_executor
# ---------------------------------------------------------------------------


class SelectRaises:
    @flowkernel.hookimpl
    def flowkernel_select_executor(self, task, candidates):  # type: ignore[no-untyped-def]
        if _is_victim(task):
            raise Bug("placement service unreachable")
        return None


def test_flowkernel_select_executor_raising_fails_the_victim_with_a_hook_error(load) -> None:  # type: ignore[no-untyped-def]
    kernel = load(SelectRaises())
    bad = victim()
    _bystanders_complete()
    error = _hook_error(bad, "flowkernel_select_executor", SelectRaises)
    assert error.plugin in kernel.plugins.infos
    assert isinstance(error.__cause__, Bug)
    assert "placement service unreachable" in str(error)
    assert bad.task_record.status is flowkernel.States.failed


def test_flowkernel_select_executor_raising_fails_the_victims_dependents_with_dependency_error(
    load,  # type: ignore[no-untyped-def]
) -> None:
    load(SelectRaises())
    bad = victim()
    downstream = bystander(bad, bystander(1))
    error = downstream.exception(timeout=WAIT)
    assert isinstance(error, flowkernel.DependencyError)
    assert isinstance(error.__cause__, flowkernel.HookError)
    assert downstream.task_record.status is flowkernel.States.dep_fail


def test_flowkernel_select_executor_raising_at_a_retry_fails_the_task_after_its_first_try(
    load,  # type: ignore[no-untyped-def]
) -> None:
    tries: list[str] = []

    class RetryPlacement:
        @flowkernel.hookimpl
        def flowkernel_select_executor(self, task, candidates):  # type: ignore[no-untyped-def]
            if task.fail_count > 0:
                raise Bug("no executor for retries")
            return None

    @python_app
    def victim() -> None:
        tries.append("x")
        raise OSError("first try fails")

    load(RetryPlacement(), retries=3)
    bad = victim()
    error = _hook_error(bad, "flowkernel_select_executor", RetryPlacement)
    assert isinstance(error.__cause__, Bug)
    assert tries == ["x"]
    _bystanders_complete()


@pytest.mark.parametrize("answer", ["gpu-cluster", 42, ["a"], ""])
def test_flowkernel_select_executor_answering_no_candidate_fails_the_victim(
    load,
    answer: object,  # type: ignore[no-untyped-def]
) -> None:
    class Garbage:
        @flowkernel.hookimpl
        def flowkernel_select_executor(self, task, candidates):  # type: ignore[no-untyped-def]
            return answer if _is_victim(task) else None

    load(Garbage())
    bad = victim()
    _bystanders_complete()
    error = _hook_error(bad, "flowkernel_select_executor", Garbage)
    assert repr(answer) in str(error) and "'a', 'b'" in str(error)


def test_flowkernel_select_executor_answering_an_executor_the_app_does_not_allow_fails_it(
    load,  # type: ignore[no-untyped-def]
) -> None:
    class Outside:
        @flowkernel.hookimpl
        def flowkernel_select_executor(self, task, candidates):  # type: ignore[no-untyped-def]
            return "c"  # exists in the kernel, but the app allows only a and b

    executors = [*_two_executors(), flowkernel.ThreadPoolExecutor(label="c")]
    load(Outside(), executors=executors)

    @python_app(executors=["a", "b"])
    def victim() -> int:
        return 1

    error = _hook_error(victim(), "flowkernel_select_executor", Outside)
    assert "'c'" in str(error)


# ---------------------------------------------------------------------------
# flowkernel_retry_cost
# ---------------------------------------------------------------------------


@python_app
def failing_victim() -> None:
    raise OSError("the task's own failure")


class RetryCostRaises:
    @flowkernel.hookimpl
    def flowkernel_retry_cost(self, exception, task):  # type: ignore[no-untyped-def]
        if task.func_name == "failing_victim":
            raise Bug("pricing service down")
        return None


def test_flowkernel_retry_cost_raising_fails_the_victim_and_keeps_its_own_exception(
    load,  # type: ignore[no-untyped-def]
) -> None:
    load(RetryCostRaises(), retries=2)
    bad = failing_victim()
    tries: list[int] = []

    @python_app
    def flaky() -> int:
        tries.append(1)
        if len(tries) < 3:
            raise OSError("again")
        return len(tries)

    other = flaky()
    error = _hook_error(bad, "flowkernel_retry_cost", RetryCostRaises)
    assert isinstance(error.__cause__, Bug)
    assert isinstance(error.task_exception, OSError)  # type: ignore[attr-defined]
    assert bad.task_record.fail_count == 1  # not retried
    assert other.result(timeout=WAIT) == 3  # the default still prices other failures


@pytest.mark.parametrize("answer", ["cheap", math.nan, True, [1], object()])
def test_flowkernel_retry_cost_returning_a_non_number_fails_the_victim(
    load,
    answer: object,  # type: ignore[no-untyped-def]
) -> None:
    class Garbage:
        @flowkernel.hookimpl
        def flowkernel_retry_cost(self, exception, task):  # type: ignore[no-untyped-def]
            return answer if task.func_name == "failing_victim" else None

    load(Garbage(), retries=2)
    bad = failing_victim()
    _bystanders_complete()
    error = _hook_error(bad, "flowkernel_retry_cost", Garbage)
    assert repr(answer) in str(error) and "number" in str(error)


def test_flowkernel_retry_cost_raising_abort_task_fails_the_task_with_the_given_exception(
    load,  # type: ignore[no-untyped-def]
) -> None:
    class GiveUp:
        @flowkernel.hookimpl
        def flowkernel_retry_cost(self, exception, task):  # type: ignore[no-untyped-def]
            raise flowkernel.AbortTask(PermissionError("quota exhausted"))

    load(GiveUp(), retries=5)
    error = failing_victim().exception(timeout=WAIT)
    assert isinstance(error, PermissionError) and "quota exhausted" in str(error)


# ---------------------------------------------------------------------------
# flowkernel_dependency_resolver
# ---------------------------------------------------------------------------


def test_flowkernel_dependency_resolver_raising_stops_the_kernel_start_naming_the_plugin(
    config_factory: Callable[..., Any],
) -> None:
    class ResolverRaises:
        @flowkernel.hookimpl
        def flowkernel_dependency_resolver(self, config):  # type: ignore[no-untyped-def]
            raise Bug("no resolver today")

    with pytest.raises(flowkernel.HookError) as info:
        flowkernel.load(config_factory(plugins=[ResolverRaises()]))
    assert info.value.hook == "flowkernel_dependency_resolver"
    assert "ResolverRaises" in str(info.value)
    assert isinstance(info.value.__cause__, Bug)
    assert DataFlowKernelLoader._dfk is None  # nothing half-loaded
    with flowkernel.load(config_factory()):  # and a good kernel starts after it
        assert bystander(1).result(timeout=WAIT) == 101


class _GatherOnly:
    def traverse_to_gather(self, obj: object) -> list[Future[Any]]:
        return []


@pytest.mark.parametrize("answer", [object(), _GatherOnly(), "deep"])
def test_flowkernel_dependency_resolver_without_the_resolver_methods_is_a_clear_error(
    config_factory: Callable[..., Any], answer: object
) -> None:
    class Garbage:
        @flowkernel.hookimpl
        def flowkernel_dependency_resolver(self, config):  # type: ignore[no-untyped-def]
            return answer

    with pytest.raises(flowkernel.HookError) as info:
        flowkernel.load(config_factory(plugins=[Garbage()]))
    message = str(info.value)
    assert "flowkernel_dependency_resolver" in message and "Garbage" in message
    assert "traverse_to_unwrap" in message


class _Poison:
    """An argument value the broken resolvers choke on."""


class _PickyResolver:
    def __init__(self, fail_in: str) -> None:
        self.fail_in = fail_in

    def traverse_to_gather(self, obj: object) -> list[Future[Any]]:
        if self.fail_in == "gather" and isinstance(obj, _Poison):
            raise Bug("cannot look inside")
        return [obj] if isinstance(obj, Future) else []

    def traverse_to_unwrap(self, obj: object) -> object:
        if self.fail_in == "unwrap" and isinstance(obj, _Poison):
            raise Bug("cannot unwrap")
        return obj.result() if isinstance(obj, Future) else obj


@pytest.mark.parametrize("fail_in", ["gather", "unwrap"])
def test_flowkernel_dependency_resolver_whose_resolver_raises_fails_only_that_task(
    load,
    fail_in: str,  # type: ignore[no-untyped-def]
) -> None:
    class PickyResolverPlugin:
        @flowkernel.hookimpl
        def flowkernel_dependency_resolver(self, config):  # type: ignore[no-untyped-def]
            return _PickyResolver(fail_in)

    @python_app
    def victim(x: object, *more: object) -> str:
        return "ran"

    load(PickyResolverPlugin())
    bad = victim(_Poison(), bystander(1))  # an input, so unwrapping happens
    _bystanders_complete()
    error = _hook_error(bad, "flowkernel_dependency_resolver", PickyResolverPlugin)
    assert isinstance(error.__cause__, Bug)
    assert victim("fine", bystander(2)).result(timeout=WAIT) == "ran"


# ---------------------------------------------------------------------------
# flowkernel_executor_kinds and the factories it offers
# ---------------------------------------------------------------------------


def test_flowkernel_executor_kinds_raising_is_a_hook_error_naming_the_plugin(
    config_factory: Callable[..., Any],
) -> None:
    class KindsRaise:
        @flowkernel.hookimpl
        def flowkernel_executor_kinds(self):  # type: ignore[no-untyped-def]
            raise Bug("cannot list kinds")

    with pytest.raises(flowkernel.HookError) as info:
        flowkernel.load(config_factory(plugins=[KindsRaise()]))
    assert info.value.hook == "flowkernel_executor_kinds"
    assert "KindsRaise" in str(info.value)
    assert isinstance(info.value.__cause__, Bug)


def test_flowkernel_executor_kinds_returning_a_non_dict_is_a_hook_error(
    config_factory: Callable[..., Any],
) -> None:
    class KindsGarbage:
        @flowkernel.hookimpl
        def flowkernel_executor_kinds(self):  # type: ignore[no-untyped-def]
            return ["threads"]

    with pytest.raises(flowkernel.HookError, match=r"flowkernel_executor_kinds.*KindsGarbage"):
        flowkernel.load(config_factory(plugins=[KindsGarbage()]))


def _replacing_threads(factory: Callable[..., Any]) -> Any:
    class FactoryPlugin:
        @flowkernel.hookimpl
        def flowkernel_executor_kinds(self):  # type: ignore[no-untyped-def]
            return {"threads": factory}

    return FactoryPlugin()


def test_flowkernel_executor_kinds_factory_raising_is_a_hook_error_naming_the_plugin(
    config_factory: Callable[..., Any],
) -> None:
    def factory(label: str = "threads") -> flowkernel.Executor:
        raise Bug("cluster login failed")

    config = config_factory(disable_plugins=["threads"], plugins=[_replacing_threads(factory)])
    with pytest.raises(flowkernel.HookError) as info:
        flowkernel.load(config)
    assert info.value.hook == "flowkernel_executor_kinds"
    assert "FactoryPlugin" in str(info.value) and "cluster login failed" in str(info.value)
    assert isinstance(info.value.__cause__, Bug)


def test_flowkernel_executor_kinds_factory_building_no_executor_is_a_hook_error(
    config_factory: Callable[..., Any],
) -> None:
    config = config_factory(
        disable_plugins=["threads"], plugins=[_replacing_threads(lambda label="threads": object())]
    )
    with pytest.raises(flowkernel.HookError, match=r"FactoryPlugin.*not a flowkernel.Executor"):
        flowkernel.load(config)


def test_a_kernel_whose_executor_cannot_be_made_leaves_no_log_handler_behind(
    config_factory: Callable[..., Any],
) -> None:
    def factory(label: str = "threads") -> flowkernel.Executor:
        raise Bug("cluster login failed")

    flowkernel_logger = logging.getLogger("flowkernel")
    before = list(flowkernel_logger.handlers)
    config = config_factory(disable_plugins=["threads"], plugins=[_replacing_threads(factory)])
    with pytest.raises(Exception, match="cluster login failed"):
        flowkernel.load(config)
    leaked = [h for h in flowkernel_logger.handlers if h not in before]
    for handler in leaked:  # keep later tests clean whatever happens here
        flowkernel_logger.removeHandler(handler)
        handler.close()
    assert leaked == []


def test_a_kernel_whose_executor_cannot_be_made_leaves_the_garbage_collector_as_it_was(
    run_dir: str,
) -> None:
    # In a fresh interpreter: a kernel started while tuning is in effect would hide a leak.
    code = """
        import gc, sys
        import flowkernel

        class FactoryPlugin:
            @flowkernel.hookimpl
            def flowkernel_executor_kinds(self):
                def factory(label="threads"):
                    raise RuntimeError("cluster login failed")
                return {"threads": factory}

        before = gc.get_threshold()
        config = flowkernel.Config(
            run_dir=sys.argv[1], disable_plugins=["threads"], plugins=[FactoryPlugin()]
        )
        try:
            flowkernel.load(config)
        except Exception as exc:
            print(type(exc).__name__, file=sys.stderr)
        print(before == gc.get_threshold(), before, gc.get_threshold())
        """
    out = run_isolated(code, run_dir)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split()[0] == "True", out.stdout


# ---------------------------------------------------------------------------
# Observer hooks: logged with the plugin's name, counted, never fail a task
# ---------------------------------------------------------------------------


class StateObserverRaises:
    @flowkernel.hookimpl
    def flowkernel_task_state_changed(self, task, old, new):  # type: ignore[no-untyped-def]
        if _is_victim(task):
            raise Bug(f"cannot record {old.name} -> {new.name}")


class StateObserverRaisesFewerArgs:
    @flowkernel.hookimpl
    def flowkernel_task_state_changed(self, task):  # type: ignore[no-untyped-def]
        if _is_victim(task):
            raise Bug("cannot record")


def _observer_errors_logged(caplog: pytest.LogCaptureFixture, hook: str) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.levelno >= logging.ERROR and hook in r.getMessage()
    ]


def _summary(caplog: pytest.LogCaptureFixture) -> str:
    lines = [r.getMessage() for r in caplog.records if "observer hook errors" in r.getMessage()]
    assert len(lines) == 1, lines
    return lines[0]


@pytest.mark.parametrize("observer", [StateObserverRaises, StateObserverRaisesFewerArgs])
def test_flowkernel_task_state_changed_raising_is_logged_counted_and_the_victim_still_succeeds(
    load,
    caplog: pytest.LogCaptureFixture,
    observer: type,  # type: ignore[no-untyped-def]
) -> None:
    caplog.set_level(logging.INFO, logger="flowkernel")
    kernel = load(observer())
    assert victim(1).result(timeout=WAIT) == 2
    _bystanders_complete()
    assert kernel.hook_errors == 3  # unsched->pending, pending->launched, launched->exec_done
    kernel.cleanup()
    logged = _observer_errors_logged(caplog, "flowkernel_task_state_changed")
    assert len(logged) == 3 and all(observer.__qualname__ in line for line in logged)
    assert _summary(caplog).endswith("observer hook errors: 3")


def test_flowkernel_kernel_started_raising_is_logged_counted_and_the_kernel_runs(
    load,
    caplog: pytest.LogCaptureFixture,  # type: ignore[no-untyped-def]
) -> None:
    class StartRaises:
        @flowkernel.hookimpl
        def flowkernel_kernel_started(self, kernel):  # type: ignore[no-untyped-def]
            raise Bug("dashboard offline")

    caplog.set_level(logging.INFO, logger="flowkernel")
    kernel = load(StartRaises())
    assert kernel.hook_errors == 1
    assert victim(1).result(timeout=WAIT) == 2
    kernel.cleanup()
    logged = _observer_errors_logged(caplog, "flowkernel_kernel_started")
    assert len(logged) == 1 and "StartRaises" in logged[0]
    assert _summary(caplog).endswith("observer hook errors: 1")


def test_flowkernel_kernel_stopping_raising_is_logged_counted_and_cleanup_finishes(
    load,
    caplog: pytest.LogCaptureFixture,  # type: ignore[no-untyped-def]
) -> None:
    class StopRaises:
        @flowkernel.hookimpl
        def flowkernel_kernel_stopping(self, kernel):  # type: ignore[no-untyped-def]
            raise Bug("cannot flush")

    caplog.set_level(logging.INFO, logger="flowkernel")
    kernel = load(StopRaises())
    futures = [victim(i) for i in range(4)]
    kernel.cleanup()  # returns: the executors were shut down despite the raise
    assert [f.result(timeout=WAIT) for f in futures] == [1, 2, 3, 4]
    assert kernel.hook_errors == 1
    assert kernel.cleanup_called and DataFlowKernelLoader._dfk is None
    logged = _observer_errors_logged(caplog, "flowkernel_kernel_stopping")
    assert len(logged) == 1 and "StopRaises" in logged[0]
    assert _summary(caplog).endswith("observer hook errors: 1")


def test_flowkernel_kernel_stopped_raising_is_logged_and_counted(
    load,
    caplog: pytest.LogCaptureFixture,  # type: ignore[no-untyped-def]
) -> None:
    class StoppedRaises:
        @flowkernel.hookimpl
        def flowkernel_kernel_stopped(self, kernel):  # type: ignore[no-untyped-def]
            raise Bug("cannot close the report")

    caplog.set_level(logging.INFO, logger="flowkernel")
    kernel = load(StoppedRaises())
    kernel.cleanup()
    assert kernel.hook_errors == 1
    logged = _observer_errors_logged(caplog, "flowkernel_kernel_stopped")
    assert len(logged) == 1 and "StoppedRaises" in logged[0]


def test_an_observer_error_log_record_carries_the_plugins_traceback(
    load,
    caplog: pytest.LogCaptureFixture,  # type: ignore[no-untyped-def]
) -> None:
    caplog.set_level(logging.ERROR, logger="flowkernel")
    load(StateObserverRaises())
    victim().result(timeout=WAIT)
    record = next(r for r in caplog.records if "flowkernel_task_state_changed" in r.getMessage())
    assert record.exc_info is not None and isinstance(record.exc_info[1], Bug)


# ---------------------------------------------------------------------------
# All at once: nothing hangs
# ---------------------------------------------------------------------------


def test_every_hook_failing_for_victims_at_once_leaves_every_future_resolved(
    load,  # type: ignore[no-untyped-def]
) -> None:
    class EverythingBroken(SelectRaises, StateObserverRaises):
        @flowkernel.hookimpl
        def flowkernel_kernel_started(self, kernel):  # type: ignore[no-untyped-def]
            raise Bug("start")

        @flowkernel.hookimpl
        def flowkernel_kernel_stopping(self, kernel):  # type: ignore[no-untyped-def]
            raise Bug("stop")

    kernel = load(EverythingBroken())
    futures: list[Future[Any]] = []
    for i in range(30):
        if i % 3 == 0:
            futures.append(victim(i))
        elif i % 3 == 1:
            futures.append(bystander(i))
        else:  # takes the victim and the bystander just before it
            futures.append(bystander(futures[-1], futures[-2]))
    assert kernel.wait_for_current_tasks(timeout=WAIT) == []
    kernel.cleanup()
    assert all(f.done() for f in futures)
    outcomes = [type(f.exception(timeout=WAIT)).__name__ for f in futures]
    assert outcomes == ["HookError", "NoneType", "DependencyError"] * 10
    # start + stop + two transitions per victim (unsched->pending->failed)
    assert kernel.hook_errors == 2 + 2 * 10


@st.composite
def _graphs(draw: st.DrawFn) -> list[tuple[bool, list[int]]]:
    """Tasks in submission order: (is a victim, indexes of earlier tasks it takes as inputs)."""
    size = draw(st.integers(min_value=1, max_value=15))
    tasks = []
    for i in range(size):
        inputs = draw(st.lists(st.integers(0, i - 1), max_size=3, unique=True)) if i else []
        tasks.append((draw(st.booleans()), inputs))
    return tasks


@settings(
    max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(graph=_graphs())
def test_flowkernel_select_executor_raising_for_random_victims_fails_exactly_them(
    config_factory: Callable[..., Any], graph: list[tuple[bool, list[int]]]
) -> None:
    class Broken(SelectRaises, StateObserverRaises):
        pass

    config = config_factory(executors=_two_executors(), plugins=[Broken()])
    with flowkernel.load(config) as kernel:
        futures: list[Future[Any]] = []
        for is_victim, inputs in graph:
            app = victim if is_victim else bystander
            futures.append(app(*(futures[i] for i in inputs)))
        outcomes = [type(f.exception(timeout=WAIT)) for f in futures]
        errors = kernel.hook_errors
    expected: list[type | None] = []
    for is_victim, inputs in graph:
        if any(expected[i] is not type(None) for i in inputs):
            expected.append(flowkernel.DependencyError)  # an input failed: it never launched
        elif is_victim:
            expected.append(flowkernel.HookError)
        else:
            expected.append(type(None))
    assert outcomes == expected
    # The raising observer saw each victim's two transitions and failed on both.
    assert errors == 2 * sum(is_victim for is_victim, _ in graph)
