"""The flowkernel command: demo, plugins, hooks, --version, and its exit codes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from _support import WAIT

import flowkernel
from flowkernel import hookspecs


def _cli(*args: str, cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("FLOWKERNEL_")}
    environ.update({"FLOWKERNEL_DISABLE_PLUGIN_AUTOLOAD": "1", "FLOWKERNEL_NOCONF": "1", **env})
    return subprocess.run(
        [sys.executable, "-m", "flowkernel", *args],
        cwd=cwd,
        env=environ,
        capture_output=True,
        text=True,
        timeout=WAIT * 2,
    )


def test_demo_runs_a_workflow_and_prints_its_summary(tmp_path: Path) -> None:
    out = _cli("demo", "--bound", "30000", "--run-dir", str(tmp_path / "runs"), cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    text = out.stdout
    assert "primes below 30,000: 3,245" in text
    assert "fan-out over 16 tasks" in text and "fan-in" in text
    assert "join app recount:         3,245 (agrees)" in text
    assert "bash (awk) recount:       3,245 (agrees" in text
    assert "succeeded on try 2 (retried)" in text
    assert "DependencyError" in text
    assert (tmp_path / "runs" / "000" / "flowkernel.log").exists()


def test_the_console_script_runs_the_demo(tmp_path: Path) -> None:
    script = Path(sys.executable).parent / "flowkernel"
    out = subprocess.run(
        [str(script), "demo", "--bound", "5000"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=WAIT * 2,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("flowkernel demo")


def test_plugins_lists_the_defaults_with_origin_and_hooks(tmp_path: Path) -> None:
    out = _cli("plugins", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert f"threads  (entry point of flowkernel {flowkernel.__version__})" in out.stdout
    assert "hooks: flowkernel_retry_cost" in out.stdout
    assert "threads (threads)" in out.stdout.splitlines()[-1]


def test_plugins_json_is_machine_readable(tmp_path: Path) -> None:
    out = _cli("plugins", "--json", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    plugins = {p["name"]: p for p in json.loads(out.stdout)}
    defaults = {"threads", "dependencies", "selection", "retries", "memo", "file_staging"}
    assert defaults <= set(plugins)
    threads = plugins["threads"]
    assert threads["source"] == "entry point"
    assert threads["distribution"] == "flowkernel"
    assert threads["hooks"] == ["flowkernel_executor_kinds"]


def test_plugins_hook_filters_to_the_implementers(tmp_path: Path) -> None:
    out = _cli("plugins", "--json", "--hook", "flowkernel_retry_cost", cwd=tmp_path)
    assert [p["name"] for p in json.loads(out.stdout)] == ["retries"]
    bad = _cli("plugins", "--hook", "flowkernel_retry_costs", cwd=tmp_path)
    assert bad.returncode == 2 and "unknown hook" in bad.stderr


def test_hooks_describes_every_hook(tmp_path: Path) -> None:
    out = _cli("hooks", cwd=tmp_path)
    assert out.returncode == 0
    for name in hookspecs.HOOK_NAMES:
        assert name in out.stdout


def test_version_prints_the_version(tmp_path: Path) -> None:
    out = _cli("--version", cwd=tmp_path)
    assert out.returncode == 0 and out.stdout.strip() == f"flowkernel {flowkernel.__version__}"


def test_bad_usage_exits_2(tmp_path: Path) -> None:
    assert _cli("frobnicate", cwd=tmp_path).returncode == 2
    assert _cli(cwd=tmp_path).returncode == 2


def test_a_plugin_that_fails_to_load_exits_1_with_a_clear_message(tmp_path: Path) -> None:
    out = _cli("plugins", cwd=tmp_path, FLOWKERNEL_PLUGINS="no_such_module_anywhere")
    assert out.returncode == 1
    assert "no_such_module_anywhere" in out.stderr and "Traceback" not in out.stderr


def test_checkpoints_of_a_missing_folder_exits_1(tmp_path: Path) -> None:
    out = _cli("checkpoints", str(tmp_path / "nowhere"), cwd=tmp_path)
    assert out.returncode == 1 and "no such directory" in out.stderr
