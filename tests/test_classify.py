"""Classification: rule tables, permanence, phases, the real-reply corpus, fuzzing."""

from __future__ import annotations

import ast
import csv
import doctest
import importlib
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import aiosmtplib
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from smtp_guard import _rules, enhanced
from smtp_guard._enums import Category, Phase
from smtp_guard._hints import hint_for
from smtp_guard.classify import Classification, classify, error_from_reply
from smtp_guard.errors import (
    AuthFailed,
    MailboxFull,
    MailboxNotFound,
    PermanentError,
    ProtocolError,
    ReplyError,
    TooManyRecipients,
    TransientError,
    UserNotLocal,
    category_class,
)
from smtp_guard.replies import MAX_RETRY_AFTER, parse_retry_after, split_enhanced

DATA = Path(__file__).parent / "data"


@dataclass(frozen=True)
class Row:
    code: int
    phase: str | None
    text: str
    expected: Category
    source: str
    line: int


def load(name: str) -> list[Row]:
    rows = []
    with (DATA / name).open(encoding="utf-8", newline="") as handle:
        reader = csv.DictReader(handle, delimiter="\t", quoting=csv.QUOTE_NONE)
        for line, row in enumerate(reader, start=2):
            rows.append(
                Row(
                    int(row["code"]),
                    row["phase"] or None,
                    row["text"].replace("\\n", "\n"),
                    Category(row["expected"]),
                    row["source"],
                    line,
                )
            )
    return rows


DEV = load("replies_dev.tsv")
HELD_OUT = load("replies_heldout.tsv")
#: The dev rows from this line of replies_dev.tsv on (batches 7 and 8) were labelled by people
#: who never saw the rules; the rows above it by the rules' author (tests/data/README.md).
INDEPENDENT_FROM_LINE = 651


# --------------------------------------------------------------------------- seed mapping

#: RFC 5321 4.2.2 / 4.2.3 (RFC 4954 for 454, 530, 535; RFC 7504 for 521) wordings.
SEED = [
    (
        421,
        "mx.example.com Service not available, closing transmission channel",
        Category.SERVICE_UNAVAILABLE,
        False,
    ),
    (450, "Requested mail action not taken: mailbox unavailable", Category.MAILBOX_BUSY, False),
    (451, "Requested action aborted: local error in processing", Category.SERVER_ERROR, False),
    (
        452,
        "Requested action not taken: insufficient system storage",
        Category.INSUFFICIENT_STORAGE,
        False,
    ),
    (454, "4.7.0 Temporary authentication failure", Category.AUTH_TEMPORARY, False),
    (501, "Syntax error in parameters or arguments", Category.SYNTAX_ERROR, True),
    (503, "Bad sequence of commands", Category.BAD_SEQUENCE, True),
    (504, "Command parameter not implemented", Category.NOT_IMPLEMENTED, True),
    (521, "mx.example.com does not accept mail", Category.DOMAIN_NOT_ACCEPTING, True),
    (530, "5.7.0 Authentication required", Category.AUTH_REQUIRED, True),
    (535, "5.7.8 Authentication credentials invalid", Category.AUTH_FAILED, True),
    (550, "Requested action not taken: mailbox unavailable", Category.MAILBOX_UNAVAILABLE, True),
    (551, "User not local; please try <bob@elsewhere.example>", Category.USER_NOT_LOCAL, True),
    (
        552,
        "Requested mail action aborted: exceeded storage allocation",
        Category.STORAGE_EXCEEDED,
        True,
    ),
    (553, "Requested action not taken: mailbox name not allowed", Category.BAD_ADDRESS, True),
    (554, "Transaction failed", Category.POLICY_REJECTED, True),
]


@pytest.mark.parametrize("phase", [None, "rcpt", "message"])
@pytest.mark.parametrize(("code", "text", "category", "permanent"), SEED)
def test_seed_mapping_for_the_rfc_wordings(
    code: int, text: str, category: Category, permanent: bool, phase: str | None
) -> None:
    if phase == "message" and code in (454, 530, 535):
        phase = "auth"  # the AUTH replies answer AUTH
    found = classify(code, text, phase)
    assert found.category is category
    assert found.permanent is permanent
    assert found.hint == hint_for(category)


@pytest.mark.parametrize(("code", "category"), [(c, cat) for c, _, cat, _ in SEED])
def test_a_bare_code_falls_back_to_the_rfc_meaning(code: int, category: Category) -> None:
    assert classify(code, "").category is category


# --------------------------------------------------------------------------- rules in order


