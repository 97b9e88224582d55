"""Mail safety in the pooled and pipelined paths: never twice, never blamed wrongly.

Real SMTP over loopback sockets: a raw asyncio server (it can stop reading, as a slow content
scanner does, which the FaultServer cannot) and the project's FaultServer.
"""

from __future__ import annotations

import asyncio
import base64
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import pytest

from smtp_guard.client import send
from smtp_guard.errors import AuthError, DeliveryUncertain, SMTPGuardError, SMTPTimeout
from smtp_guard.mailer import Mailer
from smtp_guard.policy import RetryPolicy, no_wait
from smtp_guard.testing import FaultServer

#: Bigger than what loopback socket buffers hold, so a reader that stops leaves the end of
#: the message (its final ".") in the client's own buffer.
BIG = b"Subject: big\r\n\r\n" + (b"y" * 998 + b"\r\n") * 12_000
SMALL = b"Subject: small\r\n\r\nhello\r\n"


@dataclass
class StallingServer:
    """Loopback SMTP server whose first connection stops reading for ``pause`` seconds after
    354 (and, for a small message, before replying to the final ".")."""

    pause: float
    port: int = 0
    connections: int = 0
    #: number of the connection that stored each complete message (ended by "\r\n.\r\n")
    stored: list[int] = field(default_factory=list)
    handlers: set[asyncio.Task[None]] = field(default_factory=set)

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self.handlers.add(task)
        self.connections += 1
        number = self.connections
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
        writer.write(b"220 stall.test ESMTP\r\n")
        await writer.drain()
        while True:
            line = await reader.readline()
            if not line:
                return
            verb = line[:4].upper()
            if verb == b"EHLO":
                writer.write(b"250-stall.test\r\n250-PIPELINING\r\n250 8BITMIME\r\n")
            elif verb in (b"MAIL", b"RCPT", b"RSET", b"NOOP"):
                writer.write(b"250 2.0.0 ok\r\n")
            elif verb == b"QUIT":
                writer.write(b"221 2.0.0 bye\r\n")
                await writer.drain()
                return
            elif verb == b"DATA":
                writer.write(b"354 go ahead\r\n")
                await writer.drain()
                if number == 1:
                    await asyncio.sleep(self.pause)  # stops reading: the client's writes back up
                data = b""
                while not data.endswith(b"\r\n.\r\n"):
                    chunk = await reader.read(1 << 20)
                    if not chunk:
                        return  # the end of the message never came: nothing is stored
                    data += chunk
                self.stored.append(number)  # a real MTA has queued it now
                if number == 1 and len(data) < 1000:
                    await asyncio.sleep(self.pause)  # slow to reply to the final "."
                writer.write(b"250 2.0.0 queued\r\n")
            else:
                writer.write(b"502 5.5.2 what\r\n")
            await writer.drain()


@asynccontextmanager
async def stalling_server(pause: float) -> AsyncIterator[StallingServer]:
    state = StallingServer(pause)
    server = await asyncio.start_server(state.handle, "127.0.0.1", 0)
    state.port = server.sockets[0].getsockname()[1]
    try:
        yield state
    finally:
        server.close()
        await server.wait_closed()
        for task in list(state.handlers):
            task.cancel()
        await asyncio.gather(*state.handlers, return_exceptions=True)


Sender = Callable[[StallingServer, bytes], Awaitable[object]]

POLICY = RetryPolicy(attempts=3, deadline=30)


async def _mailer_send(srv: StallingServer, message: bytes, *, pipelining: bool) -> object:
    async with Mailer(
        hostname="127.0.0.1",
        port=srv.port,
        timeout=0.3,
        local_hostname="c.test",
        pipelining=pipelining,
        policy=POLICY,
    ) as mailer:
        return await mailer.send(message, sender="a@s.test", recipients=["b@r.test"])


async def _pipelined(srv: StallingServer, message: bytes) -> object:
    return await _mailer_send(srv, message, pipelining=True)


async def _stepwise(srv: StallingServer, message: bytes) -> object:
    return await _mailer_send(srv, message, pipelining=False)


async def _plain_send(srv: StallingServer, message: bytes) -> object:
    return await send(
        message,
        sender="a@s.test",
        recipients=["b@r.test"],
        hostname="127.0.0.1",
        port=srv.port,
        timeout=0.3,
        local_hostname="c.test",
        policy=POLICY,
    )


SENDERS = pytest.mark.parametrize(
    "sender", [_pipelined, _stepwise, _plain_send], ids=["mailer-pipelined", "mailer", "send"]
)


async def _settle(srv: StallingServer) -> None:
    """Let the first connection's handler wake from its pause and read whatever still comes."""
    for _ in range(200):
        if srv.connections and all(t.done() for t in srv.handlers):
            return
        await asyncio.sleep(0.02)


@SENDERS
async def test_timeout_with_the_final_dot_unsent_is_retried_and_stored_once(
    sender: Sender,
) -> None:
    async with stalling_server(pause=0.6) as srv:
        with no_wait():
            result = await sender(srv, BIG)
        await _settle(srv)
    # Retried on a second connection; the first connection's buffered end of the message
    # (its final ".") was discarded, not flushed when the connection was given up.
    assert srv.stored == [2]
    assert getattr(result, "delivered", None) == ("b@r.test",)
    history: tuple[object, ...] = tuple(getattr(result, "history", ()))
    assert len(history) == 1
    assert isinstance(history[0], SMTPTimeout)
    assert "nothing was delivered" in history[0].message


