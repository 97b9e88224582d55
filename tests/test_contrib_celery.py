"""Celery integration: a real worker process, a real Redis broker, a real SMTP server on loopback.

The worker runs ``tests/_celery_app.py`` (solo pool). Retries are Celery's own (countdown capped
at 0.2 s by the app's settings), so nothing waits minutes.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
from _helpers import CLIENT_NAME
from _redis import CeleryWorker, RedisServer, redis_available
from celery import Celery
from celery.result import AsyncResult

from smtp_guard import errors
from smtp_guard.classify import error_from_reply
from smtp_guard.contrib.celery import GuardedTask, enqueue, envelope, error_to_dict
from smtp_guard.errors import InvalidInput
from smtp_guard.policy import RetryPolicy
from smtp_guard.testing import FaultServer, Transaction

HERE = Path(__file__).parent
RESULT_TIMEOUT = 30.0


@pytest.fixture(scope="module")
def smtp() -> Iterator[FaultServer]:
    """One server for the module: its faults are keyed by recipient domain, one per test."""
    with FaultServer(
        "rcpt:*@greylist.test=451 4.7.1 Greylisted, try again in 300 seconds x1",
        "rcpt:*@unknown.test=550 5.1.1 No such user here",
        "message:*@flaky.test=451 4.3.0 Local error in processing x1",
        "message:*@uncertain.test=store-drop",
        "message:*@opted-in.test=store-drop x1",
        "rcpt:*@always.test=451 4.3.0 Try later",
        # "too many recipients" for the first one, then its own transaction drops at DATA
        "rcpt:*@split.test=452 4.5.3 Too many recipients x1",
        "data:*@split.test=drop x1",
        "mail:*@refused-sender.test=550 5.7.1 Sender address rejected",
    ) as server:
        yield server


@pytest.fixture(scope="module")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    if not redis_available():
        pytest.skip("redis-server is not installed (apt-get install redis-server)")
    with RedisServer(tmp_path_factory.mktemp("redis")) as server:
        yield server


@pytest.fixture(scope="module")
def worker(
    redis_server: RedisServer, smtp: FaultServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[CeleryWorker]:
    process = CeleryWorker(
        "_celery_app",
        broker_url=redis_server.url,
        log_path=tmp_path_factory.mktemp("celery") / "worker.log",
        env={"SMTP_GUARD_TEST_SMTP_PORT": str(smtp.port)},
        pythonpath=[HERE],
    )
    process.start()
    yield process
    process.stop()


@pytest.fixture(scope="module")
def client_app(redis_server: RedisServer) -> Iterator[Celery]:
    """The producer side: the same task names, the same broker and result backend."""
    app = Celery("smtp_guard_tests_client", broker=redis_server.url, backend=redis_server.url)
    app.conf.update(
        task_serializer="json",
        result_serializer="json",
        accept_content=["json"],
        broker_connection_retry_on_startup=True,
    )
    with app.connection_for_write():
        pass
    yield app
    app.close()


def _message(*to: str, subject: str = "hello") -> EmailMessage:
    msg = EmailMessage()
    msg["From"] = "app@sender.test"
    msg["To"] = ", ".join(to)
    msg["Subject"] = subject
    msg["Message-ID"] = f"<{uuid.uuid4().hex}@sender.test>"
    msg.set_content("Hello from the worker.")
    return msg


def _send(app: Celery, message: EmailMessage) -> AsyncResult:
    result: AsyncResult = enqueue(message, app=app)
    return result


def test_greylisted_recipient_is_retried_by_celery_and_delivered_once(
    worker: CeleryWorker, client_app: Celery, smtp: FaultServer
) -> None:
    message = _message("ok@accept.test", "later@greylist.test")
    result = _send(client_app, message)
    outcome: dict[str, Any] = result.get(timeout=RESULT_TIMEOUT)

    assert outcome["delivered"] == ["ok@accept.test", "later@greylist.test"]
    assert outcome["refused"] == {}
    assert outcome["retries"] == 1  # one Celery retry, for the greylisted recipient only
    assert outcome["outcomes"] == {
        "ok@accept.test": "delivered",
        "later@greylist.test": "delivered",
    }
    assert outcome["message_id"] == message["Message-ID"]
    got = _stored(smtp, message)
    # Each recipient got the message exactly once: the retry went only to the one still owed.
    assert sorted(r for delivery in got for r in delivery.recipients) == [
        "later@greylist.test",
        "ok@accept.test",
    ]
    assert [d.recipients for d in got] == [["ok@accept.test"], ["later@greylist.test"]]
    assert "retrying 1 recipient(s)" in worker.log()


def test_permanent_failure_fails_the_task_without_retries(
    worker: CeleryWorker, client_app: Celery, smtp: FaultServer
) -> None:
    message = _message("nobody@unknown.test")
    result = _send(client_app, message)
    with pytest.raises(errors.RecipientsRefused) as raised:
        result.get(timeout=RESULT_TIMEOUT)
    assert result.state == "FAILURE"
    # The typed error, as the worker raised it (JSON results carry its name and arguments;
    # the refused mapping comes back as its text).
    assert type(raised.value) is errors.RecipientsRefused
    assert "550" in str(raised.value)
    assert "5.1.1 No such user here" in str(raised.value)
    assert "smtp_guard.errors.RecipientsRefused" in (result.traceback or "")
    assert _stored(smtp, message) == []
    asked = [t for t in smtp.transactions if "nobody@unknown.test" in t.refused]
    assert len(asked) == 1  # asked once: no retry
    assert "retrying" not in _task_lines(worker, result.id)


def test_a_reply_error_at_mail_reaches_the_producer_typed(
    worker: CeleryWorker, client_app: Celery, smtp: FaultServer
) -> None:
    """A 550 to MAIL: aiosmtplib's three arguments (code, text, sender) cross Celery's JSON
    results, and the producer gets the class the worker raised, with its code and text."""
    message = _message("to@accept.test")
    message.replace_header("From", "app@refused-sender.test")
    result = _send(client_app, message)
    with pytest.raises(errors.ReplyError) as raised:
        result.get(timeout=RESULT_TIMEOUT)
    error = raised.value
    raised_in_worker = error_from_reply(550, "5.7.1 Sender address rejected", "mail")
    assert type(error).__name__ == type(raised_in_worker).__name__
    assert f"smtp_guard.errors.{type(error).__name__}" in (result.traceback or "")
    assert isinstance(error, type(raised_in_worker)._made_for or type(raised_in_worker))
    assert error.code == 550
    assert error.enhanced == "5.7.1"
    assert error.permanent
    assert error.args == (550, "5.7.1 Sender address rejected", "app@refused-sender.test")
    assert str(error).startswith("550 5.7.1 Sender address rejected")
    assert _stored(smtp, message) == []


def test_partial_permanent_refusal_is_recorded_in_the_result(
    worker: CeleryWorker, client_app: Celery, smtp: FaultServer
) -> None:
    message = _message("yes@accept.test", "gone@unknown.test")
    outcome: dict[str, Any] = _send(client_app, message).get(timeout=RESULT_TIMEOUT)
    assert outcome["delivered"] == ["yes@accept.test"]
    assert outcome["retries"] == 0
    refused = outcome["refused"]["gone@unknown.test"]
    assert refused["code"] == 550
    assert refused["enhanced"] == "5.1.1"
    assert refused["permanent"] is True
    assert issubclass(getattr(errors, refused["error"]), errors.MailboxUnavailable)
    assert outcome["outcomes"]["gone@unknown.test"] == "refused"


def test_transient_failure_of_the_whole_message_is_retried_by_celery(
    worker: CeleryWorker, client_app: Celery, smtp: FaultServer
) -> None:
    message = _message("a@flaky.test", "b@flaky.test")
    outcome: dict[str, Any] = _send(client_app, message).get(timeout=RESULT_TIMEOUT)
    assert outcome["delivered"] == ["a@flaky.test", "b@flaky.test"]
    assert outcome["retries"] == 1
    assert [
        t.outcome for t in smtp.transactions if t.recipients == ["a@flaky.test", "b@flaky.test"]
    ] == [
        "rejected",
        "delivered",
    ]
    assert len(_stored(smtp, message)) == 1


def test_uncertain_delivery_fails_the_task_and_is_not_sent_again(
    worker: CeleryWorker, client_app: Celery, smtp: FaultServer
) -> None:
    message = _message("c@uncertain.test")
    result = _send(client_app, message)
    with pytest.raises(errors.DeliveryUncertain, match="may or may not have arrived"):
        result.get(timeout=RESULT_TIMEOUT)
    assert result.state == "FAILURE"
    assert "smtp_guard.errors.DeliveryUncertain" in (result.traceback or "")
    assert len(_stored(smtp, message)) == 1  # the server kept it once; no second copy
    assert "retrying" not in _task_lines(worker, result.id)


def test_retry_after_a_partial_delivery_goes_only_to_those_still_owed(
    worker: CeleryWorker, client_app: Celery, smtp: FaultServer
) -> None:
    """One attempt delivers to first@ (its transaction completes), then the connection drops
    in the next transaction, for second@: Celery's retry must not send first@ a second copy."""
    message = _message("first@accept.test", "second@split.test")
    result = _send(client_app, message)
    outcome: dict[str, Any] = result.get(timeout=RESULT_TIMEOUT)

    assert outcome["retries"] == 1
    assert outcome["delivered"] == ["first@accept.test", "second@split.test"]
    got = _stored(smtp, message)
    # Each recipient got the message exactly once.
    every = sorted(r for d in got for r in d.recipients)
    assert every == ["first@accept.test", "second@split.test"]
    assert [d.recipients for d in got] == [["first@accept.test"], ["second@split.test"]]
    # The drop really happened in between: second@'s first transaction ended without a message.
    mine = [t for t in smtp.transactions if t.recipients == ["second@split.test"]]
    assert [t.outcome for t in mine][-1] == "delivered"
    assert len(mine) == 2
    assert "retrying 1 recipient(s)" in _task_lines(worker, result.id)


