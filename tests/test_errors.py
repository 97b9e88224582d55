"""The exception tree: its drawing, its mixins, pickling, str(), and the seed reply codes."""

from __future__ import annotations

import base64
import builtins
import inspect
import pickle
import re
from collections.abc import Iterator
from typing import Any

import aiosmtplib
import pytest
from _helpers import loopback_server, port_of
from aiosmtpd.smtp import SMTP, AuthResult
from hypothesis import given
from hypothesis import strategies as st

from smtp_guard import errors
from smtp_guard._enums import Category, Phase
from smtp_guard._hints import HINTS, hint_for
from smtp_guard.classify import error_from_reply
from smtp_guard.errors import (
    AuthError,
    AuthFailed,
    AuthRequired,
    CommandSyntaxError,
    ConnectionFailed,
    ConnectTimeout,
    DeliveryUncertain,
    ExtensionNotSupported,
    InsecureConnection,
    InvalidInput,
    MailboxBusy,
    MailboxFull,
    MailboxNotFound,
    MailboxUnavailable,
    PermanentError,
    PolicyRejected,
    ProtocolError,
    RateLimited,
    ReadTimeout,
    RecipientsRefused,
    ReplyError,
    ServerDisconnected,
    SMTPGuardError,
    SMTPTimeout,
    StorageExceeded,
    TLSFailed,
    TooManyRecipients,
    TransientError,
    UnclassifiedReply,
    UserNotLocal,
    category_class,
)


def _roundtrip(err: SMTPGuardError) -> Any:
    return pickle.loads(pickle.dumps(err))  # noqa: S301 (our own bytes)


PUBLIC_CLASSES: list[type[SMTPGuardError]] = [
    obj
    for name in errors.__all__
    if isinstance(obj := getattr(errors, name), type) and issubclass(obj, SMTPGuardError)
]
REPLY_CLASSES = [c for c in PUBLIC_CLASSES if issubclass(c, ReplyError)]
CATEGORY_CLASSES = sorted({category_class(c) for c in Category}, key=lambda c: c.__name__)
PHASES: list[Phase | None] = [None, *Phase]

# The aiosmtplib class that aiosmtplib itself raises for an error reply in each phase.
COMPAT: dict[Phase, type[aiosmtplib.SMTPResponseException]] = {
    Phase.CONNECT: aiosmtplib.SMTPConnectResponseError,
    Phase.EHLO: aiosmtplib.SMTPHeloError,
    Phase.AUTH: aiosmtplib.SMTPAuthenticationError,
    Phase.MAIL: aiosmtplib.SMTPSenderRefused,
    Phase.RCPT: aiosmtplib.SMTPRecipientRefused,
    Phase.DATA: aiosmtplib.SMTPDataError,
    Phase.MESSAGE: aiosmtplib.SMTPDataError,
}
ALL_COMPAT = set(COMPAT.values())


# --------------------------------------------------------------------------- the drawn tree

_NODE = re.compile(r"^(?P<indent>[│ ]*)[├└]── (?P<name>\w+)(?P<rest>.*)$")
_MIXINS = re.compile(r"\+ (?P<names>[\w.]+(?:, [\w.]+)*)")


def _resolve(name: str) -> type:
    if name.startswith("aiosmtplib."):
        found = getattr(aiosmtplib, name.removeprefix("aiosmtplib."))
    elif hasattr(errors, name):
        found = getattr(errors, name)
    else:
        found = getattr(builtins, name)
    assert isinstance(found, type), name
    return found


def _drawn_tree() -> dict[str, tuple[str | None, list[str]]]:
    """class name -> (parent drawn above it, names after its '+')."""
    doc = errors.__doc__ or ""
    block = doc.split("::", 1)[1]
    lines = [line[4:] for line in block.splitlines() if line.startswith("    ")]
    tree: dict[str, tuple[str | None, list[str]]] = {}
    root = lines[0].split()[0]
    root_mixins = _MIXINS.search(lines[0])
    tree[root] = (None, root_mixins["names"].split(", ") if root_mixins else [])
    stack: list[str] = [root]  # stack[d] = last node seen at depth d
    for line in lines[1:]:
        m = _NODE.match(line)
        if m is None:
            continue  # a continuation line of prose
        depth = len(m["indent"]) // 4 + 1
        del stack[depth:]
        mixins = _MIXINS.search(m["rest"])
        tree[m["name"]] = (stack[depth - 1], mixins["names"].split(", ") if mixins else [])
        stack.append(m["name"])
    return tree


def test_drawn_tree_names_every_public_error_class_and_nothing_else() -> None:
    assert set(_drawn_tree()) == {c.__name__ for c in PUBLIC_CLASSES}