@pytest.mark.parametrize(
    ("code", "text", "phase", "category"),
    [
        # Phase matters.
        (530, "5.7.0 Must issue a STARTTLS command first", "mail", Category.TLS_REQUIRED),
        (530, "5.7.0 Authentication required", "mail", Category.AUTH_REQUIRED),
        (550, "5.7.1 Access denied", "auth", Category.AUTH_FAILED),
        (
            454,
            "4.7.0 Too many login attempts, please try again later",
            "auth",
            Category.AUTH_TEMPORARY,
        ),
        # "Access denied", even at the greeting, names no list and no block of the host:
        # policy, not a blocklist (_rules docstring).
        (554, "Access denied", "connect", Category.POLICY_REJECTED),
        (554, "Access denied", "message", Category.POLICY_REJECTED),
        (
            550,
            "Requested action not taken: mailbox unavailable",
            "rcpt",
            Category.MAILBOX_UNAVAILABLE,
        ),
        (552, "5.5.3 Too many recipients", "rcpt", Category.TOO_MANY_RECIPIENTS),
        # The enhanced code decides when the words are vague.
        (550, "5.2.2 sorry", None, Category.MAILBOX_FULL),
        (554, "5.7.26 rejected", None, Category.SENDER_AUTH_FAILED),
        (550, "5.1.2 bad domain", "rcpt", Category.HOST_UNKNOWN),
        (451, "4.7.1 Please try again later", "rcpt", Category.GREYLISTED),
        (
            550,
            "5.7.1 Delivery not authorized, message refused",
            "message",
            Category.POLICY_REJECTED,
        ),
        # Unmistakable words outrank a misused enhanced code.
        (
            552,
            "5.1.1 5.2.2 sorry, final recipient mailbox is full (chkuser)",
            "rcpt",
            Category.MAILBOX_FULL,
        ),
        (550, "5.7.1 No such user!", "rcpt", Category.MAILBOX_UNKNOWN),
        (
            421,
            "4.7.29 Your email has been rate limited because this message wasn't sent over "
            "a TLS connection.",
            None,
            Category.TLS_REQUIRED,
        ),
        (
            450,
            "4.2.1 The user you are trying to contact is receiving mail too quickly.",
            "rcpt",
            Category.RATE_LIMITED,
        ),
        (
            550,
            "5.7.1 Service unavailable; Client host [192.0.2.1] blocked using zen.spamhaus.org",
            "rcpt",
            Category.BLOCKLISTED,
        ),
        (
            450,
            "4.7.1 <bob@example.com>: Recipient address rejected: Greylisted for 5 minutes",
            "rcpt",
            Category.GREYLISTED,
        ),
        # Other languages.
        (550, "Benutzer nicht bekannt", "rcpt", Category.MAILBOX_UNKNOWN),
        (552, "Boîte aux lettres pleine", "rcpt", Category.MAILBOX_FULL),
        (550, "Schránka je plná", "rcpt", Category.MAILBOX_FULL),
        (550, "Адрес не существует", "rcpt", Category.MAILBOX_UNKNOWN),
        (550, "Destinataire inconnu", "rcpt", Category.MAILBOX_UNKNOWN),
        (554, "Сообщение похоже на спам", "message", Category.SPAM_REJECTED),
        (550, "Destinatario sconosciuto: utente inesistente", "rcpt", Category.MAILBOX_UNKNOWN),
        (550, "Usuário inexistente", "rcpt", Category.MAILBOX_UNKNOWN),
        (550, "Пользователь не найден", "rcpt", Category.MAILBOX_UNKNOWN),
        (550, "该用户不存在", "rcpt", Category.MAILBOX_UNKNOWN),
        (552, "收件人邮箱已满", "rcpt", Category.MAILBOX_FULL),
        (
            554,
            "DT:SPM 163 mx14,abc,please see http://mail.163.com/",
            "message",
            Category.SPAM_REJECTED,
        ),
        (421, "Zu viele Verbindungen von Ihrer IP", "connect", Category.RATE_LIMITED),
        (550, "Votre IP est sur liste noire", "connect", Category.BLOCKLISTED),
        (451, "Bitte versuchen Sie es später erneut", "rcpt", Category.GREYLISTED),
        (451, "Сервис временно недоступен", "rcpt", Category.SERVICE_UNAVAILABLE),
        (554, "Relaying verweigert", "rcpt", Category.RELAY_DENIED),
        (550, "Usuário não encontrado", "rcpt", Category.MAILBOX_UNKNOWN),
        (550, "The email address you entered couldn't be found.", "rcpt", Category.MAILBOX_UNKNOWN),
        (550, "The domain could not be found", "rcpt", Category.HOST_UNKNOWN),
        (550, "Message rejected: suspicious content", "message", Category.SPAM_REJECTED),
        (550, "5.1.1 RESOLVER.ADR.RecipNotFound; not found", "rcpt", Category.MAILBOX_UNKNOWN),
        # The words of an address are a name, not a reason.
        (
            550,
            "5.1.1 <report@spamcop.net>: Recipient address rejected: User unknown",
            "rcpt",
            Category.MAILBOX_UNKNOWN,
        ),
        (550, "bob@earthlink.example...User unknown", "rcpt", Category.MAILBOX_UNKNOWN),
        (550, "<bob@blocked.example> rejected: spam detected", "message", Category.SPAM_REJECTED),
        # RCPT answered with an unspecific addressing status refuses the recipient's mailbox.
        (550, "#5.1.0 Address rejected.", "rcpt", Category.MAILBOX_UNKNOWN),
        (550, "5.1.0 Address rejected.", "mail", Category.BAD_ADDRESS),
        # A relay refusal never reads as a disabled mailbox.
        (550, "Relay Disabled", "rcpt", Category.RELAY_DENIED),
        (
            550,
            "5.7.1 <a@example.com>: Sender address rejected: Access denied",
            "rcpt",
            Category.POLICY_REJECTED,
        ),
        # Nothing known: the basic code, or OTHER for a code no RFC defines.
        (559, "whatever", None, Category.OTHER),
        (250, "OK", None, Category.OTHER),
    ],
)
def test_rules(code: int, text: str, phase: str | None, category: Category) -> None:
    assert classify(code, text, phase).category is category


# --------------------------------------------------------------------------- mailbox states


@pytest.mark.parametrize(
    ("code", "text", "phase", "category"),
    [
        # The server's words for a busy mailbox outrank a generic or misused enhanced code.
        (450, "4.2.0 Mailbox busy", "rcpt", Category.MAILBOX_BUSY),
        (450, "4.2.1 Mailbox busy, try again later", "rcpt", Category.MAILBOX_BUSY),
        (450, "4.2.1 Mailbox temporarily unavailable", "rcpt", Category.MAILBOX_BUSY),
        (451, "Recipient temporarily unavailable, try again later", "rcpt", Category.MAILBOX_BUSY),
        (550, "Recipient temporarily unavailable", "rcpt", Category.MAILBOX_UNAVAILABLE),
        (451, "4.2.0 Mailbox is locked by another process", "rcpt", Category.MAILBOX_BUSY),
        (451, "4.3.0 Timeout while waiting for lock", None, Category.MAILBOX_BUSY),
        (
            432,
            "4.3.2 STOREDRV.Deliver; recipient thread limit exceeded",
            None,
            Category.MAILBOX_BUSY,
        ),
        # A transient X.2.1 is not a disabled mailbox: the words, else a busy one.
        (450, "4.2.1", "rcpt", Category.MAILBOX_BUSY),
        (
            450,
            "4.2.1 The user you are trying to contact is receiving mail too quickly.",
            "rcpt",
            Category.RATE_LIMITED,
        ),
        (450, "4.2.1 Mailbox disabled, not accepting messages", "rcpt", Category.MAILBOX_DISABLED),
        # A permanent X.2.1 and a permanent "locked" are a disabled mailbox.
        (550, "5.2.1 sorry", "rcpt", Category.MAILBOX_DISABLED),
        (550, "5.2.1 Account is locked", "rcpt", Category.MAILBOX_DISABLED),
        (550, "Mailbox busy", "rcpt", Category.MAILBOX_UNAVAILABLE),
        # Whose quota: the enhanced subject says.
        (550, "5.7.1 Email quota exceeded.", None, Category.RATE_LIMITED),
        (550, "5.7.1 Quota exceeded", "rcpt", Category.RATE_LIMITED),
        (552, "5.2.2 Quota exceeded", "rcpt", Category.MAILBOX_FULL),
        (552, "Quota exceeded", "rcpt", Category.MAILBOX_FULL),
        (
            452,
            "4.2.2 The email account that you tried to reach is over quota.",
            "rcpt",
            Category.MAILBOX_FULL,
        ),
        (550, "5.4.5 Daily user sending quota exceeded.", None, Category.RATE_LIMITED),
        # "to many" for "too many" is a frequent misspelling in real replies.
        (450, "4.2.1 You sent to many mails in the last 10 minutes", "mail", Category.RATE_LIMITED),
    ],
)
def test_mailbox_states(code: int, text: str, phase: str | None, category: Category) -> None:
    assert classify(code, text, phase).category is category


