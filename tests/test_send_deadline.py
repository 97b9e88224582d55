"""The policy's deadline bounds every network operation: min(timeout, time left).

Each server here stalls far longer (a minute) than the call's deadline, and the timeout is
larger still (or None). Without the bound each of these sends would wait the server out and
succeed; with it they end with the typed timeout error. No timing is asserted.

The deadline runs from the start of the attempt, so it covers the phases before the stall
too: short (:data:`SHORT`) only where the stall is the first thing waited for (the greeting,
the local name lookup), else long enough (:data:`PATIENT`) for a loaded machine to get that
far: connecting, EHLO, MAIL, RCPT and DATA must be done within the half of it that is not
reserved for the reply to the final "." (see ``_deliver``), 1.5 s, against tens of
milliseconds on loopback. Those tests last the whole deadline, so it is not longer still.
"""

from __future__ import annotations

import asyncio
import math
import socket
import threading

import aiosmtplib
import pytest
from _helpers import kw

from smtp_guard.client import send
from smtp_guard.client._deadline import bound, deadline_in, time_left
from smtp_guard.errors import ConnectTimeout, DeliveryUncertain, ReadTimeout
from smtp_guard.policy import RetryPolicy
from smtp_guard.testing import FaultServer

RAW = b"Subject: deadline\r\n\r\nbody\r\n"
SHORT = RetryPolicy(attempts=3, deadline=0.3, initial_wait=0.0, jitter=0.0)
PATIENT = RetryPolicy(attempts=3, deadline=3.0, initial_wait=0.0, jitter=0.0)


pytestmark = pytest.mark.usefixtures("no_real_sleep")


async def test_a_greeting_that_never_comes_ends_at_the_deadline_even_without_timeout() -> None:
    async with FaultServer("connect=delay=60s") as srv:
        with pytest.raises(ConnectTimeout) as caught:
            await send(
                RAW, sender="a@sender.test", recipients=["b@rcpt.test"], policy=SHORT,
                **kw(srv, timeout=None),
            )  # fmt: skip
        assert srv.messages == []
    assert isinstance(caught.value, aiosmtplib.SMTPConnectTimeoutError)
    assert "deadline" in caught.value.hint


async def test_a_stalled_command_ends_at_the_deadline_not_at_the_timeout() -> None:
    async with FaultServer("data=delay=60s") as srv:
        with pytest.raises(ReadTimeout) as caught:
            await send(
                RAW, sender="a@sender.test", recipients=["b@rcpt.test"], policy=PATIENT,
                **kw(srv, timeout=30),
            )  # fmt: skip
        assert srv.messages == []
    error = caught.value
    assert (error.attempts, error.history) == (1, ())  # one attempt, ended by the deadline
    assert f"deadline ({PATIENT.deadline:g}s)" in error.hint
    assert "deadline" in str(error)


async def test_a_stalled_reply_to_the_final_dot_is_uncertain_at_the_deadline() -> None:
    async with FaultServer("message=delay=60s") as srv:
        with pytest.raises(DeliveryUncertain) as caught:
            await send(
                RAW, sender="a@sender.test", recipients=["b@rcpt.test"], policy=PATIENT,
                **kw(srv, timeout=None),
            )  # fmt: skip
        assert srv.connection_count == 1  # never resent
    assert caught.value.reason == "timeout"


async def test_a_hanging_local_name_lookup_ends_at_the_deadline(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """aiosmtplib calls socket.getfqdn (outside its timeout) when local_hostname is None.

    The lookup is the one part replaced: a resolver that does not answer cannot be had on
    loopback. Everything else is a real connection to a real server.
    """
    release = threading.Event()

    def stuck_lookup(name: str = "") -> str:
        release.wait(60)  # released as soon as the send has ended
        return "client.test"

    monkeypatch.setattr(socket, "getfqdn", stuck_lookup)
    async with FaultServer() as srv:
        try:
            with pytest.raises(ConnectTimeout):
                await send(
                    RAW, sender="a@sender.test", recipients=["b@rcpt.test"], policy=SHORT,
                    hostname=srv.host, port=srv.port, timeout=30,
                )  # fmt: skip
        finally:
            release.set()
        assert srv.messages == []


async def test_a_slow_server_within_the_deadline_is_waited_for() -> None:
    async with FaultServer("data=delay=0.2s") as srv:
        result = await send(
            RAW, sender="a@sender.test", recipients=["b@rcpt.test"],
            policy=RetryPolicy(deadline=30), **kw(srv, timeout=5),
        )  # fmt: skip
        assert srv.deliveries_to("b@rcpt.test") == 1
    assert result.attempts == 1


# --------------------------------------------------------------------------- the bound itself


def test_without_a_deadline_the_timeout_is_kept() -> None:
    assert time_left() is None
    assert bound(60.0) == 60.0
    assert bound(None) is None


def test_the_bound_is_the_smaller_of_timeout_and_time_left() -> None:
    with deadline_in(1000.0):
        left = time_left()
        assert left is not None
        assert 0 < left <= 1000.0
        assert bound(5.0) == 5.0
        assert bound(None) == pytest.approx(left, abs=1.0)
        with deadline_in(2000.0):  # nested: the earlier deadline stays
            inner = bound(None)
            assert inner is not None
            assert inner <= 1000.0
        with deadline_in(-1.0):  # passed already
            assert bound(5.0) == 0.0
    with deadline_in(math.inf):
        assert bound(None) is None
    assert time_left() is None


async def test_concurrent_calls_each_see_their_own_deadline() -> None:
    async def left_in(seconds: float) -> float | None:
        with deadline_in(seconds):
            await asyncio.sleep(0)
            return time_left()

    short, long = await asyncio.gather(left_in(10.0), left_in(1000.0))
    assert short is not None
    assert long is not None
    assert short <= 10.0 < long
