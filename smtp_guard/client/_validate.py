"""Input checks done before any byte is sent: addresses, options, message, arguments.

Every refusal is an :class:`~smtp_guard.errors.InvalidInput` (also a ``ValueError``, as
aiosmtplib raises for bad arguments) naming the argument and what is wrong with it.

Addresses are checked strictly. aiosmtplib passes an address through
:func:`email.utils.parseaddr`, which keeps the first address it finds and drops the rest, so
``"a@b.org>\\r\\nRCPT TO:<evil@x.org>"`` would be sent to ``a@b.org``; here anything besides one
mailbox (optionally ``Display Name <mailbox>``) is refused.
"""

from __future__ import annotations

import email.message
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from aiosmtplib.email import extract_recipients, extract_sender

from smtp_guard.errors import InvalidInput

__all__ = [
    "Envelope",
    "check_address",
    "check_options",
    "mailbox_of",
    "make_envelope",
]

Message = email.message.EmailMessage | email.message.Message | str | bytes

# RFC 5321 4.1.2 / RFC 5322 3.2.3, extended to UTF-8 (RFC 6531) for non-ASCII letters.
_ATEXT = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~\-\u0080-\U0010ffff]"
_DOT_ATOM = rf"{_ATEXT}+(?:\.{_ATEXT}+)*"
_QUOTED = r'"(?:[\x20\x21\x23-\x5b\x5d-\x7e\u0080-\U0010ffff]|\\[\x20-\x7e])*"'
_LABEL = (
    r"[A-Za-z0-9\u0080-\U0010ffff](?:[A-Za-z0-9\-\u0080-\U0010ffff]*[A-Za-z0-9\u0080-\U0010ffff])?"
)
_DOMAIN = rf"{_LABEL}(?:\.{_LABEL})*\.?"
_LITERAL = r"\[[\x21-\x5a\x5e-\x7e]+\]"
_MAILBOX = re.compile(rf"(?:{_DOT_ATOM}|{_QUOTED})@(?:{_DOMAIN}|{_LITERAL})")
_DISPLAY = re.compile(r"^(?P<name>[^<>\"]*|\"(?:[^\"\\]|\\.)*\")\s*<(?P<addr>[^<>]*)>$")
# C0 and C1 controls and the Unicode line/paragraph separators: line breaks to some software.
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")
_OPTION = re.compile(r"^[\x21-\x7e]+$")
_MAX_LOCAL = 64  # RFC 5321 4.5.3.1.1
_MAX_PATH = 254  # 256 octets of path minus the angle brackets


def _shown(value: str) -> str:
    return repr(value if len(value) <= 80 else value[:77] + "...")


def mailbox_of(address: str) -> str:
    """The bare mailbox of ``address`` (``Name <a@b.org>`` -> ``a@b.org``), unchecked."""
    match = _DISPLAY.match(address.strip())
    return match.group("addr").strip() if match else address.strip()


#: Addresses already found valid (``(address, allow_empty)`` -> mailbox): most programs send
#: from the same few addresses to recurring ones, and the checks below cost ~1.3 us each.
#: Only exact ``str`` values, only successes, and only addresses of an ordinary length are
#: kept (a display name may be any length; 4096 huge keys would pin a lot of memory); emptied
#: when full.
_CHECKED: dict[tuple[str, bool], str] = {}
_CHECKED_MAX = 4096
_CHECKED_LONGEST = 512


def check_address(address: object, what: str, *, allow_empty: bool = False) -> str:
    """Check one address strictly and return its bare mailbox, or raise InvalidInput."""
    if type(address) is str and len(address) <= _CHECKED_LONGEST:
        known = _CHECKED.get((address, allow_empty))
        if known is not None:
            return known
        mailbox = _check_address(address, what, allow_empty)
        if len(_CHECKED) >= _CHECKED_MAX:
            _CHECKED.clear()
        _CHECKED[address, allow_empty] = mailbox
        return mailbox
    return _check_address(address, what, allow_empty)


def _check_address(address: object, what: str, allow_empty: bool) -> str:
    if not isinstance(address, str):
        raise InvalidInput(f"{what} must be a str, got {type(address).__name__}")
    if _CONTROL.search(address):
        raise InvalidInput(
            f"{what} {_shown(address)} contains a control character (CR, LF, NUL, ...); "
            "refused so that no SMTP command can be injected"
        )
    stripped = address.strip()
    if stripped in ("", "<>"):
        if allow_empty:
            return ""
        raise InvalidInput(f"{what} is empty")
    match = _DISPLAY.match(stripped)
    mailbox = match.group("addr").strip() if match else stripped
    if mailbox == "" and allow_empty:
        return ""
    if not _MAILBOX.fullmatch(mailbox):
        raise InvalidInput(
            f"{what} {_shown(address)} is not one valid address (expected local@domain or "
            "'Name <local@domain>')"
        )
    if not mailbox.isascii() and any(ch.isspace() for ch in mailbox if ch > "\x7f"):
        raise InvalidInput(
            f"{what} {_shown(address)} contains a non-ASCII space (e.g. U+00A0); no address has one"
        )
    local = mailbox.rsplit("@", 1)[0]
    if len(local.encode("utf-8")) > _MAX_LOCAL:
        raise InvalidInput(f"{what} {_shown(address)}: the local part is over 64 octets")
    if len(mailbox.encode("utf-8")) > _MAX_PATH:
        raise InvalidInput(f"{what} {_shown(address)} is over 254 octets")
    return mailbox


