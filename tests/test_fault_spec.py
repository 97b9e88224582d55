"""The one-line fault language: what it reads, what it refuses and how it says so."""

from __future__ import annotations

import contextlib
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from smtp_guard._enums import Phase
from smtp_guard.errors import InvalidInput
from smtp_guard.testing.faults import (
    Fault,
    FaultSpecError,
    RateLimit,
    Settings,
    parse_duration,
    parse_fault,
    parse_faults,
    parse_size,
)


def fault(text: str) -> Fault:
    parsed = parse_fault(text)
    assert isinstance(parsed, Fault)
    return parsed


# --------------------------------------------------------------------------- faults


def test_the_example_from_the_issue() -> None:
    f = fault("rcpt:*@greylist.test=451 4.7.1 Greylisted x2")
    assert f == Fault.reply_with(
        Phase.RCPT, "451 4.7.1 Greylisted", pattern="*@greylist.test", times=2
    )


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("connect=421 4.3.2 Bye", Fault.reply_with("connect", "421 4.3.2 Bye")),
        ("greeting=554 No", Fault.reply_with("connect", "554 No")),
        ("HELO=550 x", Fault.reply_with("ehlo", "550 x")),
        ("dot=drop", Fault.drop("message")),
        ("message=store-drop x1", Fault.store_drop(times=1)),
        ("data=delay=2s", Fault.delayed("data", 2.0)),
        ("data=delay=250ms x3", Fault.delayed("data", 0.25, times=3)),
        ("rcpt:*@g.test=greylist=5m", Fault.greylist(300.0, pattern="*@g.test")),
        ("mail=451 4.3.0 Later p=0.25 seed=9", Fault.reply_with("mail", "451 4.3.0 Later",
                                                               probability=0.25, seed=9)),
        ("mail=451 Later delay=0.1s close", Fault.reply_with("mail", "451 Later", delay=0.1,
                                                             close=True)),
        ("mail=raw=250 OK", Fault.raw_reply("mail", b"250 OK")),
        ("mail=raw=\\xff\\r\\n", Fault.raw_reply("mail", b"\xff\r\n")),
        ("quit=garbage", Fault("quit", "garbage")),  # type: ignore[arg-type]
        ("rcpt=no-crlf", Fault("rcpt", "no-crlf")),  # type: ignore[arg-type]
        ("rcpt=long=5000", Fault("rcpt", "long", amount=5000)),  # type: ignore[arg-type]
        ('mail="550 5.7.1 Refused x2"', Fault.reply_with("mail", "550 5.7.1 Refused x2")),
        ('mail="550 Refused x2" x1', Fault.reply_with("mail", "550 Refused x2", times=1)),
        ("rcpt=550 line one\\nline two", Fault.reply_with("rcpt", "550 line one\nline two")),
        ("  rcpt : bob@* = 550 No  ", Fault.reply_with("rcpt", "550 No", pattern="bob@*")),
        ("starttls=454 4.7.0 TLS not available x1",
         Fault.reply_with("starttls", "454 4.7.0 TLS not available", times=1)),
        ("auth=535 5.7.8 Bad credentials", Fault.reply_with("auth", "535 5.7.8 Bad credentials")),
        ("auth=drop", Fault.drop("auth")),
    ],
)  # fmt: skip
def test_reads_faults(text: str, expected: Fault) -> None:
    assert fault(text) == expected


def test_multi_line_reply_wire_form() -> None:
    f = fault("rcpt=550 5.1.1 first\\nsecond")
    assert f.wire_bytes() == b"550-5.1.1 first\r\n550 second\r\n"


def test_reply_placeholders() -> None:
    f = fault("rcpt=550 5.1.1 <{rcpt}> unknown (from {sender})")
    assert f.wire_bytes(sender="a@x", rcpt="b@y") == b"550 5.1.1 <b@y> unknown (from a@x)\r\n"


def test_pattern_is_a_case_insensitive_glob_on_the_whole_address() -> None:
    f = fault("rcpt:*@Example.test=550 no")
    assert f.matches(["bob@EXAMPLE.TEST"])
    assert not f.matches(["bob@example.test.evil"])
    assert f.matches(["x@y", "bob@example.test"])  # any of the addresses
    assert fault("rcpt=550 no").matches([])


# --------------------------------------------------------------------------- settings


