"""Partial delivery is never silent, and DeliveryUncertain keeps aiosmtplib's handlers working.

Over real sockets against FaultServer: a first attempt (or transaction) reaches some
recipients, a later one ends with an error that is not a reply; the raised error says who
already got the message.
"""

from __future__ import annotations

import pickle
from typing import Any

import aiosmtplib
import pytest
from _helpers import CLIENT_NAME, connect_params, kw, refusing_port

from smtp_guard.client import send
from smtp_guard.client._connect import Connection, ConnectParams, open_connection
from smtp_guard.client._deliver import deliver
from smtp_guard.client._validate import make_envelope
from smtp_guard.errors import (
    ConnectionFailed,
    DeliveryUncertain,
    ProtocolError,
    ReadTimeout,
    ServerDisconnected,
    SMTPGuardError,
    SMTPTimeout,
)
from smtp_guard.policy import RetryPolicy
from smtp_guard.testing import FaultServer

RAW = b"Subject: partial\r\n\r\nbody\r\n"
ONE, TWO = "one@rcpt.test", "two@rcpt.test"
# The first attempt delivers to ONE and defers TWO; what happens to TWO's attempt varies.
DEFER_TWO_ONCE = f"rcpt:{TWO}=451 4.7.1 Greylisted x1"
#: The timeout of a send in which one reply stalls (for a minute). It bounds every other reply
#: of the send too, so it leaves a loaded machine ample time for those.
STALL_TIMEOUT = 1.0


pytestmark = pytest.mark.usefixtures("no_real_sleep")


def _says_who_got_it(error: SMTPGuardError, *delivered: str) -> None:
    assert error.delivered == delivered
    text = str(error)
    assert "already delivered to" in text
    for rcpt in delivered:
        # A bare address is shown in brackets; one written with a display name, as written.
        assert (rcpt if "<" in rcpt else f"<{rcpt}>") in text
    back = pickle.loads(pickle.dumps(error))  # noqa: S301 (our own bytes)
    assert back.delivered == delivered
    assert back == error


# --------------------------------------------------------------------------- item: delivered


# maxrcpt=1: ONE goes in a first transaction and gets the message; TWO goes in a second one
# (on the same connection, and again in the next attempt), where the fault hits.
ONE_PER_TRANSACTION = "maxrcpt=1"


@pytest.mark.parametrize(
    ("setup", "fault", "expected", "extra"),
    [
        (ONE_PER_TRANSACTION, f"data:{TWO}=drop", ServerDisconnected, {}),
        (ONE_PER_TRANSACTION, f"data:{TWO}=delay=60s", ReadTimeout, {"timeout": STALL_TIMEOUT}),
        (ONE_PER_TRANSACTION, f"data:{TWO}=garbage", ProtocolError, {}),
        (ONE_PER_TRANSACTION, f"message:{TWO}=drop", DeliveryUncertain, {}),
        (DEFER_TWO_ONCE, f"message:{TWO}=drop", DeliveryUncertain, {}),
        (DEFER_TWO_ONCE, f"message:{TWO}=delay=60s", DeliveryUncertain, {"timeout": STALL_TIMEOUT}),
    ],
)
async def test_error_after_an_earlier_attempt_delivered_names_who_got_it(
    setup: str, fault: str, expected: type[SMTPGuardError], extra: dict[str, Any]
) -> None:
    async with FaultServer(setup, fault) as srv:
        with pytest.raises(expected) as caught:
            await send(
                RAW,
                sender="a@sender.test",
                recipients=[ONE, TWO],
                policy=RetryPolicy(attempts=2, retry_uncertain=False),
                **kw(srv, **extra),
            )
        assert srv.deliveries_to(ONE) == 1
    error = caught.value
    _says_who_got_it(error, ONE)
    if isinstance(error, DeliveryUncertain):
        assert error.recipients == (TWO,)  # the one whose fate is unknown
    else:
        assert error.attempts == 2


async def test_delivered_names_recipients_as_the_caller_wrote_them_in_order() -> None:
    async with FaultServer("maxrcpt=2", f"data:{TWO}=drop") as srv:
        with pytest.raises(ServerDisconnected) as caught:
            await send(
                RAW,
                sender="a@sender.test",
                recipients=[f"One <{ONE}>", "Three <three@rcpt.test>", TWO],
                policy=RetryPolicy.never(),
                **kw(srv),
            )
    _says_who_got_it(caught.value, f"One <{ONE}>", "Three <three@rcpt.test>")