def check_options(options: object, what: str) -> tuple[str, ...]:
    """ESMTP parameters such as ``BODY=8BITMIME``: printable ASCII, no spaces, each."""
    if options is None:
        return ()
    if isinstance(options, str | bytes):
        raise InvalidInput(f"{what} must be a sequence of str (got one {type(options).__name__})")
    if not isinstance(options, Iterable):
        raise InvalidInput(f"{what} must be a sequence of str")
    items: list[str] = []
    for item in options:
        if not isinstance(item, str) or not _OPTION.match(item):
            raise InvalidInput(
                f"{what}: {item!r} is not an ESMTP parameter (printable ASCII without spaces)"
            )
        items.append(item)
    return tuple(items)


@dataclass(frozen=True, slots=True)
class Envelope:
    """A checked message and envelope, ready for one or more transactions.

    ``sender`` and ``recipients`` are bare mailboxes (``recipients`` without duplicates, in
    the caller's order); ``original`` maps each back to the string the caller gave, which is
    the key used in results (as aiosmtplib does).
    """

    message: Message
    sender: str
    recipients: tuple[str, ...]
    original: dict[str, str]
    mail_options: tuple[str, ...] = ()
    rcpt_options: tuple[str, ...] = ()

    def given(self, mailbox: str) -> str:
        """``mailbox`` as the caller wrote it (``Bob <bob@x.org>``, or the bare address taken
        from the message's headers): the one name of a recipient in results and errors, as
        aiosmtplib keys its ``errors`` and sets ``SMTPRecipientRefused.recipient``."""
        return self.original.get(mailbox, mailbox)

    @property
    def needs_smtputf8(self) -> bool:
        """Whether an address is non-ASCII, so the server must offer SMTPUTF8."""
        return not (self.sender.isascii() and all(map(str.isascii, self.recipients)))


def make_envelope(
    message: object,
    sender: object,
    recipients: object,
    mail_options: object = None,
    rcpt_options: object = None,
) -> Envelope:
    """Check everything :func:`smtp_guard.send` was given about the message; no I/O."""
    message, sender, recipients = _from_message(message, sender, recipients)
    if isinstance(recipients, str):
        recipients = [recipients]
    if not isinstance(recipients, Sequence) or not recipients:
        raise InvalidInput("No recipients given (recipients is empty or not a sequence of str)")
    checked_sender = check_address(sender, "sender", allow_empty=True)
    original: dict[str, str] = {}
    for index, recipient in enumerate(recipients):
        mailbox = check_address(recipient, f"recipients[{index}]")
        original.setdefault(mailbox, str(recipient))
    return Envelope(
        message=message,
        sender=checked_sender,
        recipients=tuple(original),
        original=original,
        mail_options=check_options(mail_options, "mail_options"),
        rcpt_options=check_options(rcpt_options, "rcpt_options"),
    )


def _from_message(
    message: object, sender: object, recipients: object
) -> tuple[Message, object, object]:
    """Check the message's type; take sender/recipients from its headers when not given."""
    if not isinstance(message, email.message.Message | str | bytes | bytearray):
        raise InvalidInput(
            "message must be an email.message.EmailMessage, Message, str or bytes, "
            f"got {type(message).__name__}"
        )
    if isinstance(message, bytearray):
        message = bytes(message)
    if isinstance(message, str | bytes):
        if not recipients:
            raise InvalidInput("Recipients must be provided with raw messages.")
        if sender is None:
            raise InvalidInput("Sender must be provided with raw messages.")
        if isinstance(message, str) and not message.isascii():
            raise InvalidInput(
                "a str message must be ASCII (as aiosmtplib encodes it); pass bytes in the "
                "charset of its headers, or an EmailMessage"
            )
        return message, sender, recipients
    try:
        if sender is None:
            sender = extract_sender(message)
            if sender is None:
                raise InvalidInput("No From header provided in message")
        if recipients is None:
            recipients = extract_recipients(message)
    except ValueError as exc:  # more than one Resent- block
        raise InvalidInput(str(exc)) from None
    return message, sender, recipients


def check_hostname(value: object, what: str) -> None:
    """A host name argument: a str without control characters or spaces (or None)."""
    if value is None:
        return
    if not isinstance(value, str) or _CONTROL.search(value) or " " in value.strip():
        raise InvalidInput(f"{what} {value!r} is not a valid host name")
