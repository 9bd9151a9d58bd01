"""The pluggy markers for flowkernel hooks.

Kept apart from the plugin manager so that a plugin module can import
``hookimpl`` without pulling in discovery code.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import pluggy

from flowkernel.states import States

PROJECT_NAME = "flowkernel"

hookspec = pluggy.HookspecMarker(PROJECT_NAME)
"""Marks a function in :mod:`flowkernel.hookspecs` as a hook specification."""

hookimpl = pluggy.HookimplMarker(PROJECT_NAME)
"""Marks a plugin function as a hook implementation (``@hookimpl(trylast=True)`` etc.)."""

_F = TypeVar("_F", bound=Callable[..., Any])

STATES_ATTRIBUTE = "flowkernel_states"
"""Where :func:`entering` leaves its states on the implementation."""


def entering(*states: States) -> Callable[[_F], _F]:
    """Call a ``flowkernel_task_state_changed`` implementation only for transitions into ``states``.

    Every call of an observer is taken from the workflow's time, several times
    per task.  An observer that only cares how tries end (say) declares so,
    and the kernel does not call it for the other transitions at all::

        @flowkernel.hookimpl
        @entering(States.exec_done, States.failed)
        def flowkernel_task_state_changed(task, old, new): ...
    """
    if not states or not all(isinstance(state, States) for state in states):
        raise TypeError(f"entering() takes one or more States, got {states!r}")
    wanted = frozenset(states)

    def mark(function: _F) -> _F:
        setattr(function, STATES_ATTRIBUTE, wanted)
        return function

    return mark
