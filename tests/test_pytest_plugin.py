"""The pytest plugin shipped with flowkernel, used the way a user's suite would."""

from __future__ import annotations

import pytest


def test_the_fixtures_give_a_loaded_kernel_and_clean_it_up(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        import flowkernel

        @flowkernel.python_app
        def double(x):
            return 2 * x

        def test_uses_the_kernel(flowkernel_kernel, flowkernel_run_dir):
            assert double(21).result(timeout=30) == 42
            assert flowkernel.dfk() is flowkernel_kernel
            assert str(flowkernel_kernel.run_dir).startswith(str(flowkernel_run_dir))

        def test_the_previous_kernel_is_gone():
            try:
                flowkernel.dfk()
            except flowkernel.NoDataFlowKernelError:
                return
            raise AssertionError("a kernel leaked from the previous test")
        """
    )
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=2)


def test_flowkernel_load_registers_a_plugin_for_one_test(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        import flowkernel

        class FreeRetries:
            @flowkernel.hookimpl
            def flowkernel_retry_cost(self, exception, task):
                return 0.0

        tries = []

        @flowkernel.python_app
        def flaky():
            tries.append(1)
            if len(tries) < 4:
                raise RuntimeError("again")
            return "done"

        def test_with_plugin(flowkernel_isolated, flowkernel_load):
            flowkernel_load(FreeRetries(), retries=1)
            assert flaky().result(timeout=30) == "done"
            assert len(tries) == 4

        def test_without_it(flowkernel_load):
            tries.clear()
            flowkernel_load(retries=1)
            try:
                flaky().result(timeout=30)
            except RuntimeError:
                assert len(tries) == 2
            else:
                raise AssertionError("expected the default retry budget to run out")
        """
    )
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=2)
