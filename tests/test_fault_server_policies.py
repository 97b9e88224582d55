"""FaultServer's built-in policies, probabilities, delays, broken replies and pipelining."""

from __future__ import annotations

import asyncio

import aiosmtplib
import pytest
from _helpers import CLIENT_NAME

from smtp_guard.replies import parse_reply
from smtp_guard.testing import FaultServer, RateLimit, Transaction

SENDER = "alice@sender.test"
BODY = "Subject: s\r\n\r\nhi\r\n"


async def send(srv: FaultServer, *recipients: str, sender: str = SENDER, **kw: object) -> object:
    options: dict[str, object] = {"start_tls": False, "timeout": 5, "local_hostname": CLIENT_NAME}
    options.update(kw)
    return await aiosmtplib.send(
        BODY, sender=sender, recipients=list(recipients), hostname=srv.host, port=srv.port,
        **options,  # type: ignore[arg-type]
    )  # fmt: skip


def client(srv: FaultServer, timeout: float = 5) -> aiosmtplib.SMTP:
    return aiosmtplib.SMTP(
        hostname=srv.host,
        port=srv.port,
        local_hostname=CLIENT_NAME,
        start_tls=False,
        timeout=timeout,
    )


# --------------------------------------------------------------------------- greylisting


async def test_greylisting_defers_a_new_triplet_until_the_period_passed() -> None:
    # A clock that stands still: the waits announced are exact however slow the machine is.
    async with FaultServer("greylist=300s", clock=lambda: 1000.0) as srv:
        with pytest.raises(aiosmtplib.SMTPRecipientsRefused) as first:
            await send(srv, "bob@example.test")
        [refusal] = first.value.recipients
        reply = parse_reply(f"{refusal.code} {refusal.message}")
        assert (reply.code, reply.enhanced, reply.retry_after) == (451, "4.7.1", 300.0)

        srv.advance_clock(120)
        with pytest.raises(aiosmtplib.SMTPRecipientsRefused) as early:
            await send(srv, "bob@example.test")
        again = early.value.recipients[0]
        assert parse_reply(f"{again.code} {again.message}").retry_after == 180.0

        srv.advance_clock(180)
        await send(srv, "bob@example.test")  # the same triplet, after the period
        with pytest.raises(aiosmtplib.SMTPRecipientsRefused):
            await send(srv, "bob@example.test", sender="other@sender.test")  # a new triplet
    assert srv.deliveries_to("bob@example.test") == 1


async def test_greylisting_with_zero_period_defers_only_the_first_attempt() -> None:
    async with FaultServer(greylist=0) as srv:
        with pytest.raises(aiosmtplib.SMTPRecipientsRefused):
            await send(srv, "bob@example.test")
        await send(srv, "bob@example.test")
    assert srv.deliveries_to("bob@example.test") == 1


async def test_a_wait_of_one_second_is_said_in_the_singular() -> None:
    async with FaultServer(greylist=1, rate_limit=RateLimit(1, 1), clock=lambda: 0.0) as srv:
        with pytest.raises(aiosmtplib.SMTPRecipientsRefused) as grey:
            await send(srv, "bob@example.test")
        srv.advance_clock(1)
        await send(srv, "bob@example.test")
        with pytest.raises(aiosmtplib.SMTPSenderRefused) as limited:
            await send(srv, "bob@example.test")
        srv.advance_clock(0.5)
        with pytest.raises(aiosmtplib.SMTPSenderRefused) as half:
            await send(srv, "bob@example.test")
    texts = [grey.value.recipients[0].message, limited.value.message, half.value.message]
    for text in texts:
        assert text.endswith("try again in 1 second"), text
        assert parse_reply(f"451 {text}").retry_after == 1.0  # the classifier reads it
    big = RateLimit(1, 60, "421 4.7.0 Wait {retry} seconds, or {retry}s")
    async with FaultServer(rate_limit=big, clock=lambda: 0.0) as srv:
        await send(srv, "bob@example.test")
        with pytest.raises(aiosmtplib.SMTPSenderRefused) as plural:
            await send(srv, "bob@example.test")
    assert plural.value.message == "4.7.0 Wait 60 seconds, or 60s"


async def test_greylisting_per_recipient_pattern() -> None:
    async with FaultServer("rcpt:*@grey.test=greylist=1h") as srv:
        refused = await send(srv, "a@grey.test", "b@white.test")
    assert isinstance(refused, tuple)
    assert list(refused[0]) == ["a@grey.test"]
    assert srv.deliveries_to("b@white.test") == 1


