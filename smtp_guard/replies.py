"""Parsing SMTP replies: reply code, RFC 3463 enhanced status, text, retry hints.

A reply (RFC 5321 section 4.2) is one or more lines ``ddd-text`` ending with one ``ddd text``.
:func:`parse_reply` turns the raw bytes or text into a :class:`Reply`; anything that is not a
reply raises :class:`~smtp_guard.errors.ProtocolError` with a one-line reason, never an error
from deep inside. Bytes that are not UTF-8 are decoded as Latin-1 (every byte maps to one
character), so a reply in a legacy charset still reads correctly and nothing is lost.

Sans-IO: no sockets, no asyncio; only ``re`` and the exception vocabulary.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from smtp_guard.errors import ProtocolError

__all__ = ["Reply", "parse_reply", "parse_retry_after", "split_enhanced"]

#: Longest reply accepted, in characters (RFC 5321 4.5.3.1.5 allows 512 per line; real
#: multi-line replies stay far below this). Longer input raises ProtocolError at once.
MAX_REPLY_CHARS = 65_536

#: The longest wait a server hint may ask for; longer hints are clamped to this (one day).
MAX_RETRY_AFTER = 86_400.0


@dataclass(frozen=True, slots=True)
class Reply:
    """One (possibly multi-line) SMTP reply.

    ``text`` is the lines' text joined by ``"\\n"``, without the reply codes and without the
    enhanced status codes that lead the lines (or trail them in qmail's ``(#5.1.1)`` form).
    """

    code: int
    enhanced: str | None
    text: str
    retry_after: float | None = None

    @property
    def permanent(self) -> bool:
        """5xx: the same command will fail again (see :func:`smtp_guard.classify` for the
        RFC 5321 exception of 552 'too many recipients')."""
        return self.code >= 500


# --------------------------------------------------------------------------- enhanced status

# RFC 3463 section 2: class "." subject "." detail, class 2, 4 or 5, subject and detail 1 to 3
# digits. Written bare, as "#5.3.4", or as "(#5.3.4)"; it must stand alone (followed by
# whitespace, ';', ':', ',' or the end) so "5.1.1a" or an IP address is not taken for one.
_LEADING = re.compile(r"[ \t]*\(?#?([245]\.\d{1,3}\.\d{1,3})\)?(?=[\s;:,]|$)[\s;:,]*")
#: What a text that starts with a status can start with ("" is the empty text).
_LEADING_FIRST = "245(# \t"
_TRAILING_LAST = frozenset(")0123456789")
_TRAILING = re.compile(
    r"[ \t]*\(#?([245]\.\d{1,3}\.\d{1,3})\)[ \t.]*$|[ \t]+#([245]\.\d{1,3}\.\d{1,3})[ \t.]*$"
)


def _may_trail(line: str) -> bool:
    """Whether ``line`` can end in a trailing status (``(#5.1.1)`` or `` #5.1.1``): it names
    one with '#' or '(' and ends, but for spaces and dots, in ')' or a digit."""
    return ("#" in line or "(" in line) and line.rstrip(" \t.")[-1:] in _TRAILING_LAST


def split_enhanced(text: str) -> tuple[str | None, str]:
    """Return ``(enhanced, text)``: the RFC 3463 status and the text without it.

    The status is taken off the front of every line that starts with one (servers repeat it
    on each line of a multi-line reply) and, failing that, off the end of a line in qmail's
    ``(#5.1.1)`` form. The first status found is returned.

    >>> split_enhanced("5.1.1 No such user")
    ('5.1.1', 'No such user')
    >>> split_enhanced("sorry, no mailbox here by that name. (#5.1.1)")
    ('5.1.1', 'sorry, no mailbox here by that name.')
    """
    if "\n" not in text:  # one line: the common case, without the list work below
        match = _LEADING.match(text) if text[:1] in _LEADING_FIRST else None
        if match:
            return match.group(1), text[match.end() :]
        if _may_trail(text):
            found = _TRAILING.search(text)
            if found:
                return found.group(1) or found.group(2), text[: found.start()]
        return None, text
    enhanced: str | None = None
    lines = text.split("\n")
    for index, line in enumerate(lines):
        match = _LEADING.match(line)
        if match:
            if enhanced is None:
                enhanced = match.group(1)
            lines[index] = line[match.end() :]
    if enhanced is None:
        for index, line in enumerate(lines):
            match = _TRAILING.search(line) if _may_trail(line) else None
            if match:
                enhanced = match.group(1) or match.group(2)
                lines[index] = line[: match.start()]
                break
    return enhanced, "\n".join(lines)


# --------------------------------------------------------------------------- retry hints

#: Seconds per unit word, in the languages real servers answer in. Keys are lower case.
UNITS: dict[str, float] = {}
for _seconds, _words in (
    (
        1.0,
        "sec secs second seconds sekunde sekunden sek sekund sekundy sekundu "
        "seconde secondes segundo segundos secondi seconden секунд секунды секунду сек",
    ),
    (
        60.0,
        "min mins minute minutes minuten minut minuty minutu minuto minutos minuti "
        "минут минуты минуту мин",
    ),
    (
        3600.0,
        "hr hrs hour hours stunde stunden std hodina hodinu hodiny hodin heure "
        "heures hora horas ora ore uur godzina godzinę godziny godzin час часа часов",
    ),
):
    for _word in _words.split():
        UNITS[_word] = _seconds

# A retry hint is a preposition meaning "in / after / for" followed by a number and a unit:
# "try again in 5 minutes", "retry after 1 hour", "Greylisted for 300 seconds", German
# "in 5 Minuten", Czech and Polish "za 5 minut", French "dans 5 minutes", Spanish and
# Portuguese "en/em 5 minutos", Italian "tra 5 minuti", Dutch "over 5 minuten", Russian
# "через 5 минут"; or milter-greylist's "come back in 00:05:00". No nested or unbounded
# repetition: the scan is linear in the text length.
_RETRY = re.compile(
    r"(?<![\w.])(?:in|after|for|within|wait|nach|za|po|dans|apr[eè]s|en|em|ap[oó]s|tra|fra"
    r"|dopo|over|na|через)\s+(?:(\d{1,7}(?:[.,]\d{1,3})?|an?|one)\s+([^\W\d_]{1,9})\.?(?!\w)"
    r"|(\d{1,2}):(\d\d):(\d\d)(?!\d))",
    re.IGNORECASE,
)


def parse_retry_after(text: str) -> float | None:
    """Seconds the server asks to wait, from hints such as "try again in 5 minutes".

    Returns None when the text names no concrete wait ("Please try again later"). Waits over
    a day are clamped to a day.

    >>> parse_retry_after("451 4.7.1 Greylisted, please try again in 300 seconds")
    300.0
    >>> parse_retry_after("zkuste to znovu za 5 minut") is None
    False
    >>> parse_retry_after("Please try again later") is None
    True
    """
    for match in _RETRY.finditer(text):
        if match.group(3) is not None:  # hh:mm:ss
            hours, minutes, seconds = (int(match.group(n)) for n in (3, 4, 5))
            return min(hours * 3600.0 + minutes * 60.0 + seconds, MAX_RETRY_AFTER)
        unit = UNITS.get(match.group(2).lower())
        if unit is None:
            continue
        number = match.group(1).lower()
        count = 1.0 if number in ("a", "an", "one") else float(number.replace(",", "."))
        return min(count * unit, MAX_RETRY_AFTER)
    return None


# --------------------------------------------------------------------------- replies

_LINE = re.compile(r"(\d{3})(?:([ \-])(.*)|$)", re.DOTALL)


def _decode(raw: bytes) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw.decode("latin-1")


def parse_reply(raw: bytes | bytearray | str) -> Reply:
    """Parse the raw bytes or text of one reply (single- or multi-line).

    >>> reply = parse_reply(b"550-5.1.1 No such user\\r\\n550 5.1.1 Check the address\\r\\n")
    >>> reply.code, reply.enhanced, reply.text
    (550, '5.1.1', 'No such user\\nCheck the address')

    Raises ProtocolError when the input is not a reply: empty, a line without a three-digit
    code, a code outside 200-599, lines that disagree on the code, or over
    :data:`MAX_REPLY_CHARS`.
    """
    if isinstance(raw, (bytes, bytearray, memoryview)):
        raw = _decode(bytes(raw))
    elif not isinstance(raw, str):
        raise ProtocolError(f"a reply must be bytes or str, not {type(raw).__name__}")
    if len(raw) > MAX_REPLY_CHARS:
        raise ProtocolError(
            f"reply is {len(raw)} characters long, over the {MAX_REPLY_CHARS} accepted"
        )
    lines = raw.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    while lines and not lines[-1].strip():
        lines.pop()
    if not lines:
        raise ProtocolError("empty reply: no reply code received")
    codes: list[int] = []
    texts: list[str] = []
    for number, line in enumerate(lines, start=1):
        match = _LINE.match(line)
        if match is None:
            shown = line[:60]
            raise ProtocolError(f"reply line {number} has no three-digit reply code: {shown!r}")
        codes.append(int(match.group(1)))
        texts.append(match.group(3) or "")
    code = codes[0]
    if not 200 <= code <= 599:
        raise ProtocolError(f"reply code {code} is outside 200-599")
    for other in codes:
        if other != code:
            raise ProtocolError(f"reply lines disagree on the code: {code} then {other}")
    enhanced, text = split_enhanced("\n".join(texts))
    return Reply(code, enhanced, text, parse_retry_after(text))
