"""FaultServer over real loopback sockets, with aiosmtplib (and smtplib) as the client."""

from __future__ import annotations

import asyncio
import base64
import gc
import smtplib
import socket
import ssl
from collections.abc import Callable
from email.message import EmailMessage
from typing import Any

import aiosmtplib
import pytest
from _helpers import CLIENT_NAME

from smtp_guard.testing import Fault, FaultServer, FaultSpecError, RateLimit

SENDER = "alice@sender.test"


def make_message(to: str = "bob@example.test", subject: str = "Hello") -> EmailMessage:
    msg = EmailMessage()
    msg["From"] = SENDER
    msg["To"] = to
    msg["Subject"] = subject
    msg.set_content("Hi there.\n.leading dot survives\n")
    return msg


def client_kw(srv: FaultServer) -> dict[str, Any]:
    """aiosmtplib.SMTP's arguments for ``srv``; our name given, so no FQDN lookup in EHLO."""
    return {
        "hostname": srv.host,
        "port": srv.port,
        "local_hostname": CLIENT_NAME,
        "start_tls": False,
        "timeout": 5,
    }


async def send(
    srv: FaultServer, recipients: list[str], **kwargs: object
) -> tuple[dict[str, aiosmtplib.SMTPResponse], str]:
    options: dict[str, object] = {"start_tls": False, "timeout": 5, "local_hostname": CLIENT_NAME}
    options.update(kwargs)
    return await aiosmtplib.send(
        make_message(recipients[0]),
        sender=SENDER,
        recipients=recipients,
        hostname=srv.host,
        port=srv.port,
        **options,  # type: ignore[arg-type]
    )


# --------------------------------------------------------------------------- basics


async def test_listens_on_a_free_loopback_port_and_records_the_transaction() -> None:
    async with FaultServer() as srv:
        assert srv.host == "127.0.0.1"
        assert srv.port > 0
        refused, reply = await send(srv, ["bob@example.test", "carol@example.test"])
        assert refused == {}
        assert reply.startswith("2.0.0 OK")

    assert srv.connection_count == 1
    [txn] = srv.transactions
    assert txn.sender == SENDER
    assert txn.recipients == ["bob@example.test", "carol@example.test"]
    assert txn.outcome == "delivered"
    assert txn.message["Subject"] == "Hello"
    assert b"\r\n.leading dot survives\r\n" in (txn.data or b"")  # dot-unstuffed
    assert srv.deliveries_to("BOB@example.test") == 1
    assert srv.deliveries_to("nobody@example.test") == 0
    assert "c: mail from:<alice@sender.test> size=" in " ".join(srv.transcript).lower()
    assert srv.transcript[0].startswith("S: 220 fault-smtp.test ")


async def test_its_name_is_fixed_unless_given_so_no_lookup_of_the_machines_name() -> None:
    async with FaultServer(hostname="mx.example.test") as srv:
        client = aiosmtplib.SMTP(**client_kw(srv))
        async with client:
            reply = await client.ehlo()
    assert reply.message.splitlines()[0] == "mx.example.test"
    assert srv.transcript[0] == "S: 220 mx.example.test smtp_guard FaultServer"


async def test_two_servers_get_different_ports_and_stop_releases_the_port(
    assert_port_released: Callable[[str, int], None],
) -> None:
    async with FaultServer() as one, FaultServer() as two:
        assert one.port != two.port
        with socket.socket() as probe, pytest.raises(OSError, match="in use"):
            probe.bind((one.host, one.port))  # the probe below would see a running server
    assert_port_released(one.host, one.port)
    assert_port_released(two.host, two.port)


def test_sync_start_stop_serves_smtplib_from_a_background_thread(
    assert_port_released: Callable[[str, int], None],
) -> None:
    srv = FaultServer("rcpt:*@bad.test=550 5.1.1 No such user")
    srv.start()
    try:
        with smtplib.SMTP(srv.host, srv.port, CLIENT_NAME, timeout=5) as client:
            refused = client.sendmail(
                SENDER, ["bob@example.test", "x@bad.test"], b"Subject: s\r\n\r\nhi\r\n"
            )
        assert refused == {"x@bad.test": (550, b"5.1.1 No such user")}
        assert srv.deliveries_to("bob@example.test") == 1
    finally:
        srv.stop()
    srv.stop()  # idempotent
    assert_port_released(srv.host, srv.port)