def test_settings() -> None:
    faults, settings = parse_faults(
        [
            "size=1M",
            "maxrcpt=50",
            "ratelimit=10/60s",
            "greylist=300s",
            "auth=alice:pw1",
            "auth=bob:pw:with:colons",
            "auth-tls=required",
            "xoauth2=on",
            "starttls=required",
            "pipelining=off",
            "seed=42",
            "rcpt:*@x.test=550 nope",
        ]
    )
    assert faults == (Fault.reply_with("rcpt", "550 nope", pattern="*@x.test"),)
    assert settings == Settings(
        size_limit=1024 * 1024,
        max_recipients=50,
        rate_limit=RateLimit(10, 60.0),
        greylist=300.0,
        credentials={"alice": "pw1", "bob": "pw:with:colons"},
        auth_requires_tls=True,
        xoauth2=True,
        starttls="required",
        pipelining=False,
        seed=42,
    )


def test_settings_with_their_own_reply() -> None:
    _, settings = parse_faults(
        ["ratelimit=3/1m 421 4.7.0 Slow down", "maxrcpt=2 552 5.5.3 Too many"]
    )
    assert settings.rate_limit == RateLimit(3, 60.0, "421 4.7.0 Slow down")
    assert settings.max_recipients == 2
    assert settings.max_recipients_reply == "552 5.5.3 Too many"


def test_implicit_tls_setting() -> None:
    assert parse_faults(["tls=implicit"])[1].implicit_tls


def test_durations_and_sizes() -> None:
    assert parse_duration("250ms") == 0.25
    assert parse_duration("2") == 2.0
    assert parse_duration("1.5m") == 90.0
    assert parse_duration("1h") == 3600.0
    assert parse_size("1000") == 1000
    assert parse_size("512K") == 512 * 1024
    assert parse_size("10mb") == 10 * 1024 * 1024


# --------------------------------------------------------------------------- errors


@pytest.mark.parametrize(
    ("text", "part", "says"),
    [
        ("rcpt", "rcpt", "no '=' found"),
        ("rpct:*@x=550 no", "rpct", "unknown phase or setting 'rpct'"),
        ("rcpt:=550 no", "rcpt:", "pattern after ':' is empty"),
        ("rcpt=", "rcpt=", "nothing after '='"),
        ("rcpt=55 no", "55 no", "unknown action"),
        ("rcpt=dorp", "dorp", "unknown action"),
        ("rcpt=550 no x0", "x0", "at least 1"),
        ("rcpt=550 no p=1.5", "p=1.5", "probability"),
        ("rcpt=550 no p=abc", "p=abc", "not a number"),
        ("rcpt=550 no seed=1.5", "seed=1.5", "not a number"),
        ("rcpt=550 no delay=soon", "delay=soon", "not a duration"),
        ("rcpt=550 no x1 x2", "x2", "given twice"),
        ("data=delay=2q", "delay=2q", "not a duration"),
        ("ehlo:*@x=550 no", "550 no", "only makes sense for mail, rcpt, data or message"),
        ("rcpt=store-drop", "store-drop", "only makes sense after the final dot"),
        ("mail=greylist=1s", "greylist=1s", "only makes sense at rcpt"),
        ('mail="550 unterminated', '"550 unterminated', "no closing"),
        ("size=lots", "lots", "not a size"),
        ("maxrcpt=0", "0", "at least 1"),
        ("maxconn=x", "x", "maxconn=N needs a whole number"),
        ("ratelimit=10", "10", "ratelimit=MESSAGES/DURATION"),
        ("ratelimit=10/0s", "10/0s", "longer than 0"),
        ("starttls=maybe", "maybe", "one of: on, off, required"),
        ("seed=x", "x", "invalid literal"),
        ("size=1M 552 too big", "552 too big", "takes one value"),
        ("rcpt=550 bad\x01char", "550 bad\x01char", "control characters"),
    ],
)
def test_bad_descriptions_name_the_bad_part(text: str, part: str, says: str) -> None:
    with pytest.raises(FaultSpecError) as caught:
        parse_fault(text)
    assert caught.value.part == part
    assert says in str(caught.value)
    assert repr(text.strip()) in str(caught.value)


def test_spec_error_is_a_value_error_and_an_invalid_input() -> None:
    with pytest.raises(ValueError, match="unknown phase"):
        parse_fault("nope=1")
    assert issubclass(FaultSpecError, InvalidInput)


