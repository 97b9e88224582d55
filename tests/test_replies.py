"""Reply parsing: codes, multi-line replies, enhanced status codes, retry hints, bad input."""

from __future__ import annotations

import doctest
import itertools
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from smtp_guard import replies
from smtp_guard.errors import ProtocolError
from smtp_guard.replies import (
    MAX_REPLY_CHARS,
    MAX_RETRY_AFTER,
    Reply,
    parse_reply,
    parse_retry_after,
    split_enhanced,
)

ENHANCED = re.compile(r"[245]\.\d{1,3}\.\d{1,3}")


# --------------------------------------------------------------------------- well-formed


def test_single_line_reply() -> None:
    reply = parse_reply(
        b"550 5.1.1 <bob@example.com>: Recipient address rejected: User unknown\r\n"
    )
    assert reply == Reply(
        550, "5.1.1", "<bob@example.com>: Recipient address rejected: User unknown", None
    )
    assert reply.permanent


def test_multi_line_reply_with_the_enhanced_code_repeated_on_each_line() -> None:
    raw = (
        b"550-5.1.1 The email account that you tried to reach does not exist. Please try\r\n"
        b"550-5.1.1 double-checking the recipient's email address for typos or\r\n"
        b"550 5.1.1 unnecessary spaces. https://support.google.com/mail/?p=NoSuchUser - gsmtp\r\n"
    )
    reply = parse_reply(raw)
    assert reply.code == 550
    assert reply.enhanced == "5.1.1"
    assert reply.text.split("\n") == [
        "The email account that you tried to reach does not exist. Please try",
        "double-checking the recipient's email address for typos or",
        "unnecessary spaces. https://support.google.com/mail/?p=NoSuchUser - gsmtp",
    ]


def test_str_and_bytes_give_the_same_reply() -> None:
    text = "451-4.7.1 Greylisted\r\n451 4.7.1 please try again in 5 minutes\r\n"
    assert parse_reply(text) == parse_reply(text.encode()) == parse_reply(bytearray(text, "ascii"))


@pytest.mark.parametrize("ending", ["\r\n", "\n", "\r"])
def test_any_line_ending(ending: str) -> None:
    reply = parse_reply(f"421-4.3.2 Service not available{ending}421 4.3.2 closing{ending}")
    assert (reply.code, reply.enhanced, reply.text) == (
        421,
        "4.3.2",
        "Service not available\nclosing",
    )


def test_code_alone_on_a_line() -> None:
    assert parse_reply("250-mx.example.com\r\n250-PIPELINING\r\n250\r\n").text == (
        "mx.example.com\nPIPELINING\n"
    )
    assert parse_reply("554").text == ""


@pytest.mark.parametrize(
    ("raw", "enhanced", "text"),
    [
        ("552 #5.3.4 message too big", "5.3.4", "message too big"),
        ("552 (#5.3.4) message too big", "5.3.4", "message too big"),
        (
            "553 sorry, that domain isn't in my list of allowed rcpthosts (#5.7.1)",
            "5.7.1",
            "sorry, that domain isn't in my list of allowed rcpthosts",
        ),
        ("451 qq temporary problem #4.3.0", "4.3.0", "qq temporary problem"),
        ("550 5.7.1: Relay access denied", "5.7.1", "Relay access denied"),
        ("550 5.1.10 RESOLVER.ADR.RecipientNotFound", "5.1.10", "RESOLVER.ADR.RecipientNotFound"),
        # Not enhanced codes: an IP address, a version, a class other than 2/4/5, glued text.
        ("554 192.0.2.1 blocked", None, "192.0.2.1 blocked"),
        ("421 4.16.55.1 deferred", None, "4.16.55.1 deferred"),
        ("550 3.1.1 odd", None, "3.1.1 odd"),
        ("550 5.1.1a odd", None, "5.1.1a odd"),
        ("550 Mailbox unavailable", None, "Mailbox unavailable"),
    ],
)
def test_enhanced_status_forms(raw: str, enhanced: str | None, text: str) -> None:
    reply = parse_reply(raw)
    assert (reply.enhanced, reply.text) == (enhanced, text)


def test_first_enhanced_code_wins_and_others_stay_in_the_text() -> None:
    # A real Czech hosting reply: two codes, the second one is the meaningful one.
    reply = parse_reply("552 5.1.1 5.2.2 sorry, final recipient mailbox is full (chkuser)")
    assert reply.enhanced == "5.1.1"
    assert reply.text == "5.2.2 sorry, final recipient mailbox is full (chkuser)"


def test_split_enhanced_strips_each_line() -> None:
    assert split_enhanced("5.7.1 first\n5.7.1 second") == ("5.7.1", "first\nsecond")
    assert split_enhanced("plain\ntext") == (None, "plain\ntext")
    assert split_enhanced("no code\nlast line (#5.1.1)") == ("5.1.1", "no code\nlast line")


