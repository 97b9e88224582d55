"""Classifying SMTP replies: (phase, code, enhanced, text) -> category, permanence, hint.

Sans-IO: this module does no I/O and never imports asyncio. The rules are tables read top to
bottom: the enhanced status first (RFC 3463, IANA registry of RFC 5248), then the server's words,
then the basic code (RFC 5321 section 4.2, RFC 4954 for AUTH).
(First version: code-only table; the full rule tables and their corpus come next.)
"""

from __future__ import annotations

from dataclasses import dataclass

from smtp_guard._enums import Category, Phase
from smtp_guard._hints import hint_for
from smtp_guard.errors import ReplyError, category_class
from smtp_guard.replies import parse_retry_after, split_enhanced

__all__ = ["Classification", "classify", "error_from_reply"]


@dataclass(frozen=True, slots=True)
class Classification:
    """What a reply means: the result of :func:`classify`."""

    category: Category
    permanent: bool
    enhanced: str | None
    retry_after: float | None
    hint: str

    @property
    def error_class(self) -> type[ReplyError]:
        """The error class for this category (its permanence is decided per instance)."""
        return category_class(self.category)


_BY_CODE: dict[int, Category] = {
    421: Category.SERVICE_UNAVAILABLE,
    450: Category.MAILBOX_BUSY,
    451: Category.SERVER_ERROR,
    452: Category.INSUFFICIENT_STORAGE,
    454: Category.AUTH_TEMPORARY,
    500: Category.SYNTAX_ERROR,
    501: Category.SYNTAX_ERROR,
    502: Category.NOT_IMPLEMENTED,
    503: Category.BAD_SEQUENCE,
    504: Category.NOT_IMPLEMENTED,
    521: Category.DOMAIN_NOT_ACCEPTING,
    530: Category.AUTH_REQUIRED,
    534: Category.AUTH_FAILED,
    535: Category.AUTH_FAILED,
    550: Category.MAILBOX_UNAVAILABLE,
    551: Category.USER_NOT_LOCAL,
    552: Category.STORAGE_EXCEEDED,
    553: Category.BAD_ADDRESS,
    554: Category.POLICY_REJECTED,
    556: Category.DOMAIN_NOT_ACCEPTING,
}


def classify(code: int, text: str, phase: Phase | str | None = None) -> Classification:
    """Classify one reply. ``text`` may still start with its enhanced status code."""
    phase = Phase.coerce(phase)
    enhanced, body = split_enhanced(text)
    category = _BY_CODE.get(code, Category.OTHER)
    permanent = code >= 500
    return Classification(
        category, permanent, enhanced, parse_retry_after(body), hint_for(category)
    )


def error_from_reply(
    code: int,
    text: str | bytes,
    phase: Phase | str | None = None,
    recipient: str | None = None,
    *,
    sender: str | None = None,
) -> ReplyError:
    """Build the typed error for a reply, e.g. ``error_from_reply(550, "5.1.1 No such user")``."""
    message = text.decode("utf-8", errors="replace") if isinstance(text, bytes) else text
    phase = Phase.coerce(phase)
    found = classify(code, message, phase)
    _, body = split_enhanced(message)
    return found.error_class(
        code,
        message,
        enhanced=found.enhanced,
        text=body,
        category=found.category,
        phase=phase,
        recipient=recipient,
        sender=sender,
        permanent=found.permanent,
        retry_after=found.retry_after,
        hint=found.hint,
    )
