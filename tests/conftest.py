"""Shared fixtures: an isolated plugin environment and a loaded kernel per test."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

import flowkernel
from flowkernel.loader import DataFlowKernelLoader

pytest_plugins = ["pytester"]

_PLUGIN_ENV = (
    "FLOWKERNEL_PLUGINS",
    "FLOWKERNEL_DISABLE_PLUGINS",
    "FLOWKERNEL_NOCONF",
    "FLOWKERNEL_TRACE_PLUGINS",
    "FLOWKERNEL_DISABLE_PLUGIN_AUTOLOAD",
)


@pytest.fixture(autouse=True)
def isolated_plugins(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Only flowkernel's own plugins: whatever else is installed cannot disturb a test."""
    for name in _PLUGIN_ENV:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("FLOWKERNEL_DISABLE_PLUGIN_AUTOLOAD", "1")
    monkeypatch.setenv("FLOWKERNEL_NOCONF", "1")
    yield
    current = DataFlowKernelLoader._dfk
    if current is not None:
        if not current.cleanup_called:
            current.cleanup()
        DataFlowKernelLoader.clear()


@pytest.fixture
def run_dir(tmp_path: Path) -> str:
    return str(tmp_path / "runinfo")


@pytest.fixture
def config_factory(run_dir: str):  # type: ignore[no-untyped-def]
    """Build a Config whose run directory is in the test's temporary folder."""

    def make(**fields):  # type: ignore[no-untyped-def]
        fields.setdefault("run_dir", run_dir)
        return flowkernel.Config(**fields)

    return make


@pytest.fixture
def dfk(config_factory) -> Iterator[flowkernel.DataFlowKernel]:  # type: ignore[no-untyped-def]
    """A loaded kernel with four threads, cleaned up after the test."""
    kernel = flowkernel.load(
        config_factory(executors=[flowkernel.make_executor("threads", max_threads=4)])
    )
    yield kernel
    if not kernel.cleanup_called:
        kernel.cleanup()
