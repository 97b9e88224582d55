"""One mail transaction on an open connection, pipelined (RFC 2920) where the server allows it.

:func:`pipelined_transaction` is a drop-in for the client's ``run_transaction`` (a
``Connection`` and an ``Envelope``; never raises for the server or the network), which the
pooled Mailer hands to the retry loop. Where the server does not advertise PIPELINING it *is*
``run_transaction``: one command, then its reply, through aiosmtplib's command API.

This is the one seam below aiosmtplib's command API. aiosmtplib's ``SMTPProtocol`` parses one
reply per waiting command and drops reply bytes that arrive while no command waits, so it cannot
read the replies to several commands written at once. A pipelined transaction therefore takes
the connection's transport for its length: it installs its own protocol (:class:`_Channel`,
through the public ``transport.set_protocol``), writes MAIL, every RCPT and DATA in one write
(RFC 2920 section 3.1), reads exactly as many replies as it wrote commands, pairing them by
count, and hands the transport back to aiosmtplib's protocol afterwards (or, if the connection
died meanwhile, tells aiosmtplib it did).

Every reply is checked. The cases pipelining adds:

* DATA answered 354 although no recipient was accepted (or MAIL was refused): the server now
  reads message content, so a lone "." ends it (RFC 2920 section 3.1) and the transaction fails
  with the recipients' (or the sender's) typed errors.
* 421 at any point: the server is closing the channel; replies after it never come.
* The connection breaks, or a reply does not come in time: before the final "." was written this
  is :class:`~smtp_guard.errors.ServerDisconnected` / :class:`~smtp_guard.errors.ReadTimeout`
  (nothing was delivered, safe to retry); after it, :class:`~smtp_guard.errors.DeliveryUncertain`.
  A timeout while the message is going out aborts the connection, discarding what is still
  buffered: if no byte of the final "." had reached the kernel it is a retryable
  :class:`~smtp_guard.errors.SMTPTimeout`, else (or under TLS, where that cannot be told)
  :class:`~smtp_guard.errors.DeliveryUncertain`. Never ``transport.close()``: it would still
  send the buffer, final "." included, behind the back of a retry.

Replies are split by the sans-IO parser of :mod:`smtp_guard.replies` (the grammar of
:func:`~smtp_guard.replies.parse_reply`; bounded line and reply length, any chunking), and
turned into typed errors by the client's one mapping
(:func:`smtp_guard.client._mapping.reply_error`).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import weakref
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

import aiosmtplib
from aiosmtplib import SMTPResponse

from smtp_guard._enums import Phase
from smtp_guard.client._connect import Connection, unsent_bytes
from smtp_guard.client._deadline import bound
from smtp_guard.client._mapping import reply_error
from smtp_guard.client._transaction import (
    Prepared,
    TransactionResult,
    prepare_message,
    short_of_time,
    too_many_recipients,
)
from smtp_guard.client._transaction import run_transaction as run_stepwise
from smtp_guard.client._validate import Envelope
from smtp_guard.errors import (
    DeliveryUncertain,
    ProtocolError,
    ReadTimeout,
    ReplyError,
    ServerDisconnected,
    SMTPGuardError,
    SMTPTimeout,
)
from smtp_guard.replies import _ReplyParser

__all__ = ["pipelined_transaction"]

_ACCEPTED_RCPT = (250, 251)


def _response(code: int, texts: list[str]) -> SMTPResponse:
    """A parsed reply as aiosmtplib forms it (each line stripped, joined with "\\n"), so errors
    built from it read exactly as those built from aiosmtplib's own replies."""
    return SMTPResponse(code, "\n".join(text.strip(" \t\r\n") for text in texts))


class _Expect:
    """Replies one write asked for: the channel fills them in, in order, as they arrive."""

    __slots__ = ("remaining", "replies", "waiter")

    def __init__(self, count: int) -> None:
        self.remaining = count
        self.replies: collections.deque[SMTPResponse] = collections.deque()
        self.waiter: asyncio.Future[None] | None = None

    def wake(self) -> None:
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_result(None)


