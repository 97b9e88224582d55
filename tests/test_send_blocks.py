"""The building blocks (open_connection, run_transaction) and the edges of the protocol."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator

import aiosmtplib
import pytest
from _helpers import CLIENT_NAME, connect_params, connection, kw, loopback_server, port_of
from aiosmtpd.smtp import SMTP

from smtp_guard.client import send
from smtp_guard.client._connect import Connection, ConnectParams, open_connection
from smtp_guard.client._deliver import deliver
from smtp_guard.client._transaction import TransactionResult, run_transaction
from smtp_guard.client._validate import Envelope, make_envelope
from smtp_guard.errors import (
    DeliveryUncertain,
    ExtensionNotSupported,
    InvalidInput,
    PermanentError,
    ProtocolError,
    SMTPGuardError,
    TransientError,
)
from smtp_guard.policy import RetryPolicy
from smtp_guard.testing import Fault, FaultServer

RAW = b"Subject: blocks\r\n\r\nbody\r\n"


pytestmark = pytest.mark.usefixtures("no_real_sleep")


@pytest.fixture
async def conn_and_server() -> AsyncIterator[tuple[Connection, FaultServer]]:
    faults = ("rcpt:gone@*=550 5.1.1 No such user", "rcpt:busy@*=450 4.2.1 Busy")
    async with FaultServer(*faults) as srv, connection(srv) as conn:
        yield conn, srv


async def test_one_connection_several_transactions_with_per_recipient_outcomes(
    conn_and_server: tuple[Connection, FaultServer],
) -> None:
    conn, srv = conn_and_server
    envelope = make_envelope(
        RAW, "a@sender.test", ["ok@rcpt.test", "gone@rcpt.test", "busy@rcpt.test"]
    )
    first = await run_transaction(conn, envelope)
    assert first.delivered == ("ok@rcpt.test",)
    assert first.error is None
    assert isinstance(first.refused["gone@rcpt.test"], PermanentError)
    assert isinstance(first.refused["busy@rcpt.test"], TransientError)
    assert first.owed == ("busy@rcpt.test",)
    assert first.response is not None
    assert first.response.code == 250
    assert conn.is_connected
    second = await run_transaction(conn, envelope, ("again@rcpt.test",))
    assert second.delivered == ("again@rcpt.test",)
    assert conn.transactions == 2
    assert srv.connection_count == 1
    assert [t.recipients for t in srv.messages] == [["ok@rcpt.test"], ["again@rcpt.test"]]


async def test_refused_transaction_leaves_the_connection_reusable() -> None:
    async with FaultServer("mail=451 4.3.0 Later x1") as srv:
        conn = await open_connection(connect_params(srv))
        envelope = make_envelope(RAW, "a@sender.test", ["b@rcpt.test"])
        refused = await run_transaction(conn, envelope)
        assert isinstance(refused.error, TransientError)
        assert refused.not_attempted == ("b@rcpt.test",)
        assert conn.is_connected
        done = await run_transaction(conn, envelope)
        assert done.delivered == ("b@rcpt.test",)
        await conn.close()
        assert not conn.is_connected


@pytest.mark.parametrize("fault", ["mail=garbage", "rcpt=garbage", "mail=long=20000"])
async def test_a_reply_that_is_not_smtp_closes_the_connection(fault: str) -> None:
    async with FaultServer(fault) as srv:
        conn = await open_connection(connect_params(srv, timeout=2.0))
        result = await run_transaction(conn, make_envelope(RAW, "a@sender.test", ["b@rcpt.test"]))
        assert isinstance(result.error, ProtocolError)
        assert not conn.is_connected  # never reused out of step with the server


@pytest.mark.parametrize("fault", ["mail=garbage", "rcpt=garbage", "mail=long=20000"])
async def test_a_reply_that_is_not_smtp_is_caught_where_aiosmtplibs_was(fault: str) -> None:
    """aiosmtplib raises SMTPResponseException(-1, ...) for it; ours is one too, code -1."""
    async with FaultServer(fault) as srv:
        with pytest.raises(aiosmtplib.SMTPResponseException) as theirs:
            await aiosmtplib.send(
                RAW, sender="a@sender.test", recipients=["b@rcpt.test"], **kw(srv)
            )
        with pytest.raises(aiosmtplib.SMTPResponseException) as ours:
            await send(
                RAW,
                sender="a@sender.test",
                recipients=["b@rcpt.test"],
                policy=RetryPolicy.never(),
                **kw(srv),
            )
    assert type(theirs.value) is aiosmtplib.SMTPResponseException
    assert theirs.value.code == -1
    assert isinstance(ours.value, ProtocolError)
    assert ours.value.code == -1
    assert ours.value.args[0] == -1


@pytest.mark.parametrize("raw", [b"600 What\r\n", b"199 Early\r\n", b"354 Go on\r\n"])
async def test_reply_codes_that_make_no_sense_are_protocol_errors(raw: bytes) -> None:
    async with FaultServer(Fault.raw_reply("mail", raw)) as srv:
        with pytest.raises(ProtocolError) as caught:
            await send(
                RAW,
                sender="a@sender.test",
                recipients=["b@rcpt.test"],
                policy=RetryPolicy(attempts=2),
                **kw(srv),
            )
        assert srv.connection_count == 2  # transient, bounded
    assert caught.value.attempts == 2
    assert caught.value.code == int(raw[:3])  # the code that came, not aiosmtplib's -1
    assert "\r" not in str(caught.value)


@pytest.mark.parametrize("fault", ["message=garbage", "message=raw=600 What\\r\\n"])
async def test_nonsense_after_the_final_dot_is_uncertain(fault: str) -> None:
    async with FaultServer(fault) as srv:
        with pytest.raises(DeliveryUncertain) as caught:
            await send(RAW, sender="a@sender.test", recipients=["b@rcpt.test"], **kw(srv))
        assert srv.connection_count == 1
    assert caught.value.recipients == ("b@rcpt.test",)


async def test_permanent_and_deferred_when_nobody_was_accepted() -> None:
    faults = ("rcpt:gone@*=550 5.1.1 No such user", "rcpt:busy@*=451 4.7.1 Greylisted x1")
    async with FaultServer(*faults) as srv:
        result = await send(
            RAW, sender="a@sender.test", recipients=["gone@rcpt.test", "busy@rcpt.test"], **kw(srv)
        )
        assert [t.recipients for t in srv.messages] == [["busy@rcpt.test"]]
        rcpt_lines = [line for line in srv.transcript if line.startswith("C: RCPT")]
    assert result.delivered == ("busy@rcpt.test",)
    assert list(result.errors) == ["gone@rcpt.test"]
    assert result.attempts == 2
    assert sum("gone@" in line for line in rcpt_lines) == 1  # the permanent one never again


async def test_non_ascii_address_uses_smtputf8() -> None:
    async with FaultServer() as srv:
        result = await send(
            RAW, sender="a@sender.test", recipients=["jiří@příklad.test"], **kw(srv)
        )
        mail = next(line for line in srv.transcript if line.startswith("C: MAIL"))
    assert result.delivered == ("jiří@příklad.test",)
    assert "SMTPUTF8" in mail.upper()


class _Sink:
    async def handle_DATA(self, server: object, session: object, envelope: object) -> str:
        return "250 OK"


async def test_non_ascii_address_without_smtputf8_is_refused_before_mail() -> None:
    # FaultServer always offers SMTPUTF8; a plain aiosmtpd server can be told not to.
    async with loopback_server(
        lambda: SMTP(_Sink(), hostname="sink.test", enable_SMTPUTF8=False)
    ) as server:
        with pytest.raises(SMTPGuardError) as caught:
            await send(
                RAW,
                sender="a@sender.test",
                recipients=["jiří@příklad.test"],
                hostname="127.0.0.1",
                port=port_of(server),
                local_hostname=CLIENT_NAME,
            )
    assert isinstance(caught.value, ExtensionNotSupported)
    assert isinstance(caught.value, aiosmtplib.SMTPNotSupported)  # what aiosmtplib raises here
    assert caught.value.extension == "SMTPUTF8"
    assert caught.value.permanent
    assert "SMTPUTF8" in str(caught.value)


async def test_oauth_without_xoauth2_on_the_server_never_asks_for_a_token() -> None:
    asked: list[bool] = []

    async def token() -> str:
        asked.append(True)
        return "tok"

    async with FaultServer("auth=alice:pw") as srv:
        with pytest.raises(SMTPGuardError) as caught:
            await send(
                RAW,
                sender="a@sender.test",
                recipients=["b@rcpt.test"],
                username="alice",
                oauth_token_generator=token,
                allow_insecure_auth=True,
                **kw(srv),
            )
        assert srv.connection_count == 1
    assert asked == []
    assert isinstance(caught.value, ExtensionNotSupported)
    assert caught.value.extension == "AUTH XOAUTH2"
    assert caught.value.permanent
    assert "XOAUTH2" in str(caught.value)


async def test_no_auth_offered_is_extension_not_supported_and_not_retried() -> None:
    async with FaultServer() as srv:  # no credentials configured: no AUTH in EHLO
        with pytest.raises(ExtensionNotSupported) as caught:
            await send(
                RAW,
                sender="a@sender.test",
                recipients=["b@rcpt.test"],
                username="alice",
                password="pw",
                allow_insecure_auth=True,
                **kw(srv),
            )
        assert srv.connection_count == 1
        assert not any(line.startswith("C: AUTH") for line in srv.transcript)
        assert srv.transactions == []
    assert caught.value.extension == "AUTH"
    assert caught.value.permanent
    assert isinstance(caught.value, aiosmtplib.SMTPException)  # aiosmtplib raises that here


async def test_cancelling_a_send_closes_its_connection_at_once() -> None:
    async with FaultServer("data=delay=5s") as srv:
        task = asyncio.create_task(
            send(RAW, sender="a@sender.test", recipients=["b@rcpt.test"], **kw(srv))
        )
        for _ in range(500):  # until the server has the DATA command (no timing assumption)
            if any(line.startswith("C: DATA") for line in srv.transcript):
                break
            await asyncio.sleep(0.01)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert srv.messages == []
        assert "C: QUIT" not in srv.transcript


async def test_deliver_runs_a_plugged_in_transaction_runner() -> None:
    calls: list[tuple[str, ...]] = []

    async def counting(
        conn: Connection, envelope: Envelope, recipients: tuple[str, ...]
    ) -> TransactionResult:
        calls.append(recipients)
        return await run_transaction(conn, envelope, recipients)

    async with FaultServer("rcpt:b@*=450 4.2.1 Busy x1") as srv:
        params = connect_params(srv)

        async def acquire() -> Connection:
            return await open_connection(params)

        async def release(conn: Connection) -> None:
            await conn.close()

        envelope = make_envelope(RAW, "a@sender.test", ["a@rcpt.test", "b@rcpt.test"])
        result = await deliver(envelope, acquire=acquire, release=release, transaction=counting)
    assert calls == [("a@rcpt.test", "b@rcpt.test"), ("b@rcpt.test",)]
    assert result.delivered == ("a@rcpt.test", "b@rcpt.test")


# --------------------------------------------------------------------------- sock=


async def test_a_given_socket_serves_one_connection_and_is_closed_with_it() -> None:
    async with FaultServer() as srv:
        sock = socket.create_connection((srv.host, srv.port))
        assert ConnectParams(sock=sock).server == f"{srv.host}:{srv.port}"  # for logs
        result = await send(
            RAW, sender="a@sender.test", recipients=["b@rcpt.test"], sock=sock,
            local_hostname="client.test",
        )  # fmt: skip
        assert result.delivered == ("b@rcpt.test",)
        with pytest.raises(InvalidInput, match="already used"):
            await send(
                RAW, sender="a@sender.test", recipients=["b@rcpt.test"], sock=sock,
                local_hostname="client.test",
            )  # fmt: skip
        await asyncio.sleep(0)
        assert sock.fileno() == -1  # the first connection closed it, as aiosmtplib does
        assert srv.connection_count == 1  # the reuse sent nothing and was not retried


async def test_an_unconnected_socket_is_refused_and_left_to_its_owner() -> None:
    with socket.socket() as sock:
        with pytest.raises(InvalidInput, match="not connected") as caught:
            await send(RAW, sender="a@sender.test", recipients=["b@rcpt.test"], sock=sock)
        assert sock.fileno() != -1
    assert caught.value.attempts == 1


async def test_with_a_given_socket_a_transient_failure_is_not_retried() -> None:
    async with FaultServer("mail=451 4.3.0 Try later x1") as srv:
        sock = socket.create_connection((srv.host, srv.port))
        with pytest.raises(TransientError) as caught:
            await send(
                RAW, sender="a@sender.test", recipients=["b@rcpt.test"], sock=sock,
                local_hostname="client.test",
            )  # fmt: skip
        assert srv.connection_count == 1
    assert caught.value.attempts == 1


async def test_421_to_ehlo_is_final_even_if_the_server_keeps_the_socket_open() -> None:
    """RFC 5321 3.8: a 421 closes the channel; no HELO fallback, no mail on this connection."""
    seen: list[bytes] = []
    handlers: list[asyncio.Task[None]] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            handlers.append(task)
        writer.write(b"220 sloppy.test ESMTP\r\n")
        while line := await reader.readline():
            seen.append(line.split()[0].upper())
            if line.upper().startswith(b"EHLO"):
                writer.write(b"421 4.3.2 Shutting down\r\n")  # ... and does not close
            elif line.upper().startswith(b"QUIT"):
                writer.write(b"221 bye\r\n")
                break
            else:
                writer.write(b"250 ok\r\n")
            await writer.drain()
        writer.close()
        await writer.wait_closed()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = int(server.sockets[0].getsockname()[1])
    try:
        with pytest.raises(TransientError) as caught:
            await send(
                RAW, sender="a@sender.test", recipients=["b@rcpt.test"], hostname="127.0.0.1",
                port=port, local_hostname="client.test", policy=RetryPolicy.never(),
            )  # fmt: skip
    finally:
        server.close()
        await server.wait_closed()
        # The client is gone: the handler reads its EOF and ends (not cancelled at teardown).
        await asyncio.wait_for(asyncio.gather(*handlers), 5)
    assert caught.value.code == 421
    assert b"HELO" not in seen
    assert b"MAIL" not in seen
