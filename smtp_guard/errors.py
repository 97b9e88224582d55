"""Every error smtp_guard raises, arranged by what the caller should do about it.

The tree (``+`` marks an aiosmtplib or stdlib base mixed in, so existing handlers keep working)::

    SMTPGuardError                       + aiosmtplib.SMTPException
    ├── ReplyError                       + aiosmtplib.SMTPResponseException (.code, .message)
    │   │   The server answered with an error reply. Every instance is also exactly one of:
    │   ├── TransientError               4xx (and 552 "too many recipients" at RCPT): retry later
    │   ├── PermanentError               5xx: do not retry the same thing
    │   │   and, by the phase it answered, + the aiosmtplib class aiosmtplib itself raises there:
    │   │   connect: SMTPConnectResponseError, ehlo: SMTPHeloError, auth: SMTPAuthenticationError,
    │   │   mail: SMTPSenderRefused, rcpt: SMTPRecipientRefused, data/message: SMTPDataError.
    │   │   Category classes below catch both permanences of their category:
    │   ├── AuthError                    fix the credentials or the login set-up
    │   │   ├── AuthRequired             530 5.7.0 Authentication required
    │   │   ├── AuthFailed               535 5.7.8 / 534: wrong credentials, never retried
    │   │   └── AuthTemporaryFailure     454 4.7.0: could not check them now, retry
    │   ├── TLSRequired                  530 5.7.0 Must issue a STARTTLS command first
    │   ├── MailboxUnavailable           550/450: fix or drop the address
    │   │   ├── MailboxNotFound          5.1.1 user unknown
    │   │   ├── MailboxDisabled          5.2.1 disabled, closed
    │   │   ├── MailboxBusy              450 mailbox busy / locked
    │   │   └── UserNotLocal             551 (.forward_path: where the server says to send)
    │   ├── StorageExceeded              552: too big for what is left
    │   │   ├── MailboxFull              5.2.2 / 4.2.2 over quota
    │   │   └── MessageTooLarge          5.3.4 / 5.2.3 over the size limit
    │   ├── InsufficientStorage          452 4.3.1 the server is out of space
    │   ├── TooManyRecipients            452 4.5.3: send the rest in another transaction
    │   ├── RateLimited                  421 4.7.0 / 450 4.2.1 / 4.7.28: slow down
    │   ├── Greylisted                   451 4.7.1 greylisted: retry in minutes
    │   ├── PolicyRejected               554 5.7.1: the server's policy refused it
    │   │   ├── SpamRejected             content judged as spam
    │   │   ├── SenderAuthFailed         SPF / DKIM / DMARC failed
    │   │   ├── Blocklisted              IP, domain or sender listed or blocked (Spamhaus, ...)
    │   │   └── RelayDenied              5.7.1 relaying denied
    │   ├── DomainNotAccepting           521 / 556: the domain takes no mail
    │   ├── HostUnknown                  5.1.2 / 4.4.4: domain or mail host not found
    │   ├── ServiceUnavailable           421: the server is closing the channel
    │   ├── ServerError                  451 4.3.0: local error in processing
    │   ├── CommandSyntaxError           500 / 501: syntax error in command or arguments
    │   ├── InvalidAddress               553 5.1.3: mailbox name not allowed
    │   ├── BadSequence                  503 5.5.1: bad sequence of commands
    │   ├── CommandNotImplemented        502 / 504: not implemented
    │   └── UnclassifiedReply            a reply none of the rules recognise
    ├── RecipientsRefused                + aiosmtplib.SMTPRecipientsRefused: .refused maps
    │                                      each refused recipient to its ReplyError
    ├── ConnectionFailed                 + aiosmtplib.SMTPConnectError, ConnectionError: retry
    │   └── ServerDisconnected           + aiosmtplib.SMTPServerDisconnected
    ├── SMTPTimeout                      + aiosmtplib.SMTPTimeoutError, TimeoutError: retry
    │   ├── ConnectTimeout               + aiosmtplib.SMTPConnectTimeoutError, ConnectionFailed
    │   └── ReadTimeout                  + aiosmtplib.SMTPReadTimeoutError
    ├── TLSFailed                        the TLS handshake or the certificate check failed
    ├── InsecureConnection               credentials would have gone over an unencrypted link
    ├── InvalidInput                     + ValueError: our input was refused before any byte went
    ├── ExtensionNotSupported            + aiosmtplib.SMTPNotSupported: the server lacks an
    │                                      extension this send needs (SMTPUTF8, AUTH, an AUTH
    │                                      mechanism); permanent
    ├── ProtocolError                    + aiosmtplib.SMTPResponseException (.code -1, as
    │                                      aiosmtplib gives for a malformed reply): the server
    │                                      sent something that is not an SMTP reply
    └── DeliveryUncertain                the final "." went out and no reply came back: the
                                           message may have been delivered; not retried unless
                                           the caller opted in. Also the aiosmtplib class
                                           aiosmtplib raises there (see below)

Every error carries ``permanent``, ``retry_after`` (seconds, or None), ``hint`` (one English
sentence for the developer), ``attempts``, ``history`` (earlier attempts' errors, oldest
first) and ``delivered``: the recipients an earlier attempt (or an earlier transaction of the
same attempt) already handed the message to, as the caller wrote them. A send that reached
some recipients and then failed for the rest with a dropped connection, a timeout or another
error that is not a reply says so here (and in ``str()``), so a caller never resends to them::

    one@ ─ attempt 1: 250 ────────────────────────────► delivered
    two@ ─ attempt 1: 451 ── attempt 2: connection lost ─► raised: ServerDisconnected
                                                           .delivered == ("one@...",)

Reply errors add ``code``, ``message`` (the server's text as received, as aiosmtplib
gives it), ``text`` (the same without the enhanced status codes), ``enhanced``, ``category``,
``phase``, ``recipient`` and ``sender``. Every error pickles and unpickles to an equal one.
No error ever holds a password, token or AUTH line: there is no field for one, and in a reply
to AUTH, base64 tokens (a server echoing the refused line) are replaced by ``[redacted]``.

DeliveryUncertain and aiosmtplib's classes. Where we raise DeliveryUncertain, aiosmtplib
raises SMTPServerDisconnected (connection lost after the final ".") or SMTPReadTimeoutError
(no reply in time). A DeliveryUncertain is *also* an instance of that class (``reason`` says
which: ``"disconnected"``, ``"timeout"``; ``"bad_reply"`` for an unreadable reply, which is
only an SMTPException), so ``except aiosmtplib.SMTPServerDisconnected`` / ``except
ConnectionError`` / ``except TimeoutError`` clauses written for aiosmtplib keep catching what
they caught before. The choice, weighed: if it were not, such a clause would silently stop
catching it, and the error would escape code that handled it until now -- typically a loop
over a batch, aborted with the remaining messages unsent, or a worker that crashes instead
of recording the failure. If it is, a caller who blindly resends on ConnectionError may
deliver the message twice -- exactly as they did with aiosmtplib; smtp_guard itself never
resends it (unless ``retry_uncertain=True``). Keeping handlers working loses nothing that
the caller had before; to treat it apart, put ``except DeliveryUncertain`` first. Our own
"retry this" classes (ConnectionFailed, ServerDisconnected, SMTPTimeout, ReadTimeout) are
never DeliveryUncertain, and the reverse.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Iterable, Mapping
from typing import Any, ClassVar, Literal, cast

import aiosmtplib

from smtp_guard._enums import Category, Phase
from smtp_guard._hints import hint_for

__all__ = [
    "AuthError",
    "AuthFailed",
    "AuthRequired",
    "AuthTemporaryFailure",
    "BadSequence",
    "Blocklisted",
    "CommandNotImplemented",
    "CommandSyntaxError",
    "ConnectTimeout",
    "ConnectionFailed",
    "DeliveryUncertain",
    "DomainNotAccepting",
    "ExtensionNotSupported",
    "Greylisted",
    "HostUnknown",
    "InsecureConnection",
    "InsufficientStorage",
    "InvalidAddress",
    "InvalidInput",
    "MailboxBusy",
    "MailboxDisabled",
    "MailboxFull",
    "MailboxNotFound",
    "MailboxUnavailable",
    "MessageTooLarge",
    "PermanentError",
    "PolicyRejected",
    "ProtocolError",
    "RateLimited",
    "ReadTimeout",
    "RecipientsRefused",
    "RelayDenied",
    "ReplyError",
    "SMTPGuardError",
    "SMTPTimeout",
    "SenderAuthFailed",
    "ServerDisconnected",
    "ServerError",
    "ServiceUnavailable",
    "SpamRejected",
    "StorageExceeded",
    "TLSFailed",
    "TLSRequired",
    "TooManyRecipients",
    "TransientError",
    "UnclassifiedReply",
    "UserNotLocal",
    "category_class",
]

_MAX_SHOWN = 300  # characters of server text shown by str(); the full text stays in .message
_MAX_RECIPIENTS_SHOWN = 5  # recipients named by str() (refused, or already delivered)
_UNPRINTABLE = re.compile(r"[\x00-\x08\x0b-\x1f\x7f\ud800-\udfff]")
# A base64 token standing alone (between spaces, quotes or brackets).
_BASE64_TOKEN = re.compile(r"(?<![^\s\"'<>()\[\]:])[A-Za-z0-9+/]{8,}={0,2}(?![^\s\"'<>()\[\],.;:])")
_REDACTED = "[redacted]"  # what replaces a credential echoed in a reply to AUTH


def _redact_auth_echo(text: str) -> str:
    """Blank out base64 tokens in a reply to AUTH.

    Some servers echo the line they refused (sendmail: ``500 5.5.1 Command unrecognized:
    "AGJvYgBodW50ZXIy"``), and that line holds the credentials. A token is replaced when it
    is 12 characters or more (a 7-byte password, padded), decodes as base64 and looks encoded
    rather than like a word: upper and lower case letters and a digit, ``+``, ``/`` or ``=``.
    """

    def replace(match: re.Match[str]) -> str:
        token = match.group(0)
        looks_encoded = (
            any(c.isupper() for c in token)
            and any(c.islower() for c in token)
            and any(c.isdigit() or c in "+/=" for c in token)
        )
        if not looks_encoded or len(token) < 12 or len(token.rstrip("=")) % 4 == 1:
            return token
        try:
            base64.b64decode(token + "=" * (-len(token) % 4), validate=True)
        except ValueError:
            return token
        return _REDACTED

    return _BASE64_TOKEN.sub(replace, text)


def _printable(text: str, limit: int = _MAX_SHOWN) -> str:
    """One line, no control characters or lone surrogates, at most ``limit`` characters."""
    one_line = " / ".join(part.strip() for part in text.splitlines() if part.strip())
    clean = _UNPRINTABLE.sub("\N{REPLACEMENT CHARACTER}", one_line)
    if len(clean) > limit:
        clean = clean[: limit - 1] + "\N{HORIZONTAL ELLIPSIS}"
    return clean


def _angled(address: str) -> str:
    """``<bob@x>`` for a bare address; ``Bob <bob@x>`` as written when it has its own brackets."""
    shown = _printable(address, 200)
    return shown if "<" in shown else f"<{shown}>"


def _delivered_note(delivered: tuple[str, ...]) -> str:
    """`` (already delivered to <a@x>, <b@y>)``, or nothing when nobody got the message."""
    if not delivered:
        return ""
    shown = ", ".join(_angled(r) for r in delivered[:_MAX_RECIPIENTS_SHOWN])
    more = len(delivered) - _MAX_RECIPIENTS_SHOWN
    if more > 0:
        shown += f" and {more} more"
    return f" (already delivered to {shown})"


def _as_text(value: str | bytes) -> str:
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    return str(value)


class SMTPGuardError(aiosmtplib.SMTPException):
    """Root of everything smtp_guard raises."""

    #: Whether doing the same thing again cannot succeed (class default; instances may differ).
    default_permanent: ClassVar[bool] = False
    default_hint: ClassVar[str] = "See the error text for details."
    #: Recipients that already got the message (class default for old pickles).
    delivered: tuple[str, ...] = ()

    def __init__(
        self,
        message: str,
        /,
        *,
        permanent: bool | None = None,
        retry_after: float | None = None,
        hint: str | None = None,
        attempts: int = 1,
        history: Iterable[SMTPGuardError] = (),
        delivered: Iterable[str] = (),
    ) -> None:
        # Not super(): the phase classes of aiosmtplib mixed in below take other arguments.
        aiosmtplib.SMTPException.__init__(self, _as_text(message))
        self.permanent: bool = self.default_permanent if permanent is None else permanent
        self.retry_after: float | None = retry_after
        self.hint: str = self.default_hint if hint is None else hint
        self.attempts: int = attempts
        self.history: tuple[SMTPGuardError, ...] = tuple(history)
        self.delivered = tuple(delivered)

    def __str__(self) -> str:
        return f"{_printable(self.message, 1000)}{_delivered_note(self.delivered)} -- {self.hint}"

    def __repr__(self) -> str:
        return f"{type(self).__name__}({_printable(self.message, 200)!r})"

    def __eq__(self, other: object) -> bool:
        if type(other) is not type(self):
            return NotImplemented
        return bool(self.args == other.args and self.__dict__ == other.__dict__)

    def __hash__(self) -> int:
        # Equal errors (e.g. one and its unpickled copy) must hash alike; the message and the
        # class are part of what __eq__ compares, and always hashable.
        return hash((type(self).__qualname__, self.message))


# --------------------------------------------------------------------------- reply errors

_PHASE_COMPAT: Mapping[Phase, type[aiosmtplib.SMTPResponseException]] = {
    Phase.CONNECT: aiosmtplib.SMTPConnectResponseError,
    Phase.EHLO: aiosmtplib.SMTPHeloError,
    Phase.AUTH: aiosmtplib.SMTPAuthenticationError,
    Phase.MAIL: aiosmtplib.SMTPSenderRefused,
    Phase.RCPT: aiosmtplib.SMTPRecipientRefused,
    Phase.DATA: aiosmtplib.SMTPDataError,
    Phase.MESSAGE: aiosmtplib.SMTPDataError,
}


class ReplyError(SMTPGuardError, aiosmtplib.SMTPResponseException):
    """The server answered with an error reply.

    Instantiating any reply error class returns an instance of a concrete subclass that is
    also :class:`TransientError` or :class:`PermanentError`, and the aiosmtplib class for its
    phase. Prefer :func:`smtp_guard.error_from_reply`, which classifies the reply first.

    Built by hand, ``MailboxFull(452, "4.2.2 Mailbox full", recipient=...)`` works too:

    - permanence is ``permanent=`` if given, else the class's (PermanentError/TransientError),
      else the code's (5xx permanent);
    - ``category=`` picks the most specific class for it, which must lie under the class
      called (``ReplyError(550, "...", category="mailbox_full")`` is a MailboxFull;
      ``AuthError`` without a category is an AuthFailed); a category outside it is a
      ValueError;
    - without ``enhanced=``/``text=``, the enhanced status code is split off the message;
    - a third positional argument is aiosmtplib's: the sender at MAIL, the recipient at RCPT.
      So every reply error is rebuilt from its ``args`` (``type(e)(*e.args)``). Celery's JSON
      result backend rebuilds the class by name, without the phase: class, code and text
      come back, and the address stays in ``args`` only (it could be either).
    """

    #: The category this class stands for.
    category_default: ClassVar[Category] = Category.OTHER
    #: Set on the generated concrete classes: the class they were made for, and their phase.
    _made_for: ClassVar[type[ReplyError] | None] = None
    _made_phase: ClassVar[Phase | None] = None

    def __new__(
        cls,
        code: int,
        message: str | bytes = "",
        address: str | None = None,
        /,
        *,
        phase: Phase | str | None = None,
        permanent: bool | None = None,
        category: Category | str | None = None,
        **fields: Any,
    ) -> ReplyError:
        concrete = _pick_class(cls, code, phase, permanent, category)
        # super() from the concrete class: its phase class may be an OSError
        # (SMTPConnectResponseError), whose own __new__ must be the one called.
        made: ReplyError = super(ReplyError, concrete).__new__(concrete)
        if not issubclass(concrete, cls):
            # A generated class rebuilt with another permanence or phase: a sibling class,
            # so Python will not call __init__ on what we return. Do it here.
            made.__init__(  # type: ignore[misc]
                code,
                message,
                address,
                phase=phase,
                permanent=permanent,
                category=category,
                **fields,
            )
        return made

    def __init__(
        self,
        code: int,
        message: str | bytes = "",
        address: str | None = None,
        /,
        *,
        enhanced: str | None = None,
        text: str | None = None,
        category: Category | str | None = None,
        phase: Phase | str | None = None,
        recipient: str | None = None,
        sender: str | None = None,
        permanent: bool | None = None,
        retry_after: float | None = None,
        hint: str | None = None,
        attempts: int = 1,
        history: Iterable[SMTPGuardError] = (),
        delivered: Iterable[str] = (),
    ) -> None:
        message = _as_text(message)
        self.phase: Phase | None = type(self)._made_phase if phase is None else Phase.coerce(phase)
        # aiosmtplib's third argument (and our own ``args`` at MAIL and RCPT): the sender at
        # MAIL, the recipient at RCPT -- so ``type(e)(*e.args)`` rebuilds us. Without a phase
        # (rebuilt by the base class's name, as Celery does) it could be either: kept in args.
        if address and self.phase is Phase.MAIL:
            sender = address if sender is None else sender
        elif address and self.phase is Phase.RCPT:
            recipient = address if recipient is None else recipient
        if self.phase is Phase.AUTH:
            message = _redact_auth_echo(message)
            text = None if text is None else _redact_auth_echo(text)
        self.category: Category = (
            type(self).category_default if category is None else Category(category)
        )
        permanent = isinstance(self, PermanentError) if permanent is None else permanent
        SMTPGuardError.__init__(
            self,
            message,
            permanent=permanent,
            retry_after=retry_after,
            hint=hint_for(self.category) if hint is None else hint,
            attempts=attempts,
            history=history,
            delivered=delivered,
        )
        self.code: int = int(code)
        if enhanced is None and text is None:
            # Built by hand, e.g. MailboxFull(452, "4.2.2 Mailbox full"): split it like a reply.
            from smtp_guard.replies import split_enhanced  # noqa: PLC0415 (replies imports us)

            enhanced, text = split_enhanced(message)
        self.enhanced: str | None = enhanced
        self.text: str = message if text is None else text
        self.recipient: str | None = recipient
        self.sender: str | None = sender
        if self.phase is Phase.RCPT:
            self.args = (self.code, message, recipient or "")
        elif self.phase is Phase.MAIL:
            self.args = (self.code, message, sender or "")
        elif address:
            self.args = (self.code, message, address)
        else:
            self.args = (self.code, message)

    def __str__(self) -> str:
        parts = [str(self.code)]
        if self.enhanced and not self.text.lstrip().startswith(self.enhanced):
            parts.append(self.enhanced)
        shown = _printable(self.text)
        if shown:
            parts.append(shown)
        where = []
        if self.recipient:
            where.append(f"recipient {_angled(self.recipient)}")
        if self.phase is not None:
            where.append(f"at {self.phase.value.upper()}")
        line = " ".join(parts)
        if where:
            line += f" ({', '.join(where)})"
        return f"{line}{_delivered_note(self.delivered)} -- {self.hint}"

    def __repr__(self) -> str:
        fields = [str(self.code), repr(_printable(self.message, 200))]
        if self.phase is not None:
            fields.append(f"phase={self.phase.value!r}")
        if self.recipient is not None:
            fields.append(f"recipient={self.recipient!r}")
        fields.append(f"permanent={self.permanent}")
        return f"{type(self).__name__}({', '.join(fields)})"

    def __reduce__(self) -> tuple[Any, ...]:
        base = type(self)._made_for or type(self)
        return (
            _restore_reply_error,
            (base, self.permanent, self.phase, self.args),
            self.__dict__.copy(),
        )


class TransientError(ReplyError):
    """A 4xx reply (or a 552 'too many recipients' at RCPT): the same thing may succeed later."""


class PermanentError(ReplyError):
    """A 5xx reply: the same thing will fail again; change something first."""

    default_permanent = True


def _pick_class(
    cls: type[ReplyError],
    code: int,
    phase: Phase | str | None,
    permanent: bool | None,
    category: Category | str | None,
) -> type[ReplyError]:
    """The concrete class for an instance of ``cls`` built with these arguments.

    The category class is the most specific one for ``category`` (``AuthError`` with the
    default category gives ``AuthFailed``); a category outside ``cls`` is a ValueError.
    Permanence comes from ``permanent``, else from ``cls``, else from the code (5xx).
    """
    made_for = cls.__dict__.get("_made_for")
    base: type[ReplyError] = cls if made_for is None else made_for
    if phase is None:
        phase = cls._made_phase if made_for is not None else None
    if permanent is None:
        permanent = issubclass(cls, PermanentError) or (
            not issubclass(cls, TransientError) and int(code) >= 500
        )
    if base in (ReplyError, TransientError, PermanentError):
        wanted = category_class(Category.OTHER if category is None else category)
    else:
        wanted = category_class(base.category_default if category is None else category)
        if not issubclass(wanted, base):
            raise ValueError(
                f"category {Category(category)!s} belongs to {wanted.__name__}, "
                f"not to {base.__name__}"
            )
    return _concrete(wanted, permanent, Phase.coerce(phase))


_CONCRETE: dict[tuple[type[ReplyError], bool, Phase | None], type[ReplyError]] = {}


def _concrete(base: type[ReplyError], permanent: bool, phase: Phase | None) -> type[ReplyError]:
    """The class for instances of ``base`` with this permanence and phase (made once)."""
    key = (base, permanent, phase)
    found = _CONCRETE.get(key)
    if found is not None:
        return found
    bases: tuple[type, ...] = (base, PermanentError if permanent else TransientError)
    compat = _PHASE_COMPAT.get(phase) if phase is not None else None
    if compat is not None:
        bases += (compat,)
    namespace = {
        "_made_for": base,
        "_made_phase": phase,
        "__module__": base.__module__,
        "__qualname__": base.__qualname__,
        "__doc__": base.__doc__,
    }
    made = cast("type[ReplyError]", type(base.__name__, bases, namespace))
    return _CONCRETE.setdefault(key, made)


def _restore_reply_error(
    base: type[ReplyError], permanent: bool, phase: Phase | None, args: tuple[Any, ...]
) -> ReplyError:
    cls = _concrete(base, permanent, phase)
    error: ReplyError = cls.__new__(cls, args[0] if args else 0)
    error.args = args
    return error


class AuthError(ReplyError):
    """Logging in did not work; fix the credentials or the login set-up."""

    category_default = Category.AUTH_FAILED


class AuthRequired(AuthError):
    """530 5.7.0: the server wants a login before it takes mail."""

    category_default = Category.AUTH_REQUIRED


class AuthFailed(AuthError):
    """535 5.7.8 / 534: the credentials were refused. Never retried with the same ones."""

    category_default = Category.AUTH_FAILED


class AuthTemporaryFailure(AuthError):
    """454 4.7.0: the server could not check the credentials now; retrying is fine."""

    category_default = Category.AUTH_TEMPORARY


class TLSRequired(ReplyError):
    """530 5.7.0 'Must issue a STARTTLS command first': encrypt the connection."""

    category_default = Category.TLS_REQUIRED


class MailboxUnavailable(ReplyError):
    """550 / 450: the recipient's mailbox cannot take the message."""

    category_default = Category.MAILBOX_UNAVAILABLE