def test_sync_context_manager() -> None:
    with FaultServer() as srv, smtplib.SMTP(srv.host, srv.port, CLIENT_NAME, timeout=5) as client:
        client.sendmail(SENDER, ["bob@example.test"], b"Subject: s\r\n\r\nhi\r\n")
    assert len(srv.messages) == 1


async def test_starting_twice_is_refused() -> None:
    async with FaultServer() as srv:
        with pytest.raises(RuntimeError, match="already running"):
            await srv.start_async()


# --------------------------------------------------------------------------- scripted replies


async def test_rcpt_pattern_refuses_only_matching_recipients() -> None:
    async with FaultServer("rcpt:*@unknown.test=550 5.1.1 <{rcpt}> No such user here") as srv:
        refused, _ = await send(srv, ["bob@example.test", "ghost@UNKNOWN.test"])
    assert refused["ghost@UNKNOWN.test"].code == 550
    assert refused["ghost@UNKNOWN.test"].message == "5.1.1 <ghost@UNKNOWN.test> No such user here"
    [txn] = srv.messages
    assert txn.recipients == ["bob@example.test"]
    assert txn.refused == {"ghost@UNKNOWN.test": "550 5.1.1 <ghost@UNKNOWN.test> No such user here"}


async def test_all_recipients_refused_means_no_message() -> None:
    async with FaultServer("rcpt=550 5.7.1 Relaying denied") as srv:
        with pytest.raises(aiosmtplib.SMTPRecipientsRefused):
            await send(srv, ["a@example.test", "b@example.test"])
    assert srv.messages == []
    assert srv.transactions[0].outcome == "aborted"


async def test_first_n_times_then_normal() -> None:
    async with FaultServer("mail=451 4.3.0 Try again later x2") as srv:
        for _ in range(2):
            with pytest.raises(aiosmtplib.SMTPSenderRefused) as caught:
                await send(srv, ["bob@example.test"])
            assert caught.value.code == 451
        await send(srv, ["bob@example.test"])
    assert srv.fault_hits == [2]
    assert srv.deliveries_to("bob@example.test") == 1


async def test_multi_line_reply() -> None:
    fault = Fault.reply_with("mail", "550 5.7.1 Your message was rejected\nSee https://x.test/why")
    async with FaultServer(fault) as srv:
        with pytest.raises(aiosmtplib.SMTPSenderRefused) as caught:
            await send(srv, ["bob@example.test"])
    assert caught.value.message == "5.7.1 Your message was rejected\nSee https://x.test/why"
    assert "S: 550-5.7.1 Your message was rejected" in srv.transcript
    assert "S: 550 See https://x.test/why" in srv.transcript


async def test_greeting_421_refuses_the_connection() -> None:
    async with FaultServer("connect=421 4.3.2 Service shutting down") as srv:
        with pytest.raises(aiosmtplib.SMTPConnectResponseError) as caught:
            await send(srv, ["bob@example.test"])
    assert caught.value.code == 421
    assert srv.transcript[-1] == "S: (connection closed)"


async def test_greeting_554_then_only_quit_is_served() -> None:
    async with FaultServer("greeting=554 5.7.1 No SMTP service here") as srv:
        client = aiosmtplib.SMTP(**client_kw(srv))
        with pytest.raises(aiosmtplib.SMTPConnectResponseError):
            await client.connect()
    assert "S: 554 5.7.1 No SMTP service here" in srv.transcript


async def test_ehlo_fault_applies_to_helo_too() -> None:
    async with FaultServer("ehlo=554 5.7.1 Go away") as srv:
        with pytest.raises(aiosmtplib.SMTPHeloError):
            await send(srv, ["bob@example.test"])
    assert srv.fault_hits == [2]  # aiosmtplib falls back from EHLO to HELO
    assert f"C: HELO {CLIENT_NAME}" in srv.transcript


async def test_ehlo_fault_once_lets_the_helo_fallback_through() -> None:
    async with FaultServer("ehlo=554 5.7.1 Go away x1") as srv:
        await send(srv, ["bob@example.test"])
    assert len(srv.messages) == 1
    assert srv.transcript[1:3] == [f"C: EHLO {CLIENT_NAME}", "S: 554 5.7.1 Go away"]


