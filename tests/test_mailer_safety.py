"""Mail safety in the pooled and pipelined paths: never twice, never blamed wrongly.

Real SMTP over loopback sockets: a raw asyncio server (it can stop reading, as a slow content
scanner does, which the FaultServer cannot) and the project's FaultServer.
"""

from __future__ import annotations

import asyncio
import base64
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import pytest

from smtp_guard.client import SendResult, send
from smtp_guard.errors import AuthError, DeliveryUncertain, SMTPGuardError, SMTPTimeout
from smtp_guard.mailer import Mailer
from smtp_guard.policy import RetryPolicy, no_wait
from smtp_guard.testing import FaultServer

#: Bigger than what loopback socket buffers hold, so a reader that stops leaves the end of
#: the message (its final ".") in the client's own buffer.
BIG = b"Subject: big\r\n\r\n" + (b"y" * 998 + b"\r\n") * 12_000
SMALL = b"Subject: small\r\n\r\nhello\r\n"


@dataclass
class HoldingServer:
    """Loopback SMTP server whose stalls last until the test ends them, so no outcome depends
    on how fast the machine is. It answers command lines in order, so pipelined groups too.

    ``stop_reading``: the first connection stops reading after its 354, as a slow content
    scanner does (a big message then backs up in the client's buffer), until the client
    connects again (it gave up on this one: whatever it still sends here arrives) or
    :meth:`release`.
    ``hold_replies``: the reply to each final "." waits (the message is stored first) for a
    :meth:`let_replies` or :meth:`release`.
    """

    stop_reading: bool = False
    hold_replies: bool = False
    port: int = 0
    connections: int = 0
    #: (number of the connection, recipients) of each complete message stored
    stored: list[tuple[int, tuple[str, ...]]] = field(default_factory=list)
    handlers: set[asyncio.Task[None]] = field(default_factory=set)
    reading: asyncio.Event = field(default_factory=asyncio.Event)  # the first one reads on
    _replies: asyncio.Semaphore = field(default_factory=lambda: asyncio.Semaphore(0))
    _changed: asyncio.Condition = field(default_factory=asyncio.Condition)

    def release(self) -> None:
        """End every stall: reading resumes, held replies (and later ones) go out."""
        self.reading.set()
        self.let_replies(1_000)

    def let_replies(self, count: int) -> None:
        """Let ``count`` held replies to a final "." go out, oldest first."""
        for _ in range(count):
            self._replies.release()

    async def stored_count(self, count: int) -> None:
        """Wait until ``count`` messages are stored (the client wrote their final ".")."""
        async with self._changed:
            await self._changed.wait_for(lambda: len(self.stored) >= count)

    def deliveries_to(self, rcpt: str) -> int:
        return sum(rcpt in rcpts for _, rcpts in self.stored)

    async def finished(self) -> None:
        """Release the stalls and wait until every connection's handler has ended (the
        client closed or aborted them all): what an aborted connection still carried has
        been read by then."""
        self.release()
        await asyncio.wait_for(asyncio.gather(*list(self.handlers)), 30)

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self.handlers.add(task)
        self.connections += 1
        number = self.connections
        if number > 1:
            self.reading.set()
        try:
            await self._dialogue(number, reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()
            self.handlers.discard(task)

    async def _dialogue(
        self, number: int, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        writer.write(b"220 hold.test ESMTP\r\n")
        await writer.drain()
        rcpts: list[str] = []
        while line := await reader.readline():
            verb = line[:4].upper()
            if verb == b"EHLO":
                writer.write(b"250-hold.test\r\n250-PIPELINING\r\n250 8BITMIME\r\n")
            elif verb in (b"MAIL", b"RCPT", b"RSET", b"NOOP"):
                if verb == b"RCPT":
                    rcpts.append(line.split(b"<", 1)[1].split(b">", 1)[0].decode())
                elif verb != b"NOOP":
                    rcpts = []
                writer.write(b"250 2.0.0 ok\r\n")
            elif verb == b"QUIT":
                writer.write(b"221 2.0.0 bye\r\n")
                await writer.drain()
                return
            elif verb == b"DATA":
                writer.write(b"354 go ahead\r\n")
                await writer.drain()
                if self.stop_reading and number == 1:
                    await self.reading.wait()  # the client's writes back up meanwhile
                # Line by line: a pipelining client's next commands may follow the "." at once.
                while (content := await reader.readline()) != b".\r\n":
                    if not content:
                        return  # the end of the message never came: nothing is stored
                async with self._changed:
                    self.stored.append((number, tuple(rcpts)))  # a real MTA has queued it
                    self._changed.notify_all()
                if self.hold_replies:
                    await self._replies.acquire()
                writer.write(b"250 2.0.0 queued\r\n")
            else:
                writer.write(b"502 5.5.2 what\r\n")
            await writer.drain()


@asynccontextmanager
async def holding_server(
    *, stop_reading: bool = False, hold_replies: bool = False
) -> AsyncIterator[HoldingServer]:
    state = HoldingServer(stop_reading=stop_reading, hold_replies=hold_replies)
    server = await asyncio.start_server(state.handle, "127.0.0.1", 0, limit=1 << 20)
    state.port = server.sockets[0].getsockname()[1]
    try:
        yield state
    finally:
        state.release()
        server.close()
        await server.wait_closed()
        for task in list(state.handlers):
            task.cancel()
        await asyncio.gather(*state.handlers, return_exceptions=True)


Sender = Callable[[HoldingServer, bytes], Awaitable[object]]

POLICY = RetryPolicy(attempts=3, deadline=30)
#: Each phase's timeout where the server stalls in one (for ever, until the test ends it):
#: long enough for a loaded machine to get through the phases before it.
STALL_TIMEOUT = 1.0


async def _mailer_send(srv: HoldingServer, message: bytes, *, pipelining: bool) -> object:
    async with Mailer(
        hostname="127.0.0.1",
        port=srv.port,
        timeout=STALL_TIMEOUT,
        local_hostname="c.test",
        pipelining=pipelining,
        policy=POLICY,
    ) as mailer:
        return await mailer.send(message, sender="a@s.test", recipients=["b@r.test"])


async def _pipelined(srv: HoldingServer, message: bytes) -> object:
    return await _mailer_send(srv, message, pipelining=True)


async def _stepwise(srv: HoldingServer, message: bytes) -> object:
    return await _mailer_send(srv, message, pipelining=False)


async def _plain_send(srv: HoldingServer, message: bytes) -> object:
    return await send(
        message,
        sender="a@s.test",
        recipients=["b@r.test"],
        hostname="127.0.0.1",
        port=srv.port,
        timeout=STALL_TIMEOUT,
        local_hostname="c.test",
        policy=POLICY,
    )


SENDERS = pytest.mark.parametrize(
    "sender", [_pipelined, _stepwise, _plain_send], ids=["mailer-pipelined", "mailer", "send"]
)


@SENDERS
async def test_timeout_with_the_final_dot_unsent_is_retried_and_stored_once(
    sender: Sender,
) -> None:
    async with holding_server(stop_reading=True) as srv:
        with no_wait():
            result = await sender(srv, BIG)
        # The first connection read on once the client retried: it got what the client
        # still sent there (never the final ".") and the end of the file.
        await srv.finished()
    # Retried on a second connection; the first connection's buffered end of the message
    # (its final ".") was discarded, not flushed when the connection was given up.
    assert srv.stored == [(2, ("b@r.test",))]
    assert getattr(result, "delivered", None) == ("b@r.test",)
    history: tuple[object, ...] = tuple(getattr(result, "history", ()))
    assert len(history) == 1
    assert isinstance(history[0], SMTPTimeout)
    assert "nothing was delivered" in history[0].message


@SENDERS
async def test_no_reply_after_the_final_dot_is_uncertain_and_not_resent(sender: Sender) -> None:
    async with holding_server(hold_replies=True) as srv:
        with no_wait(), pytest.raises(DeliveryUncertain) as caught:
            await sender(srv, SMALL)
        await srv.finished()
    assert srv.stored == [(1, ("b@r.test",))]
    assert caught.value.attempts == 1
    assert caught.value.recipients == ("b@r.test",)


# --------------------------------------------------------------------- too many recipients

TOO_MANY_REPLIES = [
    "452 4.5.3 Too many recipients",
    "552 5.5.3 Too many recipients",
    "451 4.5.3 Too many recipients",
    "550 5.5.3 Too many recipients",
]


async def _too_many_outcome(reply: str, *, pipelining: bool) -> tuple[object, ...]:
    recipients = ["b@r.test", "c@r.test", "d@r.test"]
    async with FaultServer(f"maxrcpt=1 {reply}") as srv:
        async with Mailer(
            hostname=srv.host, port=srv.port, local_hostname="c.test", pipelining=pipelining
        ) as mailer:
            with no_wait():
                result = await mailer.send(SMALL, sender="a@s.test", recipients=recipients)
        counts = tuple(srv.deliveries_to(r) for r in recipients)
        transactions = len(srv.messages)
        batched = sum(c.pipelined for c in srv.connections)
    assert (batched > 0) == pipelining  # the path under test is the one taken
    return result.delivered, dict(result.refused), result.attempts, counts, transactions


@pytest.mark.parametrize("reply", TOO_MANY_REPLIES)
async def test_too_many_recipients_alike_pipelined_or_not(reply: str) -> None:
    pipelined = await _too_many_outcome(reply, pipelining=True)
    stepwise = await _too_many_outcome(reply, pipelining=False)
    # Everyone gets it exactly once, in three transactions of the one attempt, both ways.
    assert pipelined == stepwise
    assert pipelined == (("b@r.test", "c@r.test", "d@r.test"), {}, 1, (1, 1, 1), 3)


# ------------------------------------------------------------ deadline eaten by queueing


def _message(i: int) -> bytes:
    return f"Subject: m{i}\r\n\r\nhello {i}\r\n".encode()


#: The deadline of a send that waits behind a held one: its wait is the stalled phase.
QUEUED_DEADLINE = 0.5


def _pool_of_one(srv: HoldingServer, *, pipelining: bool = True) -> Mailer:
    return Mailer(
        hostname="127.0.0.1",
        port=srv.port,
        local_hostname="c.test",
        pool_size=1,
        pipelining=pipelining,
        policy=RetryPolicy(attempts=1, deadline=30),
    )


async def _holding_the_connection(srv: HoldingServer, mailer: Mailer) -> asyncio.Task[SendResult]:
    """Start a first send and return once its message is at the server, which holds the reply:
    the send holds the pool's one connection (or, pipelined, has lent it) until let go."""
    first = asyncio.ensure_future(
        mailer.send(_message(0), sender="a@s.test", recipients=["r0@r.test"])
    )
    await srv.stored_count(1)
    return first


async def _within_deadline(send: Awaitable[SendResult]) -> SendResult:
    """``send``, given up (``TimeoutError``, not an SMTPTimeout) if it ran far past its short
    deadline: else a send that ignored its deadline would wait for ever behind the held one."""
    return await asyncio.wait_for(send, 30)


async def _second_with_a_short_deadline(mailer: Mailer) -> SendResult:
    """A second message (to r1@r.test) with QUEUED_DEADLINE for the whole send, bounded by
    :func:`_within_deadline`: it can only fail, as the first holds the pool's one connection."""
    return await _within_deadline(
        mailer.send(
            _message(1),
            sender="a@s.test",
            recipients=["r1@r.test"],
            policy=RetryPolicy(attempts=1, deadline=QUEUED_DEADLINE),
        )
    )


@pytest.mark.parametrize("pipelining", [True, False], ids=["pipelined", "stepwise"])
async def test_a_send_that_queued_most_of_its_deadline_never_ends_uncertain(
    pipelining: bool,
) -> None:
    # The first send holds the only connection (its reply is held). The second one queues for
    # it (or, pipelined, waits behind that reply) for more than half of its deadline; then the
    # first is let go. The server would hold the second message's reply for ever, so a second
    # send that still wrote its message would end DeliveryUncertain: it must stop before, with
    # a retry-safe timeout (the pool wait may also have run out on a loaded machine: the same).
    deadline = 4.0
    async with holding_server(hold_replies=True) as srv:
        async with _pool_of_one(srv, pipelining=pipelining) as mailer:
            first = await _holding_the_connection(srv, mailer)
            second = asyncio.ensure_future(
                mailer.send(
                    _message(1),
                    sender="a@s.test",
                    recipients=["r1@r.test"],
                    policy=RetryPolicy(attempts=1, deadline=deadline),
                )
            )
            await asyncio.sleep(0)  # the send runs up to its first wait: its deadline is set
            started = time.monotonic()  # so at or after the deadline's start, however late
            # The behaviour under test is a deadline eaten by waiting: wait for that to happen
            # (at least 60% of it gone; how much more does not matter).
            while time.monotonic() < started + 0.6 * deadline:
                await asyncio.sleep(0.05)
            srv.let_replies(1)  # the first message's reply only
            assert (await first).delivered == ("r0@r.test",)
            with pytest.raises(SMTPTimeout) as caught:
                await _within_deadline(second)
        await srv.finished()
    error = caught.value
    assert not isinstance(error, DeliveryUncertain)
    assert not error.permanent
    assert "not sent" in error.message
    assert srv.deliveries_to("r1@r.test") == 0
    assert srv.deliveries_to("r0@r.test") == 1


async def test_pool_wait_is_bounded_by_the_deadline_and_says_so() -> None:
    async with holding_server(hold_replies=True) as srv:
        async with _pool_of_one(srv, pipelining=False) as mailer:
            first = await _holding_the_connection(srv, mailer)
            with pytest.raises(SMTPTimeout) as caught:
                await _second_with_a_short_deadline(mailer)
            srv.release()
            assert (await first).delivered == ("r0@r.test",)
        await srv.finished()
    assert srv.deliveries_to("r1@r.test") == 0
    error = caught.value
    assert not isinstance(error, DeliveryUncertain)
    assert not error.permanent
    assert "no pooled connection" in error.message
    assert "pool_size" in error.hint  # the pool, not the server, is named as the cause


async def test_rate_limit_wait_beyond_the_deadline_fails_at_once() -> None:
    # One message an hour against a generous deadline: however slow the machine, the second
    # message's wait (nearly an hour) is far beyond what is left of its 60 s deadline.
    hour = 3600.0
    async with FaultServer() as srv:
        async with Mailer(
            hostname=srv.host,
            port=srv.port,
            local_hostname="c.test",
            rate_limit=1 / hour,
            policy=RetryPolicy(attempts=1, deadline=60.0),
        ) as mailer:
            await mailer.send(_message(0), sender="a@s.test", recipients=["r0@r.test"])
            with pytest.raises(SMTPTimeout) as caught:
                # at once: a send that waited for its slot would be stopped by this guard
                await _within_deadline(
                    mailer.send(_message(1), sender="a@s.test", recipients=["r1@r.test"])
                )
            # The refused message took no slot: the next one waits for the first's slot only.
            assert mailer.rate is not None
            assert mailer.rate.delay() <= hour
        assert srv.deliveries_to("r1@r.test") == 0
        assert len(srv.transactions) == 1  # it never reached the server
    assert "rate limit" in caught.value.message
    assert not caught.value.permanent


async def test_a_timeout_behind_a_lent_connection_leaves_the_earlier_message_alone() -> None:
    # Pipelined: once the first message's final "." is written its connection is lent to the
    # next send, whose MAIL/RCPT/DATA wait behind the held reply to that "." and time out.
    async with holding_server(hold_replies=True) as srv:
        async with _pool_of_one(srv) as mailer:
            first = await _holding_the_connection(srv, mailer)
            with pytest.raises(SMTPTimeout) as caught:
                await _second_with_a_short_deadline(mailer)
            assert mailer.stats.overlapped == 1  # it did go out on the lent connection
            srv.release()
            result = await first  # not a DeliveryUncertain: its connection was not cut
        await srv.finished()
    assert srv.deliveries_to("r0@r.test") == 1
    assert srv.deliveries_to("r1@r.test") == 0
    assert result.delivered == ("r0@r.test",)
    assert not isinstance(caught.value, DeliveryUncertain)
    assert not caught.value.permanent


# ------------------------------------------------------------------- AUTH echo redaction


async def _echoing_auth(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, mech: str
) -> None:
    """A server that refuses every login and quotes what it got, decoded too."""
    writer.write(b"220 echo.test ESMTP\r\n")
    try:
        while line := (await reader.readline()).decode().rstrip("\r\n"):
            words = line.split()
            verb = words[0].upper()
            if verb == "EHLO":
                writer.write(f"250-echo.test\r\n250 AUTH {mech}\r\n".encode())
            elif verb == "AUTH" and words[1].upper() == "LOGIN":
                user = words[2]  # the username comes with the command (initial response)
                writer.write(b"334 UGFzc3dvcmQ6\r\n")
                await writer.drain()
                secret = (await reader.readline()).decode().strip()
                shown = base64.b64decode(secret).decode()
                writer.write(f'535 5.7.8 Refused "{user}" "{secret}" ({shown})\r\n'.encode())
            elif verb == "AUTH":
                blob = words[2]
                shown = base64.b64decode(blob).replace(b"\0", b" ").replace(b"\1", b" ").decode()
                writer.write(f'535 5.7.8 Refused "{blob}" ({shown})\r\n'.encode())
            elif verb == "QUIT":
                writer.write(b"221 bye\r\n")
                await writer.drain()
                return
            else:
                writer.write(b"503 5.5.1 no\r\n")
            await writer.drain()
    finally:
        writer.close()


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


@pytest.mark.parametrize("mech", ["PLAIN", "LOGIN", "XOAUTH2"])
async def test_short_credentials_echoed_by_the_server_never_reach_the_error(
    mech: str, caplog: pytest.LogCaptureFixture
) -> None:
    handlers: list[asyncio.Task[None]] = []

    def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        handlers.append(asyncio.ensure_future(_echoing_auth(reader, writer, mech)))

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]

    async def token() -> str:
        return "tok9"

    credentials: dict[str, object] = {"username": "bob"}
    if mech == "XOAUTH2":
        credentials["oauth_token_generator"] = token
    else:
        credentials["password"] = "pass"
    try:
        with pytest.raises(SMTPGuardError) as caught:
            await send(
                SMALL,
                sender="a@s.test",
                recipients=["b@r.test"],
                hostname="127.0.0.1",
                port=port,
                local_hostname="c.test",
                start_tls=False,
                allow_insecure_auth=True,
                policy=RetryPolicy(attempts=1),
                **credentials,  # type: ignore[arg-type]
            )
    finally:
        server.close()
        await server.wait_closed()
        # The client closed its connection: each handler ends on the end of file.
        await asyncio.wait_for(asyncio.gather(*handlers, return_exceptions=True), 5)
    error = caught.value
    assert isinstance(error, AuthError)
    assert "[redacted]" in error.message  # the server did echo them
    shown = [str(error), repr(error), error.message, error.text, *map(str, error.args)]
    shown.append(caplog.text)
    secrets = [_b64("pass"), _b64("bob"), _b64("tok9"), _b64("\0bob\0pass")]
    secrets += [_b64("user=bob\1auth=Bearer tok9\1\1")]
    for text in shown:
        for secret in secrets:
            assert secret.rstrip("=") not in text
        # Plain forms as words ("password" in the hint is fine, "pass" alone is not).
        assert not re.search(r"\b(pass|bob|tok9)\b", text)
