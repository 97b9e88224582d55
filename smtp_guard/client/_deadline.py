"""The call's deadline, bounding every network operation: ``min(timeout, time left)``.

:func:`~smtp_guard.client._deliver.deliver` runs each attempt inside :func:`deadline_in`
with what is left of ``RetryPolicy.deadline``; the connection and transaction code passes
:func:`bound` of its timeout to each network operation. A server that answers every
command just before the timeout then cannot stretch one call far past its deadline, and
``timeout=None`` no longer means "wait for ever" when a deadline is running.

Outside :func:`deadline_in` (a pooled connection's housekeeping, a caller's own use of
:func:`~smtp_guard.client._connect.open_connection`) :func:`bound` returns the timeout as
given. The deadline is a context variable, so concurrent sends each see their own.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar, Token

__all__ = ["bound", "deadline_in", "reset_deadline", "set_deadline", "time_left"]

_END: ContextVar[float | None] = ContextVar("smtp_guard_deadline_end", default=None)


def time_left() -> float | None:
    """Seconds until the current deadline (0.0 once passed), or None when there is none."""
    end = _END.get()
    if end is None:
        return None
    return max(0.0, end - time.monotonic())


def bound(timeout: float | None) -> float | None:
    """``timeout`` cut to the time left before the deadline (None: no limit at all)."""
    end = _END.get()  # (inlined time_left: this runs for every command)
    if end is None:
        return timeout
    left = end - time.monotonic()
    if left <= 0.0:
        return 0.0
    return left if timeout is None or timeout > left else timeout


def set_deadline(seconds: float) -> Token[float | None]:
    """From now on (in this context), network operations end at most ``seconds`` from now.

    Keeps an earlier deadline already set; an infinite ``seconds`` adds none. Undo with
    :func:`reset_deadline` and the returned token (:func:`deadline_in` does both).
    """
    end = _END.get()
    if math.isfinite(seconds):
        mine = time.monotonic() + max(0.0, seconds)
        end = mine if end is None or mine < end else end
    return _END.set(end)


def reset_deadline(token: Token[float | None]) -> None:
    """Restore the deadline that was current before :func:`set_deadline`."""
    _END.reset(token)


@contextmanager
def deadline_in(seconds: float) -> Iterator[None]:
    """Within the block, network operations end at most ``seconds`` from now (nested blocks
    keep the earlier of the two deadlines; an infinite ``seconds`` sets none)."""
    token = set_deadline(seconds)
    try:
        yield
    finally:
        reset_deadline(token)
