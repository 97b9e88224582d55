"""The pooled Mailer over real sockets against the FaultServer: reuse, replacement, bounds,
faults, AIMD back-off, rate limit, cancellation, no fd or task leaks, and SyncMailer."""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
import threading
from collections.abc import AsyncIterator

import aiosmtplib
import pytest
from _helpers import kw

from smtp_guard._ratelimit import TokenBucket
from smtp_guard.client.result import SendResult
from smtp_guard.errors import (
    DeliveryUncertain,
    InsecureConnection,
    InvalidInput,
    MailboxUnavailable,
    ReplyError,
)
from smtp_guard.mailer import Mailer, SyncMailer
from smtp_guard.policy import RetryPolicy
from smtp_guard.testing.server import FaultServer

BODY = b"Subject: hello\r\n\r\nHello from the pool.\r\n"


pytestmark = pytest.mark.usefixtures("no_real_sleep")


@pytest.fixture
async def server() -> AsyncIterator[FaultServer]:
    async with FaultServer() as srv:
        yield srv


def mailer_for(srv: FaultServer, **kwargs: object) -> Mailer:
    """A Mailer for ``srv`` (EHLO names the client: no lookup of this machine's name)."""
    return Mailer(**kw(srv, timeout=5, **kwargs))


async def send_many(mailer: Mailer, count: int, prefix: str = "r") -> list[SendResult]:
    return await asyncio.gather(
        *(
            mailer.send(BODY, sender="app@s.test", recipients=[f"{prefix}{i}@r.test"])
            for i in range(count)
        )
    )


def quits(srv: FaultServer) -> int:
    return sum(line == "C: QUIT" for line in srv.transcript)


# --------------------------------------------------------------------------- pool behaviour


async def test_many_tasks_share_at_most_pool_size_connections(server: FaultServer) -> None:
    async with mailer_for(server, pool_size=3) as mailer:
        results = await send_many(mailer, 60)
        assert mailer.open_connections <= 3
    assert all(isinstance(r, SendResult) for r in results)
    assert [r.delivered for r in results] == [(f"r{i}@r.test",) for i in range(60)]
    assert all(r.attempts == 1 and r.ok for r in results)
    errors, response = results[0]
    assert errors == {}
    assert "queued" in response
    # every message arrived exactly once, over at most pool_size connections
    got = sorted(r for t in server.messages for r in t.recipients)
    assert got == sorted(f"r{i}@r.test" for i in range(60))
    assert server.connection_count <= 3
    assert mailer.stats.opened == server.connection_count
    assert mailer.stats.reused == 60 - mailer.stats.opened
    assert quits(server) == server.connection_count  # closed politely on exit
    assert all(c.closed for c in server.connections)


async def test_worn_out_connections_are_replaced(server: FaultServer) -> None:
    async with mailer_for(server, pool_size=1, max_messages_per_connection=2) as mailer:
        for i in range(6):
            await mailer.send(BODY, sender="a@s.test", recipients=[f"x{i}@r.test"])
    assert server.connection_count == 3
    assert mailer.stats.replaced == 3  # each closed as soon as it had carried two
    mails = [sum(line.startswith("C: MAIL") for line in c.transcript) for c in server.connections]
    assert mails == [2, 2, 2]
    assert quits(server) == 3  # each worn-out connection was closed politely


async def test_old_connections_are_replaced(server: FaultServer) -> None:
    async with mailer_for(server, pool_size=1, max_connection_age=1e-9) as mailer:
        for i in range(3):
            await mailer.send(BODY, sender="a@s.test", recipients=[f"x{i}@r.test"])
    assert server.connection_count == 3
    assert len(server.messages) == 3


async def test_idle_connections_are_checked_with_noop(server: FaultServer) -> None:
    async with mailer_for(server, pool_size=1, idle_check=0) as mailer:
        for i in range(3):
            await mailer.send(BODY, sender="a@s.test", recipients=[f"x{i}@r.test"])
    assert server.connection_count == 1
    assert mailer.stats.checked == 2
    assert sum(line == "C: NOOP" for line in server.transcript) == 2


