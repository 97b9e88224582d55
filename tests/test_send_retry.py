"""Retries over real sockets: what is retried, what is not, and how the retrying stops.

Every test runs in the testing mode (no real sleep; waits are counted as if they passed).
"""

from __future__ import annotations

import aiosmtplib
import pytest
from _helpers import CLIENT_NAME, kw, refusing_port

from smtp_guard.client import send
from smtp_guard.errors import (
    ConnectionFailed,
    ConnectTimeout,
    DeliveryUncertain,
    PermanentError,
    ProtocolError,
    ReadTimeout,
    ReplyError,
    ServerDisconnected,
    SMTPGuardError,
    TransientError,
)
from smtp_guard.hooks import HookDetails, RetryDetails, using_hooks
from smtp_guard.policy import RetryPolicy
from smtp_guard.testing import FaultServer

RAW = b"Subject: retry\r\n\r\nbody\r\n"
TWO = ["one@rcpt.test", "two@rcpt.test"]


pytestmark = pytest.mark.usefixtures("no_real_sleep")


@pytest.mark.parametrize(
    "fault",
    [
        "connect=421 4.3.2 Service shutting down x1",
        "ehlo=421 4.3.2 Too busy x1",
        "mail=451 4.3.0 Temporary local problem x1",
        "data=451 4.3.0 Try again x1",
        "message=451 4.3.0 Queue full x1",
        "data=drop x1",
        "mail=garbage x1",
    ],
)
async def test_transient_failure_before_handover_is_retried_and_delivered_once(
    fault: str,
) -> None:
    async with FaultServer(fault) as srv:
        result = await send(RAW, sender="a@sender.test", recipients=TWO, **kw(srv))
        assert srv.fault_hits == [1]
        assert srv.deliveries_to("one@rcpt.test") == 1
        assert srv.deliveries_to("two@rcpt.test") == 1
    assert result.delivered == tuple(TWO)
    assert result.attempts == 2
    [first] = result.history
    assert isinstance(first, SMTPGuardError)
    assert not first.permanent


async def test_421_at_rcpt_with_several_recipients_keeps_the_reply() -> None:
    # aiosmtplib.sendmail reports "Server not connected" here; we keep the 421 itself.
    async with FaultServer("rcpt:two@*=421 4.7.0 Too many connections, slow down") as srv:
        with pytest.raises(TransientError) as caught:
            await send(
                RAW,
                sender="a@sender.test",
                recipients=[*TWO, "three@rcpt.test"],
                policy=RetryPolicy.never(),
                **kw(srv),
            )
        assert srv.messages == []  # "one" was accepted, but the message never went
    error = caught.value
    assert error.code == 421
    assert "slow down" in error.message
    assert isinstance(error, TransientError)
    assert isinstance(error, aiosmtplib.SMTPResponseException)


async def test_421_at_rcpt_then_reconnect_delivers_to_everyone_once() -> None:
    async with FaultServer("rcpt:two@*=421 4.3.2 Closing x1") as srv:
        result = await send(RAW, sender="a@sender.test", recipients=TWO, **kw(srv))
        assert srv.connection_count == 2
        assert [t.recipients for t in srv.messages] == [TWO]
    assert result.delivered == tuple(TWO)
    first = result.history[0]
    assert isinstance(first, TransientError)
    assert first.code == 421


async def test_permanent_reply_at_mail_is_not_retried() -> None:
    async with FaultServer("mail=550 5.7.1 Sender blocked") as srv:
        with pytest.raises(aiosmtplib.SMTPSenderRefused) as caught:
            await send(RAW, sender="a@sender.test", recipients=TWO, **kw(srv))
        assert srv.connection_count == 1
    assert isinstance(caught.value, PermanentError)
    assert caught.value.attempts == 1
    assert caught.value.history == ()


async def test_attempts_run_out_last_typed_error_with_history_no_retry_error() -> None:
    async with FaultServer("mail=451 4.3.0 Temporary local problem") as srv:
        with pytest.raises(TransientError) as caught:
            await send(
                RAW,
                sender="a@sender.test",
                recipients=TWO,
                policy=RetryPolicy(attempts=3),
                **kw(srv),
            )
        assert srv.connection_count == 3
    error = caught.value
    assert isinstance(error, aiosmtplib.SMTPSenderRefused)
    assert error.code == 451
    assert error.attempts == 3
    assert len(error.history) == 2
    assert all(isinstance(e, ReplyError) and e.code == 451 for e in error.history)
    assert type(error).__module__.startswith("smtp_guard")


async def test_connection_refused_is_retried_then_raised_typed() -> None:
    with refusing_port() as port, pytest.raises(ConnectionFailed) as caught:
        await send(
            RAW,
            sender="a@sender.test",
            recipients=TWO,
            hostname="127.0.0.1",
            port=port,
            local_hostname=CLIENT_NAME,
            policy=RetryPolicy(attempts=2),
        )
    assert isinstance(caught.value, aiosmtplib.SMTPConnectError)
    assert caught.value.attempts == 2
    assert len(caught.value.history) == 1


async def test_drop_after_final_dot_is_uncertain_and_never_resent() -> None:
    async with FaultServer("message=store-drop") as srv:
        with pytest.raises(DeliveryUncertain) as caught:
            await send(
                RAW, sender="a@sender.test", recipients=["One <one@rcpt.test>", TWO[1]], **kw(srv)
            )
        assert srv.deliveries_to("one@rcpt.test") == 1  # stored once, not a second time
        assert srv.connection_count == 1
    assert caught.value.recipients == ("One <one@rcpt.test>", TWO[1])  # as the caller gave them
    assert caught.value.attempts == 1


