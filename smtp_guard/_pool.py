"""The connection pool behind :class:`smtp_guard.Mailer`.

Connections come from the client's ``open_connection`` (connect, EHLO, the TLS rules, AUTH), so
pooled connections follow exactly the rules of :func:`smtp_guard.send`. The pool:

- opens at most ``size`` connections, and runs at most ``limit()`` transactions at once (the
  AIMD limit, which can be lower than ``size`` while the server throttles us); a connection
  given back while more are open than the limit allows is closed;
- reuses an idle connection (the most recently used first) unless it has carried
  ``max_messages`` transactions or is older than ``max_age`` seconds, in which case it is
  closed with QUIT and a new one opened; one idle for ``idle_check`` seconds or more is checked
  with NOOP first and replaced if that fails;
- closes a connection given back broken (``conn.is_connected`` is false after a 421, a drop,
  a protocol error or a cancellation);
- lends a connection early (:meth:`Pool.lend`): once a pipelined transaction has written its
  final "." and only awaits the reply, its slot is freed and the connection offered to the next
  attempt, whose MAIL/RCPT/DATA then go out right behind it (RFC 2920 3.1 allows message
  content as the first "command" of a group); replies keep their order on the connection;
- on :meth:`close`, closes every idle connection (QUIT, or at once with ``abort=True``), and
  every busy one as it comes back; waiters get ``RuntimeError``.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import heapq
import itertools
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from smtp_guard.client._connect import LOWER_ERRORS, Connection, ConnectParams, open_connection
from smtp_guard.client._deadline import bound, time_left
from smtp_guard.errors import SMTPTimeout

__all__ = ["POOL_BUSY_HINT", "Pool", "PoolStats"]

#: The hint of the timeout raised when the call's deadline ran out in the pool's queue.
POOL_BUSY_HINT = (
    "Every pooled connection stayed busy (or the rate limit held the message) for the whole "
    "deadline; nothing was sent, so it is safe to retry. Raise pool_size or "
    "RetryPolicy.deadline, or submit fewer messages at once."
)


#: The longest wait, in seconds, for the reply to the NOOP that checks an idle connection.
NOOP_TIMEOUT = 10.0


@dataclass
class PoolStats:
    """Counters of what the pool did (read them to see reuse at work)."""

    opened: int = 0  #: connections opened
    reused: int = 0  #: acquisitions served by an idle connection
    checked: int = 0  #: NOOP checks after idling
    replaced: int = 0  #: connections closed as worn out, too old or failing their NOOP check
    discarded: int = 0  #: connections closed as over the (throttled) limit
    #: acquisitions that wrote their commands while the previous transaction on the same
    #: connection still awaited the reply to its final "."
    overlapped: int = 0


class _Expired(Exception):
    """Set on a queued waiter whose call's deadline passed (turned into SMTPTimeout)."""


@dataclass
class _Meta:
    created: float
    last_used: float