@pytest.mark.parametrize("cls", PUBLIC_CLASSES, ids=lambda c: c.__name__)
def test_drawn_parent_and_mixins_match_the_real_bases(cls: type[SMTPGuardError]) -> None:
    parent, mixins = _drawn_tree()[cls.__name__]
    drawn = {_resolve(n) for n in mixins}
    if parent is not None:
        drawn.add(_resolve(parent))
    # Every real base is drawn (as the parent or after '+') ...
    assert set(cls.__bases__) <= drawn
    # ... and everything drawn is really an ancestor.
    for ancestor in drawn:
        assert issubclass(cls, ancestor), f"{cls.__name__} is drawn as a {ancestor.__name__}"


def test_the_tree_parser_sees_nesting() -> None:
    tree = _drawn_tree()
    assert tree["MailboxNotFound"][0] == "MailboxUnavailable"
    assert tree["ConnectTimeout"] == (
        "SMTPTimeout",
        ["aiosmtplib.SMTPConnectTimeoutError", "ConnectionFailed"],
    )
    assert tree["DeliveryUncertain"][0] == "SMTPGuardError"
    assert tree["ExtensionNotSupported"] == ("SMTPGuardError", ["aiosmtplib.SMTPNotSupported"])


def test_every_category_has_its_own_class() -> None:
    for category in Category:
        cls = category_class(category)
        assert cls.category_default is category
        assert cls in REPLY_CLASSES


# --------------------------------------------------------------------------- reply errors


def _concrete_cases() -> Iterator[tuple[type[ReplyError], bool, Phase | None]]:
    for cls in CATEGORY_CLASSES:
        for permanent in (False, True):
            for phase in PHASES:
                yield cls, permanent, phase


def _build(cls: type[ReplyError], permanent: bool, phase: Phase | None) -> ReplyError:
    return cls(
        550 if permanent else 450,
        "5.9.9 Something went wrong\nsecond line",
        phase=phase,
        recipient="rcpt@example.com" if phase is Phase.RCPT else None,
        sender="from@example.com" if phase is Phase.MAIL else None,
        permanent=permanent,
        retry_after=None if permanent else 300.0,
    )


def test_every_generated_class_is_one_permanence_and_its_phase_class() -> None:
    for cls, permanent, phase in _concrete_cases():
        err = _build(cls, permanent, phase)
        assert isinstance(err, cls)
        assert isinstance(err, aiosmtplib.SMTPResponseException)
        assert isinstance(err, PermanentError) is permanent
        assert isinstance(err, TransientError) is not permanent
        assert err.permanent is permanent
        assert err.category is cls.category_default
        assert err.phase is phase
        compat = {c for c in ALL_COMPAT if isinstance(err, c)}
        if phase in COMPAT:
            assert COMPAT[phase] in compat
            assert compat <= {COMPAT[phase], aiosmtplib.SMTPConnectResponseError}
        else:
            assert compat == set()


def test_every_generated_class_pickles_to_an_equal_error_of_the_same_class() -> None:
    for cls, permanent, phase in _concrete_cases():
        err = _build(cls, permanent, phase)
        err.history = (_build(cls, permanent, phase),)
        back = _roundtrip(err)
        assert type(back) is type(err)
        assert back == err
        assert hash(back) == hash(err)
        assert str(back) == str(err)
        assert repr(back) == repr(err)


def test_every_generated_class_is_rebuilt_from_its_own_args() -> None:
    """``type(e)(*e.args)``, as Celery and other serialisers rebuild an exception."""
    for cls, permanent, phase in _concrete_cases():
        err = _build(cls, permanent, phase)
        back = type(err)(*err.args)
        assert type(back) is type(err)
        assert back.args == err.args
        assert (back.code, back.message, back.text, back.enhanced) == (
            err.code,
            err.message,
            err.text,
            err.enhanced,
        )
        assert (back.recipient, back.sender, back.phase) == (err.recipient, err.sender, err.phase)
        assert (back.category, back.permanent) == (err.category, err.permanent)
        assert str(back).startswith(str(err).split(" -- ")[0])


