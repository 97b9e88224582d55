"""The one mapping from aiosmtplib's exceptions to ours: complete, drop-in, cause kept."""

from __future__ import annotations

import socket
import ssl

import aiosmtplib
import aiosmtplib.errors
import pytest

from smtp_guard._enums import Phase
from smtp_guard.client._mapping import MAPPED, map_error
from smtp_guard.errors import (
    ConnectionFailed,
    ConnectTimeout,
    DeliveryUncertain,
    ExtensionNotSupported,
    InvalidInput,
    PermanentError,
    ProtocolError,
    ReadTimeout,
    RecipientsRefused,
    ReplyError,
    ServerDisconnected,
    SMTPGuardError,
    SMTPTimeout,
    TLSFailed,
    TransientError,
)


def _example(name: str) -> BaseException:
    cls = getattr(aiosmtplib.errors, name)
    if name == "SMTPSenderRefused":
        return cls(451, "4.3.0 Try later", "a@sender.test")  # type: ignore[no-any-return]
    if name == "SMTPRecipientRefused":
        return cls(550, "5.1.1 No such user", "b@rcpt.test")  # type: ignore[no-any-return]
    if name == "SMTPRecipientsRefused":
        return cls([aiosmtplib.SMTPRecipientRefused(550, "5.1.1 No such user", "b@rcpt.test")])  # type: ignore[no-any-return]
    if issubclass(cls, aiosmtplib.SMTPResponseException):
        return cls(421, "4.3.2 Closing")  # type: ignore[no-any-return]
    return cls("something happened")  # type: ignore[no-any-return]


@pytest.mark.parametrize("name", aiosmtplib.errors.__all__)
def test_every_aiosmtplib_exception_is_mapped(name: str) -> None:
    cls = getattr(aiosmtplib.errors, name)
    assert cls in MAPPED, f"{name} is not in smtp_guard.client._mapping.MAPPED"
    mapped = map_error(_example(name))
    assert isinstance(mapped, SMTPGuardError)
    assert isinstance(mapped, cls), f"except {name} would no longer catch {mapped!r}"
    str(mapped), repr(mapped)  # formatting never fails


@pytest.mark.parametrize(
    ("exc", "phase", "expected", "aiosmtplib_class"),
    [
        (
            aiosmtplib.SMTPConnectResponseError(421, "4.3.2 Bye"),
            None,
            TransientError,
            aiosmtplib.SMTPConnectResponseError,
        ),
        (
            aiosmtplib.SMTPHeloError(550, "5.7.1 Go away"),
            None,
            PermanentError,
            aiosmtplib.SMTPHeloError,
        ),
        (
            aiosmtplib.SMTPAuthenticationError(535, "5.7.8 Bad credentials"),
            None,
            PermanentError,
            aiosmtplib.SMTPAuthenticationError,
        ),
        (
            aiosmtplib.SMTPDataError(451, "4.3.0 Later"),
            Phase.MESSAGE,
            TransientError,
            aiosmtplib.SMTPDataError,
        ),
        (
            aiosmtplib.SMTPResponseException(454, "4.7.0 TLS not available"),
            Phase.STARTTLS,
            TransientError,
            aiosmtplib.SMTPResponseException,
        ),
    ],
)
def test_replies_keep_code_text_phase_and_the_aiosmtplib_class(
    exc: aiosmtplib.SMTPResponseException,
    phase: Phase | None,
    expected: type[ReplyError],
    aiosmtplib_class: type[BaseException],
) -> None:
    mapped = map_error(exc, phase=phase)
    assert isinstance(mapped, expected)
    assert isinstance(mapped, aiosmtplib_class)
    assert isinstance(mapped, ReplyError)
    assert (mapped.code, mapped.message) == (exc.code, exc.message)
    if phase is not None:
        assert mapped.phase is phase


def test_sender_and_recipient_are_kept() -> None:
    sender = map_error(aiosmtplib.SMTPSenderRefused(550, "5.7.1 No", "a@sender.test"))
    assert isinstance(sender, ReplyError)
    assert sender.sender == "a@sender.test"
    assert sender.phase is Phase.MAIL
    rcpt = map_error(aiosmtplib.SMTPRecipientRefused(550, "5.1.1 No", "b@rcpt.test"))
    assert isinstance(rcpt, ReplyError)
    assert rcpt.recipient == "b@rcpt.test"
    refused = map_error(
        aiosmtplib.SMTPRecipientsRefused(
            [aiosmtplib.SMTPRecipientRefused(450, "4.2.1 Busy", "c@rcpt.test")]
        )
    )
    assert isinstance(refused, RecipientsRefused)
    assert isinstance(refused.refused["c@rcpt.test"], TransientError)