def _stored(smtp: FaultServer, message: EmailMessage) -> list[Transaction]:
    return [t for t in smtp.messages if t.message["Message-ID"] == message["Message-ID"]]


def _task_lines(worker: CeleryWorker, task_id: str) -> str:
    return "\n".join(line for line in worker.log().splitlines() if task_id in line)


# --------------------------------------------------------------------------- without a worker


def test_envelope_comes_from_the_headers_and_bcc_is_stripped() -> None:
    msg = _message("to@x.test")
    msg["Cc"] = "cc@x.test"
    msg["Bcc"] = "hidden@x.test"
    raw, sender, recipients = envelope(msg)
    assert sender == "app@sender.test"
    assert recipients == ["to@x.test", "cc@x.test", "hidden@x.test"]
    assert b"hidden@x.test" not in raw
    raw_again, _, again = envelope(msg.as_bytes())
    assert again == recipients
    assert b"hidden@x.test" not in raw_again


def test_envelope_without_recipients_is_refused_before_queueing() -> None:
    msg = EmailMessage()
    msg["From"] = "app@sender.test"
    msg.set_content("nobody to send to")
    with pytest.raises(InvalidInput, match="no recipients"):
        enqueue(msg)


def test_error_to_dict_is_json_ready() -> None:
    error = error_from_reply(451, "4.7.1 Greylisted, try again in 300 seconds", "rcpt", "a@b.c")
    described = error_to_dict(error)
    assert described["code"] == 451
    assert described["permanent"] is False
    assert described["retry_after"] == 300.0
    assert described["phase"] == "rcpt"
    assert json.loads(json.dumps(described)) == described


