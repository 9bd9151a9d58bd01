"""Default retry cost: 1 per failure, or whatever ``Config.retry_handler`` says.

Parsl lets a ``retry_handler(exception, task_record)`` price each failure, and
when the handler itself raises, retrying stops and the handler's exception is
what the future reports.  :class:`~flowkernel.errors.AbortTask` carries that
exception past the kernel's "a hook raised" handling.
"""

from __future__ import annotations

from flowkernel.errors import AbortTask
from flowkernel.markers import hookimpl
from flowkernel.task import TaskRecord


@hookimpl(trylast=True)
def flowkernel_retry_cost(exception: BaseException, task: TaskRecord) -> float:
    handler = task.kernel.config.retry_handler
    if handler is None:
        return 1.0
    try:
        cost = handler(exception, task)
    except Exception as exc:
        raise AbortTask(exc) from exc
    return cost  # type: ignore[no-any-return]
