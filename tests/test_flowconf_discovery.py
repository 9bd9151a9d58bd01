"""Where plugins come from: flowconf.py files, FLOWKERNEL_PLUGINS, Config(plugins=...), blocking."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import pytest
from _support import WAIT

import flowkernel
from flowkernel import python_app
from flowkernel.pluginmanager import build_plugins


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A project folder (it holds pyproject.toml) with flowconf discovery switched on."""
    root = tmp_path / "project"
    root.mkdir()
    (root / "pyproject.toml").write_text("[project]\nname = 'science'\n")
    monkeypatch.delenv("FLOWKERNEL_NOCONF")
    return root


def _write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text))
    return path


def _run_script(folder: Path, body: str) -> subprocess.CompletedProcess[str]:
    """Run a workflow script that lives in ``folder``, as a user would."""
    script = _write(folder / "workflow.py", body)
    env = {"PATH": "/usr/bin:/bin", "FLOWKERNEL_DISABLE_PLUGIN_AUTOLOAD": "1"}
    return subprocess.run(
        [sys.executable, str(script)],
        cwd=folder.parent,  # not the script's folder: discovery starts at the script
        env=env,
        capture_output=True,
        text=True,
        timeout=WAIT,
    )


_FLAKY_WORKFLOW = """
    import flowkernel

    tries = []

    @flowkernel.python_app
    def flaky():
        tries.append(1)
        if len(tries) < 4:
            raise TimeoutError("network hiccup")
        return "ok"

    with flowkernel.load(flowkernel.Config(retries=1, run_dir="runinfo")):
        try:
            print(flaky().result(timeout=30), len(tries))
        except TimeoutError:
            print("failed", len(tries))
    """


def test_flowkernel_retry_cost_from_a_flowconf_beside_the_script(project: Path) -> None:
    _write(
        project / "flowconf.py",
        """
        def flowkernel_retry_cost(exception, task):
            # Timeouts are free to retry; anything else is left to the default.
            return 0.0 if isinstance(exception, TimeoutError) else None
        """,
    )
    out = _run_script(project, _FLAKY_WORKFLOW)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["ok", "4"]


def test_flowkernel_retry_cost_from_the_nearest_flowconf_wins(project: Path) -> None:
    _write(
        project / "flowconf.py",
        """
        def flowkernel_retry_cost(exception, task):
            return 0.0
        """,
    )
    _write(
        project / "analysis" / "strict" / "flowconf.py",
        """
        import flowkernel

        @flowkernel.hookimpl
        def flowkernel_retry_cost(exception, task):
            return 100.0  # over any budget: no retries here
        """,
    )
    (project / "analysis" / "strict").mkdir(parents=True, exist_ok=True)
    nearest = _run_script(project / "analysis" / "strict", _FLAKY_WORKFLOW)
    assert nearest.returncode == 0, nearest.stderr
    assert nearest.stdout.split() == ["failed", "1"]
    # A sibling folder without its own flowconf gets the outer one.
    outer = _run_script(project / "analysis" / "lenient", _FLAKY_WORKFLOW)
    assert outer.stdout.split() == ["ok", "4"]


def test_flowkernel_select_executor_from_nested_flowconfs(
    project: Path, monkeypatch: pytest.MonkeyPatch, run_dir: str
) -> None:
    _write(
        project / "flowconf.py",
        """
        def flowkernel_select_executor(task, candidates):
            return "left"
        """,
    )
    inner = project / "sub"
    _write(
        inner / "flowconf.py",
        """
        def flowkernel_select_executor(task, candidates):
            return "right" if task.func_name.startswith("r_") else None
        """,
    )
    monkeypatch.chdir(inner)  # under pytest, discovery starts at the working directory

    @python_app
    def r_task() -> str:
        return threading.current_thread().name

    @python_app
    def other() -> str:
        return threading.current_thread().name

    executors = [
        flowkernel.ThreadPoolExecutor(label="left", thread_name_prefix="left"),
        flowkernel.ThreadPoolExecutor(label="right", thread_name_prefix="right"),
    ]
    with flowkernel.load(flowkernel.Config(executors=executors, run_dir=run_dir)) as kernel:
        inner_choice, outer_choice = r_task(), other()
        assert inner_choice.result(timeout=WAIT).startswith("right")
        assert outer_choice.result(timeout=WAIT).startswith("left")
        sources = [kernel.plugins.infos[name].path for name in kernel.plugins.infos]
    assert str(project / "flowconf.py") in sources and str(inner / "flowconf.py") in sources


