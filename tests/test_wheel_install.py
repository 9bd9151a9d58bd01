"""flowkernel as a wheel: built from this checkout, installed into a fresh virtual environment."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from _support import WAIT

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--quiet",
            "--no-deps",
            "--no-build-isolation",
            "--wheel-dir",
            str(out),
            str(ROOT),
        ],
        check=True,
        capture_output=True,
        timeout=WAIT * 4,
    )
    (built,) = out.glob("flowkernel-*.whl")
    return built


@pytest.fixture(scope="module")
def venv_python(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    # --system-site-packages supplies pluggy, typeguard...; the wheel goes into the
    # venv's own site-packages, which comes first on sys.path.
    venv = tmp_path_factory.mktemp("venv")
    subprocess.run(
        [sys.executable, "-m", "venv", "--system-site-packages", str(venv)],
        check=True,
        timeout=WAIT * 4,
    )
    python = venv / "bin" / "python"
    subprocess.run(
        [str(python), "-m", "pip", "install", "--quiet", "--no-deps", "--no-index", str(wheel)],
        check=True,
        capture_output=True,
        timeout=WAIT * 4,
    )
    return python


def _run(python: Path, *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLOWKERNEL_")}
    env.pop("PYTHONPATH", None)
    return subprocess.run(
        [str(python), *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=WAIT
    )


def test_the_wheel_holds_the_three_packages_py_typed_and_the_entry_points(wheel: Path) -> None:
    names = zipfile.ZipFile(wheel).namelist()
    assert "flowkernel/__init__.py" in names
    assert "flowkernel/plugins/threads.py" in names
    assert "flowkernel/contrib/__init__.py" in names
    assert "flowkernel/py.typed" in names
    assert not any(n.startswith(("core/", "plugins/", "contrib/", "tests/")) for n in names)
    (entry_points,) = [n for n in names if n.endswith(".dist-info/entry_points.txt")]
    text = zipfile.ZipFile(wheel).read(entry_points).decode()
    assert "[flowkernel]" in text and "threads = flowkernel.plugins.threads" in text


def test_the_installed_wheel_imports_from_the_venv(venv_python: Path, tmp_path: Path) -> None:
    out = _run(
        venv_python,
        "-c",
        "import json, flowkernel, flowkernel.plugins, flowkernel.contrib; "
        "print(json.dumps([flowkernel.__file__, flowkernel.plugins.__file__]))",
        cwd=tmp_path,
    )
    assert out.returncode == 0, out.stderr
    files = json.loads(out.stdout)
    venv = str(venv_python.parent.parent)
    assert all(f.startswith(venv) for f in files), files


def test_the_installed_wheel_runs_the_demo(venv_python: Path, tmp_path: Path) -> None:
    flowkernel_cli = venv_python.parent / "flowkernel"
    out = _run(flowkernel_cli, "demo", "--bound", "20000", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert "agrees" in out.stdout and "retried" in out.stdout


def test_the_installed_wheel_lists_its_default_plugins(venv_python: Path, tmp_path: Path) -> None:
    out = _run(venv_python, "-m", "flowkernel", "plugins", "--json", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    own = {p["name"] for p in json.loads(out.stdout) if p["distribution"] == "flowkernel"}
    assert {"threads", "dependencies", "selection", "retries", "memo"} <= own