@pytest.mark.parametrize(
    ("code", "text", "phase", "category"),
    [
        # RFC 4954's AUTH-only codes answer AUTH when the phase is not known.
        (
            535,
            "5.7.139 Authentication unsuccessful, SmtpClientAuthentication is disabled for the "
            "Tenant.",
            None,
            Category.AUTH_FAILED,
        ),
        (535, "5.7.139 Authentication unsuccessful, account locked", None, Category.AUTH_FAILED),
        (534, "5.7.9 Application-specific password required.", None, Category.AUTH_FAILED),
        # ... but not 530, which answers MAIL too.
        (530, "5.7.0 Must issue a STARTTLS command first", None, Category.TLS_REQUIRED),
        # A recipient that "does not exist", however the sentence runs.
        (
            550,
            "The account you tried to deliver to does not exist",
            "rcpt",
            Category.MAILBOX_UNKNOWN,
        ),
        # Connection limits are rate limits, whatever the enhanced code.
        (
            421,
            "4.3.2 The maximum number of concurrent connections has exceeded a limit, closing "
            "transmission channel",
            "connect",
            Category.RATE_LIMITED,
        ),
    ],
)
def test_auth_codes_absent_recipients_and_connection_limits(
    code: int, text: str, phase: str | None, category: Category
) -> None:
    assert classify(code, text, phase).category is category


def test_an_auth_only_code_keeps_the_callers_phase_on_the_error() -> None:
    err = error_from_reply(535, "5.7.139 Authentication unsuccessful, account disabled")
    assert err.phase is None
    assert err.category is Category.AUTH_FAILED


# --------------------------------------------------------------------------- names, not reasons


@pytest.mark.parametrize(
    ("code", "text", "phase", "category"),
    [
        # A host name's words are not read as the reason ("invalid" + "recipient address").
        (
            550,
            "5.1.1 mx.example.invalid>: Recipient address rejected: User unknown",
            "rcpt",
            Category.MAILBOX_UNKNOWN,
        ),
        (550, "host mail.spam.example.com said: User unknown", "rcpt", Category.MAILBOX_UNKNOWN),
        # Nor a URL's ("spam" in a policy page's address).
        (
            550,
            "5.7.1 Message refused, see https://help.example.com/spam-policy.html",
            "message",
            Category.POLICY_REJECTED,
        ),
        (
            421,
            "4.7.0 Try again later, closing connection. "
            "https://support.google.com/mail/?p=UnsolicitedRateLimitError",
            "message",
            Category.SERVICE_UNAVAILABLE,
        ),
        # A block list named inside a host name or URL is the reason.
        (
            554,
            "5.7.1 Rejected, see https://www.spamhaus.org/query/ip/192.0.2.1",
            "rcpt",
            Category.BLOCKLISTED,
        ),
        (550, "5.7.1 Rejected: see bl.spamcop.net", "rcpt", Category.BLOCKLISTED),
        # A sentence missing its space is not a host name; Exchange's dotted tokens are kept.
        (550, "Sorry, user unknown.No mail for this address", "rcpt", Category.MAILBOX_UNKNOWN),
        (
            550,
            "5.4.1 Recipient address rejected: Access denied. AS(201806281)",
            "rcpt",
            Category.MAILBOX_UNKNOWN,
        ),
        (
            554,
            "5.2.0 STOREDRV.Submission.Exception:SubmissionQuotaExceededException",
            None,
            Category.RATE_LIMITED,
        ),
    ],
)
def test_host_names_and_urls_are_names(
    code: int, text: str, phase: str | None, category: Category
) -> None:
    assert classify(code, text, phase).category is category


@pytest.mark.parametrize(
    ("text", "left"),
    [
        ("see https://support.example/?p=Blocked now", "see now"),
        ("mx.example.invalid>: recipient", ">: recipient"),
        ("postmaster.yahooinc.com/error-codes x", "x"),
        ("host mail.example.com[192.0.2.1] said", "host [192.0.2.1] said"),
        ("blocked using zen.spamhaus.org", "blocked using spamhaus"),
        ("mailbox full.no more", "mailbox full.no more"),
        ("5.7.1 resolver.adr.recipnotfound", "5.7.1 resolver.adr.recipnotfound"),
        ("e.g. this", "e.g. this"),
    ],
)
def test_what_is_taken_out_as_a_name(text: str, left: str) -> None:
    assert " ".join(_rules.without_names(text).split()) == left


# --------------------------------------------------------------------------- refusals