def test_bad_auth_setting_never_echoes_the_password() -> None:
    with pytest.raises(FaultSpecError) as caught:
        parse_fault("auth=alice-hunter2")  # forgot the colon
    assert "hunter2" not in str(caught.value)
    assert "hunter2" not in repr(caught.value)
    assert "hunter2" not in caught.value.spec
    assert "USER:PASSWORD" in str(caught.value)
    with pytest.raises(FaultSpecError) as again:
        parse_fault("auth=alice:hunter2 extra")
    assert "hunter2" not in str(again.value)


def test_settings_repr_hides_credentials() -> None:
    _, settings = parse_faults(["auth=alice:hunter2"])
    assert "hunter2" not in repr(settings)


# --------------------------------------------------------------------------- round trip

_phases = st.sampled_from(list(Phase))
_text = st.text(
    alphabet=st.characters(min_codepoint=32, max_codepoint=0x2FF, exclude_characters='"\x7f'),
    max_size=30,
).map(str.strip)


@st.composite
def faults(draw: st.DrawFn) -> Fault:  # noqa: PLR0911 (one return per kind of fault)
    phase = draw(_phases)
    kind = draw(st.sampled_from(["reply", "drop", "delay", "raw", "garbage", "long", "store"]))
    options: dict[str, Any] = {
        "times": draw(st.none() | st.integers(1, 99)),
        "probability": draw(st.none() | st.floats(0.01, 1.0)),
        "seed": draw(st.none() | st.integers(0, 2**31)),
        "close": draw(st.booleans()),
    }
    if phase in (Phase.MAIL, Phase.RCPT, Phase.DATA, Phase.MESSAGE):
        options["pattern"] = draw(st.none() | st.sampled_from(["*", "*@x.test", "bob@*"]))
    if kind == "reply":
        code = draw(st.integers(200, 599))
        lines = draw(st.lists(_text, min_size=1, max_size=3))
        return Fault.reply_with(phase, f"{code} " + "\n".join(lines), **options)
    if kind == "delay":
        options.pop("close")
        return Fault.delayed(phase, draw(st.sampled_from([0.25, 1.0, 2.5, 60.0])), **options)
    if kind == "raw":
        return Fault.raw_reply(phase, draw(st.binary(min_size=1, max_size=20)), **options)
    if kind == "long":
        return Fault(phase, "long", amount=draw(st.integers(1, 9999)), **options)
    if kind == "store":
        options.pop("pattern", None)
        options.pop("close")
        return Fault.store_drop(**options)
    if kind == "drop":
        options.pop("close")
        return Fault.drop(phase, **options)
    return Fault(phase, "garbage", **options)


@given(faults())
def test_text_form_reads_back_to_the_same_fault(f: Fault) -> None:
    assert parse_fault(str(f)) == f


@given(st.text(max_size=60))
def test_any_text_parses_or_raises_fault_spec_error(text: str) -> None:
    with contextlib.suppress(FaultSpecError):
        parse_fault(text)


def test_settings_describe_in_the_text_form_without_passwords() -> None:
    specs = [
        "size=10M",
        "maxrcpt=5 552 5.5.3 Too many",
        "maxconn=3 554 5.7.1 Go away",
        "ratelimit=10/1m",
        "greylist=5m",
        "auth=alice:hunter2",
        "auth-tls=required",
        "xoauth2=on",
        "starttls=on",
        "tls=implicit",
        "pipelining=off",
        "seed=3",
    ]
    _, settings = parse_faults(specs)
    described = settings.describe()
    assert described == [s.replace("hunter2", "****") for s in specs]
    assert Settings().describe() == []
    # what describe() prints reads back to the same settings (passwords aside)
    _, again = parse_faults(described)
    assert again.replace(credentials=settings.credentials) == settings


def test_every_example_in_the_grammar_docstring_parses() -> None:
    from smtp_guard.testing import faults as module  # noqa: PLC0415

    doc = module.__doc__ or ""
    block = doc.split("Examples::", 1)[1].split("\n\n")[1]
    examples = [line.strip() for line in block.splitlines() if line.strip()]
    assert len(examples) >= 10
    for example in examples:
        parse_fault(example)
    first = doc.split("::", 1)[1].split("\n\n")[1].splitlines()[1].strip().strip('"')
    assert fault(first) == Fault.reply_with(
        "rcpt", "451 4.7.1 Greylisted", pattern="*@greylist.test", times=2
    )