async def test_data_fault_replaces_354() -> None:
    async with FaultServer("data=451 4.3.0 Not now") as srv:
        with pytest.raises(aiosmtplib.SMTPDataError) as caught:
            await send(srv, ["bob@example.test"])
    assert caught.value.code == 451
    assert srv.messages == []


async def test_message_fault_rejects_after_the_dot() -> None:
    async with FaultServer("message:*@spam.test=554 5.7.1 Message judged as spam") as srv:
        await send(srv, ["bob@example.test"])
        with pytest.raises(aiosmtplib.SMTPDataError) as caught:
            await send(srv, ["x@spam.test"])
    assert caught.value.code == 554
    assert [t.outcome for t in srv.transactions] == ["delivered", "rejected"]
    assert srv.transactions[1].data is not None  # the data arrived, it was not kept


# --------------------------------------------------------------------------- disconnects


async def test_drop_at_mail_closes_without_a_reply() -> None:
    async with FaultServer("mail=drop") as srv:
        with pytest.raises(aiosmtplib.SMTPServerDisconnected):
            await send(srv, ["bob@example.test"])
    assert srv.transactions == []
    assert srv.transcript[-2].startswith("C: MAIL FROM:<alice@sender.test>")
    assert srv.transcript[-1] == "S: (connection closed)"


async def test_store_then_drop_keeps_the_message_but_sends_no_reply() -> None:
    async with FaultServer("message=store-drop x1") as srv:
        with pytest.raises(aiosmtplib.SMTPServerDisconnected):
            await send(srv, ["bob@example.test"])
        assert srv.deliveries_to("bob@example.test") == 1  # delivered, though the client can't know
        await send(srv, ["bob@example.test"])  # a retry delivers it twice
    assert srv.deliveries_to("bob@example.test") == 2
    assert [t.outcome for t in srv.transactions] == ["stored-dropped", "delivered"]


async def test_drop_after_the_dot_does_not_keep_the_message() -> None:
    async with FaultServer("dot=drop") as srv:
        with pytest.raises(aiosmtplib.SMTPServerDisconnected):
            await send(srv, ["bob@example.test"])
    assert srv.deliveries_to("bob@example.test") == 0
    assert srv.transactions[0].outcome == "dropped"


async def test_close_modifier_and_421_close_the_connection_after_replying() -> None:
    async with FaultServer("rcpt=421 4.7.0 Too many errors, closing") as srv:
        with pytest.raises(aiosmtplib.SMTPRecipientsRefused) as caught:
            await send(srv, ["bob@example.test"])
    assert caught.value.recipients[0].code == 421
    assert srv.transcript[-2:] == [
        "S: 421 4.7.0 Too many errors, closing",
        "S: (connection closed)",
    ]


# --------------------------------------------------------------------------- AUTH and TLS


async def test_auth_valid_and_invalid_credentials_and_masked_transcript() -> None:
    async with FaultServer("auth=alice:s3cret-pw") as srv:
        with pytest.raises(aiosmtplib.SMTPAuthenticationError) as caught:
            await send(srv, ["bob@example.test"], username="alice", password="wrong-pw")
        assert caught.value.code == 535
        await send(srv, ["bob@example.test"], username="alice", password="s3cret-pw")
        # no login at all: mail is refused
        with pytest.raises(aiosmtplib.SMTPSenderRefused) as no_login:
            await send(srv, ["bob@example.test"])
        assert no_login.value.code == 530
    transcript = "\n".join(srv.transcript)
    assert "C: AUTH PLAIN ****" in transcript
    assert "s3cret" not in transcript
    assert "wrong-pw" not in transcript
    assert_no_secret(srv.transcript, "alice", "s3cret-pw")
    assert_no_secret(srv.transcript, "alice", "wrong-pw")
    assert "s3cret" not in repr(srv)
    assert "s3cret" not in repr(srv.settings)
    [txn] = srv.messages
    assert txn.user == "alice"


def secret_forms(user: str, password: str) -> list[str]:
    """What a transcript must never contain: the password, plain or as any AUTH payload."""
    b64 = base64.b64encode
    blobs = [password.encode(), f"\0{user}\0{password}".encode(), f"{user}\0{user}\0{password}"
             .encode()]  # fmt: skip
    return [password, *(b64(blob).decode().rstrip("=") for blob in blobs)]


def assert_no_secret(transcript: list[str], user: str, password: str) -> None:
    text = "\n".join(transcript)
    for form in secret_forms(user, password):
        assert form not in text, form


