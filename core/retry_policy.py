"""Per-app retry policies: how many tries, which failures, and how long to wait between them.

A :class:`RetryPolicy` can be given to an app (``@python_app(retry_policy=...)``)
or to the config (``Config(retry_policy=...)``); the app's wins.  Its ``count``
is the task's retry budget (what ``Config.retries`` is otherwise); the
``flowkernel_retry_cost`` hook still prices each failure against it, so
``retry_handler`` functions keep working.  Waiting between tries happens on a
timer, never by blocking a kernel or executor thread.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass, field


@dataclass(frozen=True)
class RetryPolicy:
    """Retry up to ``count`` times, for failures of the ``retry_on`` types, with backoff.

    The wait before retry ``n`` (1 for the first retry) is
    ``min(max_delay, delay * backoff ** (n - 1))``, spread by up to ``jitter``
    times itself in either direction, so tasks that failed together do not all
    come back in the same instant.
    """

    count: int | None = None
    delay: float = 0.0
    backoff: float = 2.0
    max_delay: float = 300.0
    jitter: float = 0.1
    retry_on: Sequence[type[BaseException]] = field(default=(Exception,))

    def __post_init__(self) -> None:
        from flowkernel.errors import ConfigurationError

        for name in ("delay", "backoff", "max_delay", "jitter"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise ConfigurationError(
                    f"RetryPolicy.{name} must be a number, got {type(value).__name__} {value!r}"
                )
        if self.count is not None and (
            isinstance(self.count, bool) or not isinstance(self.count, int)
        ):
            raise ConfigurationError(
                f"RetryPolicy.count must be an int or None, got {type(self.count).__name__}"
            )
        retry_on = (self.retry_on,) if isinstance(self.retry_on, type) else tuple(self.retry_on)
        if not all(isinstance(t, type) and issubclass(t, BaseException) for t in retry_on):
            raise ConfigurationError(
                f"RetryPolicy.retry_on must list exception types, got {self.retry_on!r}"
            )
        object.__setattr__(self, "retry_on", retry_on)
        checks = {
            "count": self.count is None or self.count >= 0,
            "delay": self.delay >= 0,
            "backoff": self.backoff >= 1,
            "max_delay": self.max_delay >= 0,
            "jitter": 0 <= self.jitter <= 1,
        }
        for name, ok in checks.items():
            if not ok:
                raise ConfigurationError(
                    f"RetryPolicy.{name} is out of range: {getattr(self, name)!r} "
                    "(count, delay, max_delay >= 0; backoff >= 1; 0 <= jitter <= 1)"
                )

    def retries(self, exception: BaseException) -> bool:
        """Whether a failure with this exception may be retried at all."""
        return isinstance(exception, tuple(self.retry_on))

    def wait_before(self, retry_number: int) -> float:
        """Seconds to wait before retry ``retry_number`` (1, 2, ...)."""
        if self.delay <= 0:
            return 0.0
        base = min(self.max_delay, self.delay * self.backoff ** max(0, retry_number - 1))
        spread = base * self.jitter
        return max(0.0, base + random.uniform(-spread, spread))
