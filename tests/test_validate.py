"""Input checks before any byte is sent (no sockets needed: nothing may be sent)."""

from __future__ import annotations

import email.message

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from smtp_guard.client import _validate
from smtp_guard.client._connect import ConnectParams
from smtp_guard.client._validate import check_address, check_options, make_envelope
from smtp_guard.errors import InvalidInput


@pytest.mark.parametrize(
    ("given", "mailbox"),
    [
        ("a@b.org", "a@b.org"),
        ("  a@b.org ", "a@b.org"),
        ("Joe <joe@b.org>", "joe@b.org"),
        ('"Doe, Joe" <joe@b.org>', "joe@b.org"),
        ("first.last+tag@sub.b.org", "first.last+tag@sub.b.org"),
        ('"with space"@b.org', '"with space"@b.org'),
        ("user@[192.0.2.1]", "user@[192.0.2.1]"),
        ("jiří@příklad.cz", "jiří@příklad.cz"),
    ],
)
def test_valid_addresses(given: str, mailbox: str) -> None:
    assert check_address(given, "recipient") == mailbox


@pytest.mark.parametrize(
    "given",
    [
        "a@b.org>\r\nRCPT TO:<evil@x.org>",  # aiosmtplib would send this to a@b.org
        "a@b.org\r\n",
        "a@b.org\n",
        "a@b.org\x00",
        "a@b.org>",
        "<a@b.org",
        "a@b.org, c@d.org",
        "a@b.org c@d.org",
        "Joe <a@b.org> trailing",
        "no-at-sign",
        "@b.org",
        "a@",
        "a..b@c.org",
        "a@-b.org",
        "x" * 65 + "@b.org",
        "a@" + "b" * 260 + ".org",
        "",
        "   ",
        "0@\x850",  # NEL: a line break to str.splitlines and some MTAs
        "a\u2028b@c.org",
        "a@b\u00a0c.org",  # no-break space
        "a\u3000b@c.org",  # ideographic space
        "Ann <a@b\u2029.org>",
    ],
)
def test_invalid_addresses(given: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        check_address(given, "recipients[0]")
    assert "recipients[0]" in str(caught.value)
    assert "\r" not in str(caught.value)
    assert "\n" not in str(caught.value).split(" -- ")[0]


def test_non_str_address() -> None:
    with pytest.raises(InvalidInput, match="must be a str"):
        check_address(b"a@b.org", "sender")


def test_empty_sender_is_the_null_reverse_path() -> None:
    assert check_address("", "sender", allow_empty=True) == ""
    assert check_address("<>", "sender", allow_empty=True) == ""


@pytest.mark.parametrize(
    "options",
    [["BODY=8BITMIME\r\nRSET"], ["A B"], "SMTPUTF8", [3]],
)
def test_bad_options(options: object) -> None:
    with pytest.raises(InvalidInput):
        check_options(options, "mail_options")


def test_good_options() -> None:
    assert check_options(["BODY=8BITMIME", "SMTPUTF8"], "mail_options") == (
        "BODY=8BITMIME",
        "SMTPUTF8",
    )
    assert check_options(None, "rcpt_options") == ()


def test_envelope_deduplicates_and_keeps_callers_strings() -> None:
    envelope = make_envelope(
        b"x", "a@b.org", ["Joe <j@b.org>", "j@b.org", "k@b.org"], ["SMTPUTF8"], None
    )
    assert envelope.recipients == ("j@b.org", "k@b.org")
    assert envelope.original == {"j@b.org": "Joe <j@b.org>", "k@b.org": "k@b.org"}
    assert envelope.mail_options == ("SMTPUTF8",)


def test_envelope_from_message_headers() -> None:
    msg = email.message.EmailMessage()
    msg["From"] = "a@b.org"
    msg["To"] = "c@d.org"
    msg["Cc"] = "e@f.org"
    envelope = make_envelope(msg, None, None)
    assert envelope.sender == "a@b.org"
    assert envelope.recipients == ("c@d.org", "e@f.org")


@pytest.mark.parametrize(
    ("message", "sender", "recipients", "match"),
    [
        (b"x", None, ["c@d.org"], "Sender"),
        (b"x", "a@b.org", None, "Recipients"),
        (b"x", "a@b.org", [], "Recipients"),
        ("Subject: Grüße\r\n\r\n", "a@b.org", ["c@d.org"], "ASCII"),
        (42, "a@b.org", ["c@d.org"], "message must be"),
        (email.message.EmailMessage(), None, None, "From"),
    ],
)
def test_bad_message_arguments(
    message: object, sender: object, recipients: object, match: str
) -> None:
    with pytest.raises(InvalidInput, match=match):
        make_envelope(message, sender, recipients)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"hostname": "smtp.example.org\r\nEHLO x"},
        {"local_hostname": "me\nRSET"},
        {"use_tls": True, "start_tls": True},
        {"password": "x", "oauth_token_generator": lambda: None},
        {"timeout": -1},
        {"timeout": 0},
    ],
)
def test_bad_connection_arguments(kwargs: dict[str, object]) -> None:
    with pytest.raises(InvalidInput):
        ConnectParams(**kwargs)  # type: ignore[arg-type]


@settings(max_examples=300, deadline=None)
@given(
    st.text(
        alphabet=st.sampled_from(list('ab.@<>"\\ \r\n\x00\t,:;[]()-+é')) | st.characters(),
        max_size=40,
    )
)
def test_whatever_is_accepted_is_one_clean_mailbox_taken_verbatim(text: str) -> None:
    try:
        mailbox = check_address(text, "recipient")
    except InvalidInput:
        return
    assert mailbox in text
    assert not any(ch in mailbox for ch in "\r\n\x00<>")
    unquoted = mailbox.split('"')[0::2]  # outside a quoted local part
    assert not any(ch.isspace() or ch == "," for part in unquoted for ch in part)
    assert mailbox.count("@") >= 1


def test_only_ordinary_addresses_are_remembered() -> None:
    long_name = "N" * 100_000 + " <a@example.org>"
    assert _validate.check_address(long_name, "recipient") == "a@example.org"
    assert (long_name, False) not in _validate._CHECKED  # a huge key would pin memory
    assert _validate.check_address("Ann <ann@example.org>", "recipient") == "ann@example.org"
    assert ("Ann <ann@example.org>", False) in _validate._CHECKED