async def test_an_earlier_transaction_of_the_same_attempt_counts_too() -> None:
    # maxrcpt=1: ONE goes in the first transaction, TWO in a second one on the same connection.
    async with FaultServer("maxrcpt=1", f"data:{TWO}=drop") as srv:
        with pytest.raises(ServerDisconnected) as caught:
            await send(
                RAW,
                sender="a@sender.test",
                recipients=[ONE, TWO],
                policy=RetryPolicy.never(),
                **kw(srv),
            )
        assert srv.deliveries_to(ONE) == 1
        assert srv.connection_count == 1
    _says_who_got_it(caught.value, ONE)


async def test_connection_refused_on_the_retry_names_who_got_it() -> None:
    with refusing_port() as refused:
        async with FaultServer(ONE_PER_TRANSACTION, f"data:{TWO}=drop x1") as srv:
            good = connect_params(srv)
            gone = ConnectParams(hostname="127.0.0.1", port=refused, local_hostname=CLIENT_NAME)
            targets = [good, gone]

            async def acquire() -> Connection:
                return await open_connection(targets.pop(0))

            async def release(conn: Connection) -> None:
                await conn.close()

            envelope = make_envelope(RAW, "a@sender.test", [ONE, TWO])
            with pytest.raises(ConnectionFailed) as caught:
                await deliver(
                    envelope, acquire=acquire, release=release, policy=RetryPolicy(attempts=2)
                )
            assert srv.deliveries_to(ONE) == 1
    _says_who_got_it(caught.value, ONE)


async def test_nothing_delivered_means_an_empty_delivered_and_no_note() -> None:
    async with FaultServer("data=drop") as srv:
        with pytest.raises(ServerDisconnected) as caught:
            await send(
                RAW,
                sender="a@sender.test",
                recipients=[ONE, TWO],
                policy=RetryPolicy(attempts=2),
                **kw(srv),
            )
    assert caught.value.delivered == ()
    assert "delivered" not in str(caught.value)


# --------------------------------------------------------------------------- item: drop-in


async def test_uncertain_drop_is_caught_where_aiosmtplib_raised_server_disconnected() -> None:
    async with FaultServer("message=drop") as srv:
        with pytest.raises(aiosmtplib.SMTPServerDisconnected):
            await aiosmtplib.send(RAW, sender="a@sender.test", recipients=[ONE], **kw(srv))
        try:
            await send(RAW, sender="a@sender.test", recipients=[ONE], **kw(srv))
        except aiosmtplib.SMTPServerDisconnected as caught:  # a handler written for aiosmtplib
            error: BaseException = caught
        assert srv.connection_count == 2  # ours did not reconnect to resend
    assert isinstance(error, DeliveryUncertain)
    assert isinstance(error, ConnectionError)
    assert error.reason == "disconnected"
    assert not isinstance(error, ConnectionFailed)  # not our "retry this" class
    assert not RetryPolicy().is_retryable(error)


async def test_uncertain_timeout_is_caught_where_aiosmtplib_raised_read_timeout() -> None:
    async with FaultServer("message=delay=60s") as srv:
        with pytest.raises(aiosmtplib.SMTPReadTimeoutError):
            await aiosmtplib.send(
                RAW, sender="a@sender.test", recipients=[ONE], **kw(srv, timeout=STALL_TIMEOUT)
            )
        try:
            await send(
                RAW, sender="a@sender.test", recipients=[ONE], **kw(srv, timeout=STALL_TIMEOUT)
            )
        except aiosmtplib.SMTPReadTimeoutError as caught:
            error: BaseException = caught
    assert isinstance(error, DeliveryUncertain)
    assert isinstance(error, TimeoutError)
    assert error.reason == "timeout"
    assert not isinstance(error, SMTPTimeout)


async def test_uncertain_garbage_is_an_smtp_exception_only() -> None:
    async with FaultServer("message=garbage") as srv:
        with pytest.raises(DeliveryUncertain) as caught:
            await send(RAW, sender="a@sender.test", recipients=[ONE], **kw(srv))
    error = caught.value
    assert error.reason == "bad_reply"
    assert isinstance(error, aiosmtplib.SMTPException)
    assert not isinstance(error, ConnectionError | TimeoutError)
