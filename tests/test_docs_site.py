"""The documentation: the site builds in strict mode, and every code example runs.

In a page, each ```python block whose first line is ``# file: NAME`` is written
to that file; the other blocks are joined, in order, into one script that runs
in a fresh folder holding those files (a ``test_*.py`` file is run with pytest
instead).  A page's examples therefore run the way a reader would run them.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from _support import WAIT

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
_BLOCK = re.compile(r"^```python\n(.*?)^```", re.S | re.M)
PAGES = sorted(p for p in [*DOCS.rglob("*.md"), ROOT / "README.md"] if _BLOCK.search(p.read_text()))
_FILE = re.compile(r"^# file: (\S+)\n")


def _examples(page: Path) -> tuple[dict[str, str], list[str]]:
    files: dict[str, str] = {}
    scripts: list[str] = []
    for block in _BLOCK.findall(page.read_text()):
        named = _FILE.match(block)
        if named:
            files[named.group(1)] = block[named.end() :]
        else:
            scripts.append(block)
    return files, scripts


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLOWKERNEL_")}
    env["FLOWKERNEL_DISABLE_PLUGIN_AUTOLOAD"] = "1"  # flowconf.py files still count
    env.pop("PYTHONPATH", None)
    return env


@pytest.mark.parametrize("page", PAGES, ids=[str(p.relative_to(ROOT)) for p in PAGES])
def test_every_code_example_in_the_page_runs(page: Path, tmp_path: Path) -> None:
    files, scripts = _examples(page)
    (tmp_path / "pyproject.toml").write_text("")  # the reader's project root
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    if scripts:
        script = tmp_path / "example.py"
        script.write_text("\n\n".join(scripts))
        out = subprocess.run(
            [sys.executable, str(script)],
            cwd=tmp_path,
            env=_env(),
            capture_output=True,
            text=True,
            timeout=WAIT * 2,
        )
        assert out.returncode == 0, f"{page.name}:\n{out.stdout}\n{out.stderr}"
    for name in files:
        if name.startswith("test_"):
            out = subprocess.run(
                [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", name],
                cwd=tmp_path,
                env=_env(),
                capture_output=True,
                text=True,
                timeout=WAIT * 2,
            )
            assert out.returncode == 0, f"{page.name} {name}:\n{out.stdout}\n{out.stderr}"


def test_the_site_builds_in_strict_mode(tmp_path: Path) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=WAIT * 4,
    )
    assert out.returncode == 0, out.stderr
    assert (tmp_path / "index.html").exists()
    assert (tmp_path / "migrating" / "index.html").exists()


def test_the_hook_reference_is_generated_from_the_specs() -> None:
    from flowkernel.cli import hook_reference

    assert (DOCS / "hooks.md").read_text() == hook_reference(), (
        "docs/hooks.md is stale: run `flowkernel hooks --markdown > docs/hooks.md`"
    )


def test_every_hook_is_documented_with_when_it_is_called() -> None:
    from flowkernel import hookspecs

    page = (DOCS / "hooks.md").read_text()
    for name in hookspecs.HOOK_NAMES:
        doc = getattr(hookspecs, name).__doc__ or ""
        assert f"## {name}" in page
        assert "Called" in doc, f"{name}'s docstring does not say when it is called"
        assert "A ``flowconf.py`` may implement this hook." in doc


def test_every_hook_has_a_test_named_after_it() -> None:
    from flowkernel import hookspecs

    names = " ".join(
        name
        for p in Path(__file__).parent.glob("test_*.py")
        for name in re.findall(r"^def (test_\w+)", p.read_text(), re.M)
    )
    missing = [hook for hook in hookspecs.HOOK_NAMES if hook not in names]
    assert missing == []


def test_the_readme_quick_start_shows_exactly_the_ci_command() -> None:
    readme = (ROOT / "README.md").read_text()
    ci = (ROOT / ".ci" / "run").read_text().strip().splitlines()[-1]
    quick_start = readme.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    assert ci in quick_start
    assert "flowkernel demo" in quick_start