async def test_connection_closed_by_the_server_while_idle_is_replaced() -> None:
    # The server closes the connection right after the first message's reply.
    async with (
        FaultServer("message=250 2.0.0 Ok, bye close x1") as srv,
        mailer_for(srv, pool_size=1, idle_check=0) as mailer,
    ):
        first = await mailer.send(BODY, sender="a@s.test", recipients=["one@r.test"])
        second = await mailer.send(BODY, sender="a@s.test", recipients=["two@r.test"])
    assert (first.attempts, second.attempts) == (1, 1)  # no failed attempt on a dead connection
    assert srv.connection_count == 2
    assert [t.recipients for t in srv.messages] == [["one@r.test"], ["two@r.test"]]


# --------------------------------------------------------------------------- faults


async def test_drop_before_the_dot_is_retried_on_a_new_connection() -> None:
    async with FaultServer("rcpt=drop x1") as srv, mailer_for(srv, pool_size=2) as mailer:
        result = await mailer.send(BODY, sender="a@s.test", recipients=["x@r.test"])
    assert result.attempts == 2
    assert result.delivered == ("x@r.test",)
    assert srv.connection_count == 2
    assert len(srv.messages) == 1


async def test_drop_after_the_dot_is_uncertain_and_not_resent() -> None:
    async with FaultServer("message=store-drop x1") as srv, mailer_for(srv) as mailer:
        with pytest.raises(DeliveryUncertain) as caught:
            await mailer.send(BODY, sender="a@s.test", recipients=["x@r.test"])
        assert caught.value.attempts == 1
        # the pool carries on with a new connection
        await mailer.send(BODY, sender="a@s.test", recipients=["y@r.test"])
    assert [t.recipients for t in srv.messages] == [["x@r.test"], ["y@r.test"]]


async def test_deferred_sender_is_retried_for_every_recipient() -> None:
    # Pipelined, the RCPTs after a refused MAIL get 503s; those must not count as refusals.
    async with FaultServer("mail=451 4.3.0 Try later x1") as srv, mailer_for(srv) as mailer:
        result = await mailer.send(BODY, sender="a@s.test", recipients=["b@r.test", "c@r.test"])
    assert result.attempts == 2
    assert result.delivered == ("b@r.test", "c@r.test")
    assert result.refused == {}
    assert [t.recipients for t in srv.messages] == [["b@r.test", "c@r.test"]]


async def test_drop_after_a_dot_while_the_next_transaction_overlaps() -> None:
    # The first message's final reply never comes (stored, then the connection drops) while
    # the second message's commands already went out behind it on the same connection.
    async with (
        FaultServer("message=store-drop x1") as srv,
        mailer_for(srv, pool_size=1) as mailer,
    ):
        first, second = await asyncio.gather(
            mailer.send(BODY, sender="a@s.test", recipients=["one@r.test"]),
            mailer.send(BODY, sender="a@s.test", recipients=["two@r.test"]),
            return_exceptions=True,
        )
        assert mailer.stats.overlapped == 1
    assert isinstance(first, DeliveryUncertain)  # maybe delivered: not resent
    assert first.recipients == ("one@r.test",)
    assert isinstance(second, SendResult)
    assert second.attempts == 2  # its MAIL went into a dying connection: retried, safely
    assert sorted(r for t in srv.messages for r in t.recipients) == ["one@r.test", "two@r.test"]


@pytest.mark.parametrize("pipelining", [True, False])
async def test_mixed_recipients_through_the_pool(pipelining: bool) -> None:
    async with (
        FaultServer("rcpt:bad@*=550 5.1.1 No such user") as srv,
        mailer_for(srv, pipelining=pipelining) as mailer,
    ):
        result = await mailer.send(
            BODY, sender="a@s.test", recipients=["ok@r.test", "bad@r.test", "ok2@r.test"]
        )
    assert result.delivered == ("ok@r.test", "ok2@r.test")
    assert isinstance(result.refused["bad@r.test"], MailboxUnavailable)
    assert result.errors["bad@r.test"].code == 550
    assert [t.recipients for t in srv.messages] == [["ok@r.test", "ok2@r.test"]]


