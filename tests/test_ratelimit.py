"""Token bucket, AIMD limit and the throttle predicate: pure logic, fake clock, no sleeping."""

from __future__ import annotations

import asyncio

import pytest

from smtp_guard._ratelimit import AIMDLimit, TokenBucket, is_throttle
from smtp_guard.classify import error_from_reply
from smtp_guard.errors import (
    DeliveryUncertain,
    InvalidInput,
    RecipientsRefused,
    ServerDisconnected,
)


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


async def test_bucket_spaces_acquisitions_at_the_rate() -> None:
    clock = FakeClock()
    bucket = TokenBucket(10, clock=clock, sleep=clock.sleep)
    for _ in range(5):
        await bucket.acquire()
    assert clock.slept == pytest.approx([0.1, 0.1, 0.1, 0.1])
    assert clock.now == pytest.approx(1000.4)


async def test_bucket_allows_a_burst_then_the_rate() -> None:
    clock = FakeClock()
    bucket = TokenBucket(4, burst=3, clock=clock, sleep=clock.sleep)
    waits = [bucket.reserve() for _ in range(6)]
    assert waits == pytest.approx([0, 0, 0, 0.25, 0.5, 0.75])


async def test_bucket_refills_while_idle_but_not_beyond_the_burst() -> None:
    clock = FakeClock()
    bucket = TokenBucket(2, burst=2, clock=clock, sleep=clock.sleep)
    assert [bucket.reserve() for _ in range(3)] == pytest.approx([0, 0, 0.5])
    clock.now += 100  # a long pause earns at most `burst` free sends
    assert [bucket.reserve() for _ in range(3)] == pytest.approx([0, 0, 0.5])


def test_delay_says_the_wait_of_the_next_slot_without_taking_it() -> None:
    clock = FakeClock()
    bucket = TokenBucket(4, burst=2, clock=clock, sleep=clock.sleep)
    assert [bucket.delay(), bucket.delay()] == [0, 0]  # nothing taken
    assert [bucket.reserve(), bucket.reserve()] == [0, 0]
    assert bucket.delay() == pytest.approx(0.25)
    assert bucket.delay() == pytest.approx(0.25)
    assert bucket.reserve() == pytest.approx(0.25)  # what delay() said
    assert bucket.delay() == pytest.approx(0.5)


async def test_bucket_serves_concurrent_callers_in_order() -> None:
    clock = FakeClock()
    slept: list[float] = []

    async def sleep(seconds: float) -> None:  # all callers reserve at the same instant
        slept.append(seconds)
        await asyncio.sleep(0)

    bucket = TokenBucket(5, clock=clock, sleep=sleep)
    order: list[int] = []

    async def one(i: int) -> None:
        await bucket.acquire()
        order.append(i)

    await asyncio.gather(*(one(i) for i in range(6)))
    assert slept == pytest.approx([0.2, 0.4, 0.6, 0.8, 1.0])
    assert order[0] == 0


@pytest.mark.parametrize("rate", [0, -1, float("inf"), float("nan"), "5", True])
def test_bucket_refuses_bad_rates(rate: object) -> None:
    with pytest.raises(InvalidInput, match="rate_limit"):
        TokenBucket(rate)  # type: ignore[arg-type]


def test_aimd_halves_on_throttle_once_per_cooldown_and_recovers_additively() -> None:
    clock = FakeClock()
    limit = AIMDLimit(8, clock=clock, cooldown=1.0)
    assert limit.limit == 8
    assert limit.on_throttle()
    assert limit.limit == 4
    assert not limit.on_throttle()  # the same burst of refusals counts once
    assert limit.limit == 4
    clock.now += 1.5
    assert limit.on_throttle()
    assert limit.limit == 2
    # +1/maximum per success: one more slot per `maximum` successes, so 6 * 8 to get back
    successes = 0
    while limit.limit < 8:
        limit.on_success()
        successes += 1
    assert 47 <= successes <= 49
    for _ in range(100):
        limit.on_success()
    assert limit.limit == 8


def test_aimd_never_goes_below_the_minimum() -> None:
    clock = FakeClock()
    limit = AIMDLimit(4, clock=clock, cooldown=0.0)
    for _ in range(10):
        clock.now += 1
        limit.on_throttle()
    assert limit.limit == 1
    assert limit.decreases == 10


@pytest.mark.parametrize(
    ("code", "text", "phase"),
    [
        (421, "4.7.0 Try again later, closing connection.", "mail"),
        (421, "4.7.0 Too many concurrent SMTP connections", "connect"),
        (432, "4.3.2 STOREDRV.Deliver; mailbox server is too busy", "message"),
        (450, "4.2.1 The user you are trying to contact is receiving mail at a rate", "rcpt"),
        (451, "4.7.28 Our system has detected an unusual rate of unsolicited mail", "message"),
        (454, "4.7.0 Too many connections from your IP, slow down", "ehlo"),
        (421, "Too many connections from your host", "connect"),
        (450, "Throttled: sending rate exceeded", "mail"),
    ],
)
def test_throttle_replies(code: int, text: str, phase: str) -> None:
    assert is_throttle(error_from_reply(code, text, phase))


@pytest.mark.parametrize(
    ("code", "text", "phase"),
    [
        (550, "5.1.1 No such user", "rcpt"),
        (451, "4.7.1 Greylisted, please try again in 300 seconds", "rcpt"),
        (452, "4.3.1 Insufficient system storage", "mail"),
        (421, "4.3.2 System shutting down", "connect"),
        (554, "5.7.1 Rate limit exceeded permanently for this sender", "mail"),
    ],
)
def test_not_throttle_replies(code: int, text: str, phase: str) -> None:
    assert not is_throttle(error_from_reply(code, text, phase))


def test_throttle_inside_refused_recipients_and_other_errors() -> None:
    refused = {"a@x.test": error_from_reply(450, "4.2.1 rate limited", "rcpt", "a@x.test")}
    assert is_throttle(RecipientsRefused(refused))
    assert not is_throttle(ServerDisconnected("gone"))
    assert not is_throttle(DeliveryUncertain("?"))
    assert not is_throttle(None)
    assert not is_throttle(ValueError("x"))