async def test_auth_plain_inline_is_masked() -> None:
    async with FaultServer(credentials={"alice": "pw-123"}) as srv:
        client = aiosmtplib.SMTP(**client_kw(srv))
        async with client:
            await client.ehlo()
            await client.auth_plain("alice", "pw-123")
    assert "C: AUTH PLAIN ****" in srv.transcript
    assert_no_secret(srv.transcript, "alice", "pw-123")
    assert srv.connections[0].user == "alice"


async def test_auth_login_with_initial_response_masks_each_step() -> None:
    async with FaultServer(credentials={"alice": "pw-123"}) as srv:
        client = aiosmtplib.SMTP(**client_kw(srv))
        async with client:
            await client.ehlo()
            await client.auth_login("alice", "pw-123")  # AUTH LOGIN <user>, then the password
    commands = [line for line in srv.transcript if line.startswith("C: ")]
    assert commands[1:3] == ["C: AUTH LOGIN ****", "C: ****"]
    assert_no_secret(srv.transcript, "alice", "pw-123")
    assert srv.connections[0].user == "alice"


async def dialogue(srv: FaultServer, *lines: bytes) -> list[str]:
    """Send each line after the reply to the one before; return the first line of each reply."""
    reader, writer = await asyncio.open_connection(srv.host, srv.port)
    replies = []
    try:
        await asyncio.wait_for(reader.readline(), 5)
        for line in lines:
            writer.write(line + b"\r\n")
            reply = [await asyncio.wait_for(reader.readline(), 5)]
            while reply[-1][3:4] == b"-":
                reply.append(await asyncio.wait_for(reader.readline(), 5))
            replies.append(reply[0].decode().rstrip())
    finally:
        writer.close()
        await writer.wait_closed()
    return replies


async def test_auth_continuation_lines_are_masked() -> None:
    b64 = base64.b64encode
    async with FaultServer(credentials={"alice": "pw-123"}) as srv:
        login = await dialogue(
            srv, b"EHLO c.test", b"AUTH LOGIN", b64(b"alice"), b64(b"pw-123"), b"QUIT"
        )
        plain = await dialogue(srv, b"EHLO c.test", b"AUTH PLAIN", b64(b"\0alice\0pw-123"))
    assert [r[:3] for r in login] == ["250", "334", "334", "235", "221"]
    assert [r[:3] for r in plain] == ["250", "334", "235"]
    first, second = (c.transcript for c in srv.connections)
    steps = [line[:6] for line in first[first.index("C: AUTH LOGIN") :][:6]]
    assert steps == ["C: AUT", "S: 334", "C: ***", "S: 334", "C: ***", "S: 235"]
    assert first.count("C: ****") == 2
    assert second[second.index("C: AUTH PLAIN") :][:3] == ["C: AUTH PLAIN", "S: 334 ", "C: ****"]
    assert_no_secret(srv.transcript, "alice", "pw-123")
    assert [c.user for c in srv.connections] == ["alice", "alice"]


def xoauth2(user: str, token: str) -> bytes:
    return base64.b64encode(f"user={user}\x01auth=Bearer {token}\x01\x01".encode())


async def test_xoauth2_accepts_the_users_password_as_token_and_masks_it() -> None:
    async with FaultServer(credentials={"alice": "ya29.tok-123"}, xoauth2=True) as srv:
        client = aiosmtplib.SMTP(**client_kw(srv))
        async with client:
            await client.ehlo()
            assert "xoauth2" in client.server_auth_methods
            with pytest.raises(aiosmtplib.SMTPAuthenticationError) as caught:
                await client.auth_xoauth2("alice", "ya29.expired")  # 334 JSON, "", then 535
            assert (caught.value.code, caught.value.message[:5]) == (535, "5.7.8")
            await client.auth_xoauth2("alice", "ya29.tok-123")
            await client.sendmail(SENDER, ["bob@example.test"], "Subject: s\r\n\r\nhi\r\n")
        # the token after an empty challenge, on a line of its own
        continued = await dialogue(
            srv, b"EHLO c.test", b"AUTH XOAUTH2", xoauth2("alice", "ya29.tok-123")
        )
    assert [r[:3] for r in continued] == ["250", "334", "235"]
    assert srv.messages[0].user == "alice"
    first, second = (c.transcript for c in srv.connections)
    assert [line for line in first if "XOAUTH2" in line or line == "C: ****"] == [
        "S: 250-AUTH LOGIN PLAIN XOAUTH2",
        "C: AUTH XOAUTH2 ****",
        "C: ****",  # the empty answer to the error challenge: masked all the same
        "C: AUTH XOAUTH2 ****",
    ]
    assert second[second.index("C: AUTH XOAUTH2") :][:3] == [
        "C: AUTH XOAUTH2",
        "S: 334 ",
        "C: ****",
    ]
    text = "\n".join(srv.transcript)
    for secret in ("ya29", xoauth2("alice", "ya29.tok-123").decode()[:40],
                   xoauth2("alice", "ya29.expired").decode()[:40]):  # fmt: skip
        assert secret not in text


