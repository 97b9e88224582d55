"""Back-pressure for the pooled Mailer: a token bucket and an AIMD concurrency limit.

- :class:`TokenBucket` holds sends to ``rate`` messages per second (with a small burst) so the
  client slows down before the server has to say so.
- :class:`AIMDLimit` is the number of transactions allowed at once. A reply that says "slow
  down" (:func:`is_throttle`) halves it (multiplicative decrease, at most once per cool-down so
  one burst of refusals counts once); every completed transaction adds ``1/maximum`` (additive
  increase: +1 per ``maximum`` successes, so recovery is slow), up to the pool size.

Clock and sleep are injectable, so tests run without real waits. No I/O here.
"""

from __future__ import annotations

import asyncio
import math
import re
import time
from collections.abc import Awaitable, Callable

from smtp_guard._enums import Category
from smtp_guard.errors import InvalidInput, ReplyError, SMTPGuardError

__all__ = ["AIMDLimit", "TokenBucket", "is_throttle"]

#: (code, enhanced status) pairs that mean "you are sending too fast / too much at once".
THROTTLE_REPLIES: frozenset[tuple[int, str | None]] = frozenset(
    {
        (421, "4.7.0"),  # e.g. Gmail "421 4.7.0 Try again later, closing connection"
        (432, "4.3.2"),  # Exchange "432 4.3.2 STOREDRV; mailbox server is too busy"
        (450, "4.2.1"),  # "450 4.2.1 ... is receiving mail at a rate that prevents delivery"
        (451, "4.7.28"),  # Gmail "451 4.7.28 ... unusual rate of unsolicited mail"
        (452, "4.2.1"),
        (454, "4.7.0"),  # throttling at connect/AUTH time on several providers
    }
)
_THROTTLE_WORDS = re.compile(
    r"too many (?:connections|concurrent|sessions|messages|mails)|throttl|rate.?limit"
    r"|slow down|try again later|too busy|exceeded .*(?:rate|limit)",
    re.IGNORECASE,
)


def is_throttle(error: BaseException | None) -> bool:
    """Whether ``error`` is the server asking to send more slowly (or over fewer connections)."""
    if not isinstance(error, SMTPGuardError):
        return False
    if isinstance(error, ReplyError):
        if error.permanent:
            return False
        if error.category is Category.RATE_LIMITED:
            return True
        if (error.code, error.enhanced) in THROTTLE_REPLIES:
            return True
        return error.code in (421, 432, 450, 451, 452, 454) and bool(
            _THROTTLE_WORDS.search(error.text)
        )
    return any(is_throttle(e) for e in getattr(error, "refused", {}).values())


class TokenBucket:
    """At most ``rate`` acquisitions per second on average, ``burst`` at once.

    Implemented as a schedule (GCRA): each caller reserves the next free instant in order, so
    callers are served first come, first served, and none spins.
    """

    def __init__(
        self,
        rate: float,
        burst: int = 1,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
    ) -> None:
        if isinstance(rate, bool) or not isinstance(rate, int | float) or not rate > 0:
            raise InvalidInput(f"rate_limit must be a positive number of messages/s, got {rate!r}")
        if math.isinf(rate):
            raise InvalidInput("rate_limit must be finite (use None for no limit)")
        if isinstance(burst, bool) or not isinstance(burst, int) or burst < 1:
            raise InvalidInput(f"burst must be a positive int, got {burst!r}")
        self.rate = float(rate)
        self.burst = burst
        self._clock = clock
        self._sleep = sleep
        self._interval = 1.0 / self.rate
        self._tolerance = (burst - 1) * self._interval  # how far ahead a burst may run
        self._tat = -math.inf  # theoretical arrival time of the next acquisition

    def delay(self) -> float:
        """Seconds the next caller would wait for its slot (0 when free now); takes nothing."""
        now = self._clock()
        return max(0.0, max(self._tat, now) - self._tolerance - now)

    def reserve(self) -> float:
        """Take the next slot; return how many seconds to wait for it (0 when free now)."""
        now = self._clock()
        tat = max(self._tat, now)
        self._tat = tat + self._interval
        return max(0.0, tat - self._tolerance - now)

    async def acquire(self) -> None:
        """Take the next slot and wait for it (with the ``sleep`` given, tests' own)."""
        wait = self.reserve()
        if wait > 0:
            await self._sleep(wait)


class AIMDLimit:
    """How many transactions may run at once: halved on throttling, +1/maximum per success."""

    def __init__(
        self,
        maximum: int,
        *,
        minimum: int = 1,
        decrease: float = 0.5,
        cooldown: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.maximum = maximum
        self.minimum = minimum
        self.decrease = decrease
        self.cooldown = cooldown
        self._clock = clock
        self.value: float = float(maximum)
        self._last_decrease = -math.inf
        self.decreases = 0  #: how many times the limit was lowered (for tests and stats)

    @property
    def limit(self) -> int:
        """The current whole number of concurrent transactions allowed."""
        return max(self.minimum, int(self.value))

    def on_throttle(self) -> bool:
        """The server said "slow down": lower the limit (once per cool-down). True if lowered."""
        now = self._clock()
        if now - self._last_decrease < self.cooldown:
            return False
        self._last_decrease = now
        self.value = max(float(self.minimum), math.floor(self.value * self.decrease))
        self.decreases += 1
        return True

    def on_success(self) -> None:
        """A transaction went through: grow slowly back towards the maximum."""
        if self.value < self.maximum:
            self.value = min(float(self.maximum), self.value + 1.0 / self.maximum)