def test_aiosmtplibs_three_arguments_name_the_recipient_or_the_sender() -> None:
    rcpt = MailboxNotFound(550, "5.1.1 No such user", "bob@example.com", phase="rcpt")
    assert rcpt.recipient == "bob@example.com"
    assert rcpt.args == (550, "5.1.1 No such user", "bob@example.com")
    mail = PolicyRejected(550, "5.7.1 Sender refused", "me@example.com", phase="mail")
    assert (mail.sender, mail.recipient) == ("me@example.com", None)
    # Rebuilt by the base class name alone (Celery's JSON results): the phase is unknown,
    # so the address could be either; class, code and text are kept, the address in args.
    named = PolicyRejected(550, "5.7.1 Sender refused", "me@example.com")
    assert (type(named).__name__, named.code, named.text) == (
        "PolicyRejected",
        550,
        "Sender refused",
    )
    assert (named.recipient, named.sender) == (None, None)
    assert named.args == (550, "5.7.1 Sender refused", "me@example.com")
    assert type(named)(*named.args) == named
    assert named.permanent
    assert isinstance(named, aiosmtplib.SMTPResponseException)
    # An explicit keyword wins over the positional.
    assert MailboxNotFound(550, "x", "a@x.test", recipient="b@x.test", phase="rcpt").recipient == (
        "b@x.test"
    )


def test_other_errors_are_rebuilt_from_their_own_args() -> None:
    for err in _other_errors():
        back = type(err)(*err.args)
        assert type(back) is type(err)
        assert back.message == err.message
        assert back.args == err.args
    refused = RecipientsRefused({"a@x.test": MailboxNotFound(550, "5.1.1 No", phase="rcpt")})
    assert type(refused)(*refused.args).refused == refused.refused


def test_recipients_refused_rebuilt_from_its_text_keeps_the_text() -> None:
    """Celery's JSON results carry ``repr(refused)``: the error comes back with that text."""
    text = "{'a@x.test': MailboxNotFound(550, '5.1.1 No such user', phase='rcpt')}"
    err = RecipientsRefused(text)
    assert err.refused == {}
    assert err.args == (text,)
    assert "5.1.1 No such user" in str(err)
    assert "550" in str(err)
    assert len(str(err).splitlines()) == 1
    assert _roundtrip(err) == err


def test_protocol_error_is_what_aiosmtplib_raises_for_a_malformed_reply() -> None:
    err = ProtocolError("Malformed SMTP response line: hello")
    assert isinstance(err, aiosmtplib.SMTPResponseException)
    assert err.code == -1
    assert err.args == (-1, "Malformed SMTP response line: hello")
    assert type(err)(*err.args) == err
    assert _roundtrip(err) == err
    assert ProtocolError("unexpected reply: 354 Go on", code=354).code == 354
    assert ProtocolError(600, "What").message == "What"
    assert not isinstance(err, ReplyError)


def test_phase_attributes_are_those_of_aiosmtplib() -> None:
    mail = error_from_reply(550, "5.7.1 Sender rejected", "mail", sender="a@example.com")
    assert isinstance(mail, aiosmtplib.SMTPSenderRefused)
    assert mail.sender == "a@example.com"
    assert mail.args == (550, "5.7.1 Sender rejected", "a@example.com")
    rcpt = error_from_reply(550, "5.1.1 No such user", "rcpt", "bob@example.com")
    assert isinstance(rcpt, aiosmtplib.SMTPRecipientRefused)
    assert rcpt.recipient == "bob@example.com"
    assert rcpt.args == (550, "5.1.1 No such user", "bob@example.com")
    auth = error_from_reply(535, "5.7.8 Authentication credentials invalid", "auth")
    assert isinstance(auth, aiosmtplib.SMTPAuthenticationError)
    connect = error_from_reply(421, "mx.example.com Service not available", "connect")
    assert isinstance(connect, aiosmtplib.SMTPConnectResponseError)
    assert isinstance(connect, ConnectionError)
    data = error_from_reply(554, "5.6.0 Transaction failed", "message")
    assert isinstance(data, aiosmtplib.SMTPDataError)


def test_old_handlers_catch_reply_errors() -> None:
    err = error_from_reply(550, "5.1.1 No such user", "rcpt", "bob@example.com")
    with pytest.raises(aiosmtplib.SMTPRecipientRefused) as caught:
        raise err
    assert caught.value.code == 550
    assert caught.value.message == "5.1.1 No such user"


def test_a_category_class_can_be_instantiated_directly() -> None:
    err = MailboxFull(452, "4.2.2 Mailbox full, try again in 10 minutes", recipient="x@y.example")
    assert isinstance(err, MailboxFull)
    assert isinstance(err, StorageExceeded)
    assert isinstance(err, TransientError)
    assert not err.permanent
    assert err.code == 452
    assert err.message == "4.2.2 Mailbox full, try again in 10 minutes"
    assert err.enhanced == "4.2.2"
    assert err.text == "Mailbox full, try again in 10 minutes"
    assert err.category is Category.MAILBOX_FULL
    assert err.recipient == "x@y.example"
    assert err.hint  # the category's hint
    assert isinstance(MailboxFull(552, "5.2.2 Over quota"), PermanentError)
    assert isinstance(RateLimited(550, "too fast", permanent=False), TransientError)