class MailboxNotFound(MailboxUnavailable):
    """5.1.1: no such user or mailbox."""

    category_default = Category.MAILBOX_UNKNOWN


class MailboxDisabled(MailboxUnavailable):
    """5.2.1: the mailbox exists but is disabled or closed."""

    category_default = Category.MAILBOX_DISABLED


class MailboxBusy(MailboxUnavailable):
    """450: the mailbox is busy or locked for now."""

    category_default = Category.MAILBOX_BUSY


class UserNotLocal(MailboxUnavailable):
    """551: the user is not hosted here; ``forward_path`` is where the server says to send."""

    category_default = Category.USER_NOT_LOCAL

    @property
    def forward_path(self) -> str | None:
        """The address in the server's 'please try <forward-path>', if it gave one."""
        match = re.search(r"<([^<>\s]+@[^<>\s]+)>", self.text) or re.search(
            r"\btry\s+([^\s<>]+@[^\s<>]+?)[.,;]?(?:\s|$)", self.text, re.IGNORECASE
        )
        return match.group(1) if match else None


class StorageExceeded(ReplyError):
    """552: the message does not fit what the server or mailbox has left."""

    category_default = Category.STORAGE_EXCEEDED


class MailboxFull(StorageExceeded):
    """5.2.2 / 4.2.2: the recipient's mailbox is over quota."""

    category_default = Category.MAILBOX_FULL


