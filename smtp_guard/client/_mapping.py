"""THE one place where aiosmtplib's (and the socket layer's) exceptions become smtp_guard's.

Every ``except`` in the client that catches something from aiosmtplib, ssl or the OS passes it
through :func:`map_error`, which returns the typed error to raise ``from`` the original.
``tests/test_mapping.py`` walks ``aiosmtplib.errors.__all__`` and fails if one is unmapped.

Reply errors keep the aiosmtplib class that aiosmtplib itself raises in that phase (see
:mod:`smtp_guard.errors`), so ``except aiosmtplib.SMTPSenderRefused`` still catches them.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Iterable

import aiosmtplib

from smtp_guard._enums import Phase
from smtp_guard.classify import error_from_reply
from smtp_guard.errors import (
    ConnectionFailed,
    ConnectTimeout,
    DeliveryUncertain,
    ExtensionNotSupported,
    InvalidInput,
    ProtocolError,
    ReadTimeout,
    RecipientsRefused,
    ReplyError,
    ServerDisconnected,
    SMTPGuardError,
    SMTPTimeout,
    TLSFailed,
    UncertainReason,
)
from smtp_guard.errors import _redact_auth_echo as redact_auth_echo

__all__ = ["MAPPED", "map_error", "reply_error", "tls_error"]

#: The aiosmtplib exception classes :func:`map_error` knows, most specific first.
MAPPED: tuple[type[BaseException], ...] = (
    aiosmtplib.SMTPRecipientsRefused,
    aiosmtplib.SMTPConnectResponseError,
    aiosmtplib.SMTPHeloError,
    aiosmtplib.SMTPAuthenticationError,
    aiosmtplib.SMTPSenderRefused,
    aiosmtplib.SMTPRecipientRefused,
    aiosmtplib.SMTPDataError,
    aiosmtplib.SMTPResponseException,
    aiosmtplib.SMTPConnectTimeoutError,
    aiosmtplib.SMTPReadTimeoutError,
    aiosmtplib.SMTPTimeoutError,
    aiosmtplib.SMTPServerDisconnected,
    aiosmtplib.SMTPConnectError,
    aiosmtplib.SMTPNotSupported,
    aiosmtplib.SMTPException,
)

_PHASE_OF: dict[type[BaseException], Phase] = {
    aiosmtplib.SMTPConnectResponseError: Phase.CONNECT,
    aiosmtplib.SMTPHeloError: Phase.EHLO,
    aiosmtplib.SMTPAuthenticationError: Phase.AUTH,
    aiosmtplib.SMTPSenderRefused: Phase.MAIL,
    aiosmtplib.SMTPRecipientRefused: Phase.RCPT,
    aiosmtplib.SMTPDataError: Phase.DATA,
}

_NOT_SUPPORTED_HINT = (
    "The server does not support an extension this message needs (e.g. SMTPUTF8 for a "
    "non-ASCII address); use ASCII addresses or another server."
)


def _ssl_cause(exc: BaseException) -> ssl.SSLError | None:
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        if isinstance(current, ssl.SSLError):
            return current
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return None


def tls_error(exc: ssl.SSLError) -> TLSFailed:
    """A failed handshake: a certificate problem is permanent, a dropped handshake is not."""
    detail = getattr(exc, "verify_message", None) or getattr(exc, "reason", None) or str(exc)
    if isinstance(exc, ssl.SSLCertVerificationError):
        return TLSFailed(f"TLS certificate check failed: {detail}", permanent=True)
    if isinstance(exc, ssl.SSLEOFError | ssl.SSLZeroReturnError):
        return TLSFailed(
            f"the server closed the connection during the TLS handshake: {detail}",
            permanent=False,
            hint="The TLS handshake was cut short; retry later.",
        )
    return TLSFailed(f"TLS handshake failed: {detail}", permanent=True)


def map_error(
    exc: BaseException,
    *,
    phase: Phase | None = None,
    recipient: str | None = None,
    sender: str | None = None,
    after_final_dot: Iterable[str] | None = None,
) -> SMTPGuardError:
    """The typed error for ``exc``, raised by aiosmtplib, ssl or the OS in ``phase``.

    ``after_final_dot``: the recipients the message was handed over for, when the final "."
    was already written; a lost connection or timeout then becomes :class:`DeliveryUncertain`.
    An :class:`SMTPGuardError` is returned unchanged.
    """
    if isinstance(exc, SMTPGuardError):
        return exc
    valid_reply = isinstance(exc, aiosmtplib.SMTPResponseException) and 400 <= exc.code <= 599
    if after_final_dot is not None and not valid_reply:
        # Dropped, timed out, or garbage instead of the reply: it may have been delivered.
        return DeliveryUncertain(
            f"no reply to the end of the message ({_describe(exc)})",
            recipients=after_final_dot,
            reason=_lost_by(exc),
        )
    if isinstance(exc, aiosmtplib.SMTPRecipientsRefused):
        return _all_refused(exc, sender)
    if isinstance(exc, aiosmtplib.SMTPResponseException):
        return _reply(exc, phase, recipient=recipient, sender=sender)
    ssl_exc = _ssl_cause(exc)
    if ssl_exc is not None:
        return tls_error(ssl_exc)
    return _transport(exc)


def _lost_by(exc: BaseException) -> UncertainReason:
    """How the reply to the final "." was lost, to pick DeliveryUncertain's aiosmtplib class."""
    if isinstance(exc, aiosmtplib.SMTPTimeoutError | asyncio.TimeoutError | TimeoutError):
        return "timeout"
    if isinstance(exc, aiosmtplib.SMTPResponseException):
        return "bad_reply"
    return "disconnected"  # SMTPServerDisconnected, a reset, any other OSError


