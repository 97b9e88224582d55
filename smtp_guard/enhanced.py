"""What an RFC 3463 enhanced status code means: the registry as a table.

An enhanced status code is ``class.subject.detail`` (``5.1.1``). The class says how final it
is, the subject what area it concerns, the detail the exact condition. The meanings below are
the summaries of the IANA "SMTP Enhanced Status Codes" registry (RFC 5248), which holds the
codes of RFC 3463 and those added since; each detail row names the RFC that defined it.

Sans-IO: plain data and pure functions.

>>> describe_enhanced("5.1.1")
'Bad destination mailbox address'
>>> describe_enhanced("4.1.99")  # an unregistered detail: the subject's meaning
'Addressing status'
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from types import MappingProxyType

__all__ = ["EnhancedStatus", "describe_enhanced", "lookup_enhanced"]

#: RFC 3463 section 3.1: the class sub-code.
CLASSES: MappingProxyType[int, str] = MappingProxyType(
    {
        2: "Success",
        4: "Persistent transient failure",
        5: "Permanent failure",
    }
)

#: RFC 3463 section 3.2 and the IANA registry's subject sub-codes.
SUBJECTS: MappingProxyType[int, str] = MappingProxyType(
    {
        0: "Other or undefined status",
        1: "Addressing status",
        2: "Mailbox status",
        3: "Mail system status",
        4: "Network and routing status",
        5: "Mail delivery protocol status",
        6: "Message content or media status",
        7: "Security or policy status",
    }
)

#: (subject, detail) -> (meaning, defining RFC). Read top to bottom against the registry.
DETAILS: MappingProxyType[tuple[int, int], tuple[str, str]] = MappingProxyType(
    {
        # X.0.X  other or undefined
        (0, 0): ("Other undefined status", "RFC 3463"),
        # X.1.X  addressing
        (1, 0): ("Other address status", "RFC 3463"),
        (1, 1): ("Bad destination mailbox address", "RFC 3463"),
        (1, 2): ("Bad destination system address", "RFC 3463"),
        (1, 3): ("Bad destination mailbox address syntax", "RFC 3463"),
        (1, 4): ("Destination mailbox address ambiguous", "RFC 3463"),
        (1, 5): ("Destination address valid", "RFC 3463"),
        (1, 6): ("Destination mailbox has moved, no forwarding address", "RFC 3463"),
        (1, 7): ("Bad sender's mailbox address syntax", "RFC 3463"),
        (1, 8): ("Bad sender's system address", "RFC 3463"),
        (1, 9): ("Message relayed to non-compliant mailer", "RFC 3886"),
        (1, 10): ("Recipient address has null MX", "RFC 7505"),
        # X.2.X  mailbox
        (2, 0): ("Other or undefined mailbox status", "RFC 3463"),
        (2, 1): ("Mailbox disabled, not accepting messages", "RFC 3463"),
        (2, 2): ("Mailbox full", "RFC 3463"),
        (2, 3): ("Message length exceeds administrative limit", "RFC 3463"),
        (2, 4): ("Mailing list expansion problem", "RFC 3463"),
        # X.3.X  mail system
        (3, 0): ("Other or undefined mail system status", "RFC 3463"),
        (3, 1): ("Mail system full", "RFC 3463"),
        (3, 2): ("System not accepting network messages", "RFC 3463"),
        (3, 3): ("System not capable of selected features", "RFC 3463"),
        (3, 4): ("Message too big for system", "RFC 3463"),
        (3, 5): ("System incorrectly configured", "RFC 3463"),
        (3, 6): ("Requested priority was changed", "RFC 6710"),
        # X.4.X  network and routing
        (4, 0): ("Other or undefined network or routing status", "RFC 3463"),
        (4, 1): ("No answer from host", "RFC 3463"),
        (4, 2): ("Bad connection", "RFC 3463"),
        (4, 3): ("Directory server failure", "RFC 3463"),
        (4, 4): ("Unable to route", "RFC 3463"),
        (4, 5): ("Mail system congestion", "RFC 3463"),
        (4, 6): ("Routing loop detected", "RFC 3463"),
        (4, 7): ("Delivery time expired", "RFC 3463"),
        # X.5.X  mail delivery protocol
        (5, 0): ("Other or undefined protocol status", "RFC 3463"),
        (5, 1): ("Invalid command", "RFC 3463"),
        (5, 2): ("Syntax error", "RFC 3463"),
        (5, 3): ("Too many recipients", "RFC 3463"),
        (5, 4): ("Invalid command arguments", "RFC 3463"),
        (5, 5): ("Wrong protocol version", "RFC 3463"),
        (5, 6): ("Authentication exchange line is too long", "RFC 4954"),
        # X.6.X  message content or media
        (6, 0): ("Other or undefined media error", "RFC 3463"),
        (6, 1): ("Media not supported", "RFC 3463"),
        (6, 2): ("Conversion required and prohibited", "RFC 3463"),
        (6, 3): ("Conversion required but not supported", "RFC 3463"),
        (6, 4): ("Conversion with loss performed", "RFC 3463"),
        (6, 5): ("Conversion failed", "RFC 3463"),
        (6, 6): ("Message content not available", "RFC 4468"),
        (6, 7): ("Non-ASCII addresses not permitted for that sender/recipient", "RFC 6531"),
        (6, 8): (
            "UTF-8 string reply is required, but not permitted by the SMTP client",
            "RFC 6531",
        ),
        (6, 9): (
            "UTF-8 header message cannot be transferred to one or more recipients",
            "RFC 6531",
        ),
        (6, 10): (
            "UTF-8 string reply is required, but not permitted by the SMTP client "
            "(duplicate of X.6.8, deprecated)",
            "RFC 6531",
        ),
        # X.7.X  security or policy
        (7, 0): ("Other or undefined security status", "RFC 3463"),
        (7, 1): ("Delivery not authorized, message refused", "RFC 3463"),
        (7, 2): ("Mailing list expansion prohibited", "RFC 3463"),
        (7, 3): ("Security conversion required but not possible", "RFC 3463"),
        (7, 4): ("Security features not supported", "RFC 3463"),
        (7, 5): ("Cryptographic failure", "RFC 3463"),
        (7, 6): ("Cryptographic algorithm not supported", "RFC 3463"),
        (7, 7): ("Message integrity failure", "RFC 3463"),
        (7, 8): ("Authentication credentials invalid", "RFC 4954"),
        (7, 9): ("Authentication mechanism is too weak", "RFC 4954"),
        (7, 10): ("Encryption needed", "RFC 5248"),
        (7, 11): ("Encryption required for requested authentication mechanism", "RFC 4954"),
        (7, 12): ("A password transition is needed", "RFC 4954"),
        (7, 13): ("User account disabled", "RFC 5248"),
        (7, 14): ("Trust relationship required", "RFC 5248"),
        (7, 15): ("Priority level is too low", "RFC 6710"),
        (7, 16): ("Message is too big for the specified priority", "RFC 6710"),
        (7, 17): ("Mailbox owner has changed", "RFC 7293"),
        (7, 18): ("Domain owner has changed", "RFC 7293"),
        (7, 19): ("RRVS test cannot be completed", "RFC 7293"),
        (7, 20): ("No passing DKIM signature found", "RFC 7372"),
        (7, 21): ("No acceptable DKIM signature found", "RFC 7372"),
        (7, 22): ("No valid author-matched DKIM signature found", "RFC 7372"),
        (7, 23): ("SPF validation failed", "RFC 7372"),
        (7, 24): ("SPF validation error", "RFC 7372"),
        (7, 25): ("Reverse DNS validation failed", "RFC 7372"),
        (7, 26): ("Multiple authentication checks failed", "RFC 7372"),
        (7, 27): ("Sender address has null MX", "RFC 7505"),
        (7, 28): ("Mail flood detected", "IANA registry"),
        (7, 29): ("ARC validation failure", "RFC 8617"),
        (7, 30): ("REQUIRETLS support required", "RFC 8689"),
    }
)

# RFC 3463 section 2: class is 2, 4 or 5; subject and detail are 1 to 3 digits.
# Servers also write it as "#5.3.4" or "(#5.3.4)"; both are accepted.
_SYNTAX = re.compile(r"\(?#?([245])\.(\d{1,3})\.(\d{1,3})\)?")


@dataclass(frozen=True, slots=True)
class EnhancedStatus:
    """One enhanced status code with the registry's meaning of each part."""

    code: str  #: normalised, e.g. "5.1.1"
    status_class: int
    subject: int
    detail: int
    class_meaning: str  #: e.g. "Permanent failure"
    subject_meaning: str  #: e.g. "Addressing status"; "Unregistered subject" if unknown
    detail_meaning: str | None  #: e.g. "Bad destination mailbox address"; None if unregistered
    reference: str | None  #: the RFC that registered the detail, if registered

    @property
    def meaning(self) -> str:
        """The detail's meaning, or the subject's when the detail is not registered."""
        if self.detail_meaning is not None:
            return self.detail_meaning
        if self.subject in SUBJECTS:
            return self.subject_meaning
        return self.class_meaning

    @property
    def registered(self) -> bool:
        """Whether the exact subject.detail pair is in the registry."""
        return self.detail_meaning is not None

    @property
    def permanent(self) -> bool:
        """Class 5: the same message will fail again."""
        return self.status_class == 5


