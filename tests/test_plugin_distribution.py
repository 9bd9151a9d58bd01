"""A real third-party plugin: a distribution installed with pip, found through its entry point.

The distributions live in ``tests/plugin_dists/``.  Each test runs Python in a
subprocess whose ``PYTHONPATH`` holds the folder pip installed into, so the
plugin is installed for that process exactly as ``pip install`` would make it,
and nothing leaks into this test process.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from _support import WAIT

DISTS = Path(__file__).parent / "plugin_dists"


def _pip_install(dist: str, target: Path) -> None:
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--quiet",
            "--no-deps",
            "--no-build-isolation",
            "--no-index",
            "--target",
            str(target),
            str(DISTS / dist),
        ],
        check=True,
        capture_output=True,
        timeout=WAIT * 4,
    )


@pytest.fixture(scope="module")
def inline_site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    target = tmp_path_factory.mktemp("inline-site")
    _pip_install("fk_inline_executor", target)
    assert (target / "fk_inline_executor-1.2.3.dist-info").is_dir()
    return target


@pytest.fixture(scope="module")
def broken_site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    target = tmp_path_factory.mktemp("broken-site")
    _pip_install("fk_broken_plugin", target)
    return target


def _run(
    site: Path, args: list[str], cwd: Path, **env_changes: str | None
) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, PYTHONPATH=str(site), FLOWKERNEL_NOCONF="1")
    env.pop("FLOWKERNEL_DISABLE_PLUGIN_AUTOLOAD", None)
    for name, value in env_changes.items():
        if value is None:
            env.pop(name, None)
        else:
            env[name] = value
    return subprocess.run(
        [sys.executable, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=WAIT
    )


def _script(tmp_path: Path, body: str) -> str:
    path = tmp_path / "workflow.py"
    path.write_text(textwrap.dedent(body))
    return str(path)


def test_the_plugin_is_discovered_and_listed_with_its_distribution(
    inline_site: Path, tmp_path: Path
) -> None:
    out = _run(inline_site, ["-m", "flowkernel", "plugins", "--json"], tmp_path)
    assert out.returncode == 0, out.stderr
    listed = {p["name"]: p for p in json.loads(out.stdout)}
    inline = listed["inline"]
    assert inline["source"] == "entry point"
    assert inline["distribution"] == "fk-inline-executor"
    assert inline["version"] == "1.2.3"
    assert inline["hooks"] == ["flowkernel_executor_kinds"]
    assert inline["path"].startswith(str(inline_site))
    assert listed["threads"]["distribution"] == "flowkernel"

    text = _run(inline_site, ["-m", "flowkernel", "plugins"], tmp_path)
    assert "inline  (entry point of fk-inline-executor 1.2.3)" in text.stdout
    assert "inline (inline)" in text.stdout  # the executor kinds line


def test_make_executor_builds_the_plugins_kind_and_a_workflow_runs_on_it(
    inline_site: Path, tmp_path: Path
) -> None:
    script = _script(
        tmp_path,
        """
        import flowkernel

        executor = flowkernel.make_executor("inline", label="quick", stamp=True)
        print(type(executor).__module__)

        @flowkernel.python_app
        def square(x):
            return x * x

        config = flowkernel.Config(executors=[executor], run_dir="runinfo")
        with flowkernel.load(config):
            print([square(i).result(timeout=30) for i in range(3)])
        print(executor.ran)
        """,
    )
    out = _run(inline_site, [script], tmp_path)
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines() == [
        "fk_inline_executor.plugin",
        "[('quick', 0), ('quick', 1), ('quick', 4)]",
        "['square', 'square', 'square']",
    ]


def test_a_config_file_names_the_plugins_kind(inline_site: Path, tmp_path: Path) -> None:
    (tmp_path / "flow.toml").write_text(
        textwrap.dedent(
            """
            retries = 1
            run_dir = "runinfo"

            [[executors]]
            kind = "inline"
            label = "from-toml"
            stamp = true
            """
        )
    )
    script = _script(
        tmp_path,
        """
        import flowkernel

        config = flowkernel.Config.from_toml("flow.toml")
        print([type(e).__name__ for e in config.executors], config.retries)

        @flowkernel.python_app
        def hello():
            return "hi"

        with flowkernel.load(config):
            print(hello().result(timeout=30))
        """,
    )
    out = _run(inline_site, [script], tmp_path)
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines() == ["['InlineExecutor'] 1", "('from-toml', 'hi')"]


def test_autoload_off_hides_the_installed_plugin(inline_site: Path, tmp_path: Path) -> None:
    listing = _run(
        inline_site,
        ["-m", "flowkernel", "plugins", "--json"],
        tmp_path,
        FLOWKERNEL_DISABLE_PLUGIN_AUTOLOAD="1",
    )
    assert listing.returncode == 0, listing.stderr
    names = {p["name"] for p in json.loads(listing.stdout)}
    assert "inline" not in names and "threads" in names

    script = _script(
        tmp_path,
        """
        import flowkernel
        try:
            flowkernel.make_executor("inline")
        except flowkernel.ConfigurationError as exc:
            print(exc)
        """,
    )
    out = _run(inline_site, [script], tmp_path, FLOWKERNEL_DISABLE_PLUGIN_AUTOLOAD="1")
    assert out.returncode == 0, out.stderr
    assert "unknown executor kind 'inline'" in out.stdout
    assert "threads" in out.stdout  # the error lists the kinds that exist


def test_a_plugin_named_in_flowkernel_plugins_loads_even_with_autoload_off(
    inline_site: Path, tmp_path: Path
) -> None:
    out = _run(
        inline_site,
        ["-m", "flowkernel", "plugins", "--json"],
        tmp_path,
        FLOWKERNEL_DISABLE_PLUGIN_AUTOLOAD="1",
        FLOWKERNEL_PLUGINS="fk_inline_executor.plugin",
    )
    assert out.returncode == 0, out.stderr
    listed = {p["name"]: p for p in json.loads(out.stdout)}
    assert listed["fk_inline_executor.plugin"]["source"] == "FLOWKERNEL_PLUGINS"


def test_blocking_the_plugin_by_name_hides_it(inline_site: Path, tmp_path: Path) -> None:
    out = _run(
        inline_site,
        ["-m", "flowkernel", "plugins", "--json"],
        tmp_path,
        FLOWKERNEL_DISABLE_PLUGINS="inline",
    )
    assert out.returncode == 0, out.stderr
    assert "inline" not in {p["name"] for p in json.loads(out.stdout)}

    script = _script(
        tmp_path,
        """
        import flowkernel
        config = flowkernel.Config(disable_plugins=["inline"], run_dir="runinfo")
        with flowkernel.load(config) as kernel:
            print("inline" in kernel.plugins.infos, "threads" in kernel.plugins.infos)
        """,
    )
    blocked = _run(inline_site, [script], tmp_path)
    assert blocked.returncode == 0, blocked.stderr
    assert blocked.stdout.strip() == "False True"


def test_a_plugin_that_fails_to_load_is_named_with_its_distribution(
    broken_site: Path, tmp_path: Path
) -> None:
    cli = _run(broken_site, ["-m", "flowkernel", "plugins"], tmp_path)
    assert cli.returncode == 1
    assert "'broken'" in cli.stderr and "fk-broken-plugin 0.0.1" in cli.stderr
    assert "a_dependency_that_is_not_installed" in cli.stderr

    script = _script(
        tmp_path,
        """
        import flowkernel
        try:
            flowkernel.load(flowkernel.Config(run_dir="runinfo"))
        except flowkernel.PluginLoadError as exc:
            print("PluginLoadError:", exc)
        """,
    )
    out = _run(broken_site, [script], tmp_path)
    assert out.returncode == 0, out.stderr
    assert "PluginLoadError: plugin 'broken' from distribution fk-broken-plugin" in out.stdout

    off = _run(
        broken_site,
        ["-m", "flowkernel", "plugins"],
        tmp_path,
        FLOWKERNEL_DISABLE_PLUGIN_AUTOLOAD="1",
    )
    assert off.returncode == 0, off.stderr