class _Channel(asyncio.Protocol):
    """The protocol installed on a connection's transport while pipelined transactions use it.

    Every write registers how many replies it asked for (an :class:`_Expect`); replies are
    handed to those, oldest write first. Several transactions may be attached at once: one
    waiting for the reply to its final "." while the next one's MAIL/RCPT/DATA already went out
    (RFC 2920 3.1: message content may be the first "command" of a group). When the last one
    detaches, the transport goes back to aiosmtplib's protocol.
    """

    def __init__(
        self,
        smtp: aiosmtplib.SMTP,
        protocol: asyncio.BaseProtocol,
        transport: asyncio.WriteTransport,
    ) -> None:
        self.smtp = smtp
        self.protocol = protocol
        self.transport = transport
        self.parser = _ReplyParser()
        self.pending: collections.deque[_Expect] = collections.deque()
        self.error: SMTPGuardError | None = None
        self.lost = False
        self.lost_exc: Exception | None = None
        self.closed_by_peer = False
        self.poisoned = False  # out of step with the server: close when the last user leaves
        self.users = 0
        self.written = 0  # bytes written to the transport so far
        self._handed_at_abort: int | None = None
        self._paused = False
        self._drained: asyncio.Future[None] | None = None

    # -- asyncio.Protocol
    def data_received(self, data: bytes) -> None:
        if self.error is not None:
            return
        try:
            replies = [_response(code, texts) for code, texts in self.parser.feed(data)]
        except ProtocolError as exc:
            replies = []
            self.error = exc
        for reply in replies:
            if not self.pending:
                self.error = ProtocolError(f"a reply no command asked for: {reply.code}")
                break
            head = self.pending[0]
            head.replies.append(reply)
            head.remaining -= 1
            if head.remaining == 0:
                self.pending.popleft()
            head.wake()
        if self.error is not None:
            self.poisoned = True
            self._wake_all()

    def eof_received(self) -> bool:
        self.closed_by_peer = True
        self._wake_all()
        return False  # the transport closes itself

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        self.lost_exc = exc
        self.closed_by_peer = True
        self._wake_all()
        self.resume_writing()

    def pause_writing(self) -> None:
        self._paused = True

    def resume_writing(self) -> None:
        self._paused = False
        if self._drained is not None and not self._drained.done():
            self._drained.set_result(None)

    # -- used by _Transaction
    def _wake_all(self) -> None:
        for expect in self.pending:
            expect.wake()

    def send(self, data: bytes, replies: int) -> _Expect:
        """Write ``data`` and register the ``replies`` it asks for (no await in between)."""
        if self.closed_by_peer or self.poisoned or self.transport.is_closing():
            raise ServerDisconnected("the server closed the connection")
        self.transport.write(data)
        self.written += len(data)
        expect = _Expect(replies)
        if replies:
            self.pending.append(expect)
        return expect

    def handed(self) -> int | None:
        """How many of the bytes written went to the kernel (None: unknown, assume all)."""
        if self._handed_at_abort is not None:
            return self._handed_at_abort
        unsent = unsent_bytes(self.transport)
        return None if unsent is None else self.written - unsent

    def abort(self) -> None:
        """Close at once, discarding what is still buffered (``close()`` would send it)."""
        if self._handed_at_abort is None:
            self._handed_at_abort = self.handed()
        if not self.transport.is_closing():
            self.transport.abort()

    async def drain(self, timeout: float | None) -> None:
        """Wait until the transport takes more (bounded by ``timeout`` and the deadline)."""
        if self._paused and not self.lost:
            # One future for every writer waiting (one transaction's content may still be
            # draining when the next one's is written): a new one per call would strand the
            # earlier waiter, which then timed out on a healthy connection. Shielded, so one
            # waiter's timeout does not cancel the others' wait.
            if self._drained is None or self._drained.done():
                self._drained = asyncio.get_running_loop().create_future()
            try:
                await asyncio.wait_for(asyncio.shield(self._drained), bound(timeout))
            except asyncio.TimeoutError:
                raise SMTPTimeout(
                    "timed out sending to the server: it stopped reading what was written"
                ) from None

    async def next_reply(self, expect: _Expect, timeout: float | None) -> SMTPResponse | None:
        """The next reply for ``expect``; None if the connection closed first."""
        while not expect.replies:
            if self.error is not None:
                raise self.error
            if self.closed_by_peer or expect.remaining == 0:
                return None
            # Bounded by the call's deadline too, as each command of the client is.
            limit = bound(timeout)
            if limit is not None and limit <= 0.0:
                raise ReadTimeout("timed out waiting for the server's reply")
            loop = asyncio.get_running_loop()
            waiter = expect.waiter = loop.create_future()
            # A timer of our own rather than asyncio.wait_for, which costs twice as much per
            # reply (its bookkeeping is ~5 us of a Mailer's ~200 us per message, twice).
            timer = None if limit is None else loop.call_later(limit, _time_out, waiter)
            try:
                await waiter
            except _ReplyTimeout:
                raise ReadTimeout("timed out waiting for the server's reply") from None
            finally:
                expect.waiter = None
                if timer is not None:
                    timer.cancel()
        return expect.replies.popleft()