class Pool:
    """A bounded pool of ready SMTP connections (see the module docstring)."""

    def __init__(
        self,
        params: ConnectParams,
        *,
        size: int,
        max_messages: int,
        max_age: float,
        idle_check: float,
        limit: Callable[[], int] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.params = params
        self.size = size
        self.max_messages = max_messages
        self.max_age = max_age
        self.idle_check = idle_check
        self._limit = limit or (lambda: size)
        self._clock = clock
        self._idle: list[Connection] = []
        self._meta: dict[Connection, _Meta] = {}
        self._busy = 0  # slots taken by acquire() and not yet given back
        self._opening = 0
        self._closed = False
        self._waiters: collections.deque[asyncio.Future[None]] = collections.deque()
        # The queue's deadlines: one timer for the whole queue, at the earliest deadline of a
        # waiter, instead of a wait_for (a timer, and its heap entry) per queued message, which
        # cost ~10% of the Mailer's throughput with hundreds of sends queued. (deadline in
        # time.monotonic(), tie-breaker, waiter); entries of waiters served meanwhile are dropped
        # lazily (see _prune).
        self._ends: list[tuple[float, int, asyncio.Future[None]]] = []
        self._order = itertools.count()
        self._expiry: asyncio.TimerHandle | None = None
        self._expiry_at = 0.0
        self._closing: set[asyncio.Task[None]] = set()
        #: attempts (tasks) holding each connection; more than one while it is lent
        self._holders: dict[Connection, int] = {}
        #: (connection, task) pairs whose slot was given back early by lend()
        self._lent: set[tuple[Connection, asyncio.Task[Any] | None]] = set()
        self.stats = PoolStats()

    @property
    def open_count(self) -> int:
        """Connections open or being opened."""
        return len(self._meta) + self._opening

    @property
    def busy(self) -> int:
        return self._busy

    def _can_start(self) -> bool:
        return self._busy < min(self.size, self._limit())

    async def _slot(self) -> None:
        """Take a transaction slot, first come first served (one waiter woken per free slot)."""
        if self._closed:
            raise RuntimeError("the Mailer is closed")
        if not self._waiters and self._can_start():
            self._busy += 1
            return
        left = time_left()  # the call's deadline bounds the wait
        if left is not None and left <= 0.0:
            raise self._busy_timeout(left)
        waiter = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        if left is not None:
            self._expire_at(time.monotonic() + left, waiter)
        try:
            # The slot is taken for us (see _wake) before the future is set.
            await waiter
        except _Expired:
            with contextlib.suppress(ValueError):
                self._waiters.remove(waiter)
            raise self._busy_timeout(left) from None
        except BaseException:
            if waiter.done() and not waiter.cancelled() and waiter.exception() is None:
                self._give_back_slot()  # woken and cancelled at once: pass the slot on
            else:
                with contextlib.suppress(ValueError):
                    self._waiters.remove(waiter)
            if self._ends:
                self._prune()  # a cancelled waiter's deadline (and the timer) go with it
            raise

    def _busy_timeout(self, left: float | None) -> SMTPTimeout:
        return SMTPTimeout(
            f"no pooled connection to {self.params.server} came free within the deadline "
            f"({left or 0.0:.2f}s left; all {min(self.size, self._limit())} in use): the message "
            "was not sent",
            hint=POOL_BUSY_HINT,
        )

    def _expire_at(self, end: float, waiter: asyncio.Future[None]) -> None:
        """Fail ``waiter`` with :class:`_Expired` at ``end`` (monotonic) unless served first."""
        heapq.heappush(self._ends, (end, next(self._order), waiter))
        if self._expiry is None or end < self._expiry_at:
            self._schedule_expiry(end)

    def _schedule_expiry(self, end: float) -> None:
        if self._expiry is not None:
            self._expiry.cancel()
        self._expiry_at = end
        delay = max(0.0, end - time.monotonic())
        self._expiry = asyncio.get_running_loop().call_later(delay, self._expire)

    def _expire(self) -> None:
        """The queue's timer: fail the waiters whose deadline passed, then re-arm it for the
        earliest one still waiting."""
        self._expiry = None
        now = time.monotonic()
        ends = self._ends
        while ends and (ends[0][2].done() or ends[0][0] <= now):
            waiter = heapq.heappop(ends)[2]
            if not waiter.done():
                waiter.set_exception(_Expired())
        if ends:
            self._schedule_expiry(ends[0][0])

    def _prune(self) -> None:
        """Drop the deadlines of waiters served or gone (the queue's timer ignores them)."""
        ends = self._ends
        while ends and ends[0][2].done():
            heapq.heappop(ends)
        if len(ends) > 2 * len(self._waiters) + 16:  # served out of deadline order
            self._ends = [entry for entry in ends if not entry[2].done()]
            heapq.heapify(self._ends)
        if not self._ends and self._expiry is not None:
            self._expiry.cancel()
            self._expiry = None

    def _give_back_slot(self) -> None:
        self._busy -= 1
        self._wake()

    def _wake(self) -> None:
        while self._waiters and self._can_start():
            waiter = self._waiters.popleft()
            if not waiter.done():
                self._busy += 1
                waiter.set_result(None)
        if self._ends:
            self._prune()

    async def acquire(self) -> Connection:
        """A ready connection for one attempt; waits while ``limit()`` transactions run."""
        await self._slot()
        try:
            while self._idle:
                candidate = self._idle.pop()
                if self._holders.get(candidate, 0):
                    # Lent: its last transaction awaits the reply to its final "."; ours goes
                    # out right behind it (RFC 2920 3.1).
                    self.stats.reused += 1
                    self.stats.overlapped += 1
                    conn: Connection | None = candidate
                else:
                    conn = await self._reuse(candidate)
                if conn is not None:
                    self._holders[conn] = self._holders.get(conn, 0) + 1
                    return conn
            self._opening += 1
            conn = await self._open()
            self._holders[conn] = 1
            return conn
        except BaseException:
            self._give_back_slot()
            raise

    async def _open(self) -> Connection:
        try:
            conn = await open_connection(self.params)
        finally:
            self._opening -= 1
        now = self._clock()
        self._meta[conn] = _Meta(now, now)
        self.stats.opened += 1
        if self._closed:  # closed while we were connecting
            self._forget(conn)
            conn.abort()
            await conn.wait_closed()
            raise RuntimeError("the Mailer is closed")
        return conn

    def _fit(self, conn: Connection, *, in_flight: int = 0) -> bool:
        """Whether ``conn`` may carry another transaction (open, young, not worn out)."""
        meta = self._meta.get(conn)
        return (
            meta is not None
            and not self._closed
            and conn.is_connected
            and conn.transactions + in_flight < self.max_messages
            and self._clock() - meta.created < self.max_age
        )

    async def _reuse(self, conn: Connection) -> Connection | None:
        """``conn`` if it is fit for another transaction, else None (and it is closed)."""
        if not self._fit(conn):
            self.stats.replaced += 1
            self._retire(conn)
            return None
        if self._clock() - self._meta[conn].last_used >= self.idle_check:
            self.stats.checked += 1
            try:
                # Bounded by the call's deadline too, as every command of the attempt is: a
                # server that does not answer must not hold the message past it.
                check = min(self.params.timeout or NOOP_TIMEOUT, NOOP_TIMEOUT)
                reply = await conn.client.noop(timeout=bound(check))
            except LOWER_ERRORS:
                reply = None
            if reply is None or reply.code != 250:
                self.stats.replaced += 1
                self._forget(conn)
                conn.abort()
                await conn.wait_closed()
                return None
        self.stats.reused += 1
        return conn

    def _within_limit(self) -> bool:
        return len(self._meta) + self._opening <= min(self.size, self._limit())

    def lend(self, conn: Connection) -> None:
        """The holder's transaction wrote its final "." and only awaits the reply: free its
        slot now, and offer the connection to the next attempt if it is fit (the holder still
        calls :meth:`release` afterwards)."""
        key = (conn, asyncio.current_task())
        if key in self._lent or conn not in self._meta:
            return
        self._lent.add(key)
        self._busy -= 1
        in_flight = self._holders.get(conn, 0)
        if conn not in self._idle and self._within_limit() and self._fit(conn, in_flight=in_flight):
            self._meta[conn].last_used = self._clock()
            self._idle.append(conn)
        self._wake()

    async def release(self, conn: Connection) -> None:
        """Take back a connection after an attempt; keep it for reuse if it is fit."""
        key = (conn, asyncio.current_task())
        if key in self._lent:
            self._lent.discard(key)  # its slot was given back already
        else:
            self._busy -= 1
        holders = self._holders.get(conn, 0) - 1
        if holders > 0:
            self._holders[conn] = holders
            self._wake()
            return  # another attempt uses it now; that one decides its fate
        self._holders.pop(conn, None)
        fit = self._fit(conn)
        keep = fit and self._within_limit()
        if conn in self._idle:
            if not keep:
                self._idle.remove(conn)
        elif keep:
            self._meta[conn].last_used = self._clock()
            self._idle.append(conn)
        surplus = self._trim()
        self._wake()
        if not keep:
            if conn.is_connected and not self._closed:
                if fit:
                    self.stats.discarded += 1  # over the (throttled) limit
                else:
                    self.stats.replaced += 1  # worn out or too old
            self._retire(conn)
        for extra in surplus:
            self.stats.discarded += 1
            self._retire(extra)

    def _trim(self) -> list[Connection]:
        """Over the limit (the server throttled us): take idle ones out, oldest first."""
        surplus = []
        for extra in list(self._idle):
            if self._within_limit():
                break
            if not self._holders.get(extra):
                self._idle.remove(extra)
                self._forget(extra)
                surplus.append(extra)
        return surplus

    def _forget(self, conn: Connection) -> None:
        self._meta.pop(conn, None)

    def _retire(self, conn: Connection) -> None:
        """Close ``conn`` politely (QUIT) in the background; the pool no longer counts it."""
        self._forget(conn)
        # Closed already or not, close() waits until its socket is released, so that the
        # pool's close() returns with no transport left for the event loop to leak.
        task = asyncio.ensure_future(conn.close())
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)

    async def close(self, *, abort: bool = False) -> None:
        """Close every connection: idle ones now, busy ones when they come back."""
        self._closed = True
        idle, self._idle = self._idle, []
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_exception(RuntimeError("the Mailer is closed"))
        self._prune()
        aborted: list[Connection] = []
        for conn in idle:
            if abort:
                self._forget(conn)
                conn.abort()
                aborted.append(conn)
            elif not self._holders.get(conn):
                self._retire(conn)
            # else: lent, its holder awaits a final reply and retires it on release
        if abort:
            # Busy connections too: their senders are being cancelled or must not go on.
            for conn in list(self._meta):
                self._forget(conn)
                conn.abort()
                aborted.append(conn)
            for task in list(self._closing):
                task.cancel()  # Connection.close() still closes when cancelled
        waits = [*self._closing, *(asyncio.ensure_future(c.wait_closed()) for c in aborted)]
        if waits:
            await asyncio.gather(*waits, return_exceptions=True)