async def test_uncertain_is_retried_only_when_the_policy_opts_in() -> None:
    async with FaultServer("message=drop x1") as srv:
        result = await send(
            RAW,
            sender="a@sender.test",
            recipients=TWO,
            policy=RetryPolicy(retry_uncertain=True),
            **kw(srv),
        )
        assert srv.deliveries_to("one@rcpt.test") == 1
    assert result.attempts == 2
    assert isinstance(result.history[0], DeliveryUncertain)


# The timeout of a send applies to every phase, not only the one that stalls: it is long
# enough (PATIENT) for each phase before the stall on a loaded machine, and the stall (a
# minute) is far longer than it.
PATIENT = 1.0


async def test_timeout_after_final_dot_is_uncertain() -> None:
    async with FaultServer("message=delay=60s") as srv:
        with pytest.raises(DeliveryUncertain) as caught:
            await send(RAW, sender="a@sender.test", recipients=TWO, timeout=PATIENT, **kw(srv))
        assert srv.connection_count == 1  # not retried
    assert caught.value.reason == "timeout"


async def test_timeout_before_final_dot_is_retried() -> None:
    # x1: the first DATA stalls; the server counts it when it reads DATA, which it does before
    # the client's (generous) timeout can run out, so the retry's DATA is answered.
    async with FaultServer("data=delay=60s x1") as srv:
        result = await send(RAW, sender="a@sender.test", recipients=TWO, timeout=PATIENT, **kw(srv))
        assert srv.deliveries_to("one@rcpt.test") == 1
    assert isinstance(result.history[0], ReadTimeout)
    assert result.attempts == 2


async def test_server_hint_beyond_deadline_stops_at_once_with_retry_after() -> None:
    async with FaultServer("mail=451 4.7.1 Greylisted, try again in 300 seconds") as srv:
        with pytest.raises(TransientError) as caught:
            await send(RAW, sender="a@sender.test", recipients=TWO, **kw(srv))
        assert srv.connection_count == 1
    assert caught.value.retry_after == 300.0
    assert caught.value.attempts == 1


async def test_server_hint_replaces_the_backoff_when_it_fits() -> None:
    seen: list[RetryDetails] = []

    def hook(details: HookDetails) -> None:
        if isinstance(details, RetryDetails):
            seen.append(details)

    async with FaultServer("rcpt:two@*=451 4.7.1 Greylisted, try again in 7 seconds x1") as srv:
        with using_hooks(hook):
            result = await send(RAW, sender="a@sender.test", recipients=TWO, **kw(srv))
        assert [t.recipients for t in srv.messages] == [["one@rcpt.test"], ["two@rcpt.test"]]
    assert result.delivered == tuple(TWO)
    assert [d.wait for d in seen] == [7.0]
    assert seen[0].recipients == ("two@rcpt.test",)


async def test_backoff_that_would_pass_the_deadline_is_not_started() -> None:
    policy = RetryPolicy(attempts=10, deadline=10.0, initial_wait=4.0, max_wait=30.0, jitter=0.0)
    async with FaultServer("mail=451 4.3.0 Temporary local problem") as srv:
        with pytest.raises(TransientError) as caught:
            await send(RAW, sender="a@sender.test", recipients=TWO, policy=policy, **kw(srv))
        # waits: 4 s (fits in 10), then 8 s (only ~6 s left): two attempts, counted not slept
        assert srv.connection_count == 2
    assert caught.value.attempts == 2
    assert caught.value.retry_after == pytest.approx(8.0)


@pytest.mark.parametrize("fault", ["mail=garbage", "mail=long=20000", "mail=non-utf8"])
async def test_bad_replies_give_a_clean_typed_error_and_bounded_retries(fault: str) -> None:
    async with FaultServer(fault) as srv:
        with pytest.raises(SMTPGuardError) as caught:
            await send(
                RAW,
                sender="a@sender.test",
                recipients=TWO,
                policy=RetryPolicy(attempts=2),
                timeout=2.0,
                **kw(srv),
            )
        assert srv.connection_count <= 2
    error = caught.value
    assert isinstance(error, ProtocolError | ReplyError)
    text = str(error) + repr(error)
    assert "\r" not in text
    assert len(str(error)) < 2000


async def test_disconnect_mid_transaction_is_a_retryable_server_disconnected() -> None:
    async with FaultServer("rcpt=drop") as srv:
        with pytest.raises(ServerDisconnected) as caught:
            await send(
                RAW,
                sender="a@sender.test",
                recipients=TWO,
                policy=RetryPolicy(attempts=2),
                **kw(srv),
            )
        assert srv.messages == []
    assert caught.value.attempts == 2
    assert not caught.value.permanent


async def test_greeting_that_never_comes_is_a_connect_timeout_and_retried() -> None:
    async with FaultServer("connect=delay=60s x1") as srv:
        result = await send(RAW, sender="a@sender.test", recipients=TWO, timeout=PATIENT, **kw(srv))
        assert srv.deliveries_to("one@rcpt.test") == 1
    assert isinstance(result.history[0], ConnectTimeout)
    assert isinstance(result.history[0], aiosmtplib.SMTPConnectTimeoutError)