@pytest.mark.parametrize("pipelining", [True, False])
async def test_too_many_recipients_go_in_further_transactions(pipelining: bool) -> None:
    rcpts = [f"m{i}@r.test" for i in range(5)]
    async with (
        FaultServer(max_recipients=2) as srv,
        mailer_for(srv, pipelining=pipelining) as mailer,
    ):
        result = await mailer.send(BODY, sender="a@s.test", recipients=rcpts)
    assert result.delivered == tuple(rcpts)
    assert result.attempts == 1
    assert [t.recipients for t in srv.messages] == [rcpts[0:2], rcpts[2:4], rcpts[4:5]]


async def test_same_safety_rules_as_send(server: FaultServer) -> None:
    async with mailer_for(server, username="u", password="hunter2") as mailer:
        with pytest.raises(InsecureConnection) as caught:
            await mailer.send(BODY, sender="a@s.test", recipients=["x@r.test"])
        with pytest.raises(InvalidInput):
            await mailer.send(BODY, sender="a@s.test", recipients=["x@r.test>\r\nRCPT TO:<e@x>"])
    assert "hunter2" not in str(caught.value) + repr(caught.value)
    assert not any(line.startswith("C: AUTH") for line in server.transcript)
    assert server.messages == []


@pytest.mark.parametrize(
    ("kwargs", "words"),
    [
        ({"pool_size": 0}, "pool_size"),
        ({"pool_size": True}, "pool_size"),
        ({"max_messages_per_connection": 0}, "max_messages_per_connection"),
        ({"max_connection_age": -1}, "max_connection_age"),
        ({"max_connection_age": float("nan")}, "max_connection_age"),
        ({"rate_limit": 0}, "rate_limit"),
        ({"policy": "fast"}, "policy"),
        ({"start_tls": True, "use_tls": True}, "start_tls"),
    ],
)
def test_bad_arguments_are_refused_up_front(kwargs: dict[str, object], words: str) -> None:
    with pytest.raises(InvalidInput, match=words):
        Mailer(hostname="127.0.0.1", port=1, **kwargs)  # type: ignore[arg-type]


async def test_closed_mailer_refuses_to_send(server: FaultServer) -> None:
    mailer = mailer_for(server)
    await mailer.aclose()
    with pytest.raises(RuntimeError, match="closed"):
        await mailer.send(BODY, sender="a@s.test", recipients=["x@r.test"])
    assert server.connection_count == 0


# --------------------------------------------------------------------------- back-pressure


async def test_throttling_lowers_concurrency_and_everything_still_arrives() -> None:
    async with (
        FaultServer("mail=421 4.7.0 Too many connections, slow down x3") as srv,
        mailer_for(srv, pool_size=4, policy=RetryPolicy(attempts=6)) as mailer,
    ):
        lowest = 4

        async def watch() -> None:
            nonlocal lowest
            while True:
                lowest = min(lowest, mailer.concurrency.limit)
                await asyncio.sleep(0)

        watcher = asyncio.ensure_future(watch())
        results = await send_many(mailer, 12)
        watcher.cancel()
        assert mailer.concurrency.decreases == 1  # one burst of 421 4.7.0 counted once
        assert lowest == 2  # halved
        assert mailer.open_connections <= 4
    assert sorted(r for t in srv.messages for r in t.recipients) == sorted(
        f"r{i}@r.test" for i in range(12)
    )
    assert all(r.ok for r in results)


async def test_concurrency_recovers_after_throttling(server: FaultServer) -> None:
    async with mailer_for(server, pool_size=4) as mailer:
        mailer.concurrency.on_throttle()
        assert mailer.concurrency.limit == 2
        await send_many(mailer, 4, "a")
        assert mailer.concurrency.limit < 4  # recovery is gradual
        for i in range(20):
            await mailer.send(BODY, sender="a@s.test", recipients=[f"b{i}@r.test"])
        assert mailer.concurrency.limit == 4