class MessageTooLarge(StorageExceeded):
    """5.3.4 / 5.2.3: the message is over the size limit."""

    category_default = Category.MESSAGE_TOO_LARGE


class InsufficientStorage(ReplyError):
    """452 4.3.1: the server is short of storage."""

    category_default = Category.INSUFFICIENT_STORAGE


class TooManyRecipients(ReplyError):
    """452 4.5.3 (or 552 at RCPT): the rest of the recipients go in another transaction."""

    category_default = Category.TOO_MANY_RECIPIENTS


class RateLimited(ReplyError):
    """421 4.7.0 / 450 4.2.1 / 451 4.7.28 / 4.7.0 throttling: sending too fast."""

    category_default = Category.RATE_LIMITED


class Greylisted(ReplyError):
    """451 4.7.1 greylisted: the first attempt is deferred on purpose; retry in minutes."""

    category_default = Category.GREYLISTED


class PolicyRejected(ReplyError):
    """554 5.7.1 and friends: the server's policy refused the message."""

    category_default = Category.POLICY_REJECTED


class SpamRejected(PolicyRejected):
    """The content was judged as spam."""

    category_default = Category.SPAM_REJECTED


class SenderAuthFailed(PolicyRejected):
    """SPF, DKIM or DMARC failed for the sending domain."""

    category_default = Category.SENDER_AUTH_FAILED


