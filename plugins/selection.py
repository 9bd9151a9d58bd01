"""Default executor selection: the candidate with the fewest outstanding tasks.

Ties go to the candidate listed first, so a single-executor config and an app
pinned to one label cost one comparison.
"""

from __future__ import annotations

from collections.abc import Sequence

from flowkernel.markers import hookimpl
from flowkernel.task import TaskRecord


@hookimpl(trylast=True)
def flowkernel_select_executor(task: TaskRecord, candidates: Sequence[str]) -> str:
    if len(candidates) == 1:
        return candidates[0]
    executors = task.kernel.executors
    return min(candidates, key=lambda label: executors[label].outstanding)
