"""Credentials, TLS rules, input checks and secrets, over real sockets."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
import pickle
import traceback
from collections.abc import AsyncIterator
from typing import Any

import aiosmtplib
import pytest
from _helpers import kw

from smtp_guard.client import send
from smtp_guard.client._connect import ConnectParams
from smtp_guard.errors import (
    AuthFailed,
    ExtensionNotSupported,
    InsecureConnection,
    InvalidInput,
    MessageTooLarge,
    PermanentError,
    ProtocolError,
    SMTPGuardError,
    TLSFailed,
    TransientError,
)
from smtp_guard.policy import RetryPolicy
from smtp_guard.testing import Fault, FaultServer

RAW = b"Subject: secure\r\n\r\nbody\r\n"
SECRET = "s3cret-Pa55word"
RCPTS = ["one@rcpt.test"]


pytestmark = pytest.mark.usefixtures("no_real_sleep")


def commands(server: FaultServer) -> list[str]:
    return [line[3:].split(" ")[0].upper() for line in server.transcript if line.startswith("C:")]


async def test_credentials_without_starttls_are_refused_before_auth() -> None:
    async with FaultServer(f"auth=alice:{SECRET}") as srv:
        with pytest.raises(InsecureConnection) as caught:
            await send(
                RAW,
                sender="a@sender.test",
                recipients=RCPTS,
                username="alice",
                password=SECRET,
                **kw(srv),
            )
        assert "AUTH" not in commands(srv)
        assert srv.messages == []
        assert srv.connection_count == 1  # permanent: not retried
    assert caught.value.permanent


async def test_start_tls_false_with_credentials_is_refused_too() -> None:
    async with FaultServer(f"auth=alice:{SECRET}", "starttls=on") as srv:
        with pytest.raises(InsecureConnection):
            await send(
                RAW,
                sender="a@sender.test",
                recipients=RCPTS,
                start_tls=False,
                username="alice",
                password=SECRET,
                **kw(srv),
            )
        assert "AUTH" not in commands(srv)


async def test_allow_insecure_auth_logs_in_on_a_trusted_relay() -> None:
    async with FaultServer(f"auth=alice:{SECRET}") as srv:
        result = await send(
            RAW,
            sender="a@sender.test",
            recipients=RCPTS,
            username="alice",
            password=SECRET,
            allow_insecure_auth=True,
            **kw(srv),
        )
        [txn] = srv.messages
    assert result.delivered == tuple(RCPTS)
    assert txn.user == "alice"


async def test_starttls_is_done_before_auth_when_credentials_are_given() -> None:
    async with FaultServer(f"auth=alice:{SECRET}", "starttls=on") as srv:
        await send(
            RAW,
            sender="a@sender.test",
            recipients=RCPTS,
            username="alice",
            password=SECRET,
            tls_context=srv.tls_context(),
            **kw(srv),
        )
        seen = commands(srv)
        [txn] = srv.messages
    assert seen.index("STARTTLS") < seen.index("AUTH")
    assert txn.tls
    assert txn.user == "alice"


async def test_implicit_tls_with_credentials(tmp_path: Any) -> None:
    async with FaultServer(f"auth=alice:{SECRET}", "tls=implicit") as srv:
        result = await send(
            RAW,
            sender="a@sender.test",
            recipients=RCPTS,
            username="alice",
            password=SECRET,
            use_tls=True,
            cert_bundle=str(srv.ca_cert_path),
            **kw(srv),
        )
        assert srv.messages[0].tls
    assert result.delivered == tuple(RCPTS)


async def test_start_tls_true_but_not_offered_is_a_missing_extension() -> None:
    """aiosmtplib raises SMTPException("SMTP STARTTLS extension not supported by server.")."""
    async with FaultServer() as srv:
        with pytest.raises(ExtensionNotSupported) as caught:
            await send(RAW, sender="a@sender.test", recipients=RCPTS, start_tls=True, **kw(srv))
        assert srv.connection_count == 1
        assert "MAIL" not in commands(srv)
    assert caught.value.permanent
    assert caught.value.extension == "STARTTLS"
    assert "does not offer STARTTLS" in str(caught.value)
    # Caught where aiosmtplib's was (SMTPException); not a handshake failure (none happened).
    assert isinstance(caught.value, aiosmtplib.SMTPException)
    assert not isinstance(caught.value, TLSFailed)


async def test_certificate_failure_is_permanent_and_not_retried() -> None:
    async with FaultServer("starttls=on") as srv:
        with pytest.raises(TLSFailed) as caught:
            await send(RAW, sender="a@sender.test", recipients=RCPTS, **kw(srv))
        assert srv.connection_count == 1
        assert srv.messages == []
    assert caught.value.permanent
    assert "certificate" in str(caught.value).lower()


async def test_454_to_starttls_is_transient_and_retried() -> None:
    tls_busy = Fault.reply_with("starttls", "454 4.7.0 TLS not available", times=1)
    async with FaultServer("starttls=on", tls_busy) as srv:
        result = await send(
            RAW,
            sender="a@sender.test",
            recipients=RCPTS,
            tls_context=srv.tls_context(),
            **kw(srv),
        )
        assert srv.fault_hits == [1]
        assert srv.messages[0].tls
    assert result.attempts == 2
    first = result.history[0]
    assert isinstance(first, TransientError)
    assert first.code == 454


async def test_wrong_password_is_auth_failed_not_retried_and_secret_free() -> None:
    async with FaultServer("auth=alice:right", "starttls=on") as srv:
        with pytest.raises(AuthFailed) as caught:
            await send(
                RAW,
                sender="a@sender.test",
                recipients=RCPTS,
                username="alice",
                password=SECRET,
                tls_context=srv.tls_context(),
                **kw(srv),
            )
        assert srv.connection_count == 1
    error = caught.value
    assert error.permanent
    assert error.code == 535
    assert isinstance(error, aiosmtplib.SMTPAuthenticationError)
    for shown in (str(error), repr(error), repr(error.args), repr(pickle.dumps(error))):
        assert SECRET not in shown


async def test_454_at_auth_is_retried() -> None:
    auth_busy = Fault.reply_with("auth", "454 4.7.0 Temporary authentication failure", times=1)
    async with FaultServer(f"auth=alice:{SECRET}", "starttls=on", auth_busy) as srv:
        result = await send(
            RAW,
            sender="a@sender.test",
            recipients=RCPTS,
            username="alice",
            password=SECRET,
            tls_context=srv.tls_context(),
            **kw(srv),
        )
        assert srv.messages[0].user == "alice"
    assert result.attempts == 2


async def test_password_never_appears_in_log_records(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    async with FaultServer("auth=alice:right", "starttls=on", "mail=451 4.3.0 Try later x1") as srv:
        with pytest.raises(AuthFailed):
            await send(
                RAW,
                sender="a@sender.test",
                recipients=RCPTS,
                username="alice",
                password=SECRET,
                tls_context=srv.tls_context(),
                **kw(srv),
            )
        await send(
            RAW,
            sender="a@sender.test",
            recipients=RCPTS,
            username="alice",
            password="right",
            tls_context=srv.tls_context(),
            **kw(srv),
        )
    records = [r for r in caplog.records if r.name.startswith("smtp_guard")]
    assert any(r.levelno == logging.WARNING for r in records)  # the retry was logged
    assert any(r.levelno == logging.INFO for r in records)  # and each attempt
    for record in records:
        assert SECRET not in record.getMessage()
        assert SECRET not in repr(record.__dict__)
        assert "right" not in record.getMessage()
        assert "body" not in record.getMessage()  # never the message body


def test_connect_params_repr_hides_the_password() -> None:
    params = ConnectParams(username="alice", password=SECRET)
    assert SECRET not in repr(params)
    assert "alice" in repr(params)


@pytest.mark.parametrize(
    ("sender", "recipients"),
    [
        ("a@sender.test", ["b@rcpt.test>\r\nRCPT TO:<evil@evil.test>"]),
        ("a@sender.test", ["b@rcpt.test>"]),
        ("a@sender.test", ["b@rcpt.test, evil@evil.test"]),
        ("a@sender.test\r\nRSET", ["b@rcpt.test"]),
        ("a@sender.test", ["b@rcpt.test\x00"]),
        ("a@sender.test", ["not-an-address"]),
        ("a@sender.test", []),
    ],
)
async def test_bad_addresses_are_refused_before_connecting(
    sender: str, recipients: list[str]
) -> None:
    async with FaultServer() as srv:
        with pytest.raises(InvalidInput) as caught:
            await send(RAW, sender=sender, recipients=recipients, **kw(srv))
        assert srv.connection_count == 0
    assert isinstance(caught.value, ValueError)  # drop-in: aiosmtplib raises ValueError


async def test_message_over_advertised_size_is_refused_before_mail() -> None:
    async with FaultServer("size=1K") as srv:
        with pytest.raises(MessageTooLarge) as caught:
            await send(
                b"Subject: big\r\n\r\n" + b"x" * 4000 + b"\r\n",
                sender="a@sender.test",
                recipients=RCPTS,
                **kw(srv),
            )
        assert "MAIL" not in commands(srv)
        assert srv.connection_count == 1
    assert caught.value.permanent
    assert isinstance(caught.value, SMTPGuardError)


async def test_message_within_size_is_sent_with_the_size_parameter() -> None:
    async with FaultServer("size=1M") as srv:
        await send(RAW, sender="a@sender.test", recipients=RCPTS, **kw(srv))
        mail = [line for line in srv.transcript if line.startswith("C: MAIL")]
    assert mail
    assert f"SIZE={len(RAW)}" in mail[0].upper()


async def test_policy_must_be_a_retry_policy() -> None:
    with pytest.raises(InvalidInput):
        await send(RAW, sender="a@b.test", recipients=RCPTS, policy=3)  # type: ignore[arg-type]
    assert RetryPolicy.never().attempts == 1


async def test_implicit_tls_certificate_failure_is_permanent() -> None:
    async with FaultServer("tls=implicit") as srv:
        with pytest.raises(TLSFailed) as caught:
            await send(RAW, sender="a@sender.test", recipients=RCPTS, use_tls=True, **kw(srv))
        assert srv.messages == []
    assert caught.value.permanent


async def test_starttls_is_opportunistic_without_credentials_like_aiosmtplib() -> None:
    async with FaultServer("starttls=on") as srv:
        await send(
            RAW, sender="a@sender.test", recipients=RCPTS, tls_context=srv.tls_context(), **kw(srv)
        )
        await send(RAW, sender="a@sender.test", recipients=RCPTS, start_tls=False, **kw(srv))
        first, second = srv.messages
    assert first.tls
    assert not second.tls


# --------------------------------------------------------------------------- AUTH echoes


@contextlib.asynccontextmanager
async def echoing_auth_server(mechanism: bytes, template: bytes) -> AsyncIterator[int]:
    """A minimal SMTP server on loopback that answers the client's last AUTH line with
    ``template``, ``{line}`` replaced by that very line (as sendmail-like servers echo it)."""

    handlers: set[asyncio.Task[None]] = set()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            handlers.add(task)
        writer.write(b"220 echo.test ESMTP\r\n")
        while line := await reader.readline():
            command = line.rstrip(b"\r\n")
            upper = command.upper()
            if upper.startswith(b"EHLO"):
                writer.write(b"250-echo.test\r\n250 AUTH " + mechanism + b"\r\n")
            elif upper == b"AUTH LOGIN" or (
                upper.startswith(b"AUTH LOGIN ") and mechanism == b"LOGIN"
            ):
                writer.write(b"334 UGFzc3dvcmQ6\r\n")  # "Password:" -- the continuation follows
            elif upper.startswith(b"QUIT"):
                writer.write(b"221 bye\r\n")
                break
            else:
                writer.write(template.replace(b"{line}", command))
            await writer.drain()
        writer.close()
        await writer.wait_closed()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    try:
        yield int(server.sockets[0].getsockname()[1])
    finally:
        server.close()
        await server.wait_closed()
        # The client is gone: each handler reads its EOF and ends (not cancelled at teardown).
        await asyncio.wait_for(asyncio.gather(*handlers), 5)


def _chain(error: BaseException) -> list[BaseException]:
    seen: list[BaseException] = []
    current: BaseException | None = error
    while current is not None and current not in seen:
        seen.append(current)
        current = current.__cause__ or current.__context__
    return seen


@pytest.mark.parametrize("mechanism", [b"PLAIN", b"LOGIN"])
@pytest.mark.parametrize(
    ("template", "expected"),
    [
        (b"xx cannot parse {line}\r\n", ProtocolError),  # not even a reply
        (b"501 5.5.2 Cannot decode response {line}\r\n", PermanentError),
        (b"535 5.7.8 Authentication failed: {line}\r\n", AuthFailed),
    ],
)
async def test_a_server_echoing_the_auth_line_leaks_no_credential(
    mechanism: bytes,
    template: bytes,
    expected: type[SMTPGuardError],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)  # every logger, every level
    secrets = {
        SECRET,
        base64.b64encode(SECRET.encode()).decode(),  # AUTH LOGIN's password line
        base64.b64encode(f"\0alice\0{SECRET}".encode()).decode(),  # AUTH PLAIN's
    }
    async with echoing_auth_server(mechanism, template) as port:
        with pytest.raises(expected) as caught:
            await send(
                RAW,
                sender="a@sender.test",
                recipients=RCPTS,
                hostname="127.0.0.1",
                port=port,
                local_hostname="client.test",
                username="alice",
                password=SECRET,
                allow_insecure_auth=True,
                policy=RetryPolicy(attempts=2),
            )
    error = caught.value
    assert "[redacted]" in error.message  # the echo was there, and was blanked
    shown = [
        "".join(traceback.format_exception(error)),
        repr(error.args),
        repr(pickle.dumps(error)),
        *(f"{e!s} {e!r} {e.args!r}" for e in _chain(error)),
        *(f"{e!s} {e!r}" for e in error.history),
        *(r.getMessage() + repr(r.__dict__) for r in caplog.records),
    ]
    for text in shown:
        for secret in secrets:
            assert secret not in text