class Blocklisted(PolicyRejected):
    """The sending IP address, domain or sender is on a blocklist, or blocked by the provider."""

    category_default = Category.BLOCKLISTED


class RelayDenied(PolicyRejected):
    """5.7.1 relaying denied: this server does not forward mail for you."""

    category_default = Category.RELAY_DENIED


class DomainNotAccepting(ReplyError):
    """521 / 556 (RFC 7504): the domain does not accept mail at all."""

    category_default = Category.DOMAIN_NOT_ACCEPTING


class HostUnknown(ReplyError):
    """5.1.2 / 4.4.4: the recipient's domain or its mail host cannot be found."""

    category_default = Category.HOST_UNKNOWN


class ServiceUnavailable(ReplyError):
    """421: the server is not available and is closing the transmission channel."""

    category_default = Category.SERVICE_UNAVAILABLE


class ServerError(ReplyError):
    """451: the server had a local error in processing."""

    category_default = Category.SERVER_ERROR


class CommandSyntaxError(ReplyError):
    """500 / 501: the server did not understand a command or its arguments."""

    category_default = Category.SYNTAX_ERROR


class InvalidAddress(ReplyError):
    """553 5.1.3: the mailbox name is not allowed (bad syntax or not permitted)."""

    category_default = Category.BAD_ADDRESS