@pytest.mark.parametrize(
    ("code", "text", "phase", "category"),
    [
        # Listing cues.
        (
            554,
            "5.7.1 Service unavailable; Client host [192.0.2.1] blocked using zen.spamhaus.org",
            "rcpt",
            Category.BLOCKLISTED,
        ),
        (
            550,
            "5.7.606 Access denied, banned sending IP [192.0.2.1]. To request removal from this "
            "list please visit https://sender.office.com/ and follow the directions.",
            "rcpt",
            Category.BLOCKLISTED,
        ),
        (
            550,
            "5.7.1 Your IP 192.0.2.1 is listed at b.barracudacentral.org",
            None,
            Category.BLOCKLISTED,
        ),
        (
            550,
            "5.7.1 Mail from IP 192.0.2.1 refused due to poor reputation",
            None,
            Category.BLOCKLISTED,
        ),
        (550, "5.7.1 Dynamic IP addresses are not accepted", "connect", Category.BLOCKLISTED),
        (554, "Your address 192.0.2.1 is blacklisted", "connect", Category.BLOCKLISTED),
        # A block of the sending IP or host by the receiving provider is a list of its own
        # (unblocking is the fix), and at the greeting only the host can be blocked.
        (554, "Blocked", "connect", Category.BLOCKLISTED),
        (554, "5.7.1 You are a spammer", "connect", Category.BLOCKLISTED),
        (550, "5.7.1 Your IP address has been blocked", "rcpt", Category.BLOCKLISTED),
        (
            421,
            "4.3.2 Your IP(192.0.2.104) is filtered, connection closed",
            None,
            Category.BLOCKLISTED,
        ),
        (550, "Sorry, no access for this ip", "mail", Category.BLOCKLISTED),
        (
            550,
            "5.7.708 Access denied, traffic not accepted from this IP.",
            None,
            Category.BLOCKLISTED,
        ),
        # ... but a rate named with it is a rate limit (Google's 421 4.7.0).
        (
            421,
            "4.7.0 Unusual rate of unsolicited mail originating from your IP address: mail "
            "sent from your IP address has been blocked",
            None,
            Category.RATE_LIMITED,
        ),
        # No listing cue and no host named: a refusal by policy, whatever it refuses.
        (550, "5.7.1 Blocked", "rcpt", Category.POLICY_REJECTED),
        # A list of refused senders is a listing too (the provider's or the recipient's own).
        (550, "5.7.1 Sender address blocked", "connect", Category.BLOCKLISTED),
        (550, "User in blacklist", "rcpt", Category.BLOCKLISTED),
        (
            553,
            "sorry, your envelope sender is in my badmailfrom list (#5.7.1)",
            "mail",
            Category.BLOCKLISTED,
        ),
        # A recipient's refusal that names no list stays policy.
        (554, "5.7.1 The recipient does not want your mail", "rcpt", Category.POLICY_REJECTED),
        (
            554,
            "5.7.1 Client host [192.0.2.1] rejected: Access denied",
            "rcpt",
            Category.POLICY_REJECTED,
        ),
        (550, "5.7.1 Connection rejected by policy", "connect", Category.POLICY_REJECTED),
        (
            550,
            "5.7.1 Delivery not authorized, message refused",
            "message",
            Category.POLICY_REJECTED,
        ),
        # Content cues.
        (
            550,
            "5.7.1 Message rejected as spam by Content Filtering.",
            "message",
            Category.SPAM_REJECTED,
        ),
        (554, "5.7.1 Virus found in message", "message", Category.SPAM_REJECTED),
        (550, "5.7.1 Message contains suspicious links", "message", Category.SPAM_REJECTED),
        # Relay needs the word.
        (554, "5.7.1 <bob@example.com>: Relay access denied", "rcpt", Category.RELAY_DENIED),
        (550, "5.7.1 Unable to relay for bob@example.com", "rcpt", Category.RELAY_DENIED),
    ],
)
def test_refusals_need_an_explicit_cue(
    code: int, text: str, phase: str | None, category: Category
) -> None:
    assert classify(code, text, phase).category is category


_REFUSAL_WORDS = [
    "Access denied",
    "Rejected",
    "Refused",
    "Not allowed",
    "Denied by policy",
    "Message rejected by policy",
    "Connection refused",
    "Client host rejected",
    "Forbidden",
]


@pytest.mark.parametrize("phase", [None, "connect", "ehlo", "mail", "rcpt", "data", "message"])
@pytest.mark.parametrize("enhanced", ["", "5.7.0 ", "5.7.1 "])
@pytest.mark.parametrize("code", [550, 553, 554])
@pytest.mark.parametrize("words", _REFUSAL_WORDS)
def test_a_bare_refusal_is_never_a_listing_spam_or_relay(
    words: str, code: int, enhanced: str, phase: str | None
) -> None:
    found = classify(code, enhanced + words, phase).category
    assert found not in (Category.BLOCKLISTED, Category.SPAM_REJECTED, Category.RELAY_DENIED)


@pytest.mark.parametrize(
    ("code", "text", "phase", "category"),
    [
        # Postfix's "Sender address rejected" names what was refused; the status says why.
        # Security or policy (X.7.x, an access map's reply): a policy refusal.
        (554, "5.7.1 <a@example.com>: Sender address rejected: Dumb.", None, "policy_rejected"),
        (554, "5.7.1 <a@example.com>: Sender address rejected: Go away", "mail", "policy_rejected"),
        (554, "5.7.1 <a@example.com>: Sender address rejected: No", "rcpt", "policy_rejected"),
        (553, "5.7.0 <a@example.com>: Sender address rejected: Nope", "rcpt", "policy_rejected"),
        # Addressing (X.1.x): the address itself.
        (550, "5.1.8 <a@example.invalid>: Sender address rejected: Domain not found", "mail",
         "bad_address"),
        (450, "4.1.8 <a@example.invalid>: Sender address rejected: Domain not found", "rcpt",
         "bad_address"),
        (550, "5.1.0 <a@example.com>: Sender address rejected: undeliverable address", "mail",
         "bad_address"),
        # No status: the words alone, as before.
        (550, "<a@example.com>: Sender address rejected", "rcpt", "bad_address"),
        # A defect of the address named after the prefix decides whatever the status.
        (554, "5.7.1 <a>: Sender address rejected: need fully-qualified address", "rcpt",
         "bad_address"),
        (550, "5.7.1 sender <a@example.test> from RFC2606 reserved domain #128", "mail",
         "bad_address"),
    ],
)  # fmt: skip
def test_a_refused_sender_is_read_by_the_status_subject(
    code: int, text: str, phase: str | None, category: str
) -> None:
    """RFC 3463: subject 1 is addressing, subject 7 security or policy."""
    assert classify(code, text, phase).category is Category(category)


@pytest.mark.parametrize("phase", ["connect", "ehlo"])
@pytest.mark.parametrize(
    ("code", "text"),
    [(553, "5.1.8 Your name has no DNS record"), (550, "5.1.0 Go away"), (553, "Go away")],
)
def test_no_address_is_judged_before_one_is_given(code: int, text: str, phase: str) -> None:
    """At the greeting and EHLO no mail address has been given: an addressing status (X.1.x)
    or a 553 "mailbox name not allowed" there refuses the client's name, by policy."""
    assert classify(code, text, phase).category is Category.POLICY_REJECTED
    # The same replies in answer to MAIL FROM are about the sender's address.
    assert classify(553, text, "mail").category is Category.BAD_ADDRESS