def lookup_enhanced(code: str) -> EnhancedStatus:
    """Parse ``code`` (``"5.1.1"``, ``"#5.3.4"``, ``"(4.7.1)"``) and look up its meanings.

    Raises ValueError if ``code`` is not an enhanced status code.
    """
    match = _SYNTAX.fullmatch(code.strip()) if isinstance(code, str) else None
    if match is None:
        shown = code[:40] if isinstance(code, str) else type(code).__name__
        raise ValueError(
            f"not an enhanced status code: {shown!r} (expected class.subject.detail, "
            "class 2, 4 or 5, e.g. '5.1.1')"
        )
    status_class, subject, detail = (int(part) for part in match.groups())
    found = DETAILS.get((subject, detail))
    return EnhancedStatus(
        code=f"{status_class}.{subject}.{detail}",
        status_class=status_class,
        subject=subject,
        detail=detail,
        class_meaning=CLASSES[status_class],
        subject_meaning=SUBJECTS.get(subject, "Unregistered subject"),
        detail_meaning=found[0] if found else None,
        reference=found[1] if found else None,
    )


def describe_enhanced(code: str) -> str:
    """The meaning of an enhanced status code, e.g. ``"5.1.1"`` -> "Bad destination mailbox
    address". An unregistered detail gives its subject's meaning. Raises ValueError if
    ``code`` is not an enhanced status code."""
    return lookup_enhanced(code).meaning