class BadSequence(ReplyError):
    """503 5.5.1: commands came in the wrong order."""

    category_default = Category.BAD_SEQUENCE


class CommandNotImplemented(ReplyError):
    """502 / 504: the command or one of its parameters is not implemented."""

    category_default = Category.NOT_IMPLEMENTED


class UnclassifiedReply(ReplyError):
    """An error reply that none of the rules recognised."""

    category_default = Category.OTHER


_BY_CATEGORY: Mapping[Category, type[ReplyError]] = {
    cls.category_default: cls
    for cls in (
        AuthRequired,
        AuthFailed,
        AuthTemporaryFailure,
        TLSRequired,
        MailboxUnavailable,
        MailboxNotFound,
        MailboxDisabled,
        MailboxBusy,
        UserNotLocal,
        StorageExceeded,
        MailboxFull,
        MessageTooLarge,
        InsufficientStorage,
        TooManyRecipients,
        RateLimited,
        Greylisted,
        PolicyRejected,
        SpamRejected,
        SenderAuthFailed,
        Blocklisted,
        RelayDenied,
        DomainNotAccepting,
        HostUnknown,
        ServiceUnavailable,
        ServerError,
        CommandSyntaxError,
        InvalidAddress,
        BadSequence,
        CommandNotImplemented,
        UnclassifiedReply,
    )
}


