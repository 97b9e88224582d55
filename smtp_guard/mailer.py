"""A pooled, rate-limited, pipelining sender: :class:`Mailer` (async) and :class:`SyncMailer`.

::

    async with smtp_guard.Mailer(hostname="smtp.example.org", port=587,
                                 username="app", password=secret, pool_size=4) as mailer:
        results = await asyncio.gather(*(mailer.send(m) for m in messages))

``Mailer.send`` takes the message arguments of :func:`smtp_guard.send` and returns the same
:class:`~smtp_guard.SendResult`, with the same retry and safety rules: it runs the client's own
retry loop and input checks, over connections opened by the client's own ``open_connection``
(TLS rules, no credentials in clear, typed errors). What the Mailer adds:

- **a pool** (``pool_size`` connections at most, reused; replaced after
  ``max_messages_per_connection`` transactions or ``max_connection_age`` seconds, or when
  broken; checked with NOOP after ``idle_check`` seconds idle; all closed on exit, with QUIT
  on a clean exit and at once on an error or cancellation);
- **pipelining** (RFC 2920; :mod:`smtp_guard._pipelining`) where the server advertises it,
  unless ``pipelining=False``: MAIL, the RCPTs and DATA in one write, and, once a message's
  final "." is written, the next message's commands go out on the same connection before its
  reply arrives (about one round trip per message instead of four);
- **a rate limit** (``rate_limit`` messages per second, token bucket) applied to every attempt;
- **AIMD concurrency**: a reply that says "slow down" (421 4.7.0, 432 4.3.2, 450 4.2.1,
  451 4.7.28, 454 / "too many connections"...; see :func:`smtp_guard._ratelimit.is_throttle`)
  halves the number of transactions run at once (and of connections kept open); each completed
  transaction adds back a fraction (+1 per round of successes), up to ``pool_size``. The
  throttled message itself is retried by the retry policy, after its backoff or the server's
  hint.

:class:`SyncMailer` offers the same from synchronous code through one background event loop
thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import email.message
import inspect
import math
import ssl
import threading
from collections.abc import Callable, Coroutine, Sequence
from types import TracebackType
from typing import Any, Concatenate, ParamSpec, TypeVar

from aiosmtplib.smtp import DEFAULT_TIMEOUT
from aiosmtplib.typing import SMTPTokenGenerator, SocketPathType

from smtp_guard import hooks
from smtp_guard._pipelining import pipelined_transaction
from smtp_guard._pool import POOL_BUSY_HINT, Pool, PoolStats
from smtp_guard._ratelimit import AIMDLimit, TokenBucket, is_throttle
from smtp_guard.client import _deliver
from smtp_guard.client._connect import Connection, ConnectParams
from smtp_guard.client._deadline import time_left
from smtp_guard.client._transaction import Prepared, TransactionResult
from smtp_guard.client._transaction import run_transaction as run_stepwise
from smtp_guard.client._validate import Envelope, make_envelope
from smtp_guard.client.result import SendResult
from smtp_guard.errors import InvalidInput, SMTPTimeout
from smtp_guard.policy import RetryPolicy

__all__ = ["Mailer", "SyncMailer"]

T = TypeVar("T")
P = ParamSpec("P")
Message = email.message.EmailMessage | email.message.Message | str | bytes


def _positive_int(value: object, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise InvalidInput(f"{name} must be a positive int, got {value!r}")
    return value


def _positive_number(value: object, name: str, *, zero: bool = False) -> float:
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or math.isnan(value)
        or value < 0
        or (value == 0 and not zero)
    ):
        raise InvalidInput(f"{name} must be a positive number of seconds, got {value!r}")
    return float(value)


class Mailer:
    """A pool of SMTP connections to one server, sending many messages safely and fast.

    Connection arguments mean what they mean for :func:`smtp_guard.send` (and
    ``aiosmtplib.send``); ``sock`` is not accepted (a socket cannot be pooled). Pool arguments:
    ``pool_size`` (connections at most), ``max_messages_per_connection``,
    ``max_connection_age`` (seconds), ``idle_check`` (seconds idle before a NOOP check),
    ``rate_limit`` (messages per second, or None), ``policy`` (the :class:`RetryPolicy` of every
    send, default ``RetryPolicy()``), ``pipelining`` (use RFC 2920 where offered).
    Bad arguments raise :class:`~smtp_guard.errors.InvalidInput` here, before any connection.
    """

    def __init__(
        self,
        *,
        hostname: str | None = "localhost",
        port: int | None = None,
        username: str | bytes | None = None,
        password: str | bytes | None = None,
        oauth_token_generator: SMTPTokenGenerator | None = None,
        local_hostname: str | None = None,
        source_address: tuple[str, int] | None = None,
        timeout: float | None = DEFAULT_TIMEOUT,
        use_tls: bool = False,
        start_tls: bool | None = None,
        validate_certs: bool = True,
        client_cert: str | None = None,
        client_key: str | None = None,
        tls_context: ssl.SSLContext | None = None,
        cert_bundle: str | None = None,
        socket_path: SocketPathType | None = None,
        allow_insecure_auth: bool = False,
        pool_size: int = 4,
        max_messages_per_connection: int = 100,
        max_connection_age: float = 300.0,
        idle_check: float = 5.0,
        rate_limit: float | None = None,
        policy: RetryPolicy | None = None,
        pipelining: bool = True,
    ) -> None:
        if policy is None:
            policy = RetryPolicy()
        elif not isinstance(policy, RetryPolicy):
            raise InvalidInput(f"policy must be a RetryPolicy, got {type(policy).__name__}")
        self.params = ConnectParams.of(locals())
        size = _positive_int(pool_size, "pool_size")
        self.policy = policy
        self.pipelining = bool(pipelining)
        self.concurrency = AIMDLimit(size)
        self.rate = None if rate_limit is None else TokenBucket(rate_limit)
        self._pool = Pool(
            self.params,
            size=size,
            max_messages=_positive_int(max_messages_per_connection, "max_messages_per_connection"),
            max_age=_positive_number(max_connection_age, "max_connection_age"),
            idle_check=_positive_number(idle_check, "idle_check", zero=True),
            limit=lambda: self.concurrency.limit,
        )
        self._closed = False

    def __repr__(self) -> str:
        state = "closed" if self._closed else f"{self._pool.open_count} open"
        return (
            f"<Mailer {self.params.server} pool_size={self._pool.size} {state}, "
            f"concurrency={self.concurrency.limit}>"
        )

    @property
    def stats(self) -> PoolStats:
        """What the pool did so far (connections opened, reused, checked, replaced...)."""
        return self._pool.stats

    @property
    def open_connections(self) -> int:
        """Connections open (or opening) right now."""
        return self._pool.open_count

    async def __aenter__(self) -> Mailer:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose(abort=exc_type is not None)

    async def aclose(self, *, abort: bool = False) -> None:
        """Close every connection (QUIT; at once with ``abort=True``). Idempotent."""
        self._closed = True
        await self._pool.close(abort=abort)

    async def send(
        self,
        message: Message,
        /,
        *,
        sender: str | None = None,
        recipients: str | Sequence[str] | None = None,
        mail_options: Sequence[str] | None = None,
        rcpt_options: Sequence[str] | None = None,
        policy: RetryPolicy | None = None,
    ) -> SendResult:
        """Send one message over the pool; safe to call from many tasks at once.

        Same arguments (the message ones) and result as :func:`smtp_guard.send`; ``policy``
        overrides the Mailer's for this message. Raises what :func:`smtp_guard.send` raises,
        and ``RuntimeError`` once the Mailer is closed.
        """
        if self._closed:
            raise RuntimeError("the Mailer is closed")
        if policy is not None and not isinstance(policy, RetryPolicy):
            raise InvalidInput(f"policy must be a RetryPolicy, got {type(policy).__name__}")
        envelope = make_envelope(message, sender, recipients, mail_options, rcpt_options)
        tracker = hooks.SendTracker(
            message,
            sender=envelope.sender,
            recipients=list(envelope.original.values()),
            server=self.params.server,
        )
        result: SendResult = await _deliver.deliver(
            envelope,
            acquire=self._acquire,
            release=self._pool.release,
            policy=policy or self.policy,
            tracker=tracker,
            transaction=self._transaction,
        )
        return result

    async def _acquire(self) -> Connection:
        if self.rate is not None:
            wait, left = self.rate.delay(), time_left()
            if left is not None and wait > left:
                # No slot is taken for a message that will not use it.
                raise SMTPTimeout(
                    f"the rate limit ({self.rate.rate:g}/s) would hold the message "
                    f"{wait:.2f}s, more than the {left:.2f}s left of the deadline: "
                    "it was not sent",
                    hint=POOL_BUSY_HINT,
                )
            await self.rate.acquire()  # no await since delay(): the same wait
        return await self._pool.acquire()

    async def _transaction(
        self,
        conn: Connection,
        envelope: Envelope,
        recipients: tuple[str, ...] | None = None,
        *,
        prepared: Prepared | None = None,
    ) -> TransactionResult:
        """One transaction (pipelined if allowed and offered), feeding the AIMD limit."""
        if self.pipelining:
            result = await pipelined_transaction(
                conn,
                envelope,
                recipients,
                prepared=prepared,
                content_sent=lambda: self._pool.lend(conn),
            )
        else:
            result = await run_stepwise(conn, envelope, recipients, prepared=prepared)
        if is_throttle(result.error) or any(is_throttle(e) for e in result.refused.values()):
            self.concurrency.on_throttle()
        elif result.error is None and result.delivered:
            self.concurrency.on_success()
        return result


def _arguments_of(
    source: Callable[Concatenate[Any, P], None],
) -> Callable[[Callable[..., None]], Callable[Concatenate[Any, P], None]]:
    """Give the decorated ``__init__`` the arguments of ``source`` (another ``__init__``), for
    type checkers, IDEs and ``help()``; it passes them on as they came."""

    def decorate(init: Callable[..., None]) -> Callable[Concatenate[Any, P], None]:
        init.__signature__ = inspect.signature(source)  # type: ignore[attr-defined]
        return init

    return decorate


class SyncMailer:
    """:class:`Mailer` for synchronous code: the same arguments; one background event loop.

    ::

        with smtp_guard.SyncMailer(hostname="smtp.example.org", port=587) as mailer:
            for message in messages:
                mailer.send(message)

    ``send`` may be called from several threads at once (they share the pool). Calling it
    from a coroutine running on the Mailer's own loop raises ``RuntimeError`` (it would wait
    for itself); from other event loops it works but blocks them, so await a :class:`Mailer`
    there instead.
    """

    @_arguments_of(Mailer.__init__)
    def __init__(self, **kwargs: Any) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name="smtp_guard.SyncMailer", daemon=True
        )
        try:
            self._mailer = Mailer(**kwargs)
        except BaseException:
            self._loop.close()
            raise
        self._closed = False
        self._thread.start()

    def __repr__(self) -> str:
        return f"<SyncMailer {self._mailer!r}>"

    @property
    def mailer(self) -> Mailer:
        """The :class:`Mailer` running on the background loop."""
        return self._mailer

    def _run(self, coro: Coroutine[Any, Any, T]) -> T:
        if threading.current_thread() is self._thread:
            coro.close()
            raise RuntimeError("SyncMailer was called from its own event loop; await Mailer")
        if self._closed:
            coro.close()
            raise RuntimeError("the SyncMailer is closed")
        future = asyncio.run_coroutine_threadsafe(coro, self._loop)
        try:
            return future.result()
        except BaseException:
            # KeyboardInterrupt while waiting: do not leave the send running unseen.
            future.cancel()
            with contextlib.suppress(Exception):
                future.result(timeout=5)
            raise

    def send(self, message: Message, /, **kwargs: Any) -> SendResult:
        """:meth:`Mailer.send`, blocking until the result is in."""
        return self._run(self._mailer.send(message, **kwargs))

    def close(self) -> None:
        """Close every connection and stop the background loop. Idempotent."""
        if self._closed:
            return
        self._run(self._mailer.aclose())
        self._closed = True
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join()
        self._loop.run_until_complete(self._loop.shutdown_asyncgens())
        self._loop.close()

    def __enter__(self) -> SyncMailer:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
