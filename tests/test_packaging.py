"""flowkernel as a wheel: built offline, installed into a throwaway virtual environment.

The wheel is built once per session from a copy of the checkout (``pyproject.toml``,
``README.md`` and the folders named in its ``package-dir`` mapping), so the build
leaves no ``build/`` or ``*.egg-info`` in the work tree and cannot race another
build there.  It is installed with ``--no-deps`` into a venv made with
``--system-site-packages``, which supplies pluggy, typeguard and the rest.

The system Python also has flowkernel installed editable, whose ``.pth`` file the
venv processes too.  That does not shadow the wheel: setuptools' editable finder
is *appended* to ``sys.meta_path``, so the ordinary path finder, which searches
``sys.path`` with the venv's site-packages ahead of the system one, finds the
wheel's ``flowkernel`` first; ``importlib.metadata`` likewise returns the first
``flowkernel`` distribution on ``sys.path``, the venv's.  What *would* shadow it
is a ``flowkernel.egg-info`` in the working directory (an in-tree build leaves
one in the checkout, and ``python -c``/``-m`` put the working directory first on
``sys.path``), so every command here runs in an empty temporary directory.  The
tests check where the code and the metadata come from rather than assume it.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from _support import WAIT

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on 3.10 only
    import tomli as tomllib

ROOT = Path(__file__).resolve().parent.parent
DEFAULTS = {"threads", "dependencies", "selection", "retries"}
PLUGIN_ENV = (
    "FLOWKERNEL_PLUGINS",
    "FLOWKERNEL_DISABLE_PLUGINS",
    "FLOWKERNEL_NOCONF",
    "FLOWKERNEL_TRACE_PLUGINS",
    "FLOWKERNEL_DISABLE_PLUGIN_AUTOLOAD",
)


def _pyproject() -> dict[str, Any]:
    return tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))


@dataclass
class Installed:
    wheel: Path
    venv: Path
    site_packages: Path
    workdir: Path
    """An empty directory to run commands in."""

    @property
    def python(self) -> Path:
        return self.venv / "bin" / "python"

    @property
    def script(self) -> Path:
        return self.venv / "bin" / "flowkernel"


def _check(command: list[str], cwd: Path) -> None:
    done = subprocess.run(command, capture_output=True, text=True, timeout=180, cwd=cwd)
    assert done.returncode == 0, f"{command} failed:\n{done.stdout}\n{done.stderr}"


@pytest.fixture(scope="session")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Installed:
    base = tmp_path_factory.mktemp("packaging")
    source = base / "source"
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, source / name)
    junk = shutil.ignore_patterns("__pycache__", "*.pyc", "build", "*.egg-info")
    for folder in sorted(set(_pyproject()["tool"]["setuptools"]["package-dir"].values())):
        shutil.copytree(ROOT / folder, source / folder, ignore=junk)
    dist = base / "dist"
    build = [sys.executable, "-m", "build", "--wheel", "--no-isolation", "--outdir", str(dist)]
    _check([*build, str(source)], cwd=source)
    (wheel,) = dist.glob("flowkernel-*.whl")

    venv = base / "venv"
    _check([sys.executable, "-m", "venv", "--system-site-packages", str(venv)], cwd=base)
    pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "--no-deps", "--no-index"]
    _check([*pip, "--disable-pip-version-check", str(wheel)], cwd=base)
    (site_packages,) = venv.glob("lib/python3*/site-packages")
    workdir = base / "work"
    workdir.mkdir()
    return Installed(wheel, venv, site_packages, workdir)


def _run(installed: Installed, *argv: str) -> subprocess.CompletedProcess[str]:
    """Run in the venv, from an empty directory, with only flowkernel's own plugins."""
    environ = {k: v for k, v in os.environ.items() if k not in (*PLUGIN_ENV, "PYTHONPATH")}
    environ["FLOWKERNEL_DISABLE_PLUGIN_AUTOLOAD"] = "1"
    environ["FLOWKERNEL_NOCONF"] = "1"
    return subprocess.run(
        list(argv), capture_output=True, text=True, timeout=WAIT, env=environ, cwd=installed.workdir
    )


def _python(installed: Installed, code: str) -> subprocess.CompletedProcess[str]:
    return _run(installed, str(installed.python), "-c", textwrap.dedent(code))