async def test_xoauth2_is_off_unless_asked_for() -> None:
    async with FaultServer(credentials={"alice": "tok"}) as srv:
        client = aiosmtplib.SMTP(**client_kw(srv))
        async with client:
            await client.ehlo()
            assert "xoauth2" not in client.server_auth_methods
            reply = await client.execute_command(b"AUTH", b"XOAUTH2", xoauth2("alice", "tok"))
    assert reply.code == 504
    assert srv.connections[0].user is None


@pytest.mark.parametrize(
    ("answer", "code"),
    [(b"bm90IHhvYXV0aA==", "501"), (b"!!", "501"), (b"*", "501")],
)
async def test_xoauth2_malformed_answers_are_refused(answer: bytes, code: str) -> None:
    async with FaultServer("auth=alice:tok", "xoauth2=on") as srv:
        replies = await dialogue(srv, b"EHLO c.test", b"AUTH XOAUTH2", answer)
    assert [r[:3] for r in replies] == ["250", "334", code]
    assert srv.connections[0].user is None


async def test_auth_is_not_offered_without_credentials() -> None:
    async with FaultServer() as srv:
        client = aiosmtplib.SMTP(**client_kw(srv))
        async with client:
            assert not client.supports_extension("auth")
            reply = await client.execute_command(b"AUTH", b"PLAIN", b"AGFiYwBkZWY=")
    assert reply.code == 503


async def test_starttls_with_the_generated_certificate() -> None:
    async with FaultServer(starttls="on", credentials={"u": "p"}, auth_requires_tls=True) as srv:
        assert srv.ca_cert_path.read_text().startswith("-----BEGIN CERTIFICATE-----")
        client = aiosmtplib.SMTP(**client_kw(srv))
        async with client:
            await client.ehlo()
            assert client.supports_extension("starttls")
            assert not client.supports_extension("auth")  # only after STARTTLS
            await client.starttls(tls_context=srv.tls_context())
            await client.ehlo()
            assert client.supports_extension("auth")
            await client.login("u", "p")
            await client.sendmail(SENDER, ["bob@example.test"], "Subject: s\r\n\r\nhi\r\n")
    [txn] = srv.messages
    assert txn.tls
    assert srv.connections[0].tls


async def test_starttls_fails_certificate_check_without_the_ca() -> None:
    async with FaultServer(starttls="on") as srv:
        with pytest.raises(ssl.SSLCertVerificationError):
            await send(srv, ["bob@example.test"], start_tls=True)


async def test_starttls_required_refuses_mail_before_tls() -> None:
    async with FaultServer("starttls=required") as srv:
        with pytest.raises(aiosmtplib.SMTPSenderRefused) as caught:
            await send(srv, ["bob@example.test"])
        assert caught.value.code == 530
        await send(srv, ["bob@example.test"], start_tls=True, tls_context=srv.tls_context())
    assert len(srv.messages) == 1


async def test_starttls_hidden_by_default() -> None:
    async with FaultServer() as srv:
        client = aiosmtplib.SMTP(**client_kw(srv))
        async with client:
            await client.ehlo()
            assert not client.supports_extension("starttls")
            reply = await client.execute_command(b"STARTTLS")
    assert reply.code == 454


async def test_implicit_tls() -> None:
    async with FaultServer("tls=implicit", credentials={"u": "p"}, auth_requires_tls=True) as srv:
        await send(srv, ["bob@example.test"], use_tls=True, tls_context=srv.tls_context(),
                   username="u", password="p")  # fmt: skip
    assert srv.messages[0].tls