def test_retry_hint_is_read_from_the_reply() -> None:
    reply = parse_reply(
        "450 4.2.0 <bob@example.com>: Recipient address rejected: Greylisted for 300 seconds"
    )
    assert reply.retry_after == 300.0


# --------------------------------------------------------------------------- malformed input


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (b"", "empty reply"),
        (b"\r\n\r\n", "empty reply"),
        (b"hello there", "no three-digit reply code"),
        (b"55 short code", "no three-digit reply code"),
        (b"550x no separator", "no three-digit reply code"),
        (b"600 out of range", "outside 200-599"),
        (b"199 out of range", "outside 200-599"),
        (b"099 out of range", "outside 200-599"),
        (b"550-first line\r\n451 second line", "disagree on the code: 550 then 451"),
        (b"550-first line\r\nno code here", "line 2 has no three-digit reply code"),
    ],
)
def test_malformed_replies_raise_a_clear_protocol_error(raw: bytes, message: str) -> None:
    with pytest.raises(ProtocolError, match=re.escape(message)):
        parse_reply(raw)


def test_not_bytes_or_str_is_a_protocol_error() -> None:
    with pytest.raises(ProtocolError, match="bytes or str, not int"):
        parse_reply(550)  # type: ignore[arg-type]


def test_non_utf8_bytes_are_decoded_as_latin1() -> None:
    # web.de answers in German; an ISO-8859-1 server sends the umlaut as one byte.
    reply = parse_reply(b"552 Benutzer hat das Speichervolumen \xfcberschritten")
    assert reply.text == "Benutzer hat das Speichervolumen überschritten"
    assert parse_reply(b"550 \xff\xfe\x00\x80 junk").text == "\xff\xfe\x00\x80 junk"


def test_utf8_bytes_are_decoded_as_utf8() -> None:
    assert parse_reply("550 Адрес не существует".encode()).text == "Адрес не существует"


def test_a_100_kb_line_is_refused_before_any_parsing() -> None:
    raw = b"550 " + b"x" * 100_000
    with pytest.raises(ProtocolError, match="over the 65536 accepted"):
        parse_reply(raw)


def test_a_long_reply_under_the_limit_parses() -> None:
    text = "y" * (MAX_REPLY_CHARS - 10)
    assert parse_reply("550 " + text).text == text


# --------------------------------------------------------------------------- retry hints


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("try again in 5 minutes", 300.0),
        ("retry in 300 seconds", 300.0),
        ("please retry after 1 hour", 3600.0),
        ("Greylisted for 300 seconds (see http://www.kluenter.de/greylisted.html)", 300.0),
        ("Greylisted for 5 minutes", 300.0),
        ("Please try again in an hour", 3600.0),
        ("try again in 2.5 minutes", 150.0),
        ("wait 30 sec.", 30.0),
        ("Greylisting in action, please come back in 00:05:00", 300.0),
        ("4.7.1 Greylisted, please try again in 180 seconds", 180.0),
        # German (GMX, web.de, T-Online style)
        ("Bitte versuchen Sie es in 5 Minuten erneut", 300.0),
        ("Greylisting aktiv, bitte nach 10 Minuten erneut versuchen", 600.0),
        ("Versuchen Sie es in 1,5 Stunden noch einmal", 5400.0),
        # Czech (Seznam style) and Polish
        ("Zkuste to prosím znovu za 5 minut", 300.0),
        ("zkuste to znovu za 2 hodiny", 7200.0),
        ("Spróbuj ponownie za 10 minut", 600.0),
        # French (Orange, Free), Spanish, Italian, Dutch, Portuguese
        ("Veuillez réessayer dans 15 minutes", 900.0),
        ("réessayez dans 30 secondes", 30.0),
        ("inténtelo de nuevo en 10 minutos", 600.0),
        ("riprova tra 5 minuti", 300.0),
        ("probeer het over 5 minuten opnieuw", 300.0),
        ("tente novamente em 2 horas", 7200.0),
        # Russian (Yandex, Mail.ru style)
        ("Повторите попытку через 5 минут", 300.0),
        ("попробуйте через 1 час", 3600.0),
        # Clamped to a day
        ("try again in 72 hours", MAX_RETRY_AFTER),
    ],
)
def test_retry_hints(text: str, seconds: float) -> None:
    assert parse_retry_after(text) == seconds


@pytest.mark.parametrize(
    "text",
    [
        "Please try again later",
        "try again later, closing connection",
        "Greylisted, see http://postgrey.schweikert.ch/help/example.com.html",
        "For more information, go to About SMTP error messages.",
        "Veuillez essayer plus tard.",
        "message queued for 5 days",  # days are no retry hint
        "in 5 apples",
        "",
    ],
)
def test_no_retry_hint(text: str) -> None:
    assert parse_retry_after(text) is None


def test_retry_scan_is_linear_on_hostile_input() -> None:
    # Many near-misses: a backtracking pattern would never return; this one does at once.
    hostile = "in 5 " * 20_000 + "in 5 minutes"
    assert parse_retry_after(hostile) == 300.0
    assert parse_retry_after("in " * 30_000) is None


