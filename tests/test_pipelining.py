"""RFC 2920 pipelining seam: reply parsing under any chunking, and whole transactions over real
sockets against a raw scripted peer (which can answer in odd chunkings and misbehave) and an
aiosmtpd server."""

from __future__ import annotations

import asyncio
import contextlib
import email.message
import itertools
import socket
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

import aiosmtplib
import pytest
from _helpers import CLIENT_NAME, connection, kw, loopback_server, port_of
from aiosmtpd.smtp import SMTP as AiosmtpdSMTP
from hypothesis import given
from hypothesis import strategies as st

import smtp_guard
from smtp_guard._enums import Phase
from smtp_guard._pipelining import _Channel, _response, pipelined_transaction
from smtp_guard.client._connect import Connection, ConnectParams, open_connection
from smtp_guard.client._deadline import deadline_in
from smtp_guard.client._transaction import TransactionResult
from smtp_guard.client._validate import make_envelope
from smtp_guard.errors import (
    DeliveryUncertain,
    ExtensionNotSupported,
    MailboxNotFound,
    MailboxUnavailable,
    MessageTooLarge,
    PermanentError,
    ProtocolError,
    ReadTimeout,
    ReplyError,
    ServerDisconnected,
    SMTPGuardError,
    SMTPTimeout,
    TransientError,
)
from smtp_guard.mailer import Mailer
from smtp_guard.policy import RetryPolicy
from smtp_guard.replies import _ReplyParser
from smtp_guard.testing.server import FaultServer

MESSAGE = b"From: a@sender.test\r\nTo: b@rcpt.test\r\nSubject: hi\r\n\r\nHello.\r\n"
#: The wait for each reply of a transaction in which the peer stalls (it stalls for an hour);
#: connecting and EHLO get a generous timeout, so no phase before the stall can time out.
STALLED = 0.5

# --------------------------------------------------------------------------- reply parsing

REPLIES = (
    b"250 2.1.0 Ok\r\n"
    b"250-first\r\n250-second line\r\n250 last\r\n"
    b"550 5.1.1 <x@y.test>: Recipient address rejected: User unknown\r\n"
    b"354\r\n"
    b"451 4.7.1 lf only\n"
)
EXPECTED = [
    aiosmtplib.SMTPResponse(250, "2.1.0 Ok"),
    aiosmtplib.SMTPResponse(250, "first\nsecond line\nlast"),
    aiosmtplib.SMTPResponse(550, "5.1.1 <x@y.test>: Recipient address rejected: User unknown"),
    aiosmtplib.SMTPResponse(354, ""),
    aiosmtplib.SMTPResponse(451, "4.7.1 lf only"),
]


def _feed_in(chunks: list[bytes]) -> list[aiosmtplib.SMTPResponse]:
    """What the pipelined reader makes of ``chunks``: replies as aiosmtplib forms them."""
    parser = _ReplyParser()
    out: list[aiosmtplib.SMTPResponse] = []
    for chunk in chunks:
        out += [_response(code, texts) for code, texts in parser.feed(chunk)]
    assert not parser.pending
    return out


def test_parser_all_at_once_and_one_byte_at_a_time() -> None:
    assert _feed_in([REPLIES]) == EXPECTED
    assert _feed_in([REPLIES[i : i + 1] for i in range(len(REPLIES))]) == EXPECTED


@given(st.lists(st.integers(min_value=0, max_value=len(REPLIES)), max_size=20))
def test_parser_any_chunking_gives_the_same_replies(cuts: list[int]) -> None:
    points = [0, *sorted(cuts), len(REPLIES)]
    chunks = [REPLIES[a:b] for a, b in itertools.pairwise(points)]
    assert _feed_in(chunks) == EXPECTED


def test_parser_matches_aiosmtplib_message_form() -> None:
    # aiosmtplib strips each line and joins continuation lines with "\n"; errors built from
    # our replies must read exactly like errors built from aiosmtplib's.
    assert _feed_in([b"250-  a \t\r\n250 b  \r\n"]) == [aiosmtplib.SMTPResponse(250, "a\nb")]


@pytest.mark.parametrize(
    ("data", "words"),
    [
        (b"hello\r\n", "line 1 has no three-digit reply code"),
        (b"99 x\r\n", "line 1 has no three-digit reply code"),
        (b"600 out of range\r\n", "outside 200-599"),
        (b"250x no separator\r\n", "line 1 has no three-digit reply code"),
        (b"250-a\r\n550 b\r\n", "disagree on the code: 250 then 550"),
        (b"250-a\r\nb\r\n", "line 2 has no three-digit reply code"),
        (b"250 " + b"x" * 9000 + b"\r\n", "longer than"),
        (b"250 " + b"x" * 9000, "longer than"),
        (b"250-xxxxxxxxxx\r\n" * 3000, "reply longer than"),
    ],
)
def test_parser_refuses_what_is_not_smtp(data: bytes, words: str) -> None:
    with pytest.raises(ProtocolError, match=words):
        _ReplyParser().feed(data)


