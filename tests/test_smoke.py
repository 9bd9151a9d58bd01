from __future__ import annotations

from _support import WAIT

import flowkernel


def test_a_python_app_returns_its_result(dfk: flowkernel.DataFlowKernel) -> None:
    @flowkernel.python_app
    def add(a: int, b: int) -> int:
        return a + b

    assert add(add(1, 2), 3).result(timeout=WAIT) == 6