async def test_throttled_pool_runs_and_keeps_fewer_connections(server: FaultServer) -> None:
    async with mailer_for(server, pool_size=4) as mailer:
        await send_many(mailer, 16)
        assert mailer.open_connections == 4
        mailer.concurrency.cooldown = 0
        mailer.concurrency.on_throttle()
        mailer.concurrency.on_throttle()
        assert mailer.concurrency.limit == 1
        busiest = 0

        async def watch() -> None:
            nonlocal busiest
            while True:
                busiest = max(busiest, mailer._pool.busy)
                await asyncio.sleep(0)

        watcher = asyncio.ensure_future(watch())
        await send_many(mailer, 3, "later")
        watcher.cancel()
        assert busiest == 1  # one transaction at a time while throttled
        assert mailer.open_connections <= 2  # the surplus idle connections were closed
    assert quits(server) == server.connection_count


async def test_rate_limit_holds_every_attempt(server: FaultServer) -> None:
    slept: list[float] = []

    class Clock:
        now = 0.0

        def __call__(self) -> float:
            return self.now

    clock = Clock()

    async def fake_sleep(seconds: float) -> None:
        slept.append(seconds)
        clock.now += seconds

    async with mailer_for(server, rate_limit=20, pool_size=2) as mailer:
        assert mailer.rate is not None
        mailer.rate = TokenBucket(20, clock=clock, sleep=fake_sleep)
        for i in range(5):
            await mailer.send(BODY, sender="a@s.test", recipients=[f"x{i}@r.test"])
    assert slept == pytest.approx([0.05] * 4)
    assert len(server.messages) == 5


# --------------------------------------------------------------------------- lifecycle, leaks


def _sockets() -> int:
    count = 0
    for fd in os.listdir("/proc/self/fd"):
        try:
            if os.readlink(f"/proc/self/fd/{fd}").startswith("socket:"):
                count += 1
        except OSError:
            continue
    return count


async def _settled(sockets: int, tasks: set[asyncio.Task[object]]) -> None:
    """Let the server's side of the closed connections finish (its tasks run on this loop,
    later on a loaded machine): wait until only the ``sockets`` and ``tasks`` of before are
    left, at most 5 s, far less than any stall of these tests that could close a leak."""
    for _ in range(500):
        if _sockets() == sockets and not asyncio.all_tasks() - tasks:
            return
        await asyncio.sleep(0.01)


async def test_no_socket_or_task_leaks_after_a_run_with_faults() -> None:
    faults = (
        "rcpt=drop p=0.1 seed=3",
        "mail=421 4.7.0 Too many connections p=0.1 seed=4",
        "message=451 4.3.0 Local error p=0.1 seed=5",
        "rcpt:bad*=550 5.1.1 No such user",
    )
    async with FaultServer(*faults) as srv:
        await asyncio.sleep(0)
        sockets_before = _sockets()
        tasks_before = asyncio.all_tasks()
        async with mailer_for(srv, pool_size=4, policy=RetryPolicy(attempts=8)) as mailer:
            outcomes = await asyncio.gather(
                *(
                    mailer.send(BODY, sender="a@s.test", recipients=[f"r{i}@r.test", "bad@r.test"])
                    for i in range(40)
                ),
                return_exceptions=True,
            )
        await _settled(sockets_before, tasks_before)
        assert _sockets() == sockets_before
        assert asyncio.all_tasks() - tasks_before == set()
    assert any(srv.fault_hits)  # the faults did fire
    delivered = [o for o in outcomes if isinstance(o, SendResult)]
    assert len(delivered) == 40
    assert all(isinstance(r.refused["bad@r.test"], ReplyError) for r in delivered)


async def test_cancelling_the_block_closes_every_connection() -> None:
    async with FaultServer("message=delay=30s") as srv:
        sockets_before = _sockets()
        tasks_before = asyncio.all_tasks()
        started = asyncio.Event()

        async def run() -> None:
            async with mailer_for(srv, pool_size=3) as mailer:
                sends = [
                    asyncio.ensure_future(
                        mailer.send(BODY, sender="a@s.test", recipients=[f"x{i}@r.test"])
                    )
                    for i in range(6)
                ]
                while mailer.open_connections < 3:
                    await asyncio.sleep(0.01)
                started.set()
                await asyncio.gather(*sends)

        task = asyncio.ensure_future(run())
        await started.wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await _settled(sockets_before, tasks_before)
        assert _sockets() == sockets_before
        assert asyncio.all_tasks() - tasks_before == set()
    assert srv.messages == []  # nothing was stored: the final replies never came
    assert all(c.closed for c in srv.connections)