async def test_listens_on_ipv6_loopback() -> None:
    if not socket.has_ipv6:
        pytest.skip("no IPv6 on this machine")
    try:
        srv = FaultServer(host="::1")
        await srv.start_async()
    except OSError:
        pytest.skip("::1 is not configured here")
    try:
        await send(srv, ["bob@example.test"])
    finally:
        await srv.stop_async()
    assert srv.messages[0].peer == "::1"


def test_refuses_to_listen_beyond_loopback() -> None:
    with pytest.raises(ValueError, match="not a loopback address") as caught:
        FaultServer(host="192.0.2.1")
    assert caught.value.part == "host"  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("settings", "part"),
    [
        ({"starttls": "maybe"}, "starttls"),
        ({"size_limit": 0}, "size_limit"),
        ({"max_recipients": 0}, "max_recipients"),
        ({"greylist": -1}, "greylist"),
        ({"credentials": {"": "pw"}}, "credentials"),
    ],
)
def test_bad_settings_are_refused_before_listening(settings: dict[str, object], part: str) -> None:
    with pytest.raises(FaultSpecError) as caught:
        FaultServer(**settings)  # type: ignore[arg-type]
    assert caught.value.part == part


def test_bad_rate_limit_value() -> None:
    with pytest.raises(FaultSpecError, match="at least 1 message"):
        RateLimit(0, 60)
    with pytest.raises(FaultSpecError, match="control characters"):
        RateLimit(1, 60, "450 \x00")


async def test_starttls_phase_fault_then_normal() -> None:
    async with FaultServer("starttls=on", "starttls=454 4.7.0 TLS not available x1") as srv:
        smtp = aiosmtplib.SMTP(**client_kw(srv))
        async with smtp:
            await smtp.ehlo()
            with pytest.raises(aiosmtplib.SMTPResponseException) as caught:
                await smtp.starttls(tls_context=srv.tls_context())
            assert caught.value.code == 454
            await smtp.starttls(tls_context=srv.tls_context())
        assert srv.connections[0].tls


async def test_auth_phase_fault_overrides_good_credentials() -> None:
    async with FaultServer("auth=alice:pw", "auth=454 4.7.0 Try later") as srv:
        with pytest.raises(aiosmtplib.SMTPAuthenticationError) as caught:
            await send(srv, ["bob@example.test"], username="alice", password="pw")
    assert caught.value.code == 454
    assert srv.fault_hits == [2]  # aiosmtplib tried PLAIN, then LOGIN
    assert srv.messages == []


async def test_auth_phase_fault_once_lets_the_next_mechanism_in() -> None:
    async with FaultServer("auth=alice:pw", "auth=454 4.7.0 Try later x1") as srv:
        await send(srv, ["bob@example.test"], username="alice", password="pw")
    auth_lines = [line for line in srv.transcript if "AUTH" in line or "235" in line]
    assert auth_lines == [
        "S: 250-AUTH LOGIN PLAIN",
        "C: AUTH PLAIN ****",
        "C: AUTH LOGIN ****",
        "S: 235 2.7.0 Authentication successful",
    ]
    assert len(srv.messages) == 1


async def test_auth_tls_required_refuses_plain_text_auth() -> None:
    async with FaultServer("auth=alice:pw", "auth-tls=required", "starttls=on") as srv:
        smtp = aiosmtplib.SMTP(**client_kw(srv))
        async with smtp:
            await smtp.ehlo()
            reply = await smtp.execute_command(b"AUTH", b"PLAIN", b"AGFsaWNlAHB3")
    assert reply.code == 538
    assert srv.connections[0].user is None


async def test_transcript_has_every_command_even_those_refused_before_dispatch() -> None:
    async with FaultServer("starttls=required", credentials={"alice": "pw-secret"}) as srv:
        reader, writer = await asyncio.open_connection(srv.host, srv.port)
        try:
            await reader.readline()
            for line in (
                b"EHLO c.test",
                b"MAIL FROM:<a@x.test>",
                b"XYZZY magic",
                b"auth plain AGFsaWNlAHB3LXNlY3JldA==",
                b"NOOP \x01",
            ):
                writer.write(line + b"\r\n")
                while (await reader.readline())[3:4] == b"-":
                    pass
        finally:
            writer.close()
            await writer.wait_closed()
    commands = [line for line in srv.transcript if line.startswith("C:")]
    assert commands == [
        "C: EHLO c.test",
        "C: MAIL FROM:<a@x.test>",
        "C: XYZZY magic",
        "C: auth plain ****",
        "C: NOOP \\x01",
    ]
    assert "S: 530 Must issue a STARTTLS command first" in srv.transcript
    assert "AGFsaWNlAHB3LXNlY3JldA" not in "\n".join(srv.transcript)