def test_broad_classes_build_their_most_specific_category() -> None:
    assert type(AuthError(535, "no")).__name__ == "AuthFailed"
    assert isinstance(AuthError(535, "no"), AuthFailed)
    assert isinstance(ReplyError(550, "?"), UnclassifiedReply)
    assert isinstance(PermanentError(450, "?"), PermanentError)
    assert isinstance(TransientError(550, "?"), TransientError)
    err = MailboxUnavailable(550, "no such user", category=Category.MAILBOX_UNKNOWN)
    assert isinstance(err, MailboxNotFound)
    assert isinstance(ReplyError(452, "x", category="mailbox_full"), MailboxFull)
    with pytest.raises(ValueError, match="MailboxFull"):
        AuthRequired(530, "x", category=Category.MAILBOX_FULL)


def test_rebuilding_from_a_generated_class_keeps_it_consistent() -> None:
    err = MailboxBusy(450, "busy", phase="rcpt", recipient="a@b.example")
    again = type(err)(550, "busy", permanent=True)
    assert isinstance(again, PermanentError)
    assert again.permanent
    assert again.phase is Phase.RCPT
    assert isinstance(again, aiosmtplib.SMTPRecipientRefused)


def test_str_is_one_readable_line_with_everything() -> None:
    err = error_from_reply(
        550, "5.1.1 <bob@example.com>: Recipient address rejected", "rcpt", "bob@example.com"
    )
    text = str(err)
    assert len(text.splitlines()) == 1
    assert text.startswith("550 5.1.1 <bob@example.com>: Recipient address rejected")
    assert "recipient <bob@example.com>" in text
    assert "at RCPT" in text
    assert text.endswith(err.hint)


def test_str_keeps_a_recipient_written_with_a_display_name_as_written() -> None:
    # The caller's own spelling ("Gone <gone@r.test>") is the key and .recipient, as in
    # aiosmtplib; str() must not wrap it in a second pair of brackets.
    err = error_from_reply(550, "5.1.1 no such user", "rcpt", "Gone <gone@r.test>")
    assert "(recipient Gone <gone@r.test>, at RCPT)" in str(err)
    assert "<Gone" not in str(err)
    refused = RecipientsRefused({"Gone <gone@r.test>": err, "bob@r.test": err})
    assert "Gone <gone@r.test> 550" in str(refused)
    assert "<bob@r.test> 550" in str(refused)


def test_str_shows_enhanced_code_given_apart_from_the_text() -> None:
    err = MailboxBusy(450, "Mailbox busy", enhanced="4.2.0", text="Mailbox busy")
    assert str(err).startswith("450 4.2.0 Mailbox busy")


@pytest.mark.parametrize(
    "message",
    [
        b"5.1.1 \xff\xfe\xc3 broken utf-8",
        "lone \ud800 surrogate \udfff",
        "NUL \x00 inside\x07 and ESC \x1b[31m",
        "5.2.2 " + "x" * 100_000,
        "line one\r\nline two\u2028line three\x85end",
        "",
    ],
)
def test_str_never_fails_and_stays_one_printable_line(message: str | bytes) -> None:
    err = error_from_reply(550, message, "rcpt", "bad\udcff\x00@example.com")
    for shown in (str(err), repr(err)):
        assert len(shown.splitlines()) <= 1
        assert len(shown) < 2_000
        shown.encode("utf-8")  # no lone surrogates left
        assert "\x00" not in shown
        assert "\x1b" not in shown


@given(
    code=st.integers(min_value=400, max_value=599),
    text=st.text(alphabet=st.characters(blacklist_categories=())) | st.binary(),
    recipient=st.none() | st.text(alphabet=st.characters(blacklist_categories=())),
    phase=st.sampled_from(PHASES),
)
def test_str_never_fails_on_anything(
    code: int, text: str | bytes, recipient: str | None, phase: Phase | None
) -> None:
    err = error_from_reply(code, text, phase, recipient)
    shown = str(err)
    assert len(shown.splitlines()) == 1
    assert shown.startswith(str(code))
    shown.encode("utf-8")
    repr(err).encode("utf-8")
    # Whatever the classifier decides, the instance agrees with itself.
    assert isinstance(err, category_class(err.category))
    assert isinstance(err, PermanentError) is err.permanent
    assert isinstance(err, TransientError) is not err.permanent
    assert err.phase is phase
    if phase in COMPAT:
        assert isinstance(err, COMPAT[phase])