@pytest.mark.parametrize(
    ("exc", "expected"),
    [
        (aiosmtplib.SMTPConnectTimeoutError("slow"), ConnectTimeout),
        (aiosmtplib.SMTPReadTimeoutError("slow"), ReadTimeout),
        (aiosmtplib.SMTPTimeoutError("slow"), SMTPTimeout),
        (TimeoutError(), SMTPTimeout),
        (aiosmtplib.SMTPServerDisconnected("Connection lost"), ServerDisconnected),
        (aiosmtplib.SMTPConnectError("refused"), ConnectionFailed),
        (socket.gaierror(-2, "Name or service not known"), ConnectionFailed),
        (ConnectionResetError(104, "reset"), ConnectionFailed),
        (aiosmtplib.SMTPResponseException(-1, "Malformed SMTP response line: xx"), ProtocolError),
        (aiosmtplib.SMTPResponseException(-1, "Response too long"), ProtocolError),
        (aiosmtplib.SMTPResponseException(999, "nonsense"), ProtocolError),
        (ValueError("Command arg contains a prohibited control character"), InvalidInput),
    ],
)
def test_transport_errors(exc: BaseException, expected: type[SMTPGuardError]) -> None:
    mapped = map_error(exc)
    assert isinstance(mapped, expected)
    if expected is not InvalidInput:
        assert not mapped.permanent  # all of these are worth a retry


def test_certificate_failure_is_permanent_even_when_wrapped() -> None:
    cert = ssl.SSLCertVerificationError(1, "certificate verify failed")
    wrapped = aiosmtplib.SMTPConnectError("Error connecting to x on port 465")
    wrapped.__cause__ = cert
    for exc in (cert, wrapped):
        mapped = map_error(exc)
        assert isinstance(mapped, TLSFailed)
        assert mapped.permanent


def test_handshake_cut_short_is_transient() -> None:
    mapped = map_error(ssl.SSLEOFError(8, "EOF occurred in violation of protocol"))
    assert isinstance(mapped, TLSFailed)
    assert not mapped.permanent


@pytest.mark.parametrize(
    ("exc", "reason"),
    [
        (aiosmtplib.SMTPServerDisconnected("Connection lost"), "disconnected"),
        (ConnectionResetError(104, "reset"), "disconnected"),
        (aiosmtplib.SMTPReadTimeoutError("Timed out waiting for server response"), "timeout"),
        (TimeoutError(), "timeout"),
        (aiosmtplib.SMTPResponseException(-1, "Malformed SMTP response line: ??"), "bad_reply"),
    ],
)
def test_anything_but_a_reply_after_the_final_dot_is_uncertain(
    exc: BaseException, reason: str
) -> None:
    mapped = map_error(exc, phase=Phase.MESSAGE, after_final_dot=["b@rcpt.test"])
    assert isinstance(mapped, DeliveryUncertain)
    assert mapped.recipients == ("b@rcpt.test",)
    assert mapped.reason == reason
    # Whatever aiosmtplib class caught the original still catches ours (drop-in).
    for cls in (aiosmtplib.SMTPServerDisconnected, aiosmtplib.SMTPReadTimeoutError):
        if isinstance(exc, cls):
            assert isinstance(mapped, cls)


def test_not_supported_maps_to_extension_not_supported() -> None:
    mapped = map_error(aiosmtplib.SMTPNotSupported("SMTPUTF8 is not supported by this server"))
    assert isinstance(mapped, ExtensionNotSupported)
    assert isinstance(mapped, aiosmtplib.SMTPNotSupported)
    assert mapped.permanent


def test_a_real_reply_after_the_final_dot_stays_a_reply() -> None:
    exc = aiosmtplib.SMTPDataError(554, "5.7.1 Spam")
    mapped = map_error(exc, phase=Phase.MESSAGE, after_final_dot=["b@rcpt.test"])
    assert isinstance(mapped, PermanentError)


def test_our_errors_pass_through_unchanged() -> None:
    error = ServerDisconnected("gone")
    assert map_error(error) is error
