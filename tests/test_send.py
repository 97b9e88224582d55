"""smtp_guard.send over real sockets: drop-in behaviour, per-recipient results, sync facade."""

from __future__ import annotations

import asyncio
import email.message
import pickle
import threading
from collections.abc import AsyncIterator, Callable

import aiosmtplib
import pytest
from _helpers import kw

from smtp_guard.client import SendResult, _run_in_own_loop_310, send, send_sync
from smtp_guard.errors import (
    MailboxNotFound,
    PermanentError,
    RecipientsRefused,
    TransientError,
)
from smtp_guard.policy import RetryPolicy
from smtp_guard.testing import FaultServer

RAW = b"From: a@sender.test\r\nTo: b@rcpt.test\r\nSubject: hi\r\n\r\nHello\r\n.leading dot\r\n"


pytestmark = pytest.mark.usefixtures("no_real_sleep")


@pytest.fixture
async def server() -> AsyncIterator[FaultServer]:
    async with FaultServer() as srv:
        yield srv


async def test_happy_path_unpacks_like_aiosmtplib(server: FaultServer) -> None:
    result = await send(
        RAW, sender="a@sender.test", recipients=["b@rcpt.test", "c@rcpt.test"], **kw(server)
    )
    errors, response = result
    assert errors == {}
    assert isinstance(response, str)
    assert response == result.response
    assert result.delivered == ("b@rcpt.test", "c@rcpt.test")
    assert result.attempts == 1
    assert result.ok
    assert isinstance(result, tuple)
    assert len(result) == 2
    result.raise_for_refused()  # nothing refused: no error
    [txn] = server.messages
    assert txn.sender == "a@sender.test"
    assert txn.recipients == ["b@rcpt.test", "c@rcpt.test"]
    assert txn.data is not None
    assert b".leading dot" in txn.data  # dot-stuffing undone by the server: transparent


async def test_same_shape_as_aiosmtplib_send(server: FaultServer) -> None:
    theirs = await aiosmtplib.send(
        RAW, sender="a@sender.test", recipients="b@rcpt.test", **kw(server)
    )
    ours = await send(RAW, sender="a@sender.test", recipients="b@rcpt.test", **kw(server))
    assert type(theirs[0]) is type(ours[0])
    assert theirs[0] == ours[0] == {}
    assert server.messages[0].data == server.messages[1].data


async def test_email_message_takes_sender_and_recipients_from_headers(
    server: FaultServer,
) -> None:
    msg = email.message.EmailMessage()
    msg["From"] = "Alice <alice@sender.test>"
    msg["To"] = "bob@rcpt.test, Carol <carol@rcpt.test>"
    msg["Bcc"] = "secret@rcpt.test"
    msg["Subject"] = "Greetings"
    msg.set_content("Grüße aus Prag\n")
    result = await send(msg, **kw(server))
    assert set(result.delivered) == {"bob@rcpt.test", "carol@rcpt.test", "secret@rcpt.test"}
    [txn] = server.messages
    assert txn.sender == "alice@sender.test"
    assert sorted(txn.recipients) == ["bob@rcpt.test", "carol@rcpt.test", "secret@rcpt.test"]
    assert txn.data is not None
    assert b"Bcc" not in txn.data
    assert "Grüße" in txn.message.get_content()


async def test_mixed_rcpt_answers_message_goes_once_and_refusals_are_typed() -> None:
    async with FaultServer("rcpt:gone@*=550 5.1.1 No such user") as srv:
        result = await send(
            RAW,
            sender="a@sender.test",
            recipients=["ok@rcpt.test", "gone@rcpt.test"],
            **kw(srv),
        )
    errors, _ = result
    assert list(errors) == ["gone@rcpt.test"]
    assert errors["gone@rcpt.test"] == aiosmtplib.SMTPResponse(550, "5.1.1 No such user")
    assert result.delivered == ("ok@rcpt.test",)
    refused = result.refused["gone@rcpt.test"]
    assert isinstance(refused, PermanentError)
    assert isinstance(refused, aiosmtplib.SMTPRecipientRefused)
    assert refused.recipient == "gone@rcpt.test"
    assert refused.args == (550, "5.1.1 No such user", "gone@rcpt.test")
    assert refused.code == 550
    assert result.attempts == 1  # a permanent refusal is not retried
    assert srv.deliveries_to("ok@rcpt.test") == 1
    with pytest.raises(RecipientsRefused) as caught:
        result.raise_for_refused()
    assert set(caught.value.refused) == {"gone@rcpt.test"}
    assert caught.value.delivered == ("ok@rcpt.test",)


async def test_all_refused_raises_drop_in_recipients_refused() -> None:
    async with FaultServer("rcpt:*=550 5.1.1 No such user") as srv:
        with pytest.raises(aiosmtplib.SMTPRecipientsRefused) as caught:
            await send(
                RAW, sender="a@sender.test", recipients=["x@rcpt.test", "y@rcpt.test"], **kw(srv)
            )
        assert srv.messages == []
    error = caught.value
    assert isinstance(error, RecipientsRefused)
    assert set(error.refused) == {"x@rcpt.test", "y@rcpt.test"}
    assert all(isinstance(e, PermanentError) for e in error.refused.values())
    assert error.permanent
    assert error.attempts == 1
    assert [r.recipient for r in error.recipients] == ["x@rcpt.test", "y@rcpt.test"]