def test_user_not_local_forward_path() -> None:
    err = error_from_reply(551, "User not local; please try <bob@elsewhere.example>", "rcpt")
    assert isinstance(err, UserNotLocal)
    assert err.forward_path == "bob@elsewhere.example"
    bare = UserNotLocal(551, "5.1.6 User not local; please try bob@new.example.")
    assert bare.forward_path == "bob@new.example"
    assert UserNotLocal(551, "User not local").forward_path is None


# --------------------------------------------------------------------------- the seed list

# RFC 5321 section 4.2 wordings (4.2.2/4.2.3), RFC 4954 for 454/530/535, RFC 7504 for 521.
SEED: list[tuple[int, str, Phase, type[ReplyError]]] = [
    (
        421,
        "mx.example.com Service not available, closing transmission channel",
        Phase.CONNECT,
        errors.ServiceUnavailable,
    ),
    (
        450,
        "Requested mail action not taken: mailbox unavailable (e.g., mailbox busy)",
        Phase.RCPT,
        errors.MailboxBusy,
    ),
    (451, "Requested action aborted: local error in processing", Phase.MESSAGE, errors.ServerError),
    (
        452,
        "Requested action not taken: insufficient system storage",
        Phase.MAIL,
        errors.InsufficientStorage,
    ),
    (454, "4.7.0 Temporary authentication failure", Phase.AUTH, errors.AuthTemporaryFailure),
    (501, "Syntax error in parameters or arguments", Phase.MAIL, errors.CommandSyntaxError),
    (503, "Bad sequence of commands", Phase.RCPT, errors.BadSequence),
    (504, "Command parameter not implemented", Phase.AUTH, errors.CommandNotImplemented),
    (521, "mx.example.com does not accept mail", Phase.CONNECT, errors.DomainNotAccepting),
    (530, "5.7.0 Authentication required", Phase.MAIL, errors.AuthRequired),
    (535, "5.7.8 Authentication credentials invalid", Phase.AUTH, errors.AuthFailed),
    (
        550,
        "Requested action not taken: mailbox unavailable",
        Phase.RCPT,
        errors.MailboxUnavailable,
    ),
    (551, "User not local; please try <bob@elsewhere.example>", Phase.RCPT, errors.UserNotLocal),
    (
        552,
        "Requested mail action aborted: exceeded storage allocation",
        Phase.MESSAGE,
        errors.StorageExceeded,
    ),
    (
        553,
        "Requested action not taken: mailbox name not allowed",
        Phase.MAIL,
        errors.InvalidAddress,
    ),
    (554, "Transaction failed", Phase.MESSAGE, errors.PolicyRejected),
]


@pytest.mark.parametrize(
    ("code", "wording", "phase", "expected"), SEED, ids=[str(s[0]) for s in SEED]
)
def test_seed_codes_map_to_their_classes(
    code: int, wording: str, phase: Phase, expected: type[ReplyError]
) -> None:
    err = error_from_reply(code, wording, phase, "bob@example.com" if phase is Phase.RCPT else None)
    assert isinstance(err, expected)
    assert isinstance(err, PermanentError if code >= 500 else TransientError)
    assert isinstance(err, COMPAT[phase])
    assert err.code == code
    assert err.message == wording
    assert wording.endswith(err.text)
    assert err.phase is phase
    assert _roundtrip(err) == err


def test_552_too_many_recipients_at_rcpt_is_transient_when_classified_so() -> None:
    err = TooManyRecipients(552, "5.5.3 Too many recipients", phase="rcpt", permanent=False)
    assert isinstance(err, TransientError)
    assert isinstance(err, aiosmtplib.SMTPRecipientRefused)


# --------------------------------------------------------------------------- other errors


def _other_errors() -> list[SMTPGuardError]:
    refused = {
        "a@example.com": error_from_reply(550, "5.1.1 No such user", "rcpt", "a@example.com"),
        "b@example.com": error_from_reply(
            451, "4.7.1 Greylisted, try again in 5 minutes", "rcpt", "b@example.com"
        ),
    }
    return [
        SMTPGuardError("something", permanent=True, hint="do this"),
        RecipientsRefused(refused, delivered=["c@example.com"], attempts=2),
        ConnectionFailed("could not connect to 127.0.0.1:2525", retry_after=1.5),
        ServerDisconnected("connection lost during RCPT"),
        SMTPTimeout("timed out"),
        ConnectTimeout("connect timed out"),
        ReadTimeout("no reply in 30s"),
        TLSFailed("certificate verify failed: hostname mismatch"),
        InsecureConnection("refusing to log in as 'bob' to 127.0.0.1:25 without TLS"),
        InvalidInput("recipient contains a line break: 'a@b\\r\\nRCPT'"),
        ProtocolError("reply line without a code: 'hello'"),
        DeliveryUncertain(
            "no reply after the final '.'",
            recipients=["a@example.com"],
            history=[ConnectionFailed("first try")],
        ),
        DeliveryUncertain("connection lost", recipients=["a@example.com"], reason="disconnected"),
        DeliveryUncertain("timed out", reason="timeout", delivered=["b@example.com"]),
        ExtensionNotSupported("no SMTPUTF8", extension="SMTPUTF8"),
        ServerDisconnected("lost", delivered=["a@example.com", "b@example.com"]),
    ]