# --------------------------------------------------------------------------- eager: own tasks


@pytest.fixture
def eager_app(smtp: FaultServer) -> Iterator[Celery]:
    """An app that runs tasks in-process (retries at once): for the base class's decisions."""
    app = Celery("smtp_guard_eager", set_as_current=False)
    app.conf.update(
        task_always_eager=True,
        smtp_guard={
            "hostname": "127.0.0.1",
            "port": smtp.port,
            "local_hostname": CLIENT_NAME,
            "timeout": 5,
            "policy": RetryPolicy(attempts=1),
        },
    )
    yield app
    app.close()


def _own_task(app: Celery, **options: Any) -> Any:
    @app.task(bind=True, base=GuardedTask, name="tests.own_send", **options)  # type: ignore[untyped-decorator]
    def own_send(
        self: GuardedTask,
        message: bytes,
        sender: str | None = None,
        recipients: list[str] | None = None,
        previous: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        return self.guarded_send(message, sender, recipients, previous)

    return own_send


def test_own_task_gives_up_after_max_retries_with_the_typed_error(
    eager_app: Celery, smtp: FaultServer
) -> None:
    task = _own_task(eager_app, max_retries=2)
    message = _message("x@always.test")
    result = enqueue(message, task=task)
    with pytest.raises(errors.RecipientsRefused) as raised:
        result.get()
    # The guard's own typed error, not a Celery wrapper: transient, with the server's reply.
    assert raised.value.permanent is False
    assert raised.value.refused["x@always.test"].code == 451
    asked = [t for t in smtp.transactions if "x@always.test" in t.refused]
    assert len(asked) == 3  # the first try and max_retries=2 retries


def test_uncertain_delivery_is_retried_only_when_configured(
    eager_app: Celery, smtp: FaultServer
) -> None:
    eager_app.conf.smtp_guard = {**eager_app.conf.smtp_guard, "retry_uncertain": True}
    task = _own_task(eager_app)
    message = _message("y@opted-in.test")
    outcome = enqueue(message, task=task).get()
    assert outcome["delivered"] == ["y@opted-in.test"]
    assert outcome["retries"] == 1
    # The caller opted in: the first copy was stored before the drop, so it arrived twice.
    assert len(_stored(smtp, message)) == 2


def test_countdown_uses_the_server_hint_then_the_cap(eager_app: Celery) -> None:
    task = _own_task(eager_app)
    hinted = error_from_reply(451, "4.7.1 Greylisted, try again in 300 seconds", "rcpt", "a@b.c")
    plain = error_from_reply(451, "4.3.0 Try later", "rcpt", "a@b.c")
    eager_app.conf.smtp_guard = {
        **eager_app.conf.smtp_guard,
        "policy": {"initial_wait": 2.0, "max_wait": 60.0, "jitter": 0.0},
    }
    task.push_request(retries=2)
    try:
        assert task.countdown_for(hinted) == 300.0
        hour = error_from_reply(450, "4.2.1 Rate limited, try again in 7200 seconds", "mail")
        assert task.countdown_for(hour) == 3000.0  # under Redis's visibility timeout
        assert task.countdown_for(plain) == 8.0  # initial_wait * 2**retries
        eager_app.conf.smtp_guard = {**eager_app.conf.smtp_guard, "max_countdown": 5}
        assert task.countdown_for(hinted) == 5.0
    finally:
        task.pop_request()