@SENDERS
async def test_no_reply_after_the_final_dot_is_uncertain_and_not_resent(sender: Sender) -> None:
    async with stalling_server(pause=0.6) as srv:
        with no_wait(), pytest.raises(DeliveryUncertain) as caught:
            await sender(srv, SMALL)
        await _settle(srv)
    assert srv.stored == [1]
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


@pytest.mark.parametrize("pipelining", [True, False], ids=["pipelined", "stepwise"])
async def test_queued_sends_never_end_uncertain(pipelining: bool) -> None:
    # pool_size=1 and a server that takes 0.4 s to accept each message: the later sends spend
    # most of their 0.7 s deadline queueing for the one connection.
    async with FaultServer("message=delay=0.4s") as srv:
        async with Mailer(
            hostname=srv.host,
            port=srv.port,
            local_hostname="c.test",
            pool_size=1,
            pipelining=pipelining,
            policy=RetryPolicy(attempts=1, deadline=0.7),
        ) as mailer:

            async def one(i: int) -> object:
                try:
                    return await mailer.send(
                        _message(i), sender="a@s.test", recipients=[f"r{i}@r.test"]
                    )
                except Exception as exc:  # the outcome is what is checked
                    return exc

            outcomes = await asyncio.gather(*(one(i) for i in range(4)))
        await asyncio.sleep(0.5)  # anything the server was still reading has arrived now
        counts = [srv.deliveries_to(f"r{i}@r.test") for i in range(4)]
    assert not any(isinstance(o, DeliveryUncertain) for o in outcomes)
    assert counts[0] == 1
    assert getattr(outcomes[0], "delivered", None) == ("r0@r.test",)
    for outcome, count in zip(outcomes[1:], counts[1:], strict=True):
        if isinstance(outcome, Exception):
            # Failed before any of the message was written: safe to retry, and not stored.
            assert isinstance(outcome, SMTPTimeout)
            assert not outcome.permanent
            assert "not sent" in outcome.message
            assert count == 0
        else:
            assert count == 1
    assert sum(isinstance(o, SMTPTimeout) for o in outcomes) >= 2


async def test_pool_wait_is_bounded_by_the_deadline_and_says_so() -> None:
    async with FaultServer("message=delay=0.6s") as srv:
        async with Mailer(
            hostname=srv.host, port=srv.port, local_hostname="c.test", pool_size=1, pipelining=False
        ) as mailer:
            first = asyncio.ensure_future(
                mailer.send(_message(0), sender="a@s.test", recipients=["r0@r.test"])
            )
            await asyncio.sleep(0.1)  # the first send holds the only connection now
            with pytest.raises(SMTPTimeout) as caught:
                await mailer.send(
                    _message(1),
                    sender="a@s.test",
                    recipients=["r1@r.test"],
                    policy=RetryPolicy(attempts=1, deadline=0.2),
                )
            assert (await first).delivered == ("r0@r.test",)
        assert srv.deliveries_to("r1@r.test") == 0
    error = caught.value
    assert not isinstance(error, DeliveryUncertain)
    assert not error.permanent
    assert "no pooled connection" in error.message
    assert "pool_size" in error.hint  # the pool, not the server, is named as the cause


async def test_rate_limit_wait_beyond_the_deadline_fails_at_once() -> None:
    async with FaultServer() as srv:
        async with Mailer(
            hostname=srv.host,
            port=srv.port,
            local_hostname="c.test",
            rate_limit=0.5,  # one message per 2 s
            policy=RetryPolicy(attempts=1, deadline=1.0),
        ) as mailer:
            await mailer.send(_message(0), sender="a@s.test", recipients=["r0@r.test"])
            with pytest.raises(SMTPTimeout) as caught:
                await mailer.send(_message(1), sender="a@s.test", recipients=["r1@r.test"])
            # The refused message took no slot: the next one waits for the first's slot only.
            assert mailer.rate is not None
            assert mailer.rate.delay() <= 2.0
        assert srv.deliveries_to("r1@r.test") == 0
    assert "rate limit" in caught.value.message
    assert not caught.value.permanent


async def test_a_timeout_behind_a_lent_connection_leaves_the_earlier_message_alone() -> None:
    # Pipelined: once the first message's final "." is written its connection is lent to the
    # next send, whose MAIL/RCPT/DATA wait behind the slow reply to that "." and time out.
    async with FaultServer("message=delay=0.6s") as srv:
        async with Mailer(
            hostname=srv.host, port=srv.port, local_hostname="c.test", pool_size=1
        ) as mailer:
            first = asyncio.ensure_future(
                mailer.send(_message(0), sender="a@s.test", recipients=["r0@r.test"])
            )
            await asyncio.sleep(0.1)
            with pytest.raises(SMTPTimeout) as caught:
                await mailer.send(
                    _message(1),
                    sender="a@s.test",
                    recipients=["r1@r.test"],
                    policy=RetryPolicy(attempts=1, deadline=0.2),
                )
            result = await first  # not a DeliveryUncertain: its connection was not cut
        assert mailer.stats.overlapped == 1
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
