"""Parsing SMTP replies: code, RFC 3463 enhanced status, text, retry hints.

Sans-IO: this module does no I/O and never imports asyncio (only the exception vocabulary).
(First version: the parser is hardened and fuzzed in tests/test_replies.py.)
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from smtp_guard.errors import ProtocolError

__all__ = ["Reply", "parse_reply", "parse_retry_after", "split_enhanced"]


@dataclass(frozen=True, slots=True)
class Reply:
    """One (possibly multi-line) SMTP reply."""

    code: int
    enhanced: str | None
    text: str
    retry_after: float | None = None


_ENHANCED = re.compile(r"^\(?#?([245])\.(\d{1,3})\.(\d{1,3})\)?(?=\s|$)")


def split_enhanced(text: str) -> tuple[str | None, str]:
    """Return ``(enhanced, text)`` with the RFC 3463 status taken off the front of each line."""
    enhanced: str | None = None
    lines = []
    for line in text.split("\n"):
        m = _ENHANCED.match(line)
        if m:
            if enhanced is None:
                enhanced = ".".join(m.groups())
            lines.append(line[m.end() :].lstrip())
        else:
            lines.append(line)
    return enhanced, "\n".join(lines)


def parse_retry_after(text: str) -> float | None:
    """Seconds the server asks us to wait, from hints such as 'try again in 5 minutes'."""
    m = re.search(
        r"(?:try|retry)\s+(?:again\s+)?(?:in|after)\s+(\d+)\s*(s|sec|seconds?|m|min|minutes?|h|hours?)\b",
        text,
        re.IGNORECASE,
    )
    if not m:
        return None
    unit = m.group(2).lower()
    factor = 3600.0 if unit.startswith("h") else 60.0 if unit.startswith("m") else 1.0
    return int(m.group(1)) * factor


def parse_reply(raw: bytes | str) -> Reply:
    """Parse the raw bytes or text of a reply (single- or multi-line)."""
    if isinstance(raw, bytes):
        raw = raw.decode("utf-8", errors="replace")
    lines = [line for line in raw.replace("\r\n", "\n").split("\n") if line]
    if not lines:
        raise ProtocolError("empty reply")
    code: int | None = None
    texts = []
    for line in lines:
        if len(line) < 3 or not line[:3].isdigit():
            raise ProtocolError(f"reply line without a code: {line[:40]!r}")
        line_code = int(line[:3])
        if code is None:
            code = line_code
        elif line_code != code:
            raise ProtocolError(f"reply lines disagree on the code: {code} then {line_code}")
        texts.append(line[4:])
    if code is None or not 200 <= code <= 599:
        raise ProtocolError(f"reply code {code} is outside 200-599")
    enhanced, text = split_enhanced("\n".join(texts))
    return Reply(code, enhanced, text, parse_retry_after(text))