# --------------------------------------------------------------------------- scripted raw peer

Reply = bytes | Callable[[bytes], bytes]
DROP = b"<drop>"  # close the connection instead of replying
HANG = b"<hang>"  # never reply


@dataclass
class Peer:
    """A raw-socket SMTP peer: scripted replies, chosen chunking, records what arrived.

    With ``pipelining`` it answers MAIL/RCPT only once DATA arrived (a client that did not
    pipeline would wait forever); without it, it notes any command that arrived in the same
    read as an earlier unanswered one (a client that pipelined anyway).
    """

    pipelining: bool = True
    #: offer PIPELINING in EHLO (default: when ``pipelining``)
    advertise: bool | None = None
    chunk: int | None = None  # None: all pending replies in one write
    mail: Reply = b"250 2.1.0 Ok\r\n"
    rcpt: Reply = b"250 2.1.5 Ok\r\n"
    data: Reply = b"354 End data with <CR><LF>.<CR><LF>\r\n"
    final: Reply = b"250 2.0.0 Ok: queued as ABC\r\n"
    noop: Reply = b"250 2.0.0 Ok\r\n"
    commands: list[bytes] = field(default_factory=list)
    contents: list[bytes] = field(default_factory=list)
    batched_without_pipelining: int = 0
    port: int = 0
    connections: int = 0
    #: withhold this many final replies until the next transaction's MAIL arrives (a client
    #: that waits for the final reply before sending the next MAIL then waits forever)
    hold_final: int = 0
    _held: bytes = b""

    def _answer(self, what: Reply, line: bytes) -> bytes:
        return what(line) if callable(what) else what

    async def _send(self, writer: asyncio.StreamWriter, data: bytes) -> None:
        step = self.chunk or len(data) or 1
        for i in range(0, len(data), step):
            writer.write(data[i : i + step])
            await writer.drain()
            if self.chunk:
                await asyncio.sleep(0)

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        sock = writer.get_extra_info("socket")
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            await self._serve(reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await self._send(writer, b"220 peer.test ESMTP\r\n")
        pending: list[bytes] = []
        while True:
            line = await reader.readline()
            if not line:
                return
            self.commands.append(line)
            verb = line[:4].upper()
            if self._held:
                if verb == b"MAIL":
                    pending.append(self._held)  # goes out with the group's replies
                else:
                    await self._send(writer, self._held)
                self._held = b""
            if verb == b"QUIT":
                await self._send(writer, b"221 Bye\r\n")
                return
            reply = self._reply_for(verb, line)
            pending.append(reply)
            if self.pipelining and verb in (b"MAIL", b"RCPT"):
                continue  # answer the whole group once DATA came
            unread: bytes = bytes(getattr(reader, "_buffer", b""))  # what came after this line
            if not self.pipelining and unread:
                self.batched_without_pipelining += 1  # a second command came unanswered
            out, pending = b"".join(pending), []
            if DROP in out:
                await self._send(writer, out.split(DROP)[0])
                return
            if HANG in out:
                await self._send(writer, out.split(HANG)[0])
                await asyncio.sleep(3600)
            await self._send(writer, out)
            if (
                verb == b"DATA"
                and reply.startswith(b"354")
                and not await self._content(reader, writer)
            ):
                return

    def _reply_for(self, verb: bytes, line: bytes) -> bytes:
        if verb == b"EHLO":
            offer = self.pipelining if self.advertise is None else self.advertise
            ext = b"250-PIPELINING\r\n" if offer else b""
            return b"250-peer.test\r\n250-SIZE 100000\r\n" + ext + b"250 8BITMIME\r\n"
        scripted = {
            b"MAIL": self.mail,
            b"RCPT": self.rcpt,
            b"DATA": self.data,
            b"NOOP": self.noop,
        }.get(verb)
        return b"250 Ok\r\n" if scripted is None else self._answer(scripted, line)

    async def _content(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
        """Read the message up to its final "." and answer; False when the peer hangs up."""
        lines: list[bytes] = []
        while not lines or lines[-1] != b".\r\n":
            line = await reader.readline()
            if not line:
                return False
            lines.append(line)
        body = b"".join(lines)
        self.contents.append(body)
        final = self._answer(self.final, body)
        if final == DROP:
            return False
        if final == HANG:
            await asyncio.sleep(3600)
        if self.hold_final:
            self.hold_final -= 1
            self._held = final
            return True
        await self._send(writer, final)
        return True


@contextlib.asynccontextmanager
async def serve(peer: Peer) -> AsyncIterator[Peer]:
    tasks: set[asyncio.Task[None]] = set()

    async def handle(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        tasks.add(task)
        try:
            await peer.handle(r, w)
        except asyncio.CancelledError:
            pass  # the test is over; asyncio's stream callback would log a cancelled task
        finally:
            tasks.discard(task)

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    peer.port = server.sockets[0].getsockname()[1]
    try:
        yield peer
    finally:
        server.close()
        for task in list(tasks):
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await server.wait_closed()


@contextlib.asynccontextmanager
async def connected(peer: Peer) -> AsyncIterator[Connection]:
    """A ready connection (the client's ``open_connection``) to ``peer``, served for the block."""
    async with serve(peer):
        params = ConnectParams(
            hostname="127.0.0.1", port=peer.port, local_hostname=CLIENT_NAME, timeout=30
        )
        conn = await open_connection(params)
        try:
            yield conn
        finally:
            await conn.close()


async def transaction(
    conn: Connection,
    recipients: list[str],
    message: bytes = MESSAGE,
    *,
    sender: str = "a@s.test",
    timeout: float | None = None,
) -> TransactionResult:
    """One transaction as the Mailer runs it. ``timeout``: the wait for each of its replies,
    for a peer that stalls in it (connecting and EHLO had a generous one)."""
    if timeout is not None:
        conn.client.timeout = timeout
    return await pipelined_transaction(conn, make_envelope(message, sender, recipients))


def _verbs(peer: Peer) -> list[bytes]:
    return [c.split(b" ")[0].split(b":")[0].strip().upper() for c in peer.commands]


# --------------------------------------------------------------------------- transactions


@pytest.mark.parametrize("chunk", [None, 1, 3, 7])
@pytest.mark.parametrize("pipelining", [True, False])
async def test_transaction_delivers_whatever_the_chunking(
    pipelining: bool, chunk: int | None
) -> None:
    # With pipelining, the peer answers MAIL/RCPT only once DATA came: only a client that
    # pipelines gets through. Without, it notes a command that came before the last's reply.
    peer = Peer(pipelining=pipelining, chunk=chunk)
    async with connected(peer) as conn:
        result = await transaction(conn, ["b@rcpt.test", "c@rcpt.test"], sender="a@sender.test")
        assert result.error is None
        assert result.delivered == ("b@rcpt.test", "c@rcpt.test")
        assert result.refused == {}
        assert result.response == aiosmtplib.SMTPResponse(250, "2.0.0 Ok: queued as ABC")
        # the connection went back to aiosmtplib in a usable state
        assert (await conn.client.noop()).code == 250
    assert peer.contents == [MESSAGE + b".\r\n"]
    assert peer.batched_without_pipelining == 0
    assert _verbs(peer)[1:5] == [b"MAIL", b"RCPT", b"RCPT", b"DATA"]
    assert peer.commands[1] == b"MAIL FROM:<a@sender.test> SIZE=%d\r\n" % len(MESSAGE)


async def test_two_transactions_on_one_connection_and_dot_stuffing() -> None:
    peer = Peer()
    body = b"Subject: dots\r\n\r\n.leading dot\r\n..two\r\nlone\n.\nend"
    async with connected(peer) as conn:
        assert (await transaction(conn, ["b@r.test"], body)).delivered == ("b@r.test",)
        assert (await transaction(conn, ["c@r.test"])).delivered == ("c@r.test",)
    assert peer.contents[0] == (
        b"Subject: dots\r\n\r\n..leading dot\r\n...two\r\nlone\r\n..\r\nend\r\n.\r\n"
    )
    assert peer.contents[1] == MESSAGE + b".\r\n"
    assert peer.connections == 1


@pytest.mark.parametrize("pipelining", [True, False])
async def test_mixed_recipients_go_to_the_accepted_ones(pipelining: bool) -> None:
    peer = Peer(pipelining=pipelining)
    peer.rcpt = lambda line: (
        b"550 5.1.1 <nobody@r.test>: User unknown\r\n"
        if b"nobody@" in line
        else b"450 4.2.1 try later\r\n"
        if b"later@" in line
        else b"250 Ok\r\n"
    )
    async with connected(peer) as conn:
        result = await transaction(conn, ["nobody@r.test", "ok@r.test", "later@r.test"])
    assert result.error is None
    assert result.delivered == ("ok@r.test",)
    assert set(result.refused) == {"nobody@r.test", "later@r.test"}
    nobody = result.refused["nobody@r.test"]
    assert isinstance(nobody, PermanentError)
    assert isinstance(nobody, MailboxUnavailable)
    assert isinstance(nobody, aiosmtplib.SMTPRecipientRefused)
    assert (nobody.code, nobody.recipient, nobody.phase) == (550, "nobody@r.test", Phase.RCPT)
    assert nobody.message == "5.1.1 <nobody@r.test>: User unknown"  # as aiosmtplib forms it
    assert isinstance(result.refused["later@r.test"], TransientError)
    assert result.owed == ("later@r.test",)
    assert len(peer.contents) == 1


async def test_all_recipients_refused_but_data_accepted_sends_a_lone_dot() -> None:
    # RFC 2920 3.1: the server may answer 354 to a pipelined DATA even though every RCPT
    # failed; the client then sends "." alone and the transaction fails.
    peer = Peer(rcpt=b"550 5.1.1 User unknown\r\n", final=b"554 5.5.1 No valid recipients\r\n")
    async with connected(peer) as conn:
        result = await transaction(conn, ["x@r.test", "y@r.test"])
        assert (await conn.client.noop()).code == 250  # still usable
    assert peer.contents == [b".\r\n"]  # no message content went out
    assert result.error is None  # the refusals are per recipient
    assert result.delivered == ()
    assert set(result.refused) == {"x@r.test", "y@r.test"}
    assert all(isinstance(e, MailboxUnavailable) for e in result.refused.values())
    assert all(e.permanent for e in result.refused.values())


async def test_all_refused_and_data_refused_resets_the_envelope() -> None:
    peer = Peer(rcpt=b"550 5.1.1 User unknown\r\n", data=b"554 5.5.1 No valid recipients\r\n")
    async with connected(peer) as conn:
        result = await transaction(conn, ["x@r.test"])
    assert set(result.refused) == {"x@r.test"}
    assert result.delivered == ()
    assert peer.contents == []
    assert b"RSET" in _verbs(peer)


async def test_refused_sender_fails_the_transaction_even_if_data_got_354() -> None:
    peer = Peer(mail=b"553 5.1.8 Sender address rejected\r\n", rcpt=b"503 5.5.1 need MAIL\r\n")
    async with connected(peer) as conn:
        result = await transaction(conn, ["x@r.test"])
    err = result.error
    assert isinstance(err, ReplyError)
    assert (err.code, err.phase, err.sender) == (553, Phase.MAIL, "a@s.test")
    assert isinstance(err, aiosmtplib.SMTPSenderRefused)
    assert result.refused == {}  # the 503s to RCPT after a refused MAIL count for nothing
    assert result.not_attempted == ("x@r.test",)
    assert peer.contents == [b".\r\n"]


@pytest.mark.parametrize("pipelining", [True, False])
async def test_refused_sender_stops_before_rcpt_without_pipelining(pipelining: bool) -> None:
    peer = Peer(pipelining=pipelining, mail=b"451 4.3.0 try again\r\n", data=b"503 5.5.1 x\r\n")
    async with connected(peer) as conn:
        result = await transaction(conn, ["x@r.test"])
        assert conn.is_connected
    assert isinstance(result.error, TransientError)
    expected = [b"MAIL", b"RCPT", b"DATA", b"RSET"] if pipelining else [b"MAIL", b"RSET"]
    assert _verbs(peer)[1 : len(expected) + 1] == expected


async def test_data_refused_after_accepted_recipients() -> None:
    peer = Peer(data=b"451 4.3.0 Local error\r\n")
    async with connected(peer) as conn:
        result = await transaction(conn, ["x@r.test"])
    assert isinstance(result.error, TransientError)
    assert (result.error.code, result.error.phase) == (451, Phase.DATA)
    assert result.delivered == ()
    assert peer.contents == []


async def test_message_refused_after_the_dot() -> None:
    peer = Peer(final=b"552 5.3.4 Message too big for system\r\n")
    async with connected(peer) as conn:
        result = await transaction(conn, ["x@r.test"])
        assert conn.is_connected
    assert isinstance(result.error, MessageTooLarge)
    assert result.error.phase is Phase.MESSAGE
    assert result.delivered == ()


@pytest.mark.parametrize("pipelining", [True, False])
async def test_421_at_rcpt_closes_and_keeps_the_reply(pipelining: bool) -> None:
    peer = Peer(pipelining=pipelining, rcpt=b"421 4.7.0 Too many connections, closing\r\n")
    async with connected(peer) as conn:
        result = await transaction(conn, ["x@r.test", "y@r.test"])
        assert not conn.is_connected
    assert isinstance(result.error, TransientError)
    assert result.error.code == 421
    assert "Too many connections" in result.error.message
    assert peer.contents == []


async def test_drop_before_replies_is_a_disconnect_not_uncertain() -> None:
    peer = Peer(rcpt=DROP)
    async with connected(peer) as conn:
        result = await transaction(conn, ["x@r.test"])
        assert not conn.is_connected
        with pytest.raises(aiosmtplib.SMTPServerDisconnected):
            await conn.client.noop()
    assert isinstance(result.error, ServerDisconnected)
    assert not isinstance(result.error, DeliveryUncertain)


async def test_drop_after_the_final_dot_is_uncertain() -> None:
    peer = Peer(final=DROP)
    async with connected(peer) as conn:
        result = await transaction(conn, ["x@r.test", "y@r.test"])
        assert not conn.is_connected
    error = result.error
    assert isinstance(error, DeliveryUncertain)
    assert error.recipients == ("x@r.test", "y@r.test")
    assert len(peer.contents) == 1
    # As the step-by-step client: also what aiosmtplib raises there, a lost connection.
    assert error.reason == "disconnected"
    assert isinstance(error, aiosmtplib.SMTPServerDisconnected)
    assert isinstance(error, ConnectionError)


async def test_silence_after_the_final_dot_is_uncertain() -> None:
    peer = Peer(final=HANG)
    async with connected(peer) as conn:
        result = await transaction(conn, ["x@r.test"], timeout=STALLED)
        assert not conn.is_connected
    error = result.error
    assert isinstance(error, DeliveryUncertain)
    assert error.reason == "timeout"
    assert isinstance(error, aiosmtplib.SMTPReadTimeoutError)
    assert isinstance(error, TimeoutError)
    assert not isinstance(error, ConnectionError)


@pytest.mark.parametrize("final", [b"hello there\r\n", b"354 More?\r\n"])
async def test_an_unreadable_reply_to_the_final_dot_is_uncertain_as_a_bad_reply(
    final: bytes,
) -> None:
    peer = Peer(final=final)
    async with connected(peer) as conn:
        result = await transaction(conn, ["x@r.test"])
        assert not conn.is_connected
    error = result.error
    assert isinstance(error, DeliveryUncertain)
    assert error.reason == "bad_reply"
    assert isinstance(error, aiosmtplib.SMTPException)
    assert not isinstance(error, ConnectionError | TimeoutError)


async def test_reads_end_by_the_calls_deadline_not_the_longer_timeout() -> None:
    """Each reply is awaited at most ``min(timeout, time left)``, as the client's commands."""
    peer = Peer(final=HANG)
    async with connected(peer) as conn:
        with deadline_in(STALLED):
            # 20 s: only so that an unbounded read fails this test instead of hanging it.
            result = await asyncio.wait_for(transaction(conn, ["x@r.test"], timeout=30), 20)
    assert isinstance(result.error, DeliveryUncertain)
    assert result.error.reason == "timeout"


@dataclass
class DeafPeer(Peer):
    """Answers the commands, then stops reading the message: our writes back up."""

    def _reply_for(self, verb: bytes, line: bytes) -> bytes:
        if verb == b"EHLO":
            return b"250-peer.test\r\n250-PIPELINING\r\n250 8BITMIME\r\n"  # no SIZE
        return super()._reply_for(verb, line)

    async def _content(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
        await asyncio.sleep(3600)
        return False


async def test_a_server_that_stops_reading_the_message_is_a_timeout_not_uncertain() -> None:
    """The final "." is still in our buffer: nothing was delivered, so a plain timeout."""
    big = MESSAGE + b"x" * 998 + b"\r\n" * 1 + (b"y" * 998 + b"\r\n") * 40_000  # 40 MB
    async with connected(DeafPeer()) as conn:
        result = await asyncio.wait_for(transaction(conn, ["x@r.test"], big, timeout=STALLED), 20)
        assert not conn.is_connected
    assert isinstance(result.error, SMTPTimeout)
    assert not isinstance(result.error, DeliveryUncertain)
    assert result.error.permanent is False


async def test_silence_before_the_dot_is_a_read_timeout() -> None:
    peer = Peer(data=HANG)
    async with connected(peer) as conn:
        result = await transaction(conn, ["x@r.test"], timeout=STALLED)
        assert not conn.is_connected
    assert isinstance(result.error, ReadTimeout)
    assert not isinstance(result.error, DeliveryUncertain)


async def test_garbage_reply_is_a_protocol_error_and_closes() -> None:
    peer = Peer(rcpt=b"hello there\r\n")
    async with connected(peer) as conn:
        result = await transaction(conn, ["x@r.test"])
        assert not conn.is_connected
    assert isinstance(result.error, ProtocolError)


async def test_cancellation_closes_the_connection() -> None:
    peer = Peer(final=HANG)
    async with connected(peer) as conn:
        task = asyncio.ensure_future(transaction(conn, ["x@r.test"]))
        while not peer.contents:
            await asyncio.sleep(0.01)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert not conn.is_connected


async def test_a_recipient_listed_twice_is_asked_for_once() -> None:
    peer = Peer()
    async with connected(peer) as conn:
        result = await transaction(conn, ["b@r.test", "c@r.test", "b@r.test"])
    assert result.delivered == ("b@r.test", "c@r.test")
    assert _verbs(peer)[1:].count(b"RCPT") == 2


async def test_a_non_ascii_address_without_smtputf8_is_refused_before_mail() -> None:
    peer = Peer()
    async with connected(peer) as conn:
        with pytest.raises(ExtensionNotSupported):
            await transaction(conn, ["jü@r.test"])
        assert (await conn.client.noop()).code == 250
    assert _verbs(peer)[1:] == [b"NOOP", b"QUIT"]


async def test_message_over_advertised_size_is_refused_before_mail() -> None:
    peer = Peer()
    async with connected(peer) as conn:
        with pytest.raises(MessageTooLarge) as caught:
            await transaction(conn, ["b@r.test"], b"x" * 100_001)
    assert caught.value.permanent
    assert _verbs(peer)[1:] == [b"QUIT"]


# --------------------------------------------------------------------------- aiosmtpd


class _Recorder:
    def __init__(self) -> None:
        self.envelopes: list[tuple[str, list[str], bytes]] = []

    async def handle_EHLO(
        self, server: object, session: object, envelope: object, hostname: str, responses: list[str]
    ) -> list[str]:
        session.host_name = hostname  # type: ignore[attr-defined]
        return [*responses[:-1], "250-PIPELINING", responses[-1]]

    async def handle_RCPT(
        self, server: object, session: object, envelope: object, address: str, options: list[str]
    ) -> str:
        if address.startswith("unknown"):
            return "550 5.1.1 User unknown"
        envelope.rcpt_tos.append(address)  # type: ignore[attr-defined]
        return "250 OK"

    async def handle_DATA(self, server: object, session: object, envelope: object) -> str:
        self.envelopes.append(
            (
                envelope.mail_from,  # type: ignore[attr-defined]
                list(envelope.rcpt_tos),  # type: ignore[attr-defined]
                envelope.original_content,  # type: ignore[attr-defined]
            )
        )
        return "250 2.0.0 Ok: queued"


async def test_against_aiosmtpd() -> None:
    handler = _Recorder()
    async with loopback_server(lambda: AiosmtpdSMTP(handler, hostname="aiosmtpd.test")) as server:
        params = ConnectParams(
            hostname="127.0.0.1", port=port_of(server), local_hostname=CLIENT_NAME, timeout=30
        )
        conn = await open_connection(params)
        try:
            assert conn.supports("pipelining")
            result = await transaction(conn, ["b@r.test", "unknown@r.test", "c@r.test"])
            assert isinstance(
                result.refused["unknown@r.test"], MailboxNotFound | MailboxUnavailable
            )
            refused = await transaction(conn, ["unknown@r.test"])
            assert (refused.delivered, list(refused.refused)) == ((), ["unknown@r.test"])
            await transaction(conn, ["e@r.test"], sender="d@s.test")
        finally:
            await conn.close()
    assert [(s, r) for s, r, _ in handler.envelopes] == [
        ("a@s.test", ["b@r.test", "c@r.test"]),
        ("d@s.test", ["e@r.test"]),
    ]
    assert handler.envelopes[0][2] == MESSAGE


# --------------------------------------------------------------------------- through the Mailer


async def test_mailer_pipelines_where_offered() -> None:
    # This peer answers MAIL/RCPT only once DATA arrived: only a pipelining client gets through.
    peer = Peer(pipelining=True)
    async with (
        serve(peer),
        Mailer(
            hostname="127.0.0.1", port=peer.port, local_hostname=CLIENT_NAME, timeout=5
        ) as mailer,
    ):
        result = await mailer.send(MESSAGE, sender="a@s.test", recipients=["b@r.test", "c@r.test"])
        await mailer.send(MESSAGE, sender="a@s.test", recipients=["d@r.test"])
    assert result.delivered == ("b@r.test", "c@r.test")
    assert len(peer.contents) == 2
    assert peer.connections == 1


@pytest.mark.parametrize(
    ("offered", "pipelining", "batched"),
    [(False, True, False), (True, False, False), (True, True, True)],
)
async def test_mailer_pipelines_only_where_offered_and_not_told_otherwise(
    offered: bool, pipelining: bool, batched: bool
) -> None:
    # This peer answers each command at once and notes one that came before the previous
    # command's reply (the last row shows it does see a pipelining client).
    peer = Peer(pipelining=False, advertise=offered)
    async with (
        serve(peer),
        Mailer(
            hostname="127.0.0.1", port=peer.port, local_hostname=CLIENT_NAME, pipelining=pipelining
        ) as mailer,
    ):
        result = await mailer.send(MESSAGE, sender="a@s.test", recipients=["b@r.test", "c@r.test"])
    assert result.delivered == ("b@r.test", "c@r.test")
    assert len(peer.contents) == 1
    assert (peer.batched_without_pipelining > 0) is batched


async def test_mailer_overlaps_the_next_transaction_with_the_final_reply() -> None:
    # The peer answers a final "." only once the next MAIL arrived: a client that waited for
    # that reply before writing the next transaction would wait forever.
    peer = Peer(pipelining=True, hold_final=4)
    async with (
        serve(peer),
        Mailer(
            hostname="127.0.0.1",
            port=peer.port,
            local_hostname=CLIENT_NAME,
            pool_size=1,
            timeout=5,
        ) as mailer,
    ):
        results = await asyncio.gather(
            *(
                mailer.send(MESSAGE, sender="a@s.test", recipients=[f"r{i}@r.test"])
                for i in range(5)
            )
        )
        assert mailer.stats.overlapped == 4
    assert [r.delivered for r in results] == [(f"r{i}@r.test",) for i in range(5)]
    assert all(r.attempts == 1 for r in results)
    assert peer.connections == 1
    assert len(peer.contents) == 5


GONE, OK, LATER = "gone@r.test", "ok@r.test", "later@r.test"
REFUSING = (f"rcpt:{GONE}=550 5.1.1 No such user", f"rcpt:{LATER}=450 4.2.1 Try again later")


def _addressed(from_headers: bool) -> tuple[bytes | email.message.EmailMessage, list[str] | None]:
    """The message and ``recipients`` argument: display names given by the caller, or the
    same addresses found in the message's headers (where aiosmtplib takes the bare ones)."""
    if not from_headers:
        return MESSAGE, [f"Gone <{GONE}>", f"Ok <{OK}>", f"Later <{LATER}>"]
    msg = email.message.EmailMessage()
    msg["From"] = "a@s.test"
    msg["To"] = f"Gone <{GONE}>, Ok <{OK}>"
    msg["Cc"] = f"Later <{LATER}>"
    msg.set_content("Hello.")
    return msg, None


async def _names_in(how: str, from_headers: bool) -> tuple[object, ...]:
    """How one send names the recipients: errors' keys, refused's keys and each error's own
    ``recipient``, delivered. ``how``: aiosmtplib, smtp_guard.send, the Mailer with or without
    pipelining (the server offers it)."""
    message, recipients = _addressed(from_headers)
    sender, never = "a@s.test", RetryPolicy.never()
    async with FaultServer(*REFUSING) as srv:
        where = kw(srv, timeout=30)
        if how == "aiosmtplib":
            errors, _ = await aiosmtplib.send(
                message, sender=sender, recipients=recipients, **where
            )
            return (list(errors),)
        if how == "send":
            result = await smtp_guard.send(
                message, sender=sender, recipients=recipients, policy=never, **where
            )
        else:
            pipelining = how == "pipelined"
            async with Mailer(pipelining=pipelining, policy=never, **where) as m:
                result = await m.send(message, sender=sender, recipients=recipients)
            # the Mailer took the path asked for (the FaultServer sees commands that came
            # before the previous one's reply only from a client that pipelines)
            assert (sum(c.pipelined for c in srv.connections) > 0) is pipelining
        assert srv.deliveries_to(OK) == 1
    named = {key: error.recipient for key, error in result.refused.items()}
    return list(result.errors), list(named), list(named.values()), result.delivered


@pytest.mark.parametrize("from_headers", [False, True], ids=["given", "headers"])
async def test_recipients_are_named_as_aiosmtplib_does_on_every_path(from_headers: bool) -> None:
    # aiosmtplib keys its errors by the recipient string it sent: as the caller wrote it, or
    # the bare address it took from the headers. Every key, every error's .recipient and
    # .delivered use that same spelling, whether the transaction was pipelined or not.
    refused = [f"Gone <{GONE}>", f"Later <{LATER}>"] if not from_headers else [GONE, LATER]
    delivered = (f"Ok <{OK}>",) if not from_headers else (OK,)
    assert await _names_in("aiosmtplib", from_headers) == (refused,)
    for how in ("send", "stepwise", "pipelined"):
        names = await _names_in(how, from_headers)
        assert names == (refused, refused, refused, delivered), how


async def test_the_noop_check_of_an_idle_connection_ends_by_the_calls_deadline() -> None:
    # The pooled connection is checked with NOOP before reuse (idle_check=0), and this peer
    # never answers it. The check may not hold the message past the call's deadline.
    peer = Peer(noop=HANG)
    async with (
        serve(peer),
        Mailer(
            hostname="127.0.0.1",
            port=peer.port,
            local_hostname=CLIENT_NAME,
            pool_size=1,
            idle_check=0,
            timeout=30,
        ) as mailer,
    ):
        await mailer.send(MESSAGE, sender="a@s.test", recipients=["b@r.test"])
        stalled = mailer.send(
            MESSAGE,
            sender="a@s.test",
            recipients=["c@r.test"],
            policy=RetryPolicy(attempts=1, deadline=STALLED),
        )
        # 8 s: only so that a check bounded by its own 10 s fails this test (no timing).
        with pytest.raises(SMTPGuardError) as caught:
            await asyncio.wait_for(stalled, 8)
        assert mailer.stats.checked == 1
    assert isinstance(caught.value, SMTPTimeout)
    assert not isinstance(caught.value, DeliveryUncertain)
    assert len(peer.contents) == 1  # the second message was never sent


class _Transport(asyncio.WriteTransport):
    """Takes writes and nothing else: the channel's flow control is driven by hand."""

    def write(self, data: bytes | bytearray | memoryview) -> None:
        pass

    def is_closing(self) -> bool:
        return False


async def test_every_writer_waiting_for_the_transport_to_drain_is_woken() -> None:
    # Two transactions on one connection may both wait for the transport to take more (one
    # message's content still draining when the next one's is written).
    channel = _Channel(aiosmtplib.SMTP(), asyncio.Protocol(), _Transport())
    channel.pause_writing()
    first = asyncio.ensure_future(channel.drain(30))
    second = asyncio.ensure_future(channel.drain(30))
    gives_up = asyncio.ensure_future(channel.drain(0.01))  # its timeout cancels no other wait
    with pytest.raises(SMTPTimeout):
        await gives_up
    assert not first.done()
    assert not second.done()
    channel.resume_writing()
    # 20 s: only so that a stranded waiter fails this test instead of hanging it.
    await asyncio.wait_for(asyncio.gather(first, second), 20)


# --------------------------------------------------------------------------- client contract


async def test_client_contract_success_and_reuse() -> None:
    async with FaultServer() as srv, connection(srv, timeout=30) as conn:
        env = make_envelope(MESSAGE, "a@s.test", ["b@r.test", "c@r.test"])
        first = await pipelined_transaction(conn, env)
        second = await pipelined_transaction(conn, env, ("c@r.test",))
        assert conn.is_connected
    assert first.delivered == ("b@r.test", "c@r.test")
    assert first.error is None
    assert second.delivered == ("c@r.test",)
    assert conn.transactions == 2
    assert [t.recipients for t in srv.messages] == [["b@r.test", "c@r.test"], ["c@r.test"]]


@pytest.mark.parametrize(
    ("fault", "error_type", "accepted", "not_attempted"),
    [
        ("mail=451 4.3.0 Try later", TransientError, (), ("b@r.test", "c@r.test")),
        ("rcpt:c@*=421 4.7.0 Closing", TransientError, ("b@r.test",), ("c@r.test",)),
        ("data=554 5.5.1 No thanks", PermanentError, ("b@r.test", "c@r.test"), ()),
        ("message=drop", DeliveryUncertain, ("b@r.test", "c@r.test"), ()),
        ("rcpt:c@*=drop", ServerDisconnected, ("b@r.test",), ("c@r.test",)),
    ],
)
async def test_client_contract_never_raises_for_the_server(
    fault: str,
    error_type: type[Exception],
    accepted: tuple[str, ...],
    not_attempted: tuple[str, ...],
) -> None:
    async with FaultServer(fault) as srv, connection(srv, timeout=30) as conn:
        env = make_envelope(MESSAGE, "a@s.test", ["b@r.test", "c@r.test"])
        result = await pipelined_transaction(conn, env)
    assert isinstance(result.error, error_type)
    assert result.delivered == ()
    assert result.accepted == accepted
    assert result.not_attempted == not_attempted
    assert result.refused == {}  # e.g. the 503s to RCPT after a refused MAIL count for nothing
    assert srv.messages == [] or fault == "message=drop"


async def test_client_contract_too_many_recipients_are_not_attempted() -> None:
    async with FaultServer("maxrcpt=2") as srv, connection(srv, timeout=30) as conn:
        env = make_envelope(MESSAGE, "a@s.test", [f"m{i}@r.test" for i in range(3)])
        result = await pipelined_transaction(conn, env)
    assert result.delivered == ("m0@r.test", "m1@r.test")
    assert result.refused == {}
    assert result.not_attempted == ("m2@r.test",)
    assert [t.recipients for t in srv.messages] == [["m0@r.test", "m1@r.test"]]