@pytest.mark.parametrize(
    "text",
    [
        "5.1.1 <bob@example.com>",
        "5.1.1 Recipient address rejected",
        "5.1.1 <bob@example.com>: User unknown",
        "5.1.1 No such user here",
        "Mailbox unavailable",
    ],
)
def test_551_is_user_not_local_whatever_its_words_say_of_the_user(text: str) -> None:
    """RFC 5321 4.2.2: 551 is "User not local"; neither X.1.1 nor words of an unknown user
    turn it into another mailbox state: the user is not hosted here (issue 2's seed list)."""
    assert classify(551, text, "rcpt").category is Category.USER_NOT_LOCAL
    assert classify(550, text, "rcpt").category is not Category.USER_NOT_LOCAL
    # Words of another kind still decide.
    assert classify(551, "5.7.1 Multiple addresses in From are not allowed").category is (
        Category.POLICY_REJECTED
    )


@pytest.mark.parametrize(
    ("code", "text", "phase", "category"),
    [
        (
            554,
            "5.7.1 Service unavailable; Sender address [s@example.com] blocked using "
            "dbl.spamhaus.org",
            "rcpt",
            Category.BLOCKLISTED,
        ),
        (541, "5.4.1 Mail rejected by destination domain", "rcpt", Category.POLICY_REJECTED),
        (
            550,
            "5.7.750 Service unavailable. Client blocked from sending from unregistered domains",
            "mail",
            Category.POLICY_REJECTED,
        ),
        # the recipient's own list of refused senders: a listing, as "User in blacklist"
        (550, "5.7.1 Sender blocked by recipient", "rcpt", Category.BLOCKLISTED),
        (
            550,
            "5.7.1 This recipient is not allowed to receive mail from external senders",
            "rcpt",
            Category.POLICY_REJECTED,
        ),
        (551, "5.1.7 Invalid sender address", "mail", Category.BAD_ADDRESS),
        (551, "5.1.3 Bad recipient address syntax", "rcpt", Category.BAD_ADDRESS),
        (
            550,
            "5.1.1 User unknown (while relaying to mx.example.com)",
            "rcpt",
            Category.MAILBOX_UNKNOWN,
        ),
        (
            554,
            "5.4.6 Hop count exceeded - possible mail loop while relaying",
            "data",
            Category.OTHER,
        ),
        (550, "5.7.1 anti-virus unavailable", "message", Category.SERVER_ERROR),
        (
            451,
            "4.5.0 Error in processing, id=1, virus_scan FAILED: ALL VIRUS SCANNERS FAILED",
            "message",
            Category.SERVER_ERROR,
        ),
        (421, "4.3.2 Service not available, spam filter offline", "connect", Category.SERVER_ERROR),
        (451, "4.7.1 Sender rate exceeds 100 messages per 1h", "rcpt", Category.RATE_LIMITED),
        (
            552,
            "5.2.2 The number of messages has exceeded the maximum for this mailbox",
            "rcpt",
            Category.MAILBOX_FULL,
        ),
        (
            550,
            "5.7.1 Mail from dynamic IP addresses not accepted, static IP address required",
            "mail",
            Category.BLOCKLISTED,
        ),
        (554, "Your IP 192.0.2.0/24 is blocked", "rcpt", Category.BLOCKLISTED),
        (501, "5.7.1 EHLO rejected: your IP has no PTR record", "ehlo", Category.POLICY_REJECTED),
        (501, "EHLO Invalid domain address.", "ehlo", Category.SYNTAX_ERROR),
        (551, "5.1.1 No such user here", "rcpt", Category.USER_NOT_LOCAL),
        (
            553,
            "Relaying through this server requires authentication. Please authenticate before "
            "sending.",
            "rcpt",
            Category.RELAY_DENIED,
        ),
    ],
)
def test_near_misses_of_the_block_sequence_and_failure_rules(
    code: int, text: str, phase: str, category: Category
) -> None:
    """Replies that share words with the IP-block, sender-block, relay, rate, server-failure
    and code-over-words rules but mean something else, or that those rules must still catch
    (found in review)."""
    assert classify(code, text, phase).category is category


@pytest.mark.parametrize(
    ("code", "text", "phase", "category"),
    [
        # A message that expired in a queue: its destination stayed unreachable.
        (550, "4.4.7 QUEUE.Expired; message expired", None, Category.SERVICE_UNAVAILABLE),
        (550, "5.4.300 Message expired", None, Category.SERVICE_UNAVAILABLE),
        # RFC 3463 X.1.6: moved, no forwarding address - the user is no longer here.
        (550, "5.1.6 recipient no longer on server", "rcpt", Category.USER_NOT_LOCAL),
        # RFC 3207's wording is transient; a bare "TLS not available" is TLS not offered.
        (454, "4.7.0 TLS not available due to temporary reason", "starttls",
         Category.SERVICE_UNAVAILABLE),
        (454, "TLS not available", "starttls", Category.NOT_IMPLEMENTED),
        # Line endings and characters SMTP forbids: a malformed transmission.
        (553, "Stray linefeeds in message (#5.6.2)", "message", Category.SYNTAX_ERROR),
        (554, "5.6.11 Invalid characters", "message", Category.SYNTAX_ERROR),
        # Issue 2's seed list keeps a 450 "mailbox unavailable" a busy mailbox.
        (450, "4.2.1 Mailbox temporarily unavailable", "rcpt", Category.MAILBOX_BUSY),
    ],
)  # fmt: skip
def test_readings_independent_labellers_agreed_on(
    code: int, text: str, phase: str | None, category: Category
) -> None:
    """Families where two labellers who never saw the rules agreed against the first
    labelling of the dev rows (tests/data/README.md, the eighth round)."""
    assert classify(code, text, phase).category is category


def test_a_503_is_a_bad_sequence_whatever_protocol_words_it_uses() -> None:
    text = "5.5.0 SMTP protocol violation: A mail transaction is already in progress"
    assert classify(503, text, "mail").category is Category.BAD_SEQUENCE
    assert classify(500, "5.5.0 SMTP protocol violation", "mail").category is (
        Category.SYNTAX_ERROR
    )


def test_no_valid_recipients_answering_data_is_a_sequence_error() -> None:
    """Postfix answers DATA with no accepted recipient "554 5.5.1 Error: no valid recipients"
    (whatever phase a log files it under); other servers' "no valid recipients" answering
    RCPT report the recipients refused."""
    assert classify(554, "5.1.1 no valid recipients", "data").category is Category.BAD_SEQUENCE
    for phase in ("data", "rcpt", None):
        found = classify(554, "5.5.1 Error: no valid recipients", phase).category
        assert found is Category.BAD_SEQUENCE
    found = classify(550, "Message rejected (no valid recipients)", "rcpt").category
    assert found is not Category.BAD_SEQUENCE