async def test_deferred_recipient_is_retried_alone_in_a_new_transaction() -> None:
    async with FaultServer("rcpt:later@*=450 4.2.1 Mailbox busy x1") as srv:
        result = await send(
            RAW,
            sender="a@sender.test",
            recipients=["now@rcpt.test", "later@rcpt.test"],
            **kw(srv),
        )
        first, second = srv.messages
    assert result.delivered == ("now@rcpt.test", "later@rcpt.test")
    assert result.ok
    assert result.attempts == 2
    assert first.recipients == ["now@rcpt.test"]
    assert second.recipients == ["later@rcpt.test"]  # nobody gets it twice
    [earlier] = result.history
    assert isinstance(earlier, RecipientsRefused)
    assert isinstance(earlier.refused["later@rcpt.test"], TransientError)


async def test_deferred_recipient_still_refused_when_attempts_run_out() -> None:
    async with FaultServer("rcpt:later@*=451 4.3.0 Try later") as srv:
        result = await send(
            RAW,
            sender="a@sender.test",
            recipients=["now@rcpt.test", "later@rcpt.test"],
            policy=RetryPolicy(attempts=3),
            **kw(srv),
        )
        assert srv.deliveries_to("now@rcpt.test") == 1
        assert srv.deliveries_to("later@rcpt.test") == 0
    assert result.attempts == 3
    assert result.delivered == ("now@rcpt.test",)
    error = result.refused["later@rcpt.test"]
    assert isinstance(error, TransientError)
    assert result.errors["later@rcpt.test"].code == 451
    assert len(result.history) == 3  # every attempt failed for 'later'


async def test_too_many_recipients_rest_goes_in_further_transactions() -> None:
    rcpts = [f"r{i}@rcpt.test" for i in range(7)]
    async with FaultServer(max_recipients=3) as srv:
        result = await send(RAW, sender="a@sender.test", recipients=rcpts, **kw(srv))
        txns = srv.messages
        connections = srv.connection_count
    assert result.delivered == tuple(rcpts)
    assert result.attempts == 1  # same attempt, same connection: no backoff needed
    assert connections == 1
    assert [t.recipients for t in txns] == [rcpts[0:3], rcpts[3:6], rcpts[6:7]]


async def test_refused_and_result_survive_pickling() -> None:
    async with FaultServer("rcpt:gone@*=550 5.1.1 No such user") as srv:
        result = await send(
            RAW, sender="a@sender.test", recipients=["ok@rcpt.test", "gone@rcpt.test"], **kw(srv)
        )
    again = pickle.loads(pickle.dumps(result))  # noqa: S301 (our own bytes)
    assert isinstance(again, SendResult)
    assert again == result
    assert again.delivered == result.delivered
    assert again.refused == result.refused
    assert isinstance(again.refused["gone@rcpt.test"], MailboxNotFound | PermanentError)


def test_send_sync_from_plain_code() -> None:
    with FaultServer() as srv:
        errors, response = send_sync(
            RAW, sender="a@sender.test", recipients=["b@rcpt.test"], **kw(srv)
        )
        assert errors == {}
        assert response
        assert srv.deliveries_to("b@rcpt.test") == 1


async def test_send_sync_inside_a_running_loop_says_to_await_send() -> None:
    with pytest.raises(RuntimeError, match=r"await smtp_guard\.send"):
        send_sync(RAW, sender="a@sender.test", recipients=["b@rcpt.test"], port=1)
    await asyncio.sleep(0)


def _in_a_thread(work: Callable[[], None]) -> None:
    failures: list[BaseException] = []

    def target() -> None:
        try:
            work()
        except BaseException as exc:  # reported to the test below
            failures.append(exc)

    thread = threading.Thread(target=target)
    thread.start()
    thread.join()
    if failures:
        raise failures[0]


def test_send_sync_from_a_worker_thread_without_a_loop() -> None:
    with FaultServer() as srv:

        def work() -> None:
            errors, _ = send_sync(
                RAW, sender="a@sender.test", recipients=["b@rcpt.test"], **kw(srv)
            )
            assert errors == {}

        _in_a_thread(work)
        _in_a_thread(work)  # and again: nothing left behind by the first call
        assert srv.deliveries_to("b@rcpt.test") == 2


@pytest.mark.parametrize("runner", ["send_sync", "python310_fallback"])
def test_send_sync_leaves_the_threads_own_event_loop_alone(runner: str) -> None:
    """Sync code that set a loop for its thread keeps it (asyncio.run would unset it)."""
    with FaultServer() as srv:

        def work() -> None:
            loop = asyncio.new_event_loop()
            asyncio.set_event_loop(loop)
            try:
                if runner == "send_sync":
                    send_sync(RAW, sender="a@sender.test", recipients=["b@rcpt.test"], **kw(srv))
                else:
                    coro = send(RAW, sender="a@sender.test", recipients=["b@rcpt.test"], **kw(srv))
                    _run_in_own_loop_310(coro)
                assert asyncio.get_event_loop_policy().get_event_loop() is loop
                assert loop.run_until_complete(asyncio.sleep(0, "still usable")) == "still usable"
            finally:
                asyncio.set_event_loop(None)
                loop.close()

        _in_a_thread(work)
        assert srv.deliveries_to("b@rcpt.test") == 1
