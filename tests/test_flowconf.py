"""flowconf.py files: local plugins found from the running script's folder up to the project root.

Kernel behaviour is shown the way a user meets it: a workflow script in a
nested folder of a project, run in a fresh interpreter from another working
directory, so discovery starts at the script's folder.  Load-time checks build
the plugin set directly with ``build_plugins(start_dir=...)``.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from _support import WAIT

import flowkernel
from flowkernel.pluginmanager import Plugins, build_plugins

_PLUGIN_ENV = (
    "FLOWKERNEL_PLUGINS",
    "FLOWKERNEL_DISABLE_PLUGINS",
    "FLOWKERNEL_NOCONF",
    "FLOWKERNEL_TRACE_PLUGINS",
    "FLOWKERNEL_DISABLE_PLUGIN_AUTOLOAD",
)


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """``tmp_path/project``, a project root (it holds pyproject.toml); flowconf discovery on."""
    root = tmp_path / "project"
    root.mkdir()
    (root / "pyproject.toml").write_text("[project]\nname = 'lab'\n")
    monkeypatch.delenv("FLOWKERNEL_NOCONF", raising=False)
    return root


def _write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text).lstrip("\n"))
    return path


def _env(**extra: str) -> dict[str, str]:
    """This process's environment without plugin settings, autoload off, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if k not in _PLUGIN_ENV}
    env["FLOWKERNEL_DISABLE_PLUGIN_AUTOLOAD"] = "1"
    env.update(extra)
    return env


def _run_script(
    folder: Path, body: str, cwd: Path, **extra_env: str
) -> subprocess.CompletedProcess[str]:
    """Write ``workflow.py`` into ``folder`` and run it from ``cwd``, as a user would."""
    script = _write(folder / "workflow.py", body)
    return subprocess.run(
        [sys.executable, str(script)],
        cwd=cwd,
        env=_env(**extra_env),
        capture_output=True,
        text=True,
        timeout=WAIT,
    )


def _flowconf_paths(plugins: Plugins) -> list[str]:
    """Registered flowconf files, in registration order (outermost first)."""
    return [info.path or "" for info in plugins.infos.values() if info.source == "flowconf"]