def category_class(category: Category | str) -> type[ReplyError]:
    """The error class that stands for ``category`` (e.g. ``mailbox_full`` -> MailboxFull)."""
    return _BY_CATEGORY[Category(category)]


# --------------------------------------------------------------------------- other errors


class RecipientsRefused(SMTPGuardError, aiosmtplib.SMTPRecipientsRefused):
    """Recipients were refused. ``refused`` maps each to its typed :class:`ReplyError`.

    Raised when every recipient was refused (as aiosmtplib raises SMTPRecipientsRefused), and
    by ``SendResult.raise_for_refused()`` when any was. ``delivered`` lists who got the message.
    """

    default_hint = "Some recipients were refused; see each recipient's error for what to do."

    def __init__(
        self,
        refused: Mapping[str, ReplyError] | str,
        /,
        *,
        delivered: Iterable[str] = (),
        attempts: int = 1,
        history: Iterable[SMTPGuardError] = (),
    ) -> None:
        # A text instead of the mapping: rebuilt from a serialised form that kept only the
        # text (Celery's JSON results carry ``repr(refused)``); the text is kept as it came.
        described = refused if isinstance(refused, str) else None
        self.refused: dict[str, ReplyError] = {} if isinstance(refused, str) else dict(refused)
        errors = list(self.refused.values())
        transient = [e.retry_after for e in errors if not e.permanent]
        hints = [e for e in transient if e is not None]
        SMTPGuardError.__init__(
            self,
            described if described is not None else f"{len(self.refused)} recipient(s) refused",
            permanent=bool(errors) and not transient,
            retry_after=min(hints) if hints else None,
            attempts=attempts,
            history=history,
            delivered=delivered,
        )
        self.recipients: list[aiosmtplib.SMTPRecipientRefused] = [
            cast(aiosmtplib.SMTPRecipientRefused, e)
            for e in errors
            if isinstance(e, aiosmtplib.SMTPRecipientRefused)
        ]
        self.args = (self.refused,) if described is None else (described,)

    def __str__(self) -> str:
        if not self.refused and self.args and isinstance(self.args[0], str):
            line = f"recipient(s) refused: {_printable(self.args[0], 1000)}"
            return f"{line}{_delivered_note(self.delivered)} -- {self.hint}"
        # One line (log-friendly); each recipient's own hint is on its error in ``refused``.
        shown = [
            f"{_angled(r)} {err.code}"
            + (f" {err.enhanced}" if err.enhanced else "")
            + (f" {_printable(err.text, 80)}" if err.text.strip() else "")
            for r, err in list(self.refused.items())[:_MAX_RECIPIENTS_SHOWN]
        ]
        more = len(self.refused) - len(shown)
        if more > 0:
            shown.append(f"and {more} more")
        line = f"{len(self.refused)} recipient(s) refused: " + "; ".join(shown)
        return f"{line}{_delivered_note(self.delivered)} -- {self.hint}"

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), self.args, self.__dict__.copy())


