"""Task states and the one table of transitions between them.

The kernel moves a task only along an edge of :data:`TRANSITIONS`; an attempt to
take any other edge is a bug somewhere (a second completion, a launch of a task
that already ended) and is refused and logged instead of acted on.  The numeric
values are Parsl's, so code that stores or compares them keeps working.
"""

from __future__ import annotations

import enum


class States(enum.IntEnum):
    """The states a task passes through, from submission to its end."""

    unsched = -1
    pending = 0
    running = 2  # kept for Parsl compatibility; the kernel does not enter it
    exec_done = 3
    failed = 4
    dep_fail = 5
    launched = 7
    fail_retryable = 8
    memo_done = 9
    joining = 10
    running_ended = 11  # kept for Parsl compatibility; the kernel does not enter it

    # Enum's own __hash__ is a Python function; the kernel looks states up in
    # dicts several times per task, so use int's (equal values hash equal anyway).
    __hash__ = int.__hash__


FINAL_STATES: frozenset[States] = frozenset(
    {States.exec_done, States.memo_done, States.failed, States.dep_fail}
)
"""A task in one of these states has a completed future and will not move again."""

FINAL_FAILURE_STATES: frozenset[States] = frozenset({States.failed, States.dep_fail})
"""Final states whose future holds an exception."""

TRANSITIONS: dict[States, frozenset[States]] = {
    # submit() has recorded the task; it now waits for its inputs.
    States.unsched: frozenset({States.pending, States.failed}),
    # Inputs are ready: launch, reuse a cached result, or fail without running.
    # ``failed`` and ``fail_retryable`` cover a launch that could not happen
    # (a hook raised, or the kernel is shutting down).
    States.pending: frozenset(
        {
            States.launched,
            States.memo_done,
            States.dep_fail,
            States.failed,
            States.fail_retryable,
        }
    ),
    States.launched: frozenset(
        {States.exec_done, States.joining, States.fail_retryable, States.failed}
    ),
    States.joining: frozenset({States.exec_done, States.failed}),
    States.fail_retryable: frozenset({States.pending, States.failed}),
    States.exec_done: frozenset(),
    States.memo_done: frozenset(),
    States.failed: frozenset(),
    States.dep_fail: frozenset(),
    States.running: frozenset(),
    States.running_ended: frozenset(),
}
"""Every allowed move: ``new in TRANSITIONS[old]``."""


def is_allowed(old: States, new: States) -> bool:
    """Whether the state machine has an edge from ``old`` to ``new``."""
    return new in TRANSITIONS[old]