# --------------------------------------------------------------------------- SyncMailer


def test_sync_mailer_from_many_threads() -> None:
    with FaultServer() as srv, SyncMailer(**kw(srv, pool_size=3)) as mailer:

        def one(i: int) -> SendResult:
            return mailer.send(BODY, sender="a@s.test", recipients=[f"t{i}@r.test"])

        with concurrent.futures.ThreadPoolExecutor(4) as pool:
            results = list(pool.map(one, range(20)))
        assert all(r.delivered == (f"t{i}@r.test",) for i, r in enumerate(results))
        assert mailer.mailer.open_connections <= 3
    assert len(srv.messages) == 20
    assert srv.connection_count <= 3
    assert not any(t.name == "smtp_guard.SyncMailer" for t in threading.enumerate())


def test_sync_mailer_raises_the_typed_error_and_closes_once() -> None:
    with FaultServer("rcpt=550 5.1.1 No such user") as srv:
        mailer = SyncMailer(**kw(srv))
        with pytest.raises(aiosmtplib.SMTPRecipientsRefused):
            mailer.send(BODY, sender="a@s.test", recipients=["x@r.test"])
        mailer.close()
        mailer.close()
        with pytest.raises(RuntimeError, match="closed"):
            mailer.send(BODY, sender="a@s.test", recipients=["x@r.test"])


def test_sync_mailer_refuses_its_own_loop() -> None:
    with FaultServer() as srv, SyncMailer(**kw(srv)) as mailer:

        async def inside() -> None:
            mailer.send(BODY, sender="a@s.test", recipients=["x@r.test"])

        future = asyncio.run_coroutine_threadsafe(inside(), mailer._loop)
        with pytest.raises(RuntimeError, match="own event loop"):
            future.result(5)


async def test_pipelining_over_starttls_with_login() -> None:
    # The pipelined reader takes over the TLS transport too, and hands it back intact.
    async with (
        FaultServer(starttls="required", credentials={"app": "s3cret"}) as srv,
        mailer_for(
            srv, username="app", password="s3cret", cert_bundle=str(srv.ca_cert_path), pool_size=1
        ) as mailer,
    ):
        for i in range(3):
            result = await mailer.send(
                BODY, sender="a@s.test", recipients=[f"x{i}@r.test", f"y{i}@r.test"]
            )
            assert result.delivered == (f"x{i}@r.test", f"y{i}@r.test")
    assert srv.connection_count == 1
    assert all(t.tls and t.user == "app" for t in srv.messages)
    assert len(srv.messages) == 3
    assert not any("s3cret" in line for line in srv.transcript)


async def test_cancelled_waiters_do_not_leak_slots(server: FaultServer) -> None:
    async with mailer_for(server, pool_size=1) as mailer:
        first = asyncio.ensure_future(
            mailer.send(BODY, sender="a@s.test", recipients=["first@r.test"])
        )
        waiting = [
            asyncio.ensure_future(mailer.send(BODY, sender="a@s.test", recipients=[f"w{i}@r.test"]))
            for i in range(5)
        ]
        await asyncio.sleep(0)
        for task in waiting:
            task.cancel()
        await asyncio.gather(first, *waiting, return_exceptions=True)
        assert mailer._pool.busy == 0
        # the pool still works, one slot at a time
        await send_many(mailer, 3, "after")
    assert sum(1 for t in server.messages if t.recipients[0].startswith("after")) == 3


def test_sync_mailer_bad_arguments_leave_no_thread() -> None:
    before = threading.active_count()
    with pytest.raises(InvalidInput, match="pool_size"):
        SyncMailer(hostname="127.0.0.1", port=1, pool_size=0)
    assert threading.active_count() == before
