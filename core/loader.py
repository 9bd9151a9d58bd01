"""The current kernel: the one apps submit to when not given one.

Parsl keeps this as a class with class methods; the module-level ``load``,
``clear``, ``dfk`` and ``wait_for_current_tasks`` in :mod:`flowkernel` are its
methods.
"""

from __future__ import annotations

import threading

from typeguard import typechecked

from flowkernel.config import Config
from flowkernel.errors import ConfigurationError, NoDataFlowKernelError
from flowkernel.kernel import DataFlowKernel


class DataFlowKernelLoader:
    """Holds the current kernel.  Not meant to be instantiated."""

    _dfk: DataFlowKernel | None = None
    _lock = threading.Lock()

    @classmethod
    def clear(cls) -> None:
        """Forget the current kernel (without cleaning it up), so another can be loaded."""
        with cls._lock:
            cls._dfk = None

    @classmethod
    @typechecked
    def load(cls, config: Config | None = None) -> DataFlowKernel:
        """Build a kernel from ``config`` and make it current.

        Loading while a kernel is current is an error: clean it up (which also
        clears it) or call :func:`flowkernel.clear` first.
        """
        with cls._lock:
            if cls._dfk is not None:
                raise ConfigurationError(
                    "Config has already been loaded: call cleanup() on the current kernel, "
                    "or flowkernel.clear(), before loading another"
                )
            cls._dfk = DataFlowKernel(config if config is not None else Config())
            return cls._dfk

    @classmethod
    def dfk(cls) -> DataFlowKernel:
        """The current kernel."""
        dfk = cls._dfk
        if dfk is None:
            raise NoDataFlowKernelError("Must first load config (flowkernel.load(config))")
        return dfk

    @classmethod
    def wait_for_current_tasks(cls, timeout: float | None = None) -> list[int]:
        """Wait for every task of the current kernel; see DataFlowKernel.wait_for_current_tasks."""
        return cls.dfk().wait_for_current_tasks(timeout)

    @classmethod
    def _forget(cls, dfk: DataFlowKernel) -> None:
        """Clear ``dfk`` if it is current: a cleaned-up kernel stops being current."""
        with cls._lock:
            if cls._dfk is dfk:
                cls._dfk = None


load = DataFlowKernelLoader.load
clear = DataFlowKernelLoader.clear
dfk = DataFlowKernelLoader.dfk
wait_for_current_tasks = DataFlowKernelLoader.wait_for_current_tasks