class ConnectionFailed(SMTPGuardError, aiosmtplib.SMTPConnectError):
    """Could not connect, or the connection broke: transient, retried."""

    default_hint = "Check the host and port, and that the server is reachable; retry later."


class ServerDisconnected(ConnectionFailed, aiosmtplib.SMTPServerDisconnected):
    """The server closed the connection unexpectedly (before the message was handed over)."""

    default_hint = "The server dropped the connection; retry on a new connection."


class SMTPTimeout(SMTPGuardError, aiosmtplib.SMTPTimeoutError):
    """A network operation took longer than the timeout: transient, retried."""

    default_hint = "The server did not answer in time; retry later or raise the timeout."


class ConnectTimeout(SMTPTimeout, ConnectionFailed, aiosmtplib.SMTPConnectTimeoutError):
    """Connecting took longer than the timeout."""

    default_hint = "The server did not accept the connection in time; check host, port, firewall."


class ReadTimeout(SMTPTimeout, aiosmtplib.SMTPReadTimeoutError):
    """The server did not reply in time."""


class TLSFailed(SMTPGuardError):
    """The TLS handshake or certificate check failed. A failed certificate check is permanent."""

    default_permanent = True
    default_hint = (
        "Check the server's certificate and hostname, or pass a tls_context/cert_bundle "
        "that trusts it."
    )


class InsecureConnection(SMTPGuardError):
    """Credentials would have been sent without encryption; nothing was sent.

    Use TLS (``use_tls=True`` or a server that offers STARTTLS), or pass
    ``allow_insecure_auth=True`` for a trusted local relay.
    """

    default_permanent = True
    default_hint = (
        "Use use_tls=True or start_tls=True, or pass allow_insecure_auth=True only for a "
        "trusted local relay."
    )


class InvalidInput(SMTPGuardError, ValueError):
    """An address or argument was refused before anything was sent (our side's mistake)."""

    default_permanent = True
    default_hint = "Fix the argument named in the message; nothing was sent."


class ProtocolError(SMTPGuardError, aiosmtplib.SMTPResponseException):
    """The server sent something that is not a valid SMTP reply (the server's mistake).

    Also an ``aiosmtplib.SMTPResponseException``, which aiosmtplib raises for a malformed or
    over-long reply, so handlers written for it keep catching it. ``code`` is -1 as there
    (aiosmtplib's "invalid response"), or the reply code when a well-formed reply came where
    it makes no sense (a 354 where a 250 was due). ``ProtocolError("text")`` and
    ``ProtocolError(code, "text")`` (its ``args``, as aiosmtplib's) both work.
    """

    default_hint = "The server's reply was not valid SMTP; retry, and report it to its operator."

    def __init__(
        self,
        code_or_message: int | str,
        message: str | None = None,
        /,
        *,
        code: int | None = None,
        permanent: bool | None = None,
        retry_after: float | None = None,
        hint: str | None = None,
        attempts: int = 1,
        history: Iterable[SMTPGuardError] = (),
        delivered: Iterable[str] = (),
    ) -> None:
        if isinstance(code_or_message, str | bytes):
            reply_code, text = (-1 if code is None else code), _as_text(code_or_message)
        else:
            reply_code, text = int(code_or_message), "" if message is None else message
        SMTPGuardError.__init__(
            self,
            text,
            permanent=permanent,
            retry_after=retry_after,
            hint=hint,
            attempts=attempts,
            history=history,
            delivered=delivered,
        )
        self.code: int = int(reply_code)
        self.args = (self.code, self.message)