async def test_the_servers_clock_is_the_given_one_plus_what_was_advanced() -> None:
    ticks = [50.0]
    async with FaultServer("greylist=300s", clock=lambda: ticks[0]) as srv:
        with pytest.raises(aiosmtplib.SMTPRecipientsRefused):
            await send(srv, "bob@example.test")
        ticks[0] += 200.5  # the clock itself moved on...
        srv.advance_clock(50)  # ...and the test moved it further
        assert srv.now() == 300.5
        with pytest.raises(aiosmtplib.SMTPRecipientsRefused) as early:
            await send(srv, "bob@example.test")
        again = early.value.recipients[0]
        assert parse_reply(f"{again.code} {again.message}").retry_after == 50.0  # ceil(49.5)
        ticks[0] += 49.5
        await send(srv, "bob@example.test")
    assert srv.deliveries_to("bob@example.test") == 1


# --------------------------------------------------------------------------- limits


async def test_rate_limit_after_n_messages_per_window() -> None:
    async with FaultServer("ratelimit=2/60s", clock=lambda: 0.0) as srv:
        await send(srv, "bob@example.test")
        await send(srv, "bob@example.test")
        with pytest.raises(aiosmtplib.SMTPSenderRefused) as caught:
            await send(srv, "bob@example.test")
        reply = parse_reply(f"{caught.value.code} {caught.value.message}")
        assert (reply.code, reply.enhanced) == (450, "4.2.1")
        assert reply.retry_after == 60.0
        srv.advance_clock(60)
        await send(srv, "bob@example.test")
    assert srv.deliveries_to("bob@example.test") == 3


async def test_rate_limit_with_421_closes_the_connection() -> None:
    limit = RateLimit(1, 60, "421 4.7.0 Too many messages, closing")
    async with FaultServer(rate_limit=limit) as srv:
        await send(srv, "bob@example.test")
        with pytest.raises(aiosmtplib.SMTPSenderRefused) as caught:
            await send(srv, "bob@example.test")
    assert caught.value.code == 421
    assert srv.transcript[-1] == "S: (connection closed)"


async def test_too_many_recipients_in_one_transaction() -> None:
    async with FaultServer("maxrcpt=2") as srv:
        refused = await send(srv, "a@x.test", "b@x.test", "c@x.test", "d@x.test")
    assert isinstance(refused, tuple)
    assert {r: (v.code, v.message) for r, v in refused[0].items()} == {
        "c@x.test": (452, "4.5.3 Too many recipients"),
        "d@x.test": (452, "4.5.3 Too many recipients"),
    }
    [txn] = srv.messages
    assert txn.recipients == ["a@x.test", "b@x.test"]


async def test_size_limit_is_advertised_and_enforced_at_mail_and_after_the_data() -> None:
    big = "Subject: big\r\n\r\n" + ("x" * 70 + "\r\n") * 30
    async with FaultServer("size=1K") as srv:
        smtp = client(srv)
        async with smtp:
            await smtp.ehlo()
            assert smtp.esmtp_extensions["size"] == "1024"
            with pytest.raises(aiosmtplib.SMTPSenderRefused) as at_mail:
                await smtp.sendmail(SENDER, ["bob@example.test"], big)
            assert (at_mail.value.code, at_mail.value.message[:5]) == (552, "5.3.4")
            await smtp.rset()
            # a client that does not declare SIZE= is refused after the final dot
            await smtp.mail(SENDER)
            await smtp.rcpt("bob@example.test")
            with pytest.raises(aiosmtplib.SMTPDataError) as at_dot:
                await smtp.data(big)
            assert (at_dot.value.code, at_dot.value.message[:5]) == (552, "5.3.4")
            await smtp.sendmail(SENDER, ["bob@example.test"], BODY)
    assert [t.outcome for t in srv.transactions if t.data] == ["rejected", "delivered"]


# --------------------------------------------------------------------------- chance and time


async def mail_outcomes(srv: FaultServer, tries: int) -> list[int]:
    codes = []
    smtp = client(srv)
    async with smtp:
        await smtp.ehlo()
        for _ in range(tries):
            try:
                reply = await smtp.mail(SENDER)
            except aiosmtplib.SMTPResponseException as exc:
                codes.append(exc.code)
            else:
                codes.append(reply.code)
            await smtp.rset()
    return codes


async def test_probability_is_reproducible_with_the_same_seed() -> None:
    async with FaultServer("mail=451 4.3.0 Flaky p=0.5", seed=7) as one:
        first = await mail_outcomes(one, 30)
    async with FaultServer("mail=451 4.3.0 Flaky p=0.5", seed=7) as two:
        second = await mail_outcomes(two, 30)
    async with FaultServer("mail=451 4.3.0 Flaky p=0.5", seed=8) as three:
        third = await mail_outcomes(three, 30)
    assert first == second
    assert first != third
    assert set(first) == {250, 451}
    assert one.fault_hits == [first.count(451)]