# A task that fails until its fourth try; prints what came back and how many tries ran.
_FLAKY = """
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

# Six tasks on two executors; prints where each ran (thread name prefix and executor label).
_WHERE = """
    import threading
    import flowkernel

    @flowkernel.python_app
    def where():
        return threading.current_thread().name.split("-")[0]

    @flowkernel.python_app
    def urgent_where():
        return threading.current_thread().name.split("-")[0]

    executors = [
        flowkernel.ThreadPoolExecutor(label="left", thread_name_prefix="left"),
        flowkernel.ThreadPoolExecutor(label="right", thread_name_prefix="right"),
    ]
    with flowkernel.load(flowkernel.Config(executors=executors, run_dir="runinfo")):
        futures = [where() for _ in range(3)] + [urgent_where() for _ in range(3)]
        print(*(f.result(timeout=30) for f in futures))
        print(*(f.task_record.executor for f in futures))
    """

_ALWAYS_RIGHT = """
    def flowkernel_select_executor(task, candidates):
        return "right"
    """


# ---------------------------------------------------------------------------
# flowkernel_retry_cost
# ---------------------------------------------------------------------------


def test_flowkernel_retry_cost_from_nearest_flowconf_wins(project: Path, tmp_path: Path) -> None:
    _write(
        project / "flowconf.py",
        """
        def flowkernel_retry_cost(exception, task):
            return 0.0  # every failure is free
        """,
    )
    _write(
        project / "pipelines" / "strict" / "flowconf.py",
        """
        def flowkernel_retry_cost(exception, task):
            return 100.0  # over any budget: never retried
        """,
    )
    out = _run_script(project / "pipelines" / "strict", _FLAKY, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["failed", "1"]


def test_flowkernel_retry_cost_from_an_outer_flowconf_reaches_scripts_in_subfolders(
    project: Path, tmp_path: Path
) -> None:
    _write(
        project / "flowconf.py",
        """
        def flowkernel_retry_cost(exception, task):
            return 0.0 if isinstance(exception, TimeoutError) else None
        """,
    )
    _write(project / "pipelines" / "strict" / "flowconf.py", _ALWAYS_RIGHT)  # not about retries
    out = _run_script(project / "pipelines" / "strict", _FLAKY, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["ok", "4"]  # retried past a budget of 1, for free


def test_flowkernel_retry_cost_of_zero_until_a_count_then_over_the_budget(
    project: Path, tmp_path: Path
) -> None:
    _write(
        project / "flowconf.py",
        """
        def flowkernel_retry_cost(exception, task):
            # task.fail_count already counts this failure
            return 0.0 if task.fail_count < 3 else 10.0
        """,
    )
    body = """
        import flowkernel

        tries = []

        @flowkernel.python_app
        def always_fails():
            tries.append(1)
            raise OSError("disk full")

        with flowkernel.load(flowkernel.Config(retries=1, run_dir="runinfo")):
            future = always_fails()
            error = future.exception(timeout=30)
            print(type(error).__name__, len(tries), future.task_record.fail_count)
        """
    out = _run_script(project, body, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["OSError", "3", "3"]


def test_flowkernel_retry_cost_in_a_flowconf_deferring_with_none_leaves_the_default(
    project: Path, tmp_path: Path
) -> None:
    _write(
        project / "flowconf.py",
        """
        def flowkernel_retry_cost(exception, task):
            return None  # not this plugin's decision
        """,
    )
    out = _run_script(project, _FLAKY, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["failed", "2"]  # the default: 1 per failure, budget 1


# ---------------------------------------------------------------------------
# flowkernel_select_executor
# ---------------------------------------------------------------------------


def test_flowkernel_select_executor_from_nearest_flowconf_wins(
    project: Path, tmp_path: Path
) -> None:
    _write(
        project / "flowconf.py",
        """
        def flowkernel_select_executor(task, candidates):
            return "left"
        """,
    )
    _write(project / "runs" / "flowconf.py", _ALWAYS_RIGHT)
    out = _run_script(project / "runs", _WHERE, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    threads, labels = out.stdout.splitlines()
    assert threads.split() == ["right"] * 6
    assert labels.split() == ["right"] * 6


def test_flowkernel_select_executor_nearest_flowconf_deferring_leaves_the_choice_to_the_outer(
    project: Path, tmp_path: Path
) -> None:
    _write(
        project / "flowconf.py",
        """
        def flowkernel_select_executor(task, candidates):
            return "left"
        """,
    )
    _write(
        project / "runs" / "flowconf.py",
        """
        def flowkernel_select_executor(task, candidates):
            return "right" if task.func_name.startswith("urgent_") else None
        """,
    )
    out = _run_script(project / "runs", _WHERE, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    threads, labels = out.stdout.splitlines()
    assert threads.split() == ["left"] * 3 + ["right"] * 3
    assert labels.split() == ["left"] * 3 + ["right"] * 3


def test_flowkernel_select_executor_from_a_sibling_folders_flowconf_is_not_used(
    project: Path, tmp_path: Path
) -> None:
    _write(
        project / "flowconf.py",
        """
        def flowkernel_select_executor(task, candidates):
            return "left"
        """,
    )
    _write(project / "runs" / "gpu" / "flowconf.py", _ALWAYS_RIGHT)
    out = _run_script(project / "runs" / "cpu", _WHERE, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines()[0].split() == ["left"] * 6


def test_flowkernel_select_executor_flowconf_is_found_from_the_script_not_the_working_directory(
    project: Path, tmp_path: Path
) -> None:
    _write(project / "runs" / "flowconf.py", _ALWAYS_RIGHT)
    elsewhere = tmp_path / "elsewhere"
    _write(
        elsewhere / "flowconf.py",
        """
        def flowkernel_select_executor(task, candidates):
            return "left"
        """,
    )
    (elsewhere / "pyproject.toml").write_text("")
    out = _run_script(project / "runs", _WHERE, cwd=elsewhere)
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines()[0].split() == ["right"] * 6


def test_flowkernel_select_executor_flowconf_is_found_from_the_working_directory_with_python_m(
    project: Path,
) -> None:
    runs = project / "runs"
    _write(runs / "flowconf.py", _ALWAYS_RIGHT)
    _write(runs / "workflow.py", _WHERE)
    out = subprocess.run(
        [sys.executable, "-m", "workflow"],
        cwd=runs,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=WAIT,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines()[0].split() == ["right"] * 6


def test_flowkernel_select_executor_flowconf_of_the_project_is_used_under_the_pytest_command(
    project: Path,
) -> None:
    # A workflow's own test suite, run with the ``pytest`` command from the project.
    _write(project / "flowconf.py", _ALWAYS_RIGHT)
    _write(
        project / "tests" / "test_pipeline.py",
        """
        import threading
        import flowkernel

        @flowkernel.python_app
        def where():
            return threading.current_thread().name

        def test_runs_where_the_flowconf_says(tmp_path):
            executors = [
                flowkernel.ThreadPoolExecutor(label="left", thread_name_prefix="left"),
                flowkernel.ThreadPoolExecutor(label="right", thread_name_prefix="right"),
            ]
            config = flowkernel.Config(executors=executors, run_dir=str(tmp_path))
            with flowkernel.load(config):
                assert where().result(timeout=30).startswith("right")
        """,
    )
    pytest_command = Path(sys.executable).parent / "pytest"
    assert pytest_command.is_file(), f"no pytest command beside {sys.executable}"
    out = subprocess.run(
        [str(pytest_command), "-q", "-p", "no:cacheprovider", "tests"],
        cwd=project,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=WAIT * 2,
    )
    assert out.returncode == 0, out.stdout + out.stderr


# ---------------------------------------------------------------------------
# With and without the decorator
# ---------------------------------------------------------------------------


def test_flowconf_functions_with_and_without_hookimpl_are_both_implementations(
    project: Path,
) -> None:
    path = _write(
        project / "flowconf.py",
        """
        import flowkernel

        @flowkernel.hookimpl
        def flowkernel_select_executor(task, candidates):
            return candidates[-1]

        def flowkernel_retry_cost(exception, task):
            return 0.0

        def helper_that_is_not_a_hook():
            return 1
        """,
    )
    plugins = build_plugins(flowkernel.Config(), start_dir=project)
    info = plugins.infos[str(path)]
    assert info.source == "flowconf"
    assert info.hooks == ["flowkernel_retry_cost", "flowkernel_select_executor"]
    assert plugins.implementers("flowkernel_retry_cost")[0] == str(path)
    assert plugins.implementers("flowkernel_select_executor")[0] == str(path)


def test_flowkernel_retry_cost_undecorated_and_flowkernel_select_executor_decorated_in_a_flowconf(
    project: Path, tmp_path: Path
) -> None:
    _write(
        project / "flowconf.py",
        """
        import flowkernel

        @flowkernel.hookimpl
        def flowkernel_select_executor(task, candidates):
            return "right"

        def flowkernel_retry_cost(exception, task):
            return 0.0
        """,
    )
    body = """
        import threading
        import flowkernel

        tries = []

        @flowkernel.python_app
        def flaky():
            tries.append(threading.current_thread().name.split("-")[0])
            if len(tries) < 3:
                raise TimeoutError("again")
            return "ok"

        executors = [
            flowkernel.ThreadPoolExecutor(label="left", thread_name_prefix="left"),
            flowkernel.ThreadPoolExecutor(label="right", thread_name_prefix="right"),
        ]
        config = flowkernel.Config(executors=executors, retries=1, run_dir="runinfo")
        with flowkernel.load(config):
            print(flaky().result(timeout=30), *tries)
        """
    out = _run_script(project, body, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    # Three tries within a budget of 1 (free retries), each on the executor the flowconf chose.
    assert out.stdout.split() == ["ok", "right", "right", "right"]


def test_a_tryfirst_hookimpl_in_an_outer_flowconf_is_asked_before_a_nearer_one(
    project: Path,
) -> None:
    outer = _write(
        project / "flowconf.py",
        """
        import flowkernel

        @flowkernel.hookimpl(tryfirst=True)
        def flowkernel_retry_cost(exception, task):
            return 7.0
        """,
    )
    inner = _write(
        project / "sub" / "flowconf.py",
        """
        def flowkernel_retry_cost(exception, task):
            return 0.0
        """,
    )
    plugins = build_plugins(flowkernel.Config(), start_dir=project / "sub")
    assert plugins.implementers("flowkernel_retry_cost")[:2] == [str(outer), str(inner)]


# ---------------------------------------------------------------------------
# Which files are found
# ---------------------------------------------------------------------------


def test_nested_flowconfs_are_registered_outermost_first_and_asked_nearest_first(
    project: Path,
) -> None:
    hook = "def flowkernel_retry_cost(exception, task):\n    return None\n"
    outer = _write(project / "flowconf.py", hook)
    middle = _write(project / "a" / "flowconf.py", hook)
    inner = _write(project / "a" / "b" / "c" / "flowconf.py", hook)
    plugins = build_plugins(flowkernel.Config(), start_dir=project / "a" / "b" / "c")
    assert _flowconf_paths(plugins) == [str(outer), str(middle), str(inner)]
    asked = plugins.implementers("flowkernel_retry_cost")
    assert asked[:3] == [str(inner), str(middle), str(outer)]
    assert asked[-1] == "retries"  # flowkernel's default comes last


def test_a_flowconf_above_the_project_root_is_not_loaded(project: Path) -> None:
    above = _write(
        project.parent / "flowconf.py",
        """
        def flowkernel_retry_cost(exception, task):
            return 0.0
        """,
    )
    own = _write(project / "flowconf.py", "def flowkernel_retry_cost(exception, task):\n    pass\n")
    inner = _write(project / "sub" / "flowconf.py", _ALWAYS_RIGHT)
    plugins = build_plugins(flowkernel.Config(), start_dir=project / "sub")
    assert _flowconf_paths(plugins) == [str(own), str(inner)]
    assert str(above) not in plugins.infos


def test_a_flowconf_above_the_project_root_does_not_affect_a_script(
    project: Path, tmp_path: Path
) -> None:
    _write(
        project.parent / "flowconf.py",
        """
        def flowkernel_retry_cost(exception, task):
            return 0.0
        """,
    )
    out = _run_script(project / "pipelines", _FLAKY, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["failed", "2"]  # the default cost, not the free retries


def test_a_git_checkout_marks_the_project_root_like_pyproject(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("FLOWKERNEL_NOCONF", raising=False)
    hook = "def flowkernel_retry_cost(exception, task):\n    return None\n"
    _write(tmp_path / "flowconf.py", hook)
    checkout = tmp_path / "checkout"
    (checkout / ".git").mkdir(parents=True)
    own = _write(checkout / "flowconf.py", hook)
    worktree = tmp_path / "worktree"  # a git worktree has a .git *file*
    _write(worktree / ".git", "gitdir: /somewhere/else\n")
    worktree_own = _write(worktree / "sub" / "flowconf.py", hook)
    assert _flowconf_paths(build_plugins(flowkernel.Config(), start_dir=checkout)) == [str(own)]
    found = _flowconf_paths(build_plugins(flowkernel.Config(), start_dir=worktree / "sub"))
    assert found == [str(worktree_own)]


def test_flowkernel_noconf_disables_flowconf_files(
    project: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _write(
        project / "flowconf.py",
        """
        def flowkernel_retry_cost(exception, task):
            return 0.0
        """,
    )
    monkeypatch.setenv("FLOWKERNEL_NOCONF", "1")
    assert _flowconf_paths(build_plugins(flowkernel.Config(), start_dir=project)) == []
    out = _run_script(project, _FLAKY, cwd=tmp_path, FLOWKERNEL_NOCONF="1")
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["failed", "2"]


@pytest.mark.parametrize("value", ["0", "false", "no", ""])
def test_flowkernel_noconf_set_to_a_false_value_keeps_flowconf_files(
    project: Path, monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    path = _write(project / "flowconf.py", _ALWAYS_RIGHT)
    monkeypatch.setenv("FLOWKERNEL_NOCONF", value)
    assert _flowconf_paths(build_plugins(flowkernel.Config(), start_dir=project)) == [str(path)]


def test_a_flowconf_is_blocked_by_its_path(project: Path) -> None:
    path = _write(project / "flowconf.py", _ALWAYS_RIGHT)
    plugins = build_plugins(flowkernel.Config(disable_plugins=[str(path)]), start_dir=project)
    assert _flowconf_paths(plugins) == []
    assert plugins.implementers("flowkernel_select_executor") == ["selection"]


def test_an_edited_flowconf_is_read_again_by_the_next_kernel(project: Path) -> None:
    path = _write(
        project / "flowconf.py", "def flowkernel_retry_cost(exception, task):\n    pass\n"
    )
    first = build_plugins(flowkernel.Config(), start_dir=project)
    assert first.infos[str(path)].hooks == ["flowkernel_retry_cost"]
    _write(path, _ALWAYS_RIGHT)
    stat = path.stat()
    os.utime(path, (stat.st_atime, stat.st_mtime + 5))  # a later edit, whatever the clock
    second = build_plugins(flowkernel.Config(), start_dir=project)
    assert second.infos[str(path)].hooks == ["flowkernel_select_executor"]


# ---------------------------------------------------------------------------
# Broken flowconf files fail clearly, at load time
# ---------------------------------------------------------------------------


def test_a_flowconf_with_a_syntax_error_is_an_error_naming_the_file_and_line(
    project: Path,
) -> None:
    path = _write(
        project / "sub" / "flowconf.py",
        """
        # policies for this folder

        def flowkernel_retry_cost(exception, task)
            return 0.0
        """,
    )
    with pytest.raises(flowkernel.PluginLoadError) as info:
        build_plugins(flowkernel.Config(), start_dir=project / "sub")
    assert f"{path}:3" in str(info.value)
    assert "syntax" in str(info.value).lower()
    assert isinstance(info.value.__cause__, SyntaxError)


def test_a_flowconf_that_raises_on_import_is_an_error_naming_the_file_and_the_exception(
    project: Path,
) -> None:
    path = _write(
        project / "flowconf.py",
        """
        LIMITS = {"cpu": 4}
        GPU_LIMIT = LIMITS["gpu"]
        """,
    )
    with pytest.raises(flowkernel.PluginLoadError) as info:
        build_plugins(flowkernel.Config(), start_dir=project)
    message = str(info.value)
    assert str(path) in message and "KeyError" in message and "'gpu'" in message
    assert isinstance(info.value.__cause__, KeyError)


def test_a_broken_flowconf_stops_the_script_with_a_message_naming_it(
    project: Path, tmp_path: Path
) -> None:
    path = _write(project / "runs" / "flowconf.py", "raise RuntimeError('site not configured')\n")
    out = _run_script(project / "runs", _FLAKY, cwd=tmp_path)
    assert out.returncode != 0
    assert "PluginLoadError" in out.stderr
    assert str(path) in out.stderr and "site not configured" in out.stderr


def test_a_broken_flowconf_can_be_imported_again_once_fixed(project: Path) -> None:
    path = _write(project / "flowconf.py", "raise RuntimeError('half written')\n")
    with pytest.raises(flowkernel.PluginLoadError):
        build_plugins(flowkernel.Config(), start_dir=project)
    _write(path, _ALWAYS_RIGHT)
    stat = path.stat()
    os.utime(path, (stat.st_atime, stat.st_mtime + 5))
    plugins = build_plugins(flowkernel.Config(), start_dir=project)
    assert plugins.implementers("flowkernel_select_executor")[0] == str(path)


def test_flowkernel_retry_costs_misspelled_in_a_flowconf_fails_at_load_naming_file_line_and_hook(
    project: Path,
) -> None:
    path = _write(
        project / "flowconf.py",
        """
        import math


        def flowkernel_retry_costs(exception, task):
            return 0.0
        """,
    )
    with pytest.raises(flowkernel.PluginLoadError) as info:
        build_plugins(flowkernel.Config(), start_dir=project)
    message = str(info.value)
    assert f"{path}:4" in message  # the line of the def
    assert "flowkernel_retry_costs" in message
    assert "did you mean flowkernel_retry_cost?" in message


def test_flowkernel_select_executor_misspelled_with_the_decorator_fails_at_load_with_a_suggestion(
    project: Path,
) -> None:
    path = _write(
        project / "flowconf.py",
        """
        import flowkernel

        @flowkernel.hookimpl
        def flowkernel_select_executer(task, candidates):
            return None
        """,
    )
    with pytest.raises(flowkernel.PluginLoadError) as info:
        build_plugins(flowkernel.Config(), start_dir=project)
    message = str(info.value)
    assert f"{path}:3" in message  # where the function's source starts: its decorator
    assert "flowkernel_select_executer" in message
    assert "did you mean flowkernel_select_executor?" in message


def test_a_misspelled_hook_in_a_flowconf_stops_a_script_before_any_task_runs(
    project: Path, tmp_path: Path
) -> None:
    path = _write(
        project / "flowconf.py",
        """
        def flowkernel_retry_costs(exception, task):
            return 0.0
        """,
    )
    body = """
        import flowkernel

        @flowkernel.python_app
        def work():
            print("RAN")

        with flowkernel.load(flowkernel.Config(run_dir="runinfo")):
            work().result(timeout=30)
        """
    out = _run_script(project, body, cwd=tmp_path)
    assert out.returncode != 0
    assert "RAN" not in out.stdout
    assert f"{path}:1" in out.stderr and "flowkernel_retry_cost?" in out.stderr


def test_flowkernel_select_executor_in_a_flowconf_asking_for_an_unknown_argument_fails_at_load(
    project: Path,
) -> None:
    path = _write(
        project / "flowconf.py",
        """
        def flowkernel_select_executor(task, candidates, labels):
            return None
        """,
    )
    with pytest.raises(flowkernel.PluginLoadError) as info:
        build_plugins(flowkernel.Config(), start_dir=project)
    message = str(info.value)
    assert f"{path}:1" in message and "labels" in message
    assert "candidates" in message and "task" in message  # what the hook does offer
