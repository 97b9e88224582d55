"""The two vocabularies every layer shares: where in the dialogue a reply came, and what it means.

Sans-IO: no asyncio, no aiosmtplib.
"""

from __future__ import annotations

import enum
import sys

if sys.version_info >= (3, 11):  # pragma: no cover - depends on the interpreter
    from enum import StrEnum
else:  # pragma: no cover - depends on the interpreter

    class StrEnum(str, enum.Enum):
        """Backport of :class:`enum.StrEnum` for Python 3.10."""

        def __str__(self) -> str:
            return str(self.value)


class Phase(StrEnum):
    """The step of the SMTP dialogue that a reply answers (RFC 5321 section 3)."""

    CONNECT = "connect"  #: the greeting after the TCP (or TLS) connection opened
    EHLO = "ehlo"
    STARTTLS = "starttls"
    AUTH = "auth"
    MAIL = "mail"  #: MAIL FROM
    RCPT = "rcpt"  #: RCPT TO, one reply per recipient
    DATA = "data"  #: the reply to the DATA command itself (354 expected)
    MESSAGE = "message"  #: the reply after the final "." of the message content
    QUIT = "quit"

    @classmethod
    def coerce(cls, value: Phase | str | None) -> Phase | None:
        """Accept a Phase, its string value (any case), or None."""
        if value is None or isinstance(value, Phase):
            return value
        try:
            return cls(value.strip().lower())
        except ValueError:
            names = ", ".join(p.value for p in cls)
            raise ValueError(f"unknown SMTP phase {value!r}; expected one of: {names}") from None


class Category(StrEnum):
    """What a reply means for the sender. Values are stable strings (safe to store or log)."""

    AUTH_REQUIRED = "auth_required"
    AUTH_FAILED = "auth_failed"
    AUTH_TEMPORARY = "auth_temporary"
    TLS_REQUIRED = "tls_required"
    MAILBOX_UNAVAILABLE = "mailbox_unavailable"
    MAILBOX_UNKNOWN = "mailbox_unknown"
    MAILBOX_DISABLED = "mailbox_disabled"
    MAILBOX_BUSY = "mailbox_busy"
    USER_NOT_LOCAL = "user_not_local"
    STORAGE_EXCEEDED = "storage_exceeded"
    MAILBOX_FULL = "mailbox_full"
    MESSAGE_TOO_LARGE = "message_too_large"
    INSUFFICIENT_STORAGE = "insufficient_storage"
    TOO_MANY_RECIPIENTS = "too_many_recipients"
    RATE_LIMITED = "rate_limited"
    GREYLISTED = "greylisted"
    SPAM_REJECTED = "spam_rejected"
    POLICY_REJECTED = "policy_rejected"
    SENDER_AUTH_FAILED = "sender_auth_failed"
    RELAY_DENIED = "relay_denied"
    BLOCKLISTED = "blocklisted"
    DOMAIN_NOT_ACCEPTING = "domain_not_accepting"
    HOST_UNKNOWN = "host_unknown"
    SERVICE_UNAVAILABLE = "service_unavailable"
    SERVER_ERROR = "server_error"
    SYNTAX_ERROR = "syntax_error"
    BAD_ADDRESS = "bad_address"
    BAD_SEQUENCE = "bad_sequence"
    NOT_IMPLEMENTED = "not_implemented"
    OTHER = "other"
