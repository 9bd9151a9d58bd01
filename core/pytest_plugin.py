"""pytest fixtures for testing workflows and plugins (registered through ``pytest11``).

Installed with flowkernel, so a user's test suite can write::

    def test_pipeline(flowkernel_kernel):
        assert my_app(2).result(timeout=30) == 4

    def test_my_plugin(flowkernel_load):
        kernel = flowkernel_load(MyPlugin(), retries=2)
        ...

Each kernel gets its own run directory under the test's ``tmp_path`` and is
cleaned up (and unloaded) when the test ends, even if the test failed, so one
test's kernel never leaks into the next.  ``flowkernel_isolated`` switches off
plugins from other installed distributions and ``flowconf.py`` files, the way
flowkernel's own suite runs.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from flowkernel.config import Config
from flowkernel.kernel import DataFlowKernel
from flowkernel.loader import DataFlowKernelLoader


def _release(kernel: DataFlowKernel) -> None:
    if not kernel.cleanup_called:
        kernel.cleanup()
    if DataFlowKernelLoader._dfk is kernel:
        DataFlowKernelLoader.clear()


@pytest.fixture
def flowkernel_isolated(monkeypatch: pytest.MonkeyPatch) -> None:
    """Only flowkernel's own plugins (and those a test names) take part."""
    monkeypatch.setenv("FLOWKERNEL_DISABLE_PLUGIN_AUTOLOAD", "1")
    monkeypatch.setenv("FLOWKERNEL_NOCONF", "1")
    for name in ("FLOWKERNEL_PLUGINS", "FLOWKERNEL_DISABLE_PLUGINS", "FLOWKERNEL_TRACE_PLUGINS"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def flowkernel_run_dir(tmp_path: Path) -> Path:
    """Where the test's kernels put their numbered run directories."""
    return tmp_path / "runinfo"


@pytest.fixture
def flowkernel_load(flowkernel_run_dir: Path) -> Iterator[Callable[..., DataFlowKernel]]:
    """``load(*plugins, **config_fields)``: load a kernel with these plugins for this test.

    Unless ``executors=`` is given, the kernel has one thread executor of two
    threads; every kernel loaded this way is cleaned up after the test.
    """
    kernels: list[DataFlowKernel] = []

    def load(*plugins: Any, **fields: Any) -> DataFlowKernel:
        import flowkernel

        fields.setdefault("run_dir", str(flowkernel_run_dir))
        fields.setdefault("initialize_logging", False)
        fields.setdefault("executors", [flowkernel.make_executor("threads", max_threads=2)])
        fields["plugins"] = [*fields.get("plugins", ()), *plugins]
        if DataFlowKernelLoader._dfk is not None:
            _release(DataFlowKernelLoader._dfk)  # one loaded kernel at a time
        kernel = flowkernel.load(Config(**fields))
        kernels.append(kernel)
        return kernel

    yield load
    for kernel in reversed(kernels):
        _release(kernel)


@pytest.fixture
def flowkernel_kernel(flowkernel_load: Callable[..., DataFlowKernel]) -> DataFlowKernel:
    """A loaded kernel on the thread executor, in a temporary run directory."""
    return flowkernel_load()