def test_the_wheel_holds_the_three_packages_under_flowkernel_and_nothing_else(
    installed: Installed,
) -> None:
    with zipfile.ZipFile(installed.wheel) as wheel:
        names = wheel.namelist()

    top_level = {name.split("/", 1)[0] for name in names}
    assert top_level == {"flowkernel", f"flowkernel-{_pyproject()['project']['version']}.dist-info"}
    assert {"flowkernel/__init__.py", "flowkernel/plugins/threads.py"} <= set(names)
    assert "flowkernel/contrib/__init__.py" in names


def test_the_venv_imports_flowkernel_and_its_subpackages_from_the_installed_wheel(
    installed: Installed,
) -> None:
    done = _python(
        installed,
        """
        import json
        import flowkernel, flowkernel.plugins, flowkernel.contrib
        modules = (flowkernel, flowkernel.plugins, flowkernel.contrib)
        print(json.dumps([m.__file__ for m in modules] + [flowkernel.__version__]))
        """,
    )

    assert done.returncode == 0, done.stderr
    *files, version = json.loads(done.stdout)
    assert version == _pyproject()["project"]["version"]
    assert [Path(f).relative_to(installed.site_packages).as_posix() for f in files] == [
        "flowkernel/__init__.py",
        "flowkernel/plugins/__init__.py",
        "flowkernel/contrib/__init__.py",
    ]


def test_the_installed_package_ships_py_typed(installed: Installed) -> None:
    done = _python(
        installed,
        """
        import importlib.metadata, pathlib
        import flowkernel
        marker = pathlib.Path(flowkernel.__file__).parent / "py.typed"
        recorded = [str(f) for f in importlib.metadata.files("flowkernel")]
        print(marker.is_file(), "flowkernel/py.typed" in recorded)
        """,
    )

    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["True", "True"]


def test_the_installed_distribution_declares_the_entry_points_of_pyproject(
    installed: Installed,
) -> None:
    done = _python(
        installed,
        """
        import json, importlib.metadata
        dist = importlib.metadata.distribution("flowkernel")
        group = [ep for ep in dist.entry_points if ep.group == "flowkernel"]
        print(json.dumps({
            "metadata": str(dist.locate_file("")),
            "entry_points": {ep.name: ep.value for ep in group},
            "loaded_from": sorted({ep.load().__file__ for ep in group}),
        }))
        """,
    )

    assert done.returncode == 0, done.stderr
    found = json.loads(done.stdout)
    assert Path(found["metadata"]) == installed.site_packages
    assert found["entry_points"] == _pyproject()["project"]["entry-points"]["flowkernel"]
    assert DEFAULTS <= set(found["entry_points"])
    for module_file in found["loaded_from"]:
        assert Path(module_file).is_relative_to(installed.site_packages / "flowkernel")


def test_flowkernel_plugins_in_the_venv_lists_the_defaults_from_the_wheel(
    installed: Installed,
) -> None:
    text = _run(installed, str(installed.script), "plugins")
    done = _run(installed, str(installed.script), "plugins", "--json")

    assert text.returncode == 0, text.stderr
    version = _pyproject()["project"]["version"]
    for name in DEFAULTS:
        assert f"{name}  (entry point of flowkernel {version})" in text.stdout
    assert done.returncode == 0, done.stderr
    listing = {entry["name"]: entry for entry in json.loads(done.stdout)}
    assert DEFAULTS <= set(listing)
    for entry in listing.values():
        assert (entry["source"], entry["distribution"]) == ("entry point", "flowkernel")
        assert Path(entry["path"]).is_relative_to(installed.site_packages / "flowkernel")
    assert "flowkernel_executor_kinds" in listing["threads"]["hooks"]


def test_flowkernel_demo_in_the_venv_exits_0_and_prints_a_summary(
    installed: Installed,
) -> None:
    run_dir = installed.workdir / "demo-runinfo"
    done = _run(
        installed, str(installed.script), "demo", "--bound", "20000", "--run-dir", str(run_dir)
    )

    assert done.returncode == 0, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == "flowkernel demo"
    assert "primes below 20,000: 2,262 " in lines[1]
    assert "(agrees)" in lines[2]
    assert "(agrees;" in lines[3]
    assert "task after a failed input: DependencyError" in done.stdout
    assert str(run_dir) in done.stdout