async def test_auth_lines_a_sloppy_client_writes_are_masked_too() -> None:
    b64 = base64.b64encode(b"\0alice\0pw-123")
    async with FaultServer(credentials={"alice": "pw-123"}) as srv:
        replies = await dialogue(
            srv,
            b"EHLO c.test",
            b"AUTH\tPLAIN " + b64,  # a tab: aiosmtpd does not know the command
            b"  auth   plain   " + b64,
            b"AUTH " + b64,  # the mechanism forgotten
            b"AUTH FOO-BAR",
            b"AUTH",
        )
    assert [r[:3] for r in replies] == ["250", "500", "500", "504", "504", "501"]
    commands = [line for line in srv.transcript if line.startswith("C: ")][1:]
    assert commands == [
        "C: AUTH PLAIN ****",
        "C: auth plain ****",
        "C: AUTH ****",
        "C: AUTH ****",
        "C: AUTH",
    ]
    assert_no_secret(srv.transcript, "alice", "pw-123")


async def test_a_threaded_server_serves_an_async_client_and_must_be_stopped_with_stop() -> None:
    srv = FaultServer().start()
    try:
        await send(srv, ["bob@example.test"])
        with pytest.raises(RuntimeError, match="stop it with stop"):
            await srv.stop_async()
    finally:
        srv.stop()
    assert srv.deliveries_to("bob@example.test") == 1


async def test_after_a_554_greeting_only_quit_is_served() -> None:
    async with FaultServer("connect=554 5.7.1 No SMTP service here") as srv:
        reader, writer = await asyncio.open_connection(srv.host, srv.port)
        try:
            assert await reader.readline() == b"554 5.7.1 No SMTP service here\r\n"
            writer.write(b"EHLO c.test\r\n")
            assert (await reader.readline()).startswith(b"503 5.5.1 ")
            writer.write(b"QUIT\r\n")
            assert (await reader.readline()).startswith(b"221 ")
        finally:
            writer.close()
            await writer.wait_closed()


async def test_scripted_success_replies_still_accept() -> None:
    async with FaultServer(
        "mail=250 2.1.0 Sender looks fine to me",
        "rcpt:vip@*=250 2.1.5 VIP welcome",
        "data=354 3.0.0 Go on then",
        "message=250 2.6.0 Thanks, kept",
    ) as srv:
        refused, reply = await send(srv, ["vip@example.test", "bob@example.test"])
    assert refused == {}
    assert reply == "2.6.0 Thanks, kept"
    [txn] = srv.messages
    assert txn.recipients == ["vip@example.test", "bob@example.test"]
    assert txn.message["Subject"] == "Hello"
    assert "S: 354 3.0.0 Go on then" in srv.transcript


def test_start_failure_is_raised_in_the_caller() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        srv = FaultServer(port=taken.getsockname()[1])
        with pytest.raises(OSError, match="address already in use"):
            srv.start()
    srv.stop()  # nothing to stop; must not hang


async def test_localhost_means_one_ipv4_socket_and_stop_is_idempotent() -> None:
    srv = FaultServer(host="localhost")
    assert srv.host == "127.0.0.1"
    await srv.start_async()
    await send(srv, ["bob@example.test"])
    await srv.stop_async()
    await srv.stop_async()
    assert len(srv.messages) == 1


def test_ca_is_made_on_demand_for_a_server_without_tls() -> None:
    srv = FaultServer()
    context = srv.tls_context()
    assert context.verify_mode is ssl.CERT_REQUIRED
    assert context.check_hostname
    path = srv.ca_cert_path
    assert path.read_text().startswith("-----BEGIN CERTIFICATE-----")
    del srv
    gc.collect()
    assert not path.parent.exists()  # the temporary directory went with the server


async def test_on_disconnect_gets_each_connection_record() -> None:
    closed: list[str] = []
    async with FaultServer(on_disconnect=lambda r: closed.append(r.transcript[-1])) as srv:
        await send(srv, ["bob@example.test"])
        await send(srv, ["bob@example.test"])
    assert closed == ["S: 221 Bye", "S: 221 Bye"]