# --------------------------------------------------------------------------- fuzzing


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=600))
def test_fuzz_parse_reply_bytes(raw: bytes) -> None:
    try:
        reply = parse_reply(raw)
    except ProtocolError:
        return  # a clear, typed refusal is a valid outcome
    assert 200 <= reply.code <= 599
    assert reply.enhanced is None or ENHANCED.fullmatch(reply.enhanced)
    assert isinstance(reply.text, str)
    assert reply.retry_after is None or 0 <= reply.retry_after <= MAX_RETRY_AFTER


_LINE_TEXT = st.text(
    alphabet=st.characters(blacklist_characters="\r\n", blacklist_categories=["Cs"]),
    max_size=80,
)


@settings(max_examples=300, deadline=None)
@given(
    code=st.integers(200, 599),
    lines=st.lists(_LINE_TEXT, min_size=1, max_size=5),
    enhanced=st.none() | st.from_regex(ENHANCED, fullmatch=True),
)
def test_fuzz_well_formed_replies_round_trip(
    code: int, lines: list[str], enhanced: str | None
) -> None:
    prefix = f"{enhanced} " if enhanced else ""
    raw = "".join(
        f"{code}{'-' if i < len(lines) - 1 else ' '}{prefix}{line}\r\n"
        for i, line in enumerate(lines)
    )
    reply = parse_reply(raw.encode("utf-8"))
    assert reply.code == code
    if enhanced:
        assert reply.enhanced == enhanced
    if enhanced is None and not any(ENHANCED.search(line) for line in lines):
        assert reply.text.rstrip("\n") == "\n".join(lines).rstrip("\n")


@settings(max_examples=400, deadline=None)
@given(st.text(max_size=300))
def test_fuzz_parse_retry_after(text: str) -> None:
    found = parse_retry_after(text)
    assert found is None or 0 <= found <= MAX_RETRY_AFTER


def test_doctests() -> None:
    result = doctest.testmod(replies)
    assert result.attempted > 0
    assert result.failed == 0


def _split_enhanced_reference(text: str) -> tuple[str | None, str]:
    """split_enhanced without its shortcuts: every regular expression tried on every line."""
    enhanced: str | None = None
    lines = text.split("\n")
    for index, line in enumerate(lines):
        match = replies._LEADING.match(line)
        if match:
            enhanced = enhanced or match.group(1)
            lines[index] = line[match.end() :]
    if enhanced is None:
        for index, line in enumerate(lines):
            found = replies._TRAILING.search(line)
            if found:
                enhanced = found.group(1) or found.group(2)
                lines[index] = line[: found.start()]
                break
    return enhanced, "\n".join(lines)


@settings(max_examples=500, deadline=None)
@given(
    st.lists(
        st.sampled_from(
            ["5.1.1", "#4.7.1", "(#5.3.4)", " ", "\t", ".", "(", ")", "#", "x", "\n", "550 ", ";"]
        ),
        max_size=12,
    ).map("".join)
)
def test_split_enhanced_shortcuts_change_no_answer(text: str) -> None:
    """The cheap checks that skip a regular expression never skip one that would match."""
    assert split_enhanced(text) == _split_enhanced_reference(text)


@settings(max_examples=200, deadline=None)
@given(
    code=st.integers(200, 599),
    lines=st.lists(_LINE_TEXT, min_size=1, max_size=4),
    cuts=st.lists(st.integers(min_value=0, max_value=2000), max_size=6),
)
def test_the_stream_parser_reads_a_reply_as_parse_reply_does(
    code: int, lines: list[str], cuts: list[int]
) -> None:
    """One grammar: the parser of a pipelined transaction (bytes in any chunking) and
    :func:`parse_reply` find the same code and the same lines of text."""
    raw = "".join(
        f"{code}{'-' if i < len(lines) - 1 else ' '}{line}\r\n" for i, line in enumerate(lines)
    ).encode("utf-8")
    points = [0, *sorted(min(c, len(raw)) for c in cuts), len(raw)]
    parser = replies._ReplyParser()
    found = [r for a, b in itertools.pairwise(points) for r in parser.feed(raw[a:b])]
    assert not parser.pending
    [(stream_code, texts)] = found
    reply = parse_reply(raw)
    assert stream_code == reply.code == code
    assert (reply.enhanced, reply.text) == split_enhanced("\n".join(texts))


def test_the_stream_parser_keeps_non_utf8_bytes_as_escapes() -> None:
    # As aiosmtplib decodes a reply: nothing of the server's text is lost or replaced.
    [(code, texts)] = replies._ReplyParser().feed(b"550 5.1.1 \xfcber \xff\r\n")
    assert (code, texts) == (550, ["5.1.1 \udcfcber \udcff"])
    assert texts[0].encode("utf-8", "surrogateescape") == b"5.1.1 \xfcber \xff"