@pytest.mark.parametrize(
    ("code", "category"), [(501, Category.SYNTAX_ERROR), (550, Category.POLICY_REJECTED)]
)
def test_a_501_to_ehlo_is_a_malformed_name_not_a_refusal(code: int, category: Category) -> None:
    """RFC 5321: 501 is a syntax error in the parameters, and EHLO's only one is the name."""
    assert classify(code, "EHLO Invalid domain address.", "ehlo").category is category


# --------------------------------------------------------------------------- permanence


@pytest.mark.parametrize(
    "text",
    [
        "5.1.6 User not local; please try <bob@elsewhere.example>",
        "User not local; please try <bob@elsewhere.example>",
        "5.1.6 please try <bob@elsewhere.example>",
        "5.1.1 The user is not local; please try <bob@elsewhere.example>",
    ],
)
def test_551_user_not_local_keeps_the_forward_path(text: str) -> None:
    """RFC 5321 3.4: a 551 names where the user now is; X.1.6 (moved) must not hide it."""
    assert classify(551, text, "rcpt").category is Category.USER_NOT_LOCAL
    error = error_from_reply(551, text, "rcpt")
    assert isinstance(error, UserNotLocal)
    assert error.forward_path == "bob@elsewhere.example"
    # Without the 551, X.1.6 still says the user moved away (no forwarding address given).
    assert classify(550, "5.1.6 Mailbox has moved", "rcpt").category is Category.USER_NOT_LOCAL


def test_permanence_follows_the_code() -> None:
    assert classify(450, "4.2.2 mailbox full", "rcpt").permanent is False
    assert classify(552, "5.2.2 mailbox full", "rcpt").permanent is True


def test_552_too_many_recipients_at_rcpt_means_452() -> None:
    """RFC 5321 4.5.3.1.10: a 552 for too many recipients at RCPT is treated as 452."""
    at_rcpt = classify(552, "5.5.3 Too many recipients", Phase.RCPT)
    assert (at_rcpt.category, at_rcpt.permanent) == (Category.TOO_MANY_RECIPIENTS, False)
    elsewhere = classify(552, "5.5.3 Too many recipients", Phase.MESSAGE)
    assert elsewhere.permanent is True
    assert classify(552, "5.2.2 over quota", Phase.RCPT).permanent is True


# --------------------------------------------------------------------------- the result


def test_classification_carries_enhanced_retry_and_hint() -> None:
    found = classify(451, "4.7.1 Greylisted, please try again in 5 minutes", "rcpt")
    assert found == Classification(
        Category.GREYLISTED, False, "4.7.1", 300.0, hint_for(Category.GREYLISTED)
    )
    assert found.error_class is category_class(Category.GREYLISTED)


def test_bytes_text_and_phase_spellings() -> None:
    assert classify(550, b"5.1.1 No such user", "RCPT").category is Category.MAILBOX_UNKNOWN
    assert classify(550, "5.1.1 No such user", Phase.RCPT).category is Category.MAILBOX_UNKNOWN
    assert classify(550, b"\xff\xfe user unknown", " rcpt ").category is Category.MAILBOX_UNKNOWN


def test_whole_reply_lines_are_accepted() -> None:
    lines = "550-5.1.1 The email account that you tried to reach does not exist.\n550 5.1.1 gsmtp"
    found = classify(550, lines, "rcpt")
    assert (found.category, found.enhanced) == (Category.MAILBOX_UNKNOWN, "5.1.1")
    error = error_from_reply(550, lines, "rcpt")
    assert error.text == "The email account that you tried to reach does not exist.\ngsmtp"
    # Another code at the start of the text is the server's words, not a prefix.
    assert classify(550, "5501 is a number", None).enhanced is None


@pytest.mark.parametrize("code", [199, 600, 0, -550, True])
def test_bad_codes_raise_protocol_error(code: int) -> None:
    with pytest.raises(ProtocolError, match="reply code"):
        classify(code, "5.1.1 No such user")


def test_non_int_code_raises_protocol_error() -> None:
    with pytest.raises(ProtocolError, match="must be an int, not str"):
        classify("550", "x")  # type: ignore[arg-type]


def test_unknown_phase_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="unknown SMTP phase 'rcpt to'"):
        classify(550, "x", "rcpt to")


# --------------------------------------------------------------------------- typed errors


def test_error_from_reply_builds_the_detail_class() -> None:
    error = error_from_reply(
        550, "5.1.1 <bob@example.com>: User unknown", "rcpt", recipient="bob@example.com"
    )
    assert isinstance(error, MailboxNotFound)
    assert isinstance(error, PermanentError)
    assert isinstance(error, aiosmtplib.SMTPRecipientRefused)
    assert (error.code, error.enhanced, error.recipient) == (550, "5.1.1", "bob@example.com")
    assert error.message == "5.1.1 <bob@example.com>: User unknown"
    assert error.text == "<bob@example.com>: User unknown"
    assert "bob@example.com" in str(error)


def test_error_from_reply_transient_too_many_recipients() -> None:
    error = error_from_reply(552, b"5.5.3 Too many recipients", Phase.RCPT, "c@example.com")
    assert isinstance(error, TooManyRecipients)
    assert isinstance(error, TransientError)
    assert error.permanent is False


def test_error_from_reply_keeps_retry_after_and_auth_class() -> None:
    full = error_from_reply(452, "4.2.2 The recipient's inbox is out of storage space", "rcpt")
    assert isinstance(full, MailboxFull)
    assert isinstance(full, TransientError)
    auth = error_from_reply(535, "5.7.8 Username and Password not accepted", "auth")
    assert isinstance(auth, AuthFailed)
    assert isinstance(auth, aiosmtplib.SMTPAuthenticationError)
    greylisted = error_from_reply(451, "4.7.1 Greylisted for 300 seconds", "rcpt")
    assert greylisted.retry_after == 300.0


# --------------------------------------------------------------------------- the corpus