class _ReplyTimeout(Exception):
    """Set on a reply's waiter when its time is up (turned into ReadTimeout)."""


def _time_out(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_exception(_ReplyTimeout())


_CHANNELS: weakref.WeakKeyDictionary[aiosmtplib.SMTP, _Channel] = weakref.WeakKeyDictionary()


def _attach(smtp: aiosmtplib.SMTP) -> _Channel:
    """The connection's channel (installed now if no transaction holds it yet)."""
    channel = _CHANNELS.get(smtp)
    if channel is None:
        protocol, transport = smtp.protocol, smtp.transport
        if not smtp.is_connected or protocol is None or transport is None:
            raise ServerDisconnected("the connection is not open")
        channel = _Channel(smtp, protocol, transport)  # type: ignore[arg-type]
        transport.set_protocol(channel)
        _CHANNELS[smtp] = channel
    elif channel.closed_by_peer or channel.poisoned:
        raise ServerDisconnected("the connection is closing")
    channel.users += 1
    return channel


def _detach(channel: _Channel, *, close: bool, content: bool = True) -> None:
    """One transaction is done with the channel; the last one hands the transport back.

    ``close``: the connection must not carry another transaction. ``content``: the leaving
    transaction wrote (some of) its message. Then the connection is aborted at once, so that
    what is still buffered, final "." included, is never sent after we gave up on it (the other
    attached transactions see the loss). Otherwise (it failed during its envelope, typically
    timed out behind the slow reply to an earlier transaction's final "."), the earlier ones
    keep the connection to read their replies, and the last to leave closes it.
    """
    channel.users -= 1
    smtp = channel.smtp
    if close:
        channel.poisoned = True
        if content or channel.users == 0:
            channel.abort()  # never close(): it still flushes the buffer
    if channel.users > 0:
        return
    _CHANNELS.pop(smtp, None)
    if channel.lost:
        # The connection died while we held it: aiosmtplib's protocol never heard of it.
        channel.protocol.connection_lost(channel.lost_exc)
        smtp.close()
        return
    channel.transport.set_protocol(channel.protocol)
    if channel.poisoned or channel.closed_by_peer or channel.pending or channel.parser.pending:
        channel.abort()  # its connection_lost now reaches aiosmtplib's protocol
        smtp.close()


class _Transaction:
    """One transaction's view of a channel: its own writes and their replies, in order."""

    def __init__(self, channel: _Channel, timeout: float | None) -> None:
        self.channel = channel
        self.timeout = timeout
        self.close = False  # close the connection when done
        self.content = False  # (part of) the message was written
        self.accepted: list[str] = []
        self.refused: dict[str, ReplyError] = {}
        self._expects: collections.deque[_Expect] = collections.deque()

    def write(self, data: bytes, replies: int = 1) -> None:
        self._expects.append(self.channel.send(data, replies))

    async def next_reply(self) -> SMTPResponse | None:
        while self._expects:
            head = self._expects[0]
            if head.replies or head.remaining:
                return await self.channel.next_reply(head, self.timeout)
            self._expects.popleft()
        raise ProtocolError("no reply was expected")  # pragma: no cover - a bug of ours

    async def reply(self, phase: Phase) -> SMTPResponse:
        """The next reply; a broken connection or timeout is a typed error for ``phase``."""
        try:
            reply = await self.next_reply()
        except (ReadTimeout, ProtocolError):
            self.close = True
            raise
        if reply is None:
            self.close = True
            raise ServerDisconnected(
                f"the server closed the connection before replying to {phase.value.upper()}"
            )
        if reply.code == 421:
            self.close = True  # RFC 5321 3.8: the server closes the channel after a 421
        return reply

    async def abort_data(self) -> None:
        """DATA got 354 but no message will follow: a lone "." ends the data (RFC 2920 3.1)."""
        self.write(b".\r\n")
        await self.reply(Phase.MESSAGE)

    async def reset(self) -> None:
        """RSET after a failed transaction so the connection can carry the next one."""
        if self.close:
            return
        try:
            self.write(b"RSET\r\n")
            reply = await self.reply(Phase.MAIL)
        except SMTPGuardError:
            self.close = True
            return
        if reply.code != 250:
            self.close = True


@contextlib.asynccontextmanager
async def _owning(conn: Connection) -> AsyncIterator[_Transaction]:
    """Attach one transaction to the connection's channel for its length, then detach."""
    channel = _attach(conn.client)
    tx = _Transaction(channel, conn.client.timeout)
    try:
        yield tx
    except SMTPGuardError:
        raise
    except BaseException:
        tx.close = True  # cancelled mid-conversation: the dialogue's state is unknown
        raise
    finally:
        _detach(channel, close=tx.close, content=tx.content)


@dataclass(frozen=True)
class _Envelope:
    """One transaction's commands and content, as bytes on the wire."""

    sender: str
    recipients: tuple[str, ...]
    #: each recipient as the caller wrote it (the name its error carries, as step by step)
    given: dict[str, str]
    mail_cmd: bytes
    rcpt_cmds: list[bytes]
    payload: bytes

    @classmethod
    def of(cls, envelope: Envelope, rcpts: tuple[str, ...], prepared: Prepared) -> _Envelope:
        sender = f"<{envelope.sender}>".encode(prepared.encoding)
        mail_opts = [o.encode("ascii") for o in prepared.mail_options]
        rcpt_opts = [o.encode("ascii") for o in envelope.rcpt_options]
        return cls(
            envelope.sender,
            rcpts,
            {r: envelope.given(r) for r in rcpts},
            b" ".join([b"MAIL FROM:" + sender, *mail_opts]) + b"\r\n",
            [
                b" ".join([b"RCPT TO:" + f"<{r}>".encode(prepared.encoding), *rcpt_opts]) + b"\r\n"
                for r in rcpts
            ],
            prepared.data,
        )

    def error(
        self, reply: SMTPResponse, phase: Phase, recipient: str | None = None
    ) -> SMTPGuardError:
        """The typed error; a reply that is not 4xx/5xx where one was due is a ProtocolError."""
        return reply_error(reply.code, reply.message, phase, recipient, sender=self.sender)


async def _rcpt_reply(tx: _Transaction, env: _Envelope, recipient: str) -> None:
    rcpt = await tx.reply(Phase.RCPT)
    if rcpt.code in _ACCEPTED_RCPT:
        tx.accepted.append(recipient)
        return
    error = env.error(rcpt, Phase.RCPT, env.given[recipient])
    if rcpt.code == 421 or not isinstance(error, ReplyError):
        tx.close = True  # the server closes the channel, or we are out of step with it
        raise error
    tx.refused[recipient] = error


async def _envelope(tx: _Transaction, env: _Envelope) -> bool:
    """MAIL, every RCPT and DATA in one write; then their replies, paired by count.

    True when DATA got its 354 and the message is to follow. False when every recipient was
    refused (their errors are in ``tx.refused``). Raises the typed error that ends the
    transaction otherwise (MAIL or DATA refused, 421, the connection lost).
    """
    tx.write(env.mail_cmd + b"".join(env.rcpt_cmds) + b"DATA\r\n", 2 + len(env.rcpt_cmds))
    mail = await tx.reply(Phase.MAIL)
    if mail.code == 421:
        raise env.error(mail, Phase.MAIL)
    for recipient in env.recipients:
        await _rcpt_reply(tx, env, recipient)
    data = await tx.reply(Phase.DATA)
    if data.code == 421:
        raise env.error(data, Phase.DATA)
    if mail.code != 250 or not tx.accepted:
        # The transaction failed; if the server still said 354 it now reads content.
        if data.code == 354:
            await tx.abort_data()
        else:
            await tx.reset()
        if mail.code != 250:
            # The RCPT replies after a refused MAIL (typically 503) say nothing about the
            # recipients: none of them was tried.
            tx.accepted.clear()
            tx.refused.clear()
            raise env.error(mail, Phase.MAIL)
        return False
    if data.code != 354:
        await tx.reset()
        raise env.error(data, Phase.DATA)
    return True


async def _content(
    tx: _Transaction, env: _Envelope, conn: Connection, sent: Callable[[], None] | None
) -> SMTPResponse:
    """Write the message and its final "."; from here on a lost reply is DeliveryUncertain.

    ``sent`` is called once the content is written, before its reply is awaited: the
    connection may then carry the next transaction's commands (RFC 2920 3.1).
    """
    channel = tx.channel
    short = short_of_time(conn)
    if short is not None:
        tx.close = True  # 354 came: only closing the connection ends the data unsent
        raise short
    tx.content = True
    tx.write(env.payload)
    end = channel.written  # the final ".\r\n" is the 3 bytes before this offset
    if sent is not None:
        sent()
    try:
        await channel.drain(tx.timeout)
    except SMTPTimeout as exc:
        tx.close = True
        raise _timed_out(channel, end, exc, tx.accepted) from None
    try:
        final = await tx.next_reply()
    except (ReadTimeout, ProtocolError) as exc:
        tx.close = True
        if isinstance(exc, ReadTimeout) and _dot_unsent(channel, end):
            raise _timed_out(channel, end, exc, tx.accepted) from None
        # As the step-by-step client: the reason picks the aiosmtplib class it also is.
        raise DeliveryUncertain(
            f"no readable reply to the final '.' ({exc.message}): "
            "the message may have been delivered",
            recipients=tx.accepted,
            reason="timeout" if isinstance(exc, ReadTimeout) else "bad_reply",
        ) from None
    if final is None:
        tx.close = True
        raise DeliveryUncertain(
            "the connection closed after the final '.' before the server replied: "
            "the message may have been delivered",
            recipients=tx.accepted,
            reason="disconnected",
        )
    if final.code == 421:
        tx.close = True
    if 200 <= final.code <= 299:
        return final
    if 400 <= final.code <= 599:
        raise env.error(final, Phase.MESSAGE)
    tx.close = True
    raise DeliveryUncertain(
        f"unexpected reply to the final '.': {final.code}; the message may have been delivered",
        recipients=tx.accepted,
        reason="bad_reply",
    )


def _dot_unsent(channel: _Channel, end: int) -> bool:
    """Abort the connection, discarding its buffer; True if no byte of the final ".\r\n"
    (ending at offset ``end`` of what was written) had reached the kernel, so the server
    cannot have it. False when it had, or when that is unknown (TLS)."""
    channel.abort()
    handed = channel.handed()
    return handed is not None and handed <= end - 3


def _timed_out(
    channel: _Channel, end: int, exc: SMTPTimeout, accepted: list[str]
) -> SMTPGuardError:
    """The error for a timeout while the message was going out (the connection is aborted):
    retryable if the final "." never left, else :class:`DeliveryUncertain`."""
    if _dot_unsent(channel, end):
        return type(exc)(
            f"{exc.message}; the end of the message was never sent (discarded on abort), "
            "so nothing was delivered"
        )
    return DeliveryUncertain(
        f"{exc.message}, after (part of) the final '.' was sent: "
        "the message may have been delivered",
        recipients=accepted,
        reason="timeout",
    )


# --------------------------------------------------------------------------- client adapter


async def pipelined_transaction(
    conn: Connection,
    envelope: Envelope,
    recipients: tuple[str, ...] | None = None,
    *,
    prepared: Prepared | None = None,
    content_sent: Callable[[], None] | None = None,
) -> TransactionResult:
    """The client's ``run_transaction``, pipelined where the server advertises PIPELINING.

    Same contract: returns the per-recipient :class:`TransactionResult` and never raises for
    what the server or the network does; raises only what ``prepare_message`` raises (before
    MAIL). Without PIPELINING it *is* the client's one-command-at-a-time transaction.
    Recipients refused with "too many recipients" after others were accepted are
    ``not_attempted`` (the retry loop sends them in a further transaction at once).
    ``content_sent`` is called when the message and its final "." are written and only their
    reply is awaited: the pool may then let the next transaction write its commands on the
    same connection.
    """
    if not conn.supports("pipelining"):
        return await run_stepwise(conn, envelope, recipients, prepared=prepared)
    rcpts = envelope.recipients if recipients is None else tuple(recipients)
    result = TransactionResult(rcpts)
    if prepared is None:
        prepared = prepare_message(conn, envelope)
    env = _Envelope.of(envelope, rcpts, prepared)
    result.error = short_of_time(conn)
    if result.error is not None:
        result.not_attempted = rcpts
        return result
    tx: _Transaction | None = None
    try:
        async with _owning(conn) as tx:
            # Every recipient refused: their errors are in ``refused``, no overall error.
            if await _envelope(tx, env):
                result.response = await _content(tx, env, conn, content_sent)
    except SMTPGuardError as exc:
        result.error = exc
    if tx is not None:
        result.accepted = tuple(tx.accepted)
        result.refused = dict(tx.refused)
        if result.accepted:
            # As in the step-by-step transaction: "too many recipients" once one was accepted
            # is no refusal; those go in a further transaction (or the next attempt), whether
            # or not this one then went through.
            for rcpt in [r for r, e in result.refused.items() if too_many_recipients(e)]:
                del result.refused[rcpt]
        answered = set(result.accepted) | set(result.refused)
        result.not_attempted = tuple(r for r in rcpts if r not in answered)
    else:
        result.not_attempted = rcpts
    if result.error is None and result.response is not None:
        result.delivered = result.accepted
        conn.transactions += 1
    return result
