"""A real third-party plugin: its own distribution, installed with pip, found through entry points.

``tests/fixtures/fk_extra_executor`` is a tiny distribution (``fk-extra-executor``)
whose ``flowkernel`` entry point ``extra_executor`` adds the executor kind
``inline``; ``tests/fixtures/fk_broken_plugin`` (``fk-broken-plugin``) has an
entry point ``broken_on_import`` whose module raises when imported.  Each is
installed once per session with ``pip install --target`` (offline, from a copy
of the fixture so no build files land in the repository), and every behaviour
is shown in a fresh interpreter with the target on ``PYTHONPATH``, since entry
points are read from what is installed, not from this process.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from _support import WAIT

FIXTURES = Path(__file__).parent / "fixtures"
PLUGIN_ENV = (
    "FLOWKERNEL_PLUGINS",
    "FLOWKERNEL_DISABLE_PLUGINS",
    "FLOWKERNEL_NOCONF",
    "FLOWKERNEL_TRACE_PLUGINS",
    "FLOWKERNEL_DISABLE_PLUGIN_AUTOLOAD",
)

EXTRA_DIST = "fk-extra-executor"
EXTRA_VERSION = "0.3.0"
EXTRA_PLUGIN = "extra_executor"
BROKEN_DIST = "fk-broken-plugin"
BROKEN_VERSION = "0.0.7"
BROKEN_PLUGIN = "broken_on_import"


def _pip_install(fixture: str, workdir: Path) -> Path:
    """Install one fixture distribution into ``workdir/site`` and return that folder."""
    source = workdir / "src"
    shutil.copytree(
        FIXTURES / fixture, source, ignore=shutil.ignore_patterns("build", "*.egg-info")
    )
    target = workdir / "site"
    command = [sys.executable, "-m", "pip", "install", "--no-deps", "--no-build-isolation"]
    command += ["--no-index", "--disable-pip-version-check", "--target", str(target), str(source)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, f"pip install of {fixture} failed:\n{done.stdout}\n{done.stderr}"
    return target


@pytest.fixture(scope="session")
def extra_site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _pip_install("fk_extra_executor", tmp_path_factory.mktemp("fk_extra_executor"))


@pytest.fixture(scope="session")
def broken_site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _pip_install("fk_broken_plugin", tmp_path_factory.mktemp("fk_broken_plugin"))


def _run(argv: list[str], site: Path, cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    """Run ``argv`` with ``site`` importable, plugin autoload on and no flowconf files."""
    environ = {k: v for k, v in os.environ.items() if k not in PLUGIN_ENV}
    environ["PYTHONPATH"] = str(site)
    environ["FLOWKERNEL_NOCONF"] = "1"
    environ.update(env)
    return subprocess.run(argv, capture_output=True, text=True, timeout=WAIT, env=environ, cwd=cwd)


def _python(code: str, site: Path, cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    return _run([sys.executable, "-c", textwrap.dedent(code)], site, cwd, **env)


def _flowkernel_command() -> str:
    """The ``flowkernel`` console script of the interpreter running the tests."""
    script = Path(sys.executable).parent / "flowkernel"
    assert script.is_file(), (
        f"flowkernel's console script is not installed next to {sys.executable}"
    )
    return str(script)


def _listing(site: Path, cwd: Path, **env: str) -> dict[str, dict[str, object]]:
    done = _run([sys.executable, "-m", "flowkernel", "plugins", "--json"], site, cwd, **env)
    assert done.returncode == 0, done.stderr
    return {entry["name"]: entry for entry in json.loads(done.stdout)}


def _known_kinds(message: str) -> list[str]:
    """The kinds an unknown-kind error lists (``...; the installed plugins provide: a, b``)."""
    assert "the installed plugins provide: " in message, message
    return message.split("the installed plugins provide: ", 1)[1].strip().split(", ")


# A workflow run on whatever executor ``executor`` names; prints JSON for the test to check.
WORKFLOW = """
import json, threading
import flowkernel