def test_every_public_class_is_covered_by_the_pickle_tests() -> None:
    covered = {type(e) for e in _other_errors()} | {type(e).__mro__[1] for e in _other_errors()}
    covered |= set(REPLY_CLASSES)
    assert set(PUBLIC_CLASSES) <= covered


@pytest.mark.parametrize("err", _other_errors(), ids=lambda e: type(e).__name__)
def test_other_errors_pickle_and_print_one_line(err: SMTPGuardError) -> None:
    back = _roundtrip(err)
    assert type(back) is type(err)
    assert back == err
    assert hash(back) == hash(err)
    assert len({back, err}) == 1
    assert back.__dict__ == err.__dict__
    assert str(back) == str(err)
    assert len(str(err).splitlines()) == 1
    assert str(err).endswith(err.hint)


def test_other_errors_keep_the_stdlib_bases_handlers_expect() -> None:
    assert isinstance(ConnectionFailed("x"), ConnectionError)
    assert isinstance(ConnectionFailed("x"), aiosmtplib.SMTPConnectError)
    assert isinstance(ServerDisconnected("x"), aiosmtplib.SMTPServerDisconnected)
    assert isinstance(SMTPTimeout("x"), TimeoutError)
    assert isinstance(ConnectTimeout("x"), aiosmtplib.SMTPConnectTimeoutError)
    assert isinstance(ConnectTimeout("x"), ConnectionFailed)
    assert isinstance(ReadTimeout("x"), aiosmtplib.SMTPReadTimeoutError)
    assert isinstance(InvalidInput("x"), ValueError)
    for err in _other_errors():
        assert isinstance(err, aiosmtplib.SMTPException)


def test_defaults_of_permanence_and_attempts() -> None:
    assert not ConnectionFailed("x").permanent
    assert not DeliveryUncertain("x").permanent
    assert InvalidInput("x").permanent
    assert InsecureConnection("x").permanent
    err = DeliveryUncertain("x", recipients=["a@b.example"], attempts=3)
    assert err.recipients == ("a@b.example",)
    assert err.attempts == 3


# --------------------------------------------------------------------------- delivered


def _every_kind_of_error(delivered: tuple[str, ...]) -> list[SMTPGuardError]:
    built: list[SMTPGuardError] = [
        cls(550, "5.9.9 Something", phase=Phase.RCPT, recipient="r@x.example", delivered=delivered)
        for cls in CATEGORY_CLASSES
    ]
    for cls in PUBLIC_CLASSES:
        if issubclass(cls, ReplyError | RecipientsRefused):
            continue
        built.append(cls("something failed", delivered=delivered))
    built.append(RecipientsRefused({}, delivered=delivered))
    return built


def test_every_error_has_an_empty_delivered_by_default() -> None:
    for err in _every_kind_of_error(()):
        assert err.delivered == ()
        assert "delivered" not in str(err)


def test_delivered_is_shown_by_str_and_kept_through_pickling() -> None:
    delivered = ("Ann <ann@example.com>", "bob@example.com")
    for err in _every_kind_of_error(delivered):
        assert err.delivered == delivered
        line = str(err)
        assert len(line.splitlines()) == 1
        assert "already delivered to Ann <ann@example.com>, <bob@example.com>" in line
        assert line.endswith(err.hint)
        back = _roundtrip(err)
        assert back.delivered == delivered
        assert back == err


def test_delivered_in_str_stays_short_and_printable() -> None:
    many = ("evil\r\nx@example.com", *(f"user{i}@example.com" for i in range(1000)))
    line = str(ConnectionFailed("lost", delivered=many))
    assert "and 996 more" in line
    assert len(line) < 2_000
    assert "\r" not in line


def test_an_old_pickle_without_delivered_still_prints() -> None:
    err = ServerDisconnected("lost")
    del err.__dict__["delivered"]  # as pickled before the attribute existed
    back = _roundtrip(err)
    assert back.delivered == ()
    assert str(back).startswith("lost -- ")


# --------------------------------------------------------------------------- drop-in classes


