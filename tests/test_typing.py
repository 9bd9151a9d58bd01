"""Types for users: mypy sees through apps to the result types, and flowkernel itself is clean.

mypy cannot follow setuptools' editable-install import hook, so both checks run
against a copy of the package laid out as an ordinary import package.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from _support import WAIT

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def package_copy(tmp_path_factory: pytest.TempPathFactory) -> Path:
    site = tmp_path_factory.mktemp("typed-site")
    shutil.copytree(ROOT / "core", site / "flowkernel")
    shutil.copytree(ROOT / "plugins", site / "flowkernel" / "plugins")
    shutil.copytree(ROOT / "contrib", site / "flowkernel" / "contrib")
    return site


def _mypy(site: Path, *targets: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            sys.executable, "-m", "mypy", "--config-file", str(ROOT / "pyproject.toml"),
            "--no-incremental", *targets,
        ],
        cwd=site,
        capture_output=True,
        text=True,
        timeout=WAIT * 8,
    )  # fmt: skip


def test_flowkernel_passes_mypy_strict(package_copy: Path) -> None:
    out = _mypy(package_copy, "flowkernel")
    assert out.returncode == 0, out.stdout + out.stderr


def test_an_app_future_carries_the_apps_return_type(package_copy: Path) -> None:
    (package_copy / "user_workflow.py").write_text(
        textwrap.dedent(
            """
            from typing_extensions import assert_type

            import flowkernel
            from flowkernel import AppFuture, python_app


            @python_app
            def count(text: str) -> int:
                return len(text)


            def use() -> None:
                future = count("abc")
                assert_type(future, AppFuture[int])
                assert_type(future.result(), int)
                total: int = future.result() + 1
                print(total, flowkernel.__version__)
            """
        )
    )
    out = _mypy(package_copy, "user_workflow.py")
    assert out.returncode == 0, out.stdout + out.stderr


def test_a_wrong_use_of_a_result_type_is_caught_by_mypy(package_copy: Path) -> None:
    (package_copy / "wrong_workflow.py").write_text(
        textwrap.dedent(
            """
            from flowkernel import python_app


            @python_app
            def count(text: str) -> int:
                return len(text)


            def use() -> str:
                return count("abc").result()
            """
        )
    )
    out = _mypy(package_copy, "wrong_workflow.py")
    assert out.returncode == 1
    assert 'Incompatible return value type (got "int", expected "str")' in out.stdout


def test_the_docs_examples_pass_mypy(package_copy: Path) -> None:
    import re

    block = re.compile(r"^```python\n(.*?)^```", re.S | re.M)
    pages = [*sorted((ROOT / "docs").rglob("*.md")), ROOT / "README.md"]
    examples = package_copy / "doc_examples"
    examples.mkdir(exist_ok=True)
    count = 0
    for page in pages:
        for number, code in enumerate(block.findall(page.read_text())):
            name = f"{page.stem}_{number}.py".replace("-", "_")
            (examples / name).write_text(code)
            count += 1
    assert count >= 10
    out = subprocess.run(
        [
            sys.executable, "-m", "mypy", "--no-incremental", "--ignore-missing-imports",
            "--python-version", "3.10", "--disable-error-code", "empty-body",
            *sorted(str(p) for p in examples.glob("*.py")),
        ],
        cwd=package_copy,
        capture_output=True,
        text=True,
        timeout=WAIT * 8,
    )  # fmt: skip
    assert out.returncode == 0, out.stdout + out.stderr