def test_corpus_is_well_formed() -> None:
    rows = DEV + HELD_OUT
    assert len(rows) >= 400
    # The first four batches were split 70/30; the fifth (B2's, tests/data/README.md) went to
    # dev only, so the held-out share is now lower; the sixth was split 70/30 again.
    assert len(HELD_OUT) >= 420
    assert 0.20 <= len(HELD_OUT) / len(rows) <= 0.32
    keys = [(row.code, row.text.strip().lower()) for row in rows]
    assert len(keys) == len(set(keys)), "a reply is in the corpus twice"
    for row in rows:
        assert 200 <= row.code <= 599
        assert row.text.strip()
        assert row.source.strip(), f"line {row.line} has no source"
        if row.phase is not None:
            Phase(row.phase)
    assert {row.expected for row in rows} >= {
        Category.MAILBOX_UNKNOWN,
        Category.MAILBOX_FULL,
        Category.GREYLISTED,
        Category.SPAM_REJECTED,
        Category.SENDER_AUTH_FAILED,
        Category.BLOCKLISTED,
        Category.RATE_LIMITED,
        Category.RELAY_DENIED,
        Category.AUTH_FAILED,
        Category.TLS_REQUIRED,
    }


def _score(rows: list[Row]) -> tuple[float, list[tuple[Row, Category]]]:
    misses = []
    for row in rows:
        got = classify(row.code, row.text, row.phase).category
        if got is not row.expected:
            misses.append((row, got))
    return 1 - len(misses) / len(rows), misses


@pytest.mark.parametrize(
    ("labelled_by", "floor"),
    [
        # 637/649: provider texts whose words contradict their own documentation (e.g.
        # Mimecast's "Internal resources are temporarily unavailable" for greylisting); the
        # rules do not special-case single providers' sentences.
        ("the rules' author", 0.975),
        # 143/179 at the 17th scoring, 251/304 at the 18th, 321/396 at the 19th (batch 10's
        # dev rows first scored 58/92), 330/396 at the 20th, 396/475 at the 21st (batch 11's
        # first scored 57/79), 426/514 at the 22nd (batch 12's 25/39): independent labels
        # disagree with
        # any one reading on about one row in ten (tests/data/README.md), and these rows carry
        # more judgement calls; a regression floor, not a target.
        ("independent labellers", 0.825),
    ],
)
def test_dev_accuracy(labelled_by: str, floor: float) -> None:
    """The rules were tuned on these rows; the ones still missed are listed on failure."""
    independent = labelled_by == "independent labellers"
    rows = [row for row in DEV if (row.line >= INDEPENDENT_FROM_LINE) == independent]
    accuracy, misses = _score(rows)
    print(f"\ndev accuracy ({labelled_by}): {accuracy:.1%} ({len(rows) - len(misses)}/{len(rows)})")
    assert accuracy >= floor, "\n".join(
        f"line {row.line}: {row.code} {row.text[:80]!r} expected {row.expected}, got {got}"
        for row, got in misses
    )


#: What the rules reach on replies they were never tuned on, as a regression floor. The
#: target is HELD_OUT_TARGET; see test_held_out_accuracy_target for where it stands.
#: 146/168 at the 10th scoring (tests/data/README.md): 149 before B3's third pass; the three
#: rows lost carry labels from before the policy/blocklist principle in _rules' docstring and
#: the busy-mailbox family (found by ablation of the aggregate, see the README).
#: 176/204 at the 12th scoring: the sixth batch's 36 rows (new sources) were first scored
#: 30/36; the earlier 168 rows are unchanged at 146. The floor follows the larger set.
#: 177/204 at the 13th and 14th scorings (ACC's phase, precedence and vocabulary rules), and
#: at the 15th (ACC2's status-subject and no-address-at-EHLO rules).
#: 214/244 at the 16th: batch 7 (labelled by people who never saw the rules) first scored
#: 35/40; ACC3's principle changes took the earlier 204 rows to 179.
#: 238/278 at the 17th: batch 8 (independent labellers, mostly non-English providers and
#: thin categories) first scored 24/34 and stays there; the floor follows the larger set.
#: 278/331 at the 18th: batch 9 first scored 39/53 and stays there; the author's 204 rows 180.
#: 304/370 at the 19th: batch 10 first scored 26/39 and stays there. 303/370 at the 20th:
#: a failed check of the sender by the receiving server is now policy, as independent
#: labellers read it (tests/data/README.md); one of the author's held-out rows says
#: bad_address, like the author's dev row that was relabelled.
#: 326/404 at the 21st: batch 11 first scored 22/34 and stays there; batch 8's rows 24 -> 25.
#: 338/420 at the 22nd: batch 12 first scored 12/16 and stays there.
#: 336/420 at the 23rd: the eighth round's readings (sender lists as listings, X.1.6 as
#: user-not-local, expiry as an outage...) cost two of the author's rows (tests/data/README.md).
HELD_OUT_FLOOR = 0.8
HELD_OUT_TARGET = 0.95


def test_held_out_accuracy() -> None:
    """Rows the rules were never tuned on: the honest figure, printed, with a floor."""
    accuracy, misses = _score(HELD_OUT)
    by_category = Counter(row.expected.value for row, _ in misses)
    print(
        f"\nheld-out accuracy: {accuracy:.1%} ({len(HELD_OUT) - len(misses)}/{len(HELD_OUT)});"
        f" misses by expected category: {dict(by_category)}"
    )
    assert accuracy >= HELD_OUT_FLOOR


@pytest.mark.xfail(
    strict=True,
    reason="held-out accuracy is 80.0% (336/420), under the 95% target: 88.0% on the first "
    "scoring of the first 142 rows; later batches from new sources scored once: 7/11, 5/8, "
    "4/7, 30/36, 35/40, 24/34, 39/53, 26/39, 22/34, 12/16. Two independent labellers agree on "
    "about 92% of rows. See tests/data/README.md for the scoring history and the agreement "
    "study",
)
def test_held_out_accuracy_target() -> None:
    accuracy, _ = _score(HELD_OUT)
    assert accuracy >= HELD_OUT_TARGET


# --------------------------------------------------------------------------- the tables


def test_rule_names_are_unique_and_every_phrase_expands() -> None:
    names = [rule.name for rule in _rules.WORDS]
    assert len(names) == len(set(names))
    for rule in _rules.WORDS:
        for phrase in rule.phrases:
            assert _rules.expand(phrase), f"{rule.name}: {phrase!r} stands for no words"


