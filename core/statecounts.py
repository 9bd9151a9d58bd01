"""How many tasks are in each state, counted without a lock the threads share.

Every transition moves one task from one count to another, on whichever
thread made the transition: the thread submitting tasks and the executor
threads finishing them.  With one shared lock around those counts, the two
kinds of thread met at that lock on every task; under the GIL that turns into
a *convoy* — a thread woken to take the lock must then wait for the GIL, while
the GIL holder waits for the lock — and a chain of 100,000 tasks spent most of
its time switching threads (4 context switches per task instead of 0.02).

So each thread counts in a list of its own, which no other thread writes, and
a reader adds the lists up.  A count read while tasks are moving can be off by
the tasks in mid-transition (one thread's minus seen, its plus not yet); once
the kernel is quiet the sums are exact.
"""

from __future__ import annotations

import threading

from flowkernel.states import States

SLOT: dict[States, int] = {state: i for i, state in enumerate(States)}
"""The position of each state's count in a thread's list."""

SUBMITTED = len(SLOT)
"""The position of the count of submitted tasks."""


class StateCounts:
    """Per-thread counts of tasks per state (and of tasks submitted), added up on reading."""

    def __init__(self) -> None:
        self._local = threading.local()
        self._lists: list[list[int]] = []
        self._lock = threading.Lock()  # taken once per thread, to add its list

    def mine(self) -> list[int]:
        """This thread's counts, for it alone to change (``SLOT[state]``, ``SUBMITTED``)."""
        try:
            return self._local.counts  # type: ignore[no-any-return]
        except AttributeError:  # this thread's first count
            counts: list[int] = [0] * (SUBMITTED + 1)
            self._local.counts = counts
            with self._lock:
                self._lists.append(counts)
            return counts

    def _total(self) -> list[int]:
        with self._lock:
            lists = list(self._lists)
        width = SUBMITTED + 1
        return [sum(counts[i] for counts in lists) for i in range(width)]

    def per_state(self) -> dict[States, int]:
        total = self._total()
        return {state: total[slot] for state, slot in SLOT.items()}

    def submitted(self) -> int:
        return self._total()[SUBMITTED]