def test_delivery_uncertain_is_also_what_aiosmtplib_raises_there() -> None:
    lost = DeliveryUncertain("x", reason="disconnected")
    timed_out = DeliveryUncertain("x", reason="timeout")
    garbage = DeliveryUncertain("x", reason="bad_reply")
    assert isinstance(lost, aiosmtplib.SMTPServerDisconnected)
    assert isinstance(lost, ConnectionError)
    assert isinstance(timed_out, aiosmtplib.SMTPReadTimeoutError)
    assert isinstance(timed_out, TimeoutError)
    for err in (lost, timed_out, garbage, DeliveryUncertain("x")):
        assert isinstance(err, DeliveryUncertain)
        assert type(err).__name__ == "DeliveryUncertain"
        # never one of our own "retry this" classes
        assert not isinstance(err, ConnectionFailed | SMTPTimeout)
        assert not err.permanent
        back = _roundtrip(err)
        assert type(back) is type(err)
        assert back.reason == err.reason
    assert not isinstance(garbage, ConnectionError | TimeoutError)
    assert type(DeliveryUncertain("x")) is DeliveryUncertain
    with pytest.raises(aiosmtplib.SMTPServerDisconnected):
        raise lost


def test_extension_not_supported_is_permanent_and_drop_in() -> None:
    err = ExtensionNotSupported("no SMTPUTF8", extension="SMTPUTF8")
    assert isinstance(err, aiosmtplib.SMTPNotSupported)
    assert err.permanent
    assert err.extension == "SMTPUTF8"
    assert _roundtrip(err).extension == "SMTPUTF8"


def test_recipients_refused_semantics() -> None:
    hard = error_from_reply(550, "5.1.1 No such user", "rcpt", "a@example.com")
    soft = error_from_reply(450, "4.2.0 Busy, try again in 5 minutes", "rcpt", "b@example.com")
    softer = error_from_reply(450, "4.2.0 Busy, try again in 1 minute", "rcpt", "d@example.com")
    mixed = RecipientsRefused(
        {"a@example.com": hard, "b@example.com": soft, "d@example.com": softer},
        delivered=["c@example.com"],
    )
    assert isinstance(mixed, aiosmtplib.SMTPRecipientsRefused)
    assert mixed.refused == {"a@example.com": hard, "b@example.com": soft, "d@example.com": softer}
    assert mixed.delivered == ("c@example.com",)
    assert not mixed.permanent  # someone may still be reached by retrying
    assert mixed.retry_after == min(
        e.retry_after for e in (soft, softer) if e.retry_after is not None
    )
    assert mixed.recipients == [hard, soft, softer]  # what aiosmtplib's handlers read
    assert all(isinstance(r, aiosmtplib.SMTPRecipientRefused) for r in mixed.recipients)
    line = str(mixed)
    assert len(line.splitlines()) == 1
    assert line.startswith("3 recipient(s) refused: <a@example.com> 550 5.1.1 No such user;")
    assert line.endswith(f"(already delivered to <c@example.com>) -- {mixed.hint}")
    only_hard = RecipientsRefused({"a@example.com": hard})
    assert only_hard.permanent
    assert only_hard.retry_after is None


def test_recipients_refused_str_stays_short_with_many_recipients() -> None:
    refused = {
        f"user{i}@example.com": error_from_reply(
            550, "5.1.1 No such user", "rcpt", f"user{i}@example.com"
        )
        for i in range(1000)
    }
    line = str(RecipientsRefused(refused))
    assert len(line) < 1_000
    assert "and 995 more" in line


# --------------------------------------------------------------------------- secrets


def test_no_error_class_has_a_place_for_a_password() -> None:
    for cls in PUBLIC_CLASSES:
        for klass in cls.__mro__:
            if klass.__module__ != errors.__name__ or "__init__" not in vars(klass):
                continue
            names = set(inspect.signature(klass.__init__).parameters)  # type: ignore[misc]
            assert not names & {"password", "secret", "token", "credentials", "auth_line"}
    with pytest.raises(TypeError):
        InsecureConnection("x", password="hunter2")  # type: ignore[call-arg]
    with pytest.raises(TypeError):
        AuthFailed(535, "x", password="hunter2")  # type: ignore[call-arg]