@flowkernel.python_app
def square(x):
    return x * x, threading.current_thread().name

@flowkernel.python_app
def total(*pairs):
    return sum(value for value, _ in pairs)

with flowkernel.load(config):
    squares = [square(i) for i in range(5)]
    pairs = [f.result(timeout=30) for f in squares]
    result = total(*squares).result(timeout=30)
print(json.dumps({
    "type": type(executor).__module__ + "." + type(executor).__name__,
    "label": executor.label,
    "squares": [value for value, _ in pairs],
    "threads": sorted({name for _, name in pairs}),
    "total": result,
}))
"""


# -- discovery ---------------------------------------------------------------


def test_the_plugins_command_lists_an_installed_plugin_with_its_distribution_and_hooks(
    extra_site: Path, tmp_path: Path
) -> None:
    done = _run([_flowkernel_command(), "plugins"], extra_site, tmp_path)

    assert done.returncode == 0, done.stderr
    assert f"{EXTRA_PLUGIN}  (entry point of {EXTRA_DIST} {EXTRA_VERSION})" in done.stdout
    block = done.stdout.split(f"{EXTRA_PLUGIN}  (", 1)[1]
    assert f"file:  {extra_site / 'fk_extra_executor' / 'plugin.py'}" in block
    assert "hooks: flowkernel_executor_kinds" in block
    assert f"inline ({EXTRA_PLUGIN})" in done.stdout


def test_plugins_json_gives_the_entry_point_origin_version_and_hooks_of_an_installed_plugin(
    extra_site: Path, tmp_path: Path
) -> None:
    listing = _listing(extra_site, tmp_path)

    assert listing[EXTRA_PLUGIN] == {
        "name": EXTRA_PLUGIN,
        "source": "entry point",
        "module": "fk_extra_executor.plugin",
        "path": str(extra_site / "fk_extra_executor" / "plugin.py"),
        "distribution": EXTRA_DIST,
        "version": EXTRA_VERSION,
        "hooks": ["flowkernel_executor_kinds"],
    }
    assert {"threads", "dependencies", "selection", "retries"} <= set(listing)


def test_plugins_filtered_by_hook_lists_the_installed_plugin_next_to_the_default(
    extra_site: Path, tmp_path: Path
) -> None:
    argv = [sys.executable, "-m", "flowkernel", "plugins", "--json"]
    done = _run([*argv, "--hook", "flowkernel_executor_kinds"], extra_site, tmp_path)

    assert done.returncode == 0, done.stderr
    assert {EXTRA_PLUGIN, "threads"} <= {entry["name"] for entry in json.loads(done.stdout)}


# -- using the plugin's executor kind ------------------------------------------


def test_make_executor_builds_the_installed_kind_and_a_workflow_runs_on_it(
    extra_site: Path, tmp_path: Path
) -> None:
    code = f"""
    import flowkernel
    executor = flowkernel.make_executor("inline", label="solo", thread_name="fk-solo-worker")
    config = flowkernel.Config(executors=[executor], run_dir={str(tmp_path / "runinfo")!r})
    """
    done = _python(textwrap.dedent(code) + WORKFLOW, extra_site, tmp_path)

    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == {
        "type": "fk_extra_executor.executor.InlineExecutor",
        "label": "solo",
        "squares": [0, 1, 4, 9, 16],
        "threads": ["fk-solo-worker"],
        "total": 30,
    }


def test_a_config_file_executors_table_builds_the_installed_kind_and_a_workflow_runs_on_it(
    extra_site: Path, tmp_path: Path
) -> None:
    config_file = tmp_path / "flowkernel.toml"
    config_file.write_text(
        textwrap.dedent(
            f"""\
            retries = 1
            run_dir = {str(tmp_path / "runinfo")!r}

            [[executors]]
            kind = "inline"
            label = "from-file"
            thread_name = "fk-file-worker"
            """
        ),
        encoding="utf-8",
    )
    code = f"""
    import flowkernel
    config = flowkernel.Config.from_toml({str(config_file)!r})
    assert config.retries == 1 and len(config.executors) == 1, config
    executor = config.executors[0]
    """
    done = _python(textwrap.dedent(code) + WORKFLOW, extra_site, tmp_path)

    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == {
        "type": "fk_extra_executor.executor.InlineExecutor",
        "label": "from-file",
        "squares": [0, 1, 4, 9, 16],
        "threads": ["fk-file-worker"],
        "total": 30,
    }


def test_a_kernel_started_without_blocks_registers_the_installed_plugin(
    extra_site: Path, tmp_path: Path
) -> None:
    code = f"""
    import flowkernel
    kernel = flowkernel.load(flowkernel.Config(run_dir={str(tmp_path / "runinfo")!r}))
    kinds = kernel.plugins.executor_kinds()
    print(kinds["inline"][0], "{EXTRA_PLUGIN}" in kernel.plugins.infos)
    kernel.cleanup()
    """
    done = _python(code, extra_site, tmp_path)

    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"{EXTRA_PLUGIN} True"


# -- turning it off -------------------------------------------------------------


def test_with_autoload_disabled_an_installed_plugin_is_not_listed(
    extra_site: Path, tmp_path: Path
) -> None:
    listing = _listing(extra_site, tmp_path, FLOWKERNEL_DISABLE_PLUGIN_AUTOLOAD="1")

    assert EXTRA_PLUGIN not in listing
    assert {"threads", "dependencies", "selection", "retries"} <= set(listing)


def test_with_autoload_disabled_make_executor_of_its_kind_fails_naming_the_known_kinds(
    extra_site: Path, tmp_path: Path
) -> None:
    code = """
    import flowkernel
    try:
        flowkernel.make_executor("inline", label="solo")
    except flowkernel.ConfigurationError as exc:
        print(exc)
    else:
        print("built an inline executor")
    """
    done = _python(code, extra_site, tmp_path, FLOWKERNEL_DISABLE_PLUGIN_AUTOLOAD="1")

    assert done.returncode == 0, done.stderr
    assert "unknown executor kind 'inline'" in done.stdout
    assert "threads" in _known_kinds(done.stdout)


def test_with_autoload_disabled_a_plugin_named_in_flowkernel_plugins_still_loads(
    extra_site: Path, tmp_path: Path
) -> None:
    code = """
    import flowkernel
    print(type(flowkernel.make_executor("inline", label="solo")).__name__)
    """
    done = _python(
        code,
        extra_site,
        tmp_path,
        FLOWKERNEL_DISABLE_PLUGIN_AUTOLOAD="1",
        FLOWKERNEL_PLUGINS="fk_extra_executor.plugin",
    )

    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "InlineExecutor"


def test_blocking_an_installed_plugin_by_environment_hides_it_and_its_kind(
    extra_site: Path, tmp_path: Path
) -> None:
    code = """
    import flowkernel
    try:
        flowkernel.make_executor("inline")
    except flowkernel.ConfigurationError as exc:
        print(exc)
    """
    listing = _listing(extra_site, tmp_path, FLOWKERNEL_DISABLE_PLUGINS=EXTRA_PLUGIN)
    done = _python(code, extra_site, tmp_path, FLOWKERNEL_DISABLE_PLUGINS=EXTRA_PLUGIN)

    assert EXTRA_PLUGIN not in listing
    assert "threads" in listing
    assert done.returncode == 0, done.stderr
    assert "unknown executor kind 'inline'" in done.stdout


def test_blocking_an_installed_plugin_in_the_config_leaves_it_out_of_the_kernel(
    extra_site: Path, tmp_path: Path
) -> None:
    code = f"""
    import flowkernel
    config = flowkernel.Config(
        disable_plugins=["{EXTRA_PLUGIN}"], run_dir={str(tmp_path / "runinfo")!r}
    )
    with flowkernel.load(config) as kernel:
        kinds = kernel.plugins.executor_kinds()
        print("inline" in kinds, "{EXTRA_PLUGIN}" in kernel.plugins.infos, kernel.plugins.blocked)
    """
    done = _python(code, extra_site, tmp_path)

    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"False False ['{EXTRA_PLUGIN}']"


def test_blocking_an_installed_plugin_in_a_config_file_makes_its_kind_unknown(
    extra_site: Path, tmp_path: Path
) -> None:
    config_file = tmp_path / "flowkernel.toml"
    config_file.write_text(
        f'disable_plugins = ["{EXTRA_PLUGIN}"]\n\n[[executors]]\nkind = "inline"\n',
        encoding="utf-8",
    )
    code = f"""
    import flowkernel
    try:
        flowkernel.Config.from_toml({str(config_file)!r})
    except flowkernel.ConfigurationError as exc:
        print(exc)
    """
    done = _python(code, extra_site, tmp_path)

    assert done.returncode == 0, done.stderr
    assert "executors[0]: unknown executor kind 'inline'" in done.stdout
    assert "threads" in _known_kinds(done.stdout)


# -- a plugin that fails to load --------------------------------------------------


def test_starting_a_kernel_with_a_plugin_that_fails_to_import_names_plugin_and_distribution(
    broken_site: Path, tmp_path: Path
) -> None:
    code = f"""
    import flowkernel
    try:
        flowkernel.load(flowkernel.Config(run_dir={str(tmp_path / "runinfo")!r}))
    except flowkernel.PluginLoadError as exc:
        print(exc)
    else:
        print("the kernel started")
    """
    done = _python(code, broken_site, tmp_path)

    assert done.returncode == 0, done.stderr
    message = done.stdout.strip()
    assert f"plugin '{BROKEN_PLUGIN}'" in message
    assert f"distribution {BROKEN_DIST} {BROKEN_VERSION}" in message
    assert "fk_broken_plugin.plugin" in message
    assert "RuntimeError: fk_broken_plugin needs a service that is not configured" in message


def test_the_plugins_command_exits_1_naming_a_plugin_that_fails_to_import(
    broken_site: Path, tmp_path: Path
) -> None:
    done = _run([_flowkernel_command(), "plugins"], broken_site, tmp_path)

    assert done.returncode == 1
    assert done.stdout == ""
    assert f"plugin '{BROKEN_PLUGIN}'" in done.stderr
    assert f"distribution {BROKEN_DIST} {BROKEN_VERSION}" in done.stderr
    assert "Traceback" not in done.stderr


def test_with_autoload_disabled_a_plugin_that_fails_to_import_is_never_imported(
    broken_site: Path, tmp_path: Path
) -> None:
    code = f"""
    import sys
    import flowkernel

    @flowkernel.python_app
    def add(a, b):
        return a + b

    with flowkernel.load(flowkernel.Config(run_dir={str(tmp_path / "runinfo")!r})):
        print(add(add(1, 2), 3).result(timeout=30), "fk_broken_plugin.plugin" in sys.modules)
    """
    listing = _listing(broken_site, tmp_path, FLOWKERNEL_DISABLE_PLUGIN_AUTOLOAD="1")
    done = _python(code, broken_site, tmp_path, FLOWKERNEL_DISABLE_PLUGIN_AUTOLOAD="1")

    assert BROKEN_PLUGIN not in listing
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "6 False"


def test_blocking_a_plugin_that_fails_to_import_by_name_lets_the_kernel_start(
    broken_site: Path, tmp_path: Path
) -> None:
    code = f"""
    import flowkernel

    @flowkernel.python_app
    def double(x):
        return 2 * x

    config = flowkernel.Config(
        disable_plugins=["{BROKEN_PLUGIN}"], run_dir={str(tmp_path / "runinfo")!r}
    )
    with flowkernel.load(config):
        print(double(21).result(timeout=30))
    """
    done = _python(code, broken_site, tmp_path)

    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "42"