def test_phrase_expansion() -> None:
    assert _rules.expand("mailbox [is] full") == (
        (b"mailbox", b"is", b"full"),
        (b"mailbox", b"full"),
    )
    assert _rules.expand("{email address|domain} has been blocked") == (
        (b"email", b"address", b"has", b"been", b"blocked"),
        (b"domain", b"has", b"been", b"blocked"),
    )
    assert _rules.expand("Helo/EHLO doesn't") == ((b"helo", b"ehlo", b"doesn", b"t"),)


def test_enhanced_table_names_registered_codes() -> None:
    """Every enhanced code the classifier reads is in the IANA registry (RFC 5248)."""
    for subject_detail in _rules.ENHANCED:
        assert subject_detail in enhanced.DETAILS, subject_detail
    for status_class, subject in _rules.ENHANCED_SUBJECT:
        assert status_class in (4, 5)
        assert subject in enhanced.SUBJECTS


def test_basic_code_table_covers_every_rfc_5321_error_code() -> None:
    rfc_5321 = {421, 450, 451, 452, 455, 500, 501, 502, 503, 504, 550, 551, 552, 553, 554, 555}
    assert rfc_5321 <= set(_rules.BY_CODE)


def _best_rule_by_brute_force(words: list[bytes], reply_class: int, phase: Phase | None) -> str:
    """Every phrase of every applicable rule compared, in precedence order: the reference."""
    joined = b" %s " % b" ".join(words)
    for rule in _rules.WORDS:
        if not _rules.applies(rule, reply_class, phase):
            continue
        for phrase in rule.phrases:
            if any(b" %s " % b" ".join(seq) in joined for seq in _rules.expand(phrase)):
                return rule.name
    return ""


def test_the_one_pass_lookup_finds_what_comparing_every_phrase_finds() -> None:
    """The index (key words, ordering, early stops) is only a faster way to the same answer."""
    for row in DEV + HELD_OUT:
        if row.code < 400:
            continue
        words = _rules.words_of(split_enhanced(row.text)[1].lower())
        phase = Phase.coerce(row.phase)
        found = _rules.best_rule(words, row.code // 100, phase)
        expected = _best_rule_by_brute_force(words, row.code // 100, phase)
        assert (found.name if found else "") == expected, f"line {row.line}"


def test_words_are_cut_alike_for_ascii_and_other_scripts() -> None:
    assert _rules.words_of("user unknown, (#5.1.1)") == [b"user", b"unknown", b"5", b"1", b"1"]
    assert _rules.words_of("n\u2019existe pas \u00abici\u00bb") == [b"n", b"existe", b"pas", b"ici"]
    assert _rules.words_of("адрес\u00a0не существует") == [
        "адрес".encode(),
        "не".encode(),
        "существует".encode(),
    ]
    # Chinese and Japanese: one word per ideograph or kana, so phrases match inside sentences.
    assert _rules.words_of("550 该用户不存在") == [b"550", *(c.encode() for c in "该用户不存在")]
    assert _rules.expand("用户不存在") == (tuple(c.encode() for c in "用户不存在"),)


# --------------------------------------------------------------------------- purity


@pytest.mark.parametrize(
    "module",
    ["smtp_guard.replies", "smtp_guard.classify", "smtp_guard._rules", "smtp_guard._wordindex"],
)
def test_core_modules_import_no_io(module: str) -> None:
    """Sans-IO: only non-I/O standard modules and smtp_guard's core modules."""
    allowed = {
        "__future__",
        "re",
        "functools",
        "dataclasses",
        "typing",
        "types",
        "collections.abc",
        "smtp_guard",
        "smtp_guard._enums",
        "smtp_guard._hints",
        "smtp_guard._rules",
        "smtp_guard._wordindex",
        "smtp_guard.errors",
        "smtp_guard.replies",
    }
    source = Path(importlib.import_module(module).__file__ or "").read_text(encoding="utf-8")
    imported: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            imported.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            imported.add(node.module or "")
    assert imported <= allowed, imported - allowed


def test_doctests() -> None:
    result = doctest.testmod(importlib.import_module("smtp_guard.classify"))
    assert result.attempted > 0
    assert result.failed == 0


# --------------------------------------------------------------------------- fuzzing

_PHASES = st.none() | st.sampled_from(list(Phase)) | st.sampled_from([p.value for p in Phase])


@settings(max_examples=500, deadline=None)
@given(code=st.integers(200, 599), text=st.text(max_size=300), phase=_PHASES)
def test_fuzz_classify(code: int, text: str, phase: Phase | str | None) -> None:
    found = classify(code, text, phase)
    assert isinstance(found.category, Category)
    assert found.hint == hint_for(found.category)
    assert found.retry_after is None or 0 <= found.retry_after <= MAX_RETRY_AFTER
    exception = code == 552 and found.category is Category.TOO_MANY_RECIPIENTS
    if not exception:
        assert found.permanent is (code >= 500)
    assert issubclass(found.error_class, ReplyError)


@settings(max_examples=300, deadline=None)
@given(code=st.integers(-1000, 1000), text=st.text(max_size=100) | st.binary(max_size=100))
def test_fuzz_classify_any_code_raises_only_protocol_error(code: int, text: str | bytes) -> None:
    try:
        found = classify(code, text)
    except ProtocolError:
        assert not 200 <= code <= 599
        return
    assert 200 <= code <= 599
    assert isinstance(found.category, Category)


_WORDY = st.lists(
    st.sampled_from(
        [
            "user",
            "unknown",
            "mailbox",
            "full",
            "spam",
            "relay",
            "denied",
            "try",
            "again",
            "in",
            "5",
            "minutes",
            "tls",
            "blocked",
            "not",
            "too",
            "many",
            "recipients",
            "5.1.1",
            "4.7.1",
            "greylisted",
            "quota",
            "exceeded",
            ",",
            "(#5.2.2)",
            "\n",
        ]
    ),
    max_size=25,
).map(" ".join)


@settings(max_examples=500, deadline=None)
@given(code=st.integers(400, 599), text=_WORDY, phase=_PHASES)
def test_fuzz_classify_with_rule_words(code: int, text: str, phase: Phase | str | None) -> None:
    """Texts made of the rules' own words: the retry hint of classify is parse_retry_after's."""
    found = classify(code, text, phase)
    assert found.retry_after == parse_retry_after(split_enhanced(text)[1])
    assert found.enhanced == split_enhanced(text)[0]
    error = error_from_reply(code, text, phase)
    assert error.category is found.category
    assert error.permanent is found.permanent