async def test_per_fault_seed_overrides_the_server_seed() -> None:
    async with FaultServer("mail=451 Flaky p=0.3 seed=1", seed=1) as one:
        first = await mail_outcomes(one, 20)
    async with FaultServer("mail=451 Flaky p=0.3 seed=1", seed=99) as two:
        second = await mail_outcomes(two, 20)
    assert first == second


async def test_delay_makes_a_short_client_timeout_fire() -> None:
    # Only MAIL stalls, far longer than its short timeout; connecting and EHLO have a generous
    # one, so a slow machine cannot make an earlier phase time out (another error class). The
    # stall is by sender, not "x1": the client may give up before the server read its MAIL.
    async with FaultServer("mail:slow@*=delay=60s") as srv:
        smtp = client(srv, timeout=30)
        async with smtp:
            await smtp.ehlo()
            with pytest.raises(aiosmtplib.SMTPReadTimeoutError):
                await smtp.mail("slow@sender.test", timeout=0.05)
        await send(srv, "bob@example.test", timeout=30)  # another sender is not slowed down
    assert srv.deliveries_to("bob@example.test") == 1


async def test_delay_then_normal_reply() -> None:
    async with FaultServer("connect=delay=10ms", "message=delay=10ms") as srv:
        await send(srv, "bob@example.test")
    assert srv.fault_hits == [1, 1]
    assert srv.deliveries_to("bob@example.test") == 1


# --------------------------------------------------------------------------- broken replies


async def test_garbage_reply() -> None:
    async with FaultServer("mail=garbage") as srv:
        with pytest.raises(aiosmtplib.SMTPResponseException, match="Malformed"):
            await send(srv, "bob@example.test")
    assert any(line.startswith("S: Hello? \\x00\\x01") for line in srv.transcript)


async def test_reply_without_crlf_leaves_the_client_waiting() -> None:
    async with FaultServer("mail=no-crlf") as srv:
        reader, writer = await asyncio.open_connection(srv.host, srv.port)
        try:
            await read_reply(reader)
            writer.write(b"EHLO c.test\r\n")
            await read_reply(reader)
            writer.write(b"MAIL FROM:<a@x.test>\r\n")
            # The reply's bytes arrive (waited for generously), but the line never ends.
            assert await asyncio.wait_for(reader.readexactly(6), 30) == b"250 OK"
            with pytest.raises(asyncio.TimeoutError):
                await asyncio.wait_for(reader.readline(), 0.1)
        finally:
            writer.close()
            await writer.wait_closed()
    assert "S: 250 OK (no CRLF)" in srv.transcript


async def test_reply_without_crlf_then_close() -> None:
    async with FaultServer("message=no-crlf close") as srv:
        with pytest.raises(aiosmtplib.SMTPServerDisconnected):
            await send(srv, "bob@example.test")


async def test_non_utf8_reply() -> None:
    async with FaultServer("rcpt=non-utf8") as srv:
        with pytest.raises(aiosmtplib.SMTPRecipientsRefused) as caught:
            await send(srv, "bob@example.test")
    assert caught.value.recipients[0].code == 550
    assert "S: 550 5.1.1 Mailbox \\xff\\xfe\\xc3 unknown" in srv.transcript


async def test_over_long_reply() -> None:
    async with FaultServer("mail=long=10000") as srv:
        with pytest.raises(aiosmtplib.SMTPResponseException, match="too long"):
            await send(srv, "bob@example.test")


async def test_reply_code_outside_2xx_to_5xx() -> None:
    async with FaultServer("mail=600 What is this") as srv:
        with pytest.raises(aiosmtplib.SMTPSenderRefused) as caught:
            await send(srv, "bob@example.test")
    assert caught.value.code == 600


async def test_raw_bytes_exactly_as_given() -> None:
    async with FaultServer("connect=raw=220-first\\r\\n220 second\\r\\n") as srv:
        smtp = client(srv)
        async with smtp:
            pass
        # aiosmtplib read a well-formed multi-line greeting
    assert srv.transcript[:2] == ["S: 220-first", "S: 220 second"]


# --------------------------------------------------------------------------- pipelining


async def read_reply(reader: asyncio.StreamReader) -> str:
    lines = []
    while True:
        line = (await asyncio.wait_for(reader.readline(), 30)).decode()
        lines.append(line.rstrip("\r\n"))
        if line[3:4] != "-":
            return "\n".join(lines)