def _all_refused(exc: aiosmtplib.SMTPRecipientsRefused, sender: str | None) -> SMTPGuardError:
    refused: dict[str, ReplyError] = {}
    for each in exc.recipients:
        mapped = _reply(each, Phase.RCPT, recipient=each.recipient, sender=sender)
        if not isinstance(mapped, ReplyError):
            return mapped
        refused[each.recipient] = mapped
    return RecipientsRefused(refused)


def _reply(
    exc: aiosmtplib.SMTPResponseException,
    phase: Phase | None,
    *,
    recipient: str | None,
    sender: str | None,
) -> SMTPGuardError:
    phase = phase if phase is not None else _PHASE_OF.get(type(exc))
    if isinstance(exc, aiosmtplib.SMTPRecipientRefused):
        recipient = recipient or exc.recipient
    if isinstance(exc, aiosmtplib.SMTPSenderRefused):
        sender = sender or exc.sender
    return reply_error(exc.code, exc.message, phase, recipient, sender=sender)


def reply_error(
    code: int,
    message: str,
    phase: Phase | None,
    recipient: str | None = None,
    *,
    sender: str | None = None,
) -> SMTPGuardError:
    """The typed error for a reply that was not the expected success.

    A 4xx/5xx is classified (:func:`smtp_guard.classify.error_from_reply`). Anything else
    (aiosmtplib's -1 for a malformed or over-long reply, a code outside 200-599, a 1xx-3xx
    where an error or success was due) is a :class:`ProtocolError`: the server broke SMTP.
    """
    if 400 <= code <= 599:
        error: ReplyError = error_from_reply(code, message, phase, recipient, sender=sender)
        return error
    if phase is Phase.AUTH:
        # A server that echoes the line it could not parse echoes the credentials in it.
        message = redact_auth_echo(message)
    where = f" to {phase.value.upper()}" if phase is not None else ""
    shown = message if len(message) <= 200 else message[:199] + "\N{HORIZONTAL ELLIPSIS}"
    if code < 0:
        return ProtocolError(f"invalid reply{where}: {shown}")
    return ProtocolError(f"unexpected reply{where}: {code} {shown}", code=code)


# Order matters: the first class that matches wins (subclasses before their bases).
_TRANSPORT: tuple[
    tuple[type[BaseException] | tuple[type[BaseException], ...], type[SMTPGuardError]], ...
] = (
    (aiosmtplib.SMTPConnectTimeoutError, ConnectTimeout),
    (aiosmtplib.SMTPReadTimeoutError, ReadTimeout),
    ((aiosmtplib.SMTPTimeoutError, asyncio.TimeoutError, TimeoutError), SMTPTimeout),
    (aiosmtplib.SMTPServerDisconnected, ServerDisconnected),
    ((aiosmtplib.SMTPConnectError, OSError), ConnectionFailed),
    ((ValueError, UnicodeError), InvalidInput),
)


def _transport(exc: BaseException) -> SMTPGuardError:
    text = _describe(exc)
    for caught, made in _TRANSPORT:
        if isinstance(exc, caught):
            return made(text)
    if isinstance(exc, aiosmtplib.SMTPNotSupported):
        return ExtensionNotSupported(text, hint=_NOT_SUPPORTED_HINT)
    if isinstance(exc, aiosmtplib.SMTPException):
        return SMTPGuardError(text, permanent=True)
    return ProtocolError(f"unexpected error: {type(exc).__name__}: {text}")


def _describe(exc: BaseException) -> str:
    text = exc.message if isinstance(exc, aiosmtplib.SMTPException) else str(exc)
    return text or type(exc).__name__