class ExtensionNotSupported(SMTPGuardError, aiosmtplib.SMTPNotSupported):
    """The server does not offer an extension this send needs: permanent for this server.

    ``extension`` names it (``"SMTPUTF8"``, ``"AUTH"``, ``"AUTH XOAUTH2"``...). Raised before
    the command that would need it, so nothing of the message was sent. Also an
    ``aiosmtplib.SMTPNotSupported``, which aiosmtplib raises for a missing SMTPUTF8.
    """

    default_permanent = True
    default_hint = (
        "The server lacks an extension this message or login needs; change the message "
        "(e.g. ASCII addresses), the login settings, or the server."
    )

    def __init__(
        self,
        message: str,
        /,
        *,
        extension: str | None = None,
        hint: str | None = None,
        attempts: int = 1,
        history: Iterable[SMTPGuardError] = (),
        delivered: Iterable[str] = (),
    ) -> None:
        super().__init__(
            message,
            permanent=True,
            hint=hint,
            attempts=attempts,
            history=history,
            delivered=delivered,
        )
        self.extension: str | None = extension


#: How the reply to the final "." was lost: ``"disconnected"``, ``"timeout"`` or
#: ``"bad_reply"`` (something that is not an SMTP reply); None when not said.
UncertainReason = Literal["disconnected", "timeout", "bad_reply"]


class DeliveryUncertain(SMTPGuardError):
    """The final '.' of the message was sent and no reply came: it may have been delivered.

    ``recipients`` are the recipients concerned. Not retried unless the policy says
    ``retry_uncertain=True``, since a retry could deliver the message twice.

    ``reason`` says how the reply was lost. With ``"disconnected"`` the instance is also an
    ``aiosmtplib.SMTPServerDisconnected`` (and ``ConnectionError``), with ``"timeout"`` an
    ``aiosmtplib.SMTPReadTimeoutError`` (and ``TimeoutError``): what aiosmtplib raises in the
    same place, so handlers written for it keep catching it (the module docstring says why).
    """

    default_hint = (
        "The message may or may not have arrived; check with the recipients before "
        "sending it again."
    )

    def __new__(
        cls,
        message: str = "",
        /,
        *,
        reason: UncertainReason | None = None,
        **fields: Any,
    ) -> DeliveryUncertain:
        concrete = cls
        if cls is DeliveryUncertain and reason is not None:
            concrete = _UNCERTAIN_COMPAT.get(reason, cls)
        # super() from the variant: its aiosmtplib class may be an OSError, whose __new__ runs.
        made: DeliveryUncertain = super(DeliveryUncertain, concrete).__new__(concrete)
        return made

    def __init__(
        self,
        message: str,
        /,
        *,
        recipients: Iterable[str] = (),
        reason: UncertainReason | None = None,
        retry_after: float | None = None,
        attempts: int = 1,
        history: Iterable[SMTPGuardError] = (),
        delivered: Iterable[str] = (),
    ) -> None:
        super().__init__(
            message,
            permanent=False,
            retry_after=retry_after,
            attempts=attempts,
            history=history,
            delivered=delivered,
        )
        self.recipients: tuple[str, ...] = tuple(recipients)
        self.reason: UncertainReason | None = reason

    def __reduce__(self) -> tuple[Any, ...]:
        return (_restore_uncertain, (self.message, self.reason), self.__dict__.copy())


def _restore_uncertain(message: str, reason: UncertainReason | None) -> DeliveryUncertain:
    return DeliveryUncertain(message, reason=reason)


def _uncertain_variant(compat: type[aiosmtplib.SMTPException]) -> type[DeliveryUncertain]:
    """DeliveryUncertain that is also ``compat`` (named like it, pickled through it)."""
    namespace = {
        "__module__": __name__,
        "__qualname__": DeliveryUncertain.__qualname__,
        "__doc__": DeliveryUncertain.__doc__,
    }
    made = type(DeliveryUncertain.__name__, (DeliveryUncertain, compat), namespace)
    return cast("type[DeliveryUncertain]", made)


_UNCERTAIN_COMPAT: Mapping[str, type[DeliveryUncertain]] = {
    "disconnected": _uncertain_variant(aiosmtplib.SMTPServerDisconnected),
    "timeout": _uncertain_variant(aiosmtplib.SMTPReadTimeoutError),
}