def test_a_flowconf_above_the_project_root_is_not_loaded(project: Path) -> None:
    _write(
        project.parent / "flowconf.py",
        """
        def flowkernel_retry_cost(exception, task):
            return 0.0
        """,
    )
    plugins = build_plugins(flowkernel.Config(), start_dir=project)
    assert not any(info.source == "flowconf" for info in plugins.infos.values())


def test_flowkernel_noconf_switches_flowconf_discovery_off(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _write(project / "flowconf.py", "def flowkernel_retry_cost(exception, task):\n    return 0\n")
    monkeypatch.setenv("FLOWKERNEL_NOCONF", "1")
    plugins = build_plugins(flowkernel.Config(), start_dir=project)
    assert not any(info.source == "flowconf" for info in plugins.infos.values())


def test_a_flowconf_with_a_syntax_error_names_the_file_and_line(project: Path) -> None:
    path = _write(
        project / "flowconf.py", "def flowkernel_retry_cost(exception, task)\n    return 0\n"
    )
    with pytest.raises(flowkernel.PluginLoadError, match="syntax error") as info:
        build_plugins(flowkernel.Config(), start_dir=project)
    assert f"{path}:1" in str(info.value)


def test_a_flowconf_that_raises_on_import_names_the_file(project: Path) -> None:
    path = _write(project / "flowconf.py", "import a_module_nobody_installed\n")
    with pytest.raises(flowkernel.PluginLoadError, match="ModuleNotFoundError") as info:
        build_plugins(flowkernel.Config(), start_dir=project)
    assert str(path) in str(info.value)


def test_a_misspelled_hook_fails_at_load_time_with_a_suggestion(project: Path) -> None:
    path = _write(
        project / "flowconf.py",
        """
        import flowkernel

        @flowkernel.hookimpl
        def flowkernel_retry_costs(exception, task):
            return 0.0
        """,
    )
    with pytest.raises(flowkernel.PluginLoadError) as info:
        build_plugins(flowkernel.Config(), start_dir=project)
    message = str(info.value)
    assert "flowkernel_retry_costs" in message and "flowkernel_retry_cost" in message
    assert f"{path}:" in message


def test_a_hook_asking_for_an_argument_the_spec_lacks_fails_at_load_time(project: Path) -> None:
    _write(
        project / "flowconf.py",
        "def flowkernel_retry_cost(exception, task, budget):\n    return 0\n",
    )
    with pytest.raises(flowkernel.PluginLoadError, match="budget"):
        build_plugins(flowkernel.Config(), start_dir=project)


def test_modules_in_flowkernel_plugins_are_registered(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _write(
        tmp_path / "lab_plugins.py",
        """
        def flowkernel_kernel_started(kernel):
            kernel.started_by_lab_plugin = True
        """,
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv("FLOWKERNEL_PLUGINS", "lab_plugins")
    plugins = build_plugins(flowkernel.Config())
    assert plugins.infos["lab_plugins"].source == "FLOWKERNEL_PLUGINS"
    assert plugins.implementers("flowkernel_kernel_started")[0] == "lab_plugins"  # asked first


def test_a_flowkernel_plugins_module_that_does_not_import_is_named(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("FLOWKERNEL_PLUGINS", "no_such_plugin_module")
    with pytest.raises(flowkernel.PluginLoadError, match="'no_such_plugin_module'"):
        build_plugins(flowkernel.Config())


def test_config_plugins_accept_objects_and_module_paths(
    config_factory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _write(
        tmp_path / "site_policies.py",
        "def flowkernel_retry_cost(exception, task):\n    return 0.5\n",
    )
    monkeypatch.syspath_prepend(str(tmp_path))

    class Counter:
        calls = 0

        @flowkernel.hookimpl
        def flowkernel_kernel_started(self, kernel):  # type: ignore[no-untyped-def]
            Counter.calls += 1

    with flowkernel.load(config_factory(plugins=[Counter(), "site_policies"])) as kernel:
        assert Counter.calls == 1
        names = list(kernel.plugins.infos)
        assert kernel.plugins.implementers("flowkernel_retry_cost")[0] == "site_policies"
    assert any(name.endswith("Counter") for name in names)


def test_blocking_a_default_without_a_replacement_names_the_missing_role(config_factory) -> None:
    with pytest.raises(flowkernel.ConfigurationError) as info:
        flowkernel.load(config_factory(disable_plugins=["retries"]))
    message = str(info.value)
    assert "flowkernel_retry_cost" in message and "retries" in message


def test_flowkernel_disable_plugins_blocks_by_name(
    monkeypatch: pytest.MonkeyPatch, config_factory
) -> None:
    monkeypatch.setenv("FLOWKERNEL_DISABLE_PLUGINS", "selection")
    with pytest.raises(flowkernel.ConfigurationError, match="flowkernel_select_executor"):
        flowkernel.load(config_factory())


def test_flowkernel_executor_kinds_a_blocked_default_is_replaced_by_another_plugin(
    config_factory,
) -> None:
    class MyThreads(flowkernel.Executor):
        label = "threads"

        def submit(self, func, resource_specification, *args, **kwargs):  # type: ignore[no-untyped-def]
            from concurrent.futures import Future

            future: Future[object] = Future()
            future.set_result(("mine", func(*args, **kwargs)))
            return future

        def shutdown(self) -> None:
            pass

        @property
        def outstanding(self) -> int:
            return 0

    class MyKinds:
        @flowkernel.hookimpl
        def flowkernel_executor_kinds(self):  # type: ignore[no-untyped-def]
            return {"threads": lambda label="threads": MyThreads()}

    @python_app
    def one() -> int:
        return 1

    config = config_factory(disable_plugins=["threads"], plugins=[MyKinds()])
    with flowkernel.load(config):  # no executors given: kind "threads" is made
        assert one().result(timeout=WAIT) == ("mine", 1)


def test_flowkernel_executor_kinds_offered_twice_is_an_error_naming_both(
    config_factory,
) -> None:
    class AlsoThreads:
        @flowkernel.hookimpl
        def flowkernel_executor_kinds(self):  # type: ignore[no-untyped-def]
            return {"threads": flowkernel.ThreadPoolExecutor}

    with pytest.raises(flowkernel.PluginLoadError) as info:
        flowkernel.load(config_factory(plugins=[AlsoThreads()]))
    assert "'threads'" in str(info.value) and "AlsoThreads" in str(info.value)


def test_flowkernel_dependency_resolver_from_a_plugin_replaces_the_default(
    config_factory,
) -> None:
    from concurrent.futures import Future

    class DictValues:
        """Finds futures among the values of dict arguments, and nowhere else."""

        def traverse_to_gather(self, obj: object) -> list[Future[object]]:
            if isinstance(obj, dict):
                return [v for v in obj.values() if isinstance(v, Future)]
            return [obj] if isinstance(obj, Future) else []

        def traverse_to_unwrap(self, obj: object) -> object:
            if isinstance(obj, dict):
                return {k: v.result() if isinstance(v, Future) else v for k, v in obj.items()}
            return obj.result() if isinstance(obj, Future) else obj

    class Plugin:
        @flowkernel.hookimpl
        def flowkernel_dependency_resolver(self, config):  # type: ignore[no-untyped-def]
            return DictValues()

    @python_app
    def value() -> int:
        return 5

    @python_app
    def total(d: dict[str, int]) -> int:
        return sum(d.values())

    with flowkernel.load(config_factory(plugins=[Plugin()])):
        assert total({"a": value(), "b": 1}).result(timeout=WAIT) == 6


def test_flowkernel_kernel_started_flowkernel_kernel_stopping_flowkernel_kernel_stopped(
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


def test_flowkernel_trace_plugins_prints_every_hook_call(
    config_factory, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("FLOWKERNEL_TRACE_PLUGINS", "1")

    @python_app
    def fails() -> None:
        raise ValueError("x")

    with flowkernel.load(config_factory(retries=1)):
        with pytest.raises(ValueError):
            fails().result(timeout=WAIT)
    err = capfd.readouterr().err
    assert "[flowkernel trace] flowkernel_retry_cost(" in err
    assert "<- retries: 1.0" in err


def test_plugins_are_not_loaded_by_import_flowkernel() -> None:
    code = (
        "import sys, flowkernel; "
        "print(any(m.startswith('flowkernel.plugins.') for m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=WAIT)
    assert out.stdout.strip() == "False", out.stderr


def test_no_hook_is_called_that_no_plugin_implements(
    config_factory, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("FLOWKERNEL_TRACE_PLUGINS", "1")

    @python_app
    def ok() -> int:
        return 1

    with flowkernel.load(config_factory()) as kernel:
        ok().result(timeout=WAIT)
        implemented = {
            name for name in flowkernel.hookspecs.HOOK_NAMES if kernel.plugins.implements(name)
        }
    called = {
        line.split("(")[0].split()[-1]
        for line in capfd.readouterr().err.splitlines()
        if line.startswith("[flowkernel trace]")
    }
    assert called <= implemented
    assert "flowkernel_task_state_changed" not in implemented