async def test_a_refused_login_shows_no_credential() -> None:
    """Log in to a real aiosmtpd on loopback with a wrong password, as a client would."""

    def refuse(*_: Any) -> AuthResult:
        return AuthResult(success=False, handled=False)

    class Handler:
        pass

    password = "Sup3r-Secret-pa55"
    secrets = {
        password,
        base64.b64encode(f"\0bob\0{password}".encode()).decode(),
        base64.b64encode(password.encode()).decode(),
    }

    def smtp() -> SMTP:
        return SMTP(Handler(), hostname="server.test", authenticator=refuse, auth_require_tls=False)

    async with loopback_server(smtp) as server:
        client = aiosmtplib.SMTP(
            hostname="127.0.0.1",
            port=port_of(server),
            start_tls=False,
            timeout=5,
            local_hostname="client.test",  # neither side asks socket.getfqdn() (slow on CI)
        )
        await client.connect()
        try:
            with pytest.raises(aiosmtplib.SMTPAuthenticationError) as caught:
                await client.login("bob", password)
        finally:
            await client.quit()
    err = error_from_reply(caught.value.code, caught.value.message, "auth")
    insecure = InsecureConnection("refusing to send credentials for 'bob' to 127.0.0.1 in clear")
    for built in (err, insecure, RecipientsRefused({}, history=[err])):
        assert isinstance(built, SMTPGuardError)
        shown = [str(built), repr(built), pickle.dumps(built).decode("latin-1")]
        shown += [repr(v) for v in vars(built).values()]
        for secret in secrets:
            assert not any(secret in s for s in shown)
    assert isinstance(err, AuthFailed)
    assert isinstance(err, aiosmtplib.SMTPAuthenticationError)
    assert err.code == 535


def test_syntax_error_keeps_its_class_through_history() -> None:
    first = CommandSyntaxError(501, "5.5.4 Bad address syntax", phase="mail")
    last = CommandSyntaxError(501, "5.5.4 Bad address syntax", phase="mail", history=[first])
    assert _roundtrip(last).history == (first,)


# --------------------------------------------------------------------------- hints


def test_every_category_has_one_actionable_english_sentence() -> None:
    assert set(HINTS) == set(Category)
    for category, hint in HINTS.items():
        assert hint_for(category) == hint
        assert hint[0].isupper(), category
        assert hint.endswith("."), category
        assert len(re.findall(r"[.!?](?:\s|$)", hint)) == 1, f"{category}: one sentence"
        assert len(hint) <= 130, category
        assert category_class(category)(550, "x").hint == hint


def test_non_reply_errors_have_their_own_hint() -> None:
    hints = {cls: cls.default_hint for cls in PUBLIC_CLASSES if not issubclass(cls, ReplyError)}
    for cls, hint in hints.items():
        assert hint.endswith("."), cls.__name__
        if cls is not SMTPGuardError:
            assert hint != SMTPGuardError.default_hint, cls.__name__


# Replies to AUTH as servers send them; the first ones echo what the client sent.
_PLAIN = base64.b64encode(b"\0bob\0Sup3r-Secret-pa55").decode()
_LOGIN_PASSWORD = base64.b64encode(b"hunter2").decode()  # AUTH LOGIN, 7-byte password


@pytest.mark.parametrize(
    ("code", "reply", "secret"),
    [
        (500, f'5.5.1 Command unrecognized: "{_PLAIN}"', _PLAIN),  # sendmail's echo
        (501, f"5.5.2 Cannot decode response {_LOGIN_PASSWORD}", _LOGIN_PASSWORD),
        (535, f"5.7.8 Authentication failed for <{_PLAIN.rstrip('=')}>", _PLAIN.rstrip("=")),
    ],
)
def test_a_server_echoing_credentials_at_auth_is_redacted(
    code: int, reply: str, secret: str
) -> None:
    err = error_from_reply(code, reply, "auth")
    for shown in (str(err), repr(err), err.message, err.text, repr(err.args)):
        assert secret not in shown
        assert "[redacted]" in shown
    assert secret.encode() not in pickle.dumps(err)


@pytest.mark.parametrize(
    "reply",
    [
        "5.7.8 Username and Password not accepted. For more information, go to\n"
        "5.7.8  https://support.google.com/mail/?p=BadCredentials "
        "d9443c01a7336-29bafb0d0c0sm12345678b3a.5 - gsmtp",
        "5.7.139 Authentication unsuccessful, the user credentials were incorrect. "
        "[AM0PR02CA0123.eurprd02.prod.outlook.com 2024-01-01T00:00:00.000Z 08DC0000AAAA0000]",
        "5.7.0 SMTP AUTH disabled for Mailbox123",
        "5.7.8 Error: authentication failed: authentication failure",
    ],
)
def test_ordinary_auth_replies_are_kept_as_received(reply: str) -> None:
    err = error_from_reply(535, reply, "auth")
    assert err.message == reply
    assert "[redacted]" not in str(err)


def test_redaction_is_only_for_replies_to_auth() -> None:
    reply = f"5.1.1 <{_PLAIN}@example.com> unknown"
    assert error_from_reply(550, reply, "rcpt").message == reply
