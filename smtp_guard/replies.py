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

#: One line of a reply (RFC 5321 section 4.2), its line ending taken off: a three-digit code,
#: then "-" when more lines of the reply follow, else a space or nothing; then the text.
_LINE = re.compile(r"([0-9]{3})(?:([ \-])(.*)|$)", re.DOTALL)

#: Longest reply line read from a server, in bytes (RFC 5321 4.5.3.1.5 says 512; some exceed it).
MAX_LINE_LENGTH = 8192
#: Longest whole (multi-line) reply read from a server, in bytes.
MAX_REPLY_LENGTH = MAX_LINE_LENGTH * 4


def _reply_line(line: str, number: int, code: int | None) -> tuple[int, str, bool]:
    """The grammar of one reply line (its ending taken off): ``(code, text, last)``.

    ``number`` is the line's number in its reply, ``code`` the code of the reply's earlier
    lines (None for its first line). ``last``: no "-" follows the code. Raises ProtocolError
    for a line without a three-digit code, a first code outside 200-599, or a code that
    differs from the earlier lines'.
    """
    match = _LINE.match(line)
    if match is None:
        raise ProtocolError(f"reply line {number} has no three-digit reply code: {line[:60]!r}")
    found = int(match.group(1))
    if code is None and not 200 <= found <= 599:
        raise ProtocolError(f"reply code {found} is outside 200-599")
    if code is not None and found != code:
        raise ProtocolError(f"reply lines disagree on the code: {code} then {found}")
    return found, match.group(3) or "", match.group(2) != "-"


class _ReplyParser:
    """Sans-IO: split the bytes a server sends into replies, whatever their chunking.

    The reader of a pipelined transaction (:mod:`smtp_guard._pipelining`) feeds it what
    arrives; :meth:`feed` returns the replies that bytes completed (none, one or several),
    each as ``(code, texts)``: the text of each line after its code and separator, without the
    line ending. A line ends at "\n" ("\r\n" or bare "\n"); a reply at a line without "-"
    after its code. Lines are decoded as UTF-8, other bytes kept as surrogate escapes (as
    aiosmtplib does, so the server's text is never lost or altered).

    The grammar of a line is :func:`parse_reply`'s. Raises ProtocolError for what is not a
    reply (see :func:`_reply_line`), a line longer than ``max_line`` or a reply longer than
    ``max_reply`` bytes; the parser is unusable after that.
    """

    def __init__(
        self, *, max_line: int = MAX_LINE_LENGTH, max_reply: int = MAX_REPLY_LENGTH
    ) -> None:
        self._max_line = max_line
        self._max_reply = max_reply
        self._buffer = bytearray()
        self._code: int | None = None
        self._texts: list[str] = []
        self._size = 0

    @property
    def pending(self) -> bool:
        """Whether bytes of an unfinished reply are held."""
        return bool(self._buffer or self._texts)

    def feed(self, data: bytes) -> list[tuple[int, list[str]]]:
        """The replies completed by ``data``, in order."""
        self._buffer.extend(data)
        replies: list[tuple[int, list[str]]] = []
        start = 0
        while True:
            end = self._buffer.find(b"\n", start)
            if end == -1:
                break
            reply = self._line(bytes(self._buffer[start:end]), end + 1 - start)
            start = end + 1
            if reply is not None:
                replies.append(reply)
        del self._buffer[:start]
        if len(self._buffer) > self._max_line:
            raise ProtocolError(f"reply line longer than {self._max_line} bytes")
        return replies

    def _line(self, raw: bytes, size: int) -> tuple[int, list[str]] | None:
        if size > self._max_line:
            raise ProtocolError(f"reply line longer than {self._max_line} bytes")
        self._size += size
        if self._size > self._max_reply:
            raise ProtocolError(f"reply longer than {self._max_reply} bytes")
        if raw.endswith(b"\r"):
            raw = raw[:-1]
        line = raw.decode("utf-8", "surrogateescape")
        code, text, last = _reply_line(line, len(self._texts) + 1, self._code)
        self._texts.append(text)
        if not last:
            self._code = code
            return None
        texts = self._texts
        self._code, self._texts, self._size = None, [], 0
        return code, texts


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

    Every line is taken as a line of this one reply, whatever its separator says (text pasted
    by people often has "550 " on each line); any line ending (CRLF, LF, CR) will do. Raises
    ProtocolError when the input is not a reply: empty, a line without a three-digit code, a
    code outside 200-599, lines that disagree on the code, or over :data:`MAX_REPLY_CHARS`.
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
    code: int | None = None
    texts: list[str] = []
    for number, line in enumerate(lines, start=1):
        code, text, _ = _reply_line(line, number, code)
        texts.append(text)
    assert code is not None  # noqa: S101 (there is at least one line)
    enhanced, text = split_enhanced("\n".join(texts))
    return Reply(code, enhanced, text, parse_retry_after(text))