async def test_pipelined_commands_get_their_replies_in_order() -> None:
    async with FaultServer("rcpt:*@bad.test=550 5.1.1 No such user", "mail=delay=20ms") as srv:
        reader, writer = await asyncio.open_connection(srv.host, srv.port)
        try:
            assert (await read_reply(reader)).startswith("220 ")
            writer.write(b"EHLO client.test\r\n")
            assert "250-PIPELINING" in await read_reply(reader)
            writer.write(
                b"MAIL FROM:<a@x.test>\r\nRCPT TO:<b@ok.test>\r\nRCPT TO:<c@bad.test>\r\n"
                b"RCPT TO:<d@ok.test>\r\nDATA\r\n"
            )
            replies = [(await read_reply(reader))[:3] for _ in range(5)]
            assert replies == ["250", "250", "550", "250", "354"]
            writer.write(b"Subject: p\r\n\r\nbody\r\n.\r\nQUIT\r\n")
            assert (await read_reply(reader)).startswith("250 ")
            assert (await read_reply(reader)).startswith("221 ")
        finally:
            writer.close()
            await writer.wait_closed()
    [txn] = srv.messages
    assert txn.recipients == ["b@ok.test", "d@ok.test"]
    assert txn.refused == {"c@bad.test": "550 5.1.1 No such user"}
    # MAIL, RCPT, RCPT, RCPT were each read with the next command already waiting (DATA was
    # the last of the batch; "." and QUIT came together after the 354).
    assert srv.connections[0].pipelined >= 4


async def test_a_client_that_waits_for_each_reply_does_not_count_as_pipelining() -> None:
    async with FaultServer() as srv:
        await send(srv, "a@x.test", "b@x.test")
    assert srv.connections[0].pipelined == 0


async def test_pipelining_can_be_switched_off() -> None:
    async with FaultServer("pipelining=off") as srv:
        smtp = client(srv)
        async with smtp:
            await smtp.ehlo()
            assert not smtp.supports_extension("pipelining")


# --------------------------------------------------------------------------- records


async def test_transaction_outcomes_and_callback() -> None:
    seen: list[Transaction] = []
    async with FaultServer(on_transaction=seen.append) as srv:
        smtp = client(srv)
        async with smtp:
            await smtp.ehlo()
            await smtp.mail(SENDER)
            await smtp.rset()  # aborted
            await smtp.sendmail(SENDER, ["bob@example.test"], BODY)
    assert [t.outcome for t in seen] == ["aborted", "delivered"]
    assert seen == srv.transactions


async def test_reset_forgets_records_and_counters() -> None:
    async with FaultServer("mail=451 Busy x1") as srv:
        with pytest.raises(aiosmtplib.SMTPSenderRefused):
            await send(srv, "bob@example.test")
        srv.reset()
        assert (srv.transactions, srv.connection_count, srv.fault_hits) == ([], 0, [0])
        with pytest.raises(aiosmtplib.SMTPSenderRefused):
            await send(srv, "bob@example.test")  # x1 counts again from zero


async def test_stop_closes_open_client_connections() -> None:
    srv = FaultServer()
    await srv.start_async()
    smtp = client(srv)
    await smtp.connect()
    await smtp.ehlo()
    await srv.stop_async()
    with pytest.raises(aiosmtplib.SMTPServerDisconnected):
        await smtp.noop()
    assert srv.connections[0].closed


async def test_message_and_data_placeholders_name_all_recipients() -> None:
    async with FaultServer("message=550 5.7.1 Not for {rcpt} from {sender}") as srv:
        with pytest.raises(aiosmtplib.SMTPDataError) as caught:
            await send(srv, "a@x.test", "b@x.test")
    assert caught.value.message == "5.7.1 Not for a@x.test, b@x.test from alice@sender.test"


async def test_repr_shows_faults_and_settings_but_not_passwords() -> None:
    async with FaultServer("mail=451 Busy", "size=1K", credentials={"u": "hunter2"}) as srv:
        shown = repr(srv)
    assert f"127.0.0.1:{srv.port}" in shown
    assert "'mail=451 Busy', 'size=1K', 'auth=u:****'" in shown
    assert "hunter2" not in shown


async def test_connection_limit_greets_the_extra_connection_with_421() -> None:
    async with FaultServer("maxconn=2") as srv:
        first, second = client(srv), client(srv)
        await first.connect()
        await second.connect()
        with pytest.raises(aiosmtplib.SMTPConnectResponseError) as caught:
            await send(srv, "bob@example.test")
        assert caught.value.code == 421
        # the third was turned away, but it was open for a moment
        assert (srv.open_connections, srv.peak_connections) == (2, 3)
        await first.quit()
        await send(srv, "bob@example.test")  # a slot is free again
        await second.quit()
    assert srv.connection_count == 4
    assert srv.peak_connections == 3
    assert srv.connections[2].transcript == [
        "S: 421 4.7.0 Too many concurrent connections, try again later",
        "S: (connection closed)",
    ]
    assert srv.deliveries_to("bob@example.test") == 1
