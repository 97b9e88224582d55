"""Retry policy: an immutable value that decides whether, and after how long, to try again.

:class:`RetryPolicy` is pure: :meth:`RetryPolicy.decide` takes the attempt number, the seconds
elapsed and the typed error, and returns a :class:`RetryDecision`. The sending code (``client``)
does the sleeping, through tenacity, which stays an implementation detail.

The testing switch lives here too: :func:`set_testing` / :func:`no_wait` make every wait return
at once while attempts, deadline bookkeeping and server hints are counted as if the time had
passed, so a test suite exercises the real retry decisions without sleeping::

    with smtp_guard.testing.no_wait():
        await smtp_guard.send(...)  # retries happen; no real sleep

No I/O here: this module imports neither asyncio nor aiosmtplib.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from smtp_guard.errors import DeliveryUncertain, InvalidInput, SMTPGuardError

__all__ = [
    "RetryDecision",
    "RetryPolicy",
    "is_testing",
    "no_wait",
    "set_testing",
]


@dataclass(frozen=True, slots=True)
class RetryDecision:
    """What :meth:`RetryPolicy.decide` concluded about one failed attempt."""

    retry: bool  #: whether to make another attempt
    wait: float  #: seconds to wait before it (0.0 when not retrying)
    reason: str  #: why, in a few words (for logs)
    #: When stopping because the wait does not fit the deadline: when the caller (a job queue)
    #: may try again, in seconds. None otherwise.
    retry_after: float | None = None


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How :func:`smtp_guard.send` retries: an immutable value (use :func:`dataclasses.replace`).

    - ``attempts``: the most attempts in one call (1 = never retry).
    - ``deadline``: seconds for the whole call (more than 0; ``math.inf`` for none); no attempt
      starts after it, no wait is started that would end after it, and each network operation
      (connect, greeting, every command, the reply to the message) is bounded by
      ``min(timeout, time left)``, so a server that stalls cannot stretch the call past it.
    - ``initial_wait``, ``max_wait``, ``jitter``: exponential backoff, ``initial_wait * 2**(n-1)``
      capped at ``max_wait``, plus a uniform random ``[0, jitter)`` seconds.
    - ``honor_server_hints``: a server's "try again in 5 minutes" replaces the computed wait;
      when it does not fit in the deadline the call stops at once and the error carries
      ``retry_after``, so a job queue can schedule the retry.
    - ``retry_uncertain``: also retry after :class:`~smtp_guard.errors.DeliveryUncertain`
      (the message may then arrive twice). Off by default.
    """

    attempts: int = 4
    deadline: float = 60.0
    initial_wait: float = 1.0
    max_wait: float = 30.0
    jitter: float = 1.0
    honor_server_hints: bool = True
    retry_uncertain: bool = False

    def __post_init__(self) -> None:
        if isinstance(self.attempts, bool) or not isinstance(self.attempts, int):
            raise InvalidInput(f"RetryPolicy.attempts must be an int, got {self.attempts!r}")
        if self.attempts < 1:
            raise InvalidInput(f"RetryPolicy.attempts must be at least 1, got {self.attempts}")
        for name in ("deadline", "initial_wait", "max_wait", "jitter"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float) or math.isnan(value):
                raise InvalidInput(f"RetryPolicy.{name} must be a number, got {value!r}")
            if value < 0:
                raise InvalidInput(f"RetryPolicy.{name} must not be negative, got {value!r}")
        if not self.deadline > 0:
            raise InvalidInput(
                f"RetryPolicy.deadline must be more than 0 seconds (it bounds every network "
                f"operation of the call), got {self.deadline!r}"
            )
        if self.max_wait < self.initial_wait:
            raise InvalidInput(
                f"RetryPolicy.max_wait ({self.max_wait}) is less than initial_wait "
                f"({self.initial_wait})"
            )

    @classmethod
    def never(cls) -> RetryPolicy:
        """A policy that makes exactly one attempt."""
        return cls(attempts=1)

    def backoff(self, attempt: int, *, rng: Callable[[], float] = random.random) -> float:
        """The computed wait after failed attempt number ``attempt`` (1 for the first)."""
        exponent = max(0, min(attempt - 1, 62))
        base = min(self.max_wait, self.initial_wait * (2.0**exponent))
        return base + self.jitter * rng()

    def is_retryable(self, error: BaseException) -> bool:
        """Whether doing the same thing again may work, by the error alone."""
        if not isinstance(error, SMTPGuardError):
            return False
        if isinstance(error, DeliveryUncertain):
            return self.retry_uncertain
        return not error.permanent

    def decide(
        self,
        attempt: int,
        elapsed: float,
        error: BaseException,
        *,
        rng: Callable[[], float] = random.random,
    ) -> RetryDecision:
        """Whether to retry after failed attempt number ``attempt``, ``elapsed`` seconds in."""
        if not self.is_retryable(error):
            why = "uncertain delivery" if isinstance(error, DeliveryUncertain) else "permanent"
            return RetryDecision(False, 0.0, f"not retried: {why}")
        if attempt >= self.attempts:
            return RetryDecision(False, 0.0, f"gave up after {attempt} attempt(s)")
        hint = error.retry_after if isinstance(error, SMTPGuardError) else None
        if self.honor_server_hints and hint is not None:
            wait, source = max(0.0, float(hint)), "server hint"
        else:
            wait, source = self.backoff(attempt, rng=rng), "backoff"
        remaining = self.deadline - elapsed
        if wait > remaining:
            return RetryDecision(
                False,
                0.0,
                f"{source} of {wait:.1f}s does not fit the {max(0.0, remaining):.1f}s left "
                f"of the {self.deadline:g}s deadline",
                retry_after=wait,
            )
        return RetryDecision(True, wait, f"{source} {wait:.1f}s")


# --------------------------------------------------------------------------- testing mode

_testing = False


def set_testing(enabled: bool) -> None:
    """Switch the testing mode on or off for the whole process (waits return at once)."""
    global _testing  # noqa: PLW0603 (one process-wide switch, like stamina.set_testing)
    _testing = bool(enabled)


def is_testing() -> bool:
    """Whether waits between attempts are skipped (counted, not slept)."""
    return _testing


@contextmanager
def no_wait() -> Iterator[None]:
    """Within the block, retries do not sleep; attempts and deadlines count as if they had."""
    before = _testing
    set_testing(True)
    try:
        yield
    finally:
        set_testing(before)
