"""Instrumentation hooks: dispatch, per-recipient outcomes, the default structured log."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator
from email.message import EmailMessage

import pytest
from prometheus_client import CollectorRegistry

from smtp_guard import errors, hooks
from smtp_guard.classify import error_from_reply
from smtp_guard.client import send
from smtp_guard.contrib.prometheus import PrometheusHook, category_label
from smtp_guard.errors import (
    DeliveryUncertain,
    RecipientsRefused,
    ServerDisconnected,
    SMTPGuardError,
)
from smtp_guard.hooks import (
    AttemptDetails,
    HookDetails,
    Outcome,
    ResultDetails,
    RetryDetails,
    message_id_of,
)
from smtp_guard.policy import RetryPolicy, no_wait
from smtp_guard.testing import FaultServer

GREY = error_from_reply(451, "4.7.1 Greylisted, try again in 300 seconds", "rcpt", "b@x.test")
UNKNOWN = error_from_reply(550, "5.1.1 No such user", "rcpt", "c@x.test")


def _message() -> EmailMessage:
    msg = EmailMessage()
    msg["From"] = "a@x.test"
    msg["To"] = "b@x.test, c@x.test, d@x.test"
    msg["Message-ID"] = "<m1@x.test>"
    msg["Subject"] = "secret subject"
    msg.set_content("the body must never be logged")
    return msg


async def test_sync_and_async_hooks_receive_every_event() -> None:
    seen_sync: list[HookDetails] = []
    seen_async: list[HookDetails] = []

    def sync_hook(details: HookDetails) -> None:
        seen_sync.append(details)

    async def async_hook(details: HookDetails) -> None:
        seen_async.append(details)

    with hooks.using_hooks(sync_hook):
        track = hooks.SendTracker(
            _message(),
            sender="a@x.test",
            recipients=["b@x.test", "c@x.test", "d@x.test"],
            hooks=[async_hook],
        )
        track.begin_attempt()
        await track.attempt(
            1, delivered=["d@x.test"], refused={"b@x.test": GREY, "c@x.test": UNKNOWN}
        )
        await track.retry(1, wait=2.5, recipients=["b@x.test"], error=GREY)
        await track.attempt(2, recipients=["b@x.test"], delivered=["b@x.test"])
        await track.result(
            attempts=2, delivered=["d@x.test", "b@x.test"], refused={"c@x.test": UNKNOWN}
        )
    assert hooks.registered_hooks() == ()
    assert seen_sync == seen_async
    kinds = [type(d) for d in seen_sync]
    assert kinds == [AttemptDetails, RetryDetails, AttemptDetails, ResultDetails]

    first = seen_sync[0]
    assert isinstance(first, AttemptDetails)
    assert first.message_id == "<m1@x.test>"
    assert first.attempt == 1
    assert dict(first.outcomes) == {
        "b@x.test": Outcome.DEFERRED,
        "c@x.test": Outcome.REFUSED,
        "d@x.test": Outcome.DELIVERED,
    }
    assert first.errors["b@x.test"] is GREY
    assert "d@x.test" not in first.errors

    retry = seen_sync[1]
    assert isinstance(retry, RetryDetails)
    assert retry.wait == 2.5
    assert retry.recipients == ("b@x.test",)
    assert retry.error is GREY

    result = seen_sync[3]
    assert isinstance(result, ResultDetails)
    assert result.attempt == 2
    assert set(result.delivered) == {"b@x.test", "d@x.test"}
    assert result.outcomes["c@x.test"] is Outcome.REFUSED
    assert result.elapsed >= first.elapsed


async def test_details_are_frozen() -> None:
    seen: list[HookDetails] = []
    with hooks.using_hooks(seen.append):
        await hooks.SendTracker(recipients=["b@x.test"]).attempt(1, delivered=["b@x.test"])
    details = seen[0]
    assert isinstance(details, AttemptDetails)
    with pytest.raises(AttributeError):
        details.attempt = 3  # type: ignore[misc]
    with pytest.raises(TypeError):
        details.outcomes["b@x.test"] = Outcome.REFUSED  # type: ignore[index]


async def test_message_level_error_gives_every_recipient_its_outcome() -> None:
    seen: list[HookDetails] = []
    track = hooks.SendTracker(recipients=["b@x.test", "c@x.test"], hooks=[seen.append])
    dropped = ServerDisconnected("connection lost")
    await track.attempt(1, error=dropped)
    uncertain = DeliveryUncertain("no reply to the final dot", recipients=["b@x.test"])
    await track.attempt(2, error=uncertain)
    both = RecipientsRefused({"b@x.test": GREY, "c@x.test": UNKNOWN})
    await track.result(attempts=3, error=both)
    first, second, result = seen
    assert isinstance(first, AttemptDetails)
    assert set(first.outcomes.values()) == {Outcome.DEFERRED}
    assert first.errors["c@x.test"] is dropped
    assert isinstance(second, AttemptDetails)
    assert set(second.outcomes.values()) == {Outcome.UNCERTAIN}
    assert isinstance(result, ResultDetails)
    assert result.outcomes == {"b@x.test": Outcome.DEFERRED, "c@x.test": Outcome.REFUSED}
    assert result.errors["c@x.test"] is UNKNOWN
    assert result.delivered == ()


async def test_a_failing_hook_is_logged_and_does_not_stop_the_others(
    caplog: pytest.LogCaptureFixture,
) -> None:
    calls: list[str] = []

    def broken(details: HookDetails) -> None:
        raise RuntimeError("hook bug")

    async def fine(details: HookDetails) -> None:
        calls.append(details.kind)

    with caplog.at_level(logging.ERROR, "smtp_guard.hooks"):
        await hooks.SendTracker(recipients=["b@x.test"], hooks=[broken, fine]).attempt(1)
    assert calls == ["attempt"]
    failures = [r for r in caplog.records if r.name == "smtp_guard.hooks"]
    assert len(failures) == 1
    assert failures[0].exc_info is not None
    assert "hook bug" in str(failures[0].exc_info[1])


async def test_a_stuck_async_hook_is_cancelled_logged_and_the_others_still_run(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(hooks, "HOOK_TIMEOUT", 0.05)
    cancelled = asyncio.Event()
    calls: list[str] = []

    async def stuck(details: HookDetails) -> None:
        try:
            await asyncio.Event().wait()  # never set: this hook never returns
        except asyncio.CancelledError:
            cancelled.set()
            raise

    async def fine(details: HookDetails) -> None:
        calls.append(details.kind)

    track = hooks.SendTracker(recipients=["b@x.test"], hooks=[stuck, fine])
    with caplog.at_level(logging.WARNING, "smtp_guard.hooks"):
        # Bounded only so that a regression fails here instead of hanging the suite.
        await asyncio.wait_for(track.attempt(1), 30)
        await asyncio.wait_for(track.result(attempts=1), 30)
        await asyncio.wait_for(cancelled.wait(), 30)
    assert calls == ["attempt", "result"]
    overdue = [r for r in caplog.records if r.name == "smtp_guard.hooks"]
    assert [r.levelno for r in overdue] == [logging.WARNING, logging.WARNING]
    assert "did not finish within 0.05s (attempt event)" in overdue[0].getMessage()
    await asyncio.sleep(0)  # the cancelled hook's task ends and is let go
    assert hooks._overdue == set()


async def test_a_hook_that_fails_after_its_timeout_is_still_logged(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(hooks, "HOOK_TIMEOUT", 0.01)
    release = asyncio.Event()
    ended = asyncio.Event()

    async def late(details: HookDetails) -> None:
        try:
            await release.wait()
        except asyncio.CancelledError:
            ended.set()
            raise RuntimeError("late hook bug") from None

    with caplog.at_level(logging.WARNING, "smtp_guard.hooks"):
        await asyncio.wait_for(hooks.SendTracker(hooks=[late]).attempt(1), 30)
        await asyncio.wait_for(ended.wait(), 30)
        await asyncio.sleep(0)
    errors_logged = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors_logged) == 1
    assert errors_logged[0].exc_info is not None
    assert "late hook bug" in str(errors_logged[0].exc_info[1])
    assert hooks._overdue == set()


def test_registry_add_remove_and_type_check() -> None:
    def hook(details: HookDetails) -> None:
        return None

    hooks.add_hook(hook)
    try:
        assert hooks.registered_hooks() == (hook,)
    finally:
        hooks.remove_hook(hook)
    assert hooks.registered_hooks() == ()
    with pytest.raises(ValueError, match="not in"):
        hooks.remove_hook(hook)
    with pytest.raises(TypeError, match="callable"):
        hooks.add_hook("not a hook")  # type: ignore[arg-type]


async def test_default_log_records_have_structured_fields_and_no_body(
    caplog: pytest.LogCaptureFixture,
) -> None:
    message = _message()
    track = hooks.SendTracker(
        message, sender="a@x.test", recipients=["b@x.test", "c@x.test"], server="127.0.0.1:25"
    )
    with caplog.at_level(logging.DEBUG, "smtp_guard"):
        await track.attempt(1, delivered=["c@x.test"], refused={"b@x.test": GREY})
        await track.retry(1, wait=300.0, recipients=["b@x.test"], error=GREY)
        await track.result(attempts=2, delivered=["c@x.test"], refused={"b@x.test": GREY})
    records = [r for r in caplog.records if r.name == "smtp_guard"]
    assert [r.levelno for r in records] == [logging.INFO, logging.WARNING, logging.WARNING]
    for record in records:
        for name in hooks.LOG_FIELDS:
            assert hasattr(record, name), name
        text = record.getMessage()
        assert "never be logged" not in text
        assert "secret subject" not in text
        assert vars(record)["smtp_message_id"] == "<m1@x.test>"
        assert vars(record)["smtp_server"] == "127.0.0.1:25"
    attempt, retry, result = records
    assert vars(attempt)["smtp_outcomes"] == {"b@x.test": "deferred", "c@x.test": "delivered"}
    assert vars(attempt)["smtp_duration"] >= 0
    assert vars(retry)["smtp_wait"] == 300.0
    assert vars(retry)["smtp_error_code"] == 451
    assert vars(retry)["smtp_error_enhanced"] == "4.7.1"
    assert vars(retry)["smtp_error_permanent"] is False
    assert "300.0s" in retry.getMessage()
    assert "Greylisted" in retry.getMessage()
    assert vars(result)["smtp_event"] == "result"
    assert vars(result)["smtp_attempt"] == 2


async def test_result_log_level_follows_the_outcome(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, "smtp_guard"):
        await hooks.SendTracker(recipients=["b@x.test"]).result(attempts=1, delivered=["b@x.test"])
        await hooks.SendTracker(recipients=["c@x.test"]).result(
            attempts=1, error=RecipientsRefused({"c@x.test": UNKNOWN})
        )
    levels = [r.levelno for r in caplog.records if r.name == "smtp_guard"]
    assert levels == [logging.INFO, logging.ERROR]


async def test_failures_are_logged_where_info_is_off(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, "smtp_guard"):
        track = hooks.SendTracker(recipients=["b@x.test", "c@x.test"])
        await track.attempt(1, delivered=["b@x.test"], refused={"c@x.test": UNKNOWN})
        await track.result(attempts=1, delivered=["b@x.test"], refused={"c@x.test": UNKNOWN})
        await hooks.SendTracker(recipients=["b@x.test"]).result(attempts=1, delivered=["b@x.test"])
    records = [r for r in caplog.records if r.name == "smtp_guard"]
    assert [(r.levelno, vars(r)["smtp_event"]) for r in records] == [(logging.WARNING, "result")]


async def test_nothing_is_built_when_nobody_listens(monkeypatch: pytest.MonkeyPatch) -> None:
    built: list[object] = []

    async def spy(details: HookDetails, extra: object = ()) -> None:
        built.append(details)

    monkeypatch.setattr(hooks, "_dispatch", spy)
    monkeypatch.setattr(hooks.logger, "disabled", True)
    track = hooks.SendTracker(_message(), recipients=["b@x.test"])
    await track.attempt(1, delivered=["b@x.test"])
    await track.retry(1, wait=1.0)
    await track.result(attempts=1, delivered=["b@x.test"])
    assert built == []
    with hooks.using_hooks(built.append):
        await track.result(attempts=1, delivered=["b@x.test"])
    assert len(built) == 1


@pytest.mark.parametrize(
    ("message", "expected"),
    [
        (b"Subject: x\r\nMessage-ID: <a@b>\r\n\r\nbody", "<a@b>"),
        ("message-id:   <c@d>  \nTo: x\n\nbody", "<c@d>"),
        (b"Subject: x\r\n\r\nMessage-ID: <in-body@b>\r\n", None),
        (b"", None),
        (None, None),
    ],
)
def test_message_id_of_raw_messages(message: str | bytes | None, expected: str | None) -> None:
    assert message_id_of(message) == expected


def test_message_id_of_message_objects() -> None:
    assert message_id_of(_message()) == "<m1@x.test>"
    assert message_id_of(EmailMessage()) is None


def test_errors_keep_their_type_in_details() -> None:
    details = RetryDetails(
        message_id=None,
        sender=None,
        recipients=("b@x.test",),
        attempt=1,
        elapsed=0.0,
        error=GREY,
        server=None,
        wait=1.0,
    )
    assert isinstance(details.error, SMTPGuardError)
    assert details.kind == "retry"


# --------------------------------------------------------------------------- real sends


RAW = b"From: a@x.test\r\nMessage-ID: <real@x.test>\r\nSubject: hooks\r\n\r\nbody text\r\n"
#: The EHLO name: without it aiosmtplib asks socket.getfqdn() (slow or hanging on some CI hosts).
CLIENT_NAME = "client.test"


@pytest.fixture
def _no_real_sleep() -> Iterator[None]:
    with no_wait():
        yield


@pytest.mark.usefixtures("_no_real_sleep")
async def test_a_real_send_reports_attempts_retries_and_result(
    caplog: pytest.LogCaptureFixture,
) -> None:
    seen: list[HookDetails] = []

    async def async_hook(details: HookDetails) -> None:
        seen.append(details)

    async with FaultServer(
        "rcpt:*@grey.test=451 4.7.1 Greylisted, try again in 2 seconds x1",
        "rcpt:*@unknown.test=550 5.1.1 No such user",
    ) as server:
        with hooks.using_hooks(async_hook), caplog.at_level(logging.INFO, "smtp_guard"):
            result = await send(
                RAW,
                sender="a@x.test",
                recipients=["ok@x.test", "later@grey.test", "no@unknown.test"],
                hostname=server.host,
                port=server.port,
                local_hostname=CLIENT_NAME,
                policy=RetryPolicy(attempts=3),
            )
    assert result.delivered == ("ok@x.test", "later@grey.test")
    kinds = [d.kind for d in seen]
    assert kinds == ["attempt", "retry", "attempt", "result"]
    first, retry, second, final = seen
    assert isinstance(first, AttemptDetails)
    assert first.message_id == "<real@x.test>"
    assert first.outcomes == {
        "ok@x.test": Outcome.DELIVERED,
        "later@grey.test": Outcome.DEFERRED,
        "no@unknown.test": Outcome.REFUSED,
    }
    assert isinstance(retry, RetryDetails)
    assert retry.recipients == ("later@grey.test",)
    assert retry.wait == 2.0  # the server's hint
    assert isinstance(second, AttemptDetails)
    assert second.recipients == ("later@grey.test",)
    assert isinstance(final, ResultDetails)
    assert final.attempt == 2
    assert final.outcomes["no@unknown.test"] is Outcome.REFUSED
    assert final.server == f"{server.host}:{server.port}"
    logged = [r for r in caplog.records if r.name == "smtp_guard"]
    assert [r.levelname for r in logged] == ["INFO", "WARNING", "INFO", "WARNING"]
    assert all("body text" not in r.getMessage() for r in logged)


@pytest.mark.usefixtures("_no_real_sleep")
async def test_a_hook_that_never_returns_does_not_hold_up_a_real_send(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(hooks, "HOOK_TIMEOUT", 0.05)
    events: list[str] = []

    async def never_returns(details: HookDetails) -> None:
        events.append(details.kind)
        await asyncio.Event().wait()

    async with FaultServer("rcpt:*@grey.test=451 4.7.1 Greylisted x1") as server:
        with hooks.using_hooks(never_returns):
            result = await asyncio.wait_for(
                send(
                    RAW,
                    sender="a@x.test",
                    recipients=["ok@x.test", "later@grey.test"],
                    hostname=server.host,
                    port=server.port,
                    local_hostname=CLIENT_NAME,
                    policy=RetryPolicy(attempts=2),
                ),
                30,  # only so that a regression fails instead of hanging
            )
    assert result.delivered == ("ok@x.test", "later@grey.test")
    assert events == ["attempt", "retry", "attempt", "result"]
    assert server.deliveries_to("later@grey.test") == 1


@pytest.mark.usefixtures("_no_real_sleep")
async def test_prometheus_hook_counts_a_real_send() -> None:
    registry = CollectorRegistry()
    metrics = PrometheusHook(registry)
    async with FaultServer(
        "rcpt:*@grey.test=451 4.7.1 Greylisted, try again in 2 seconds x1",
        "rcpt:*@unknown.test=550 5.1.1 No such user",
    ) as server:
        with hooks.using_hooks(metrics):
            await send(
                RAW,
                sender="a@x.test",
                recipients=["ok@x.test", "later@grey.test", "no@unknown.test"],
                hostname=server.host,
                port=server.port,
                local_hostname=CLIENT_NAME,
                policy=RetryPolicy(attempts=3),
            )
            with pytest.raises(errors.SMTPGuardError):
                await send(
                    RAW,
                    sender="a@x.test",
                    recipients=["gone@unknown.test"],
                    hostname=server.host,
                    port=server.port,
                    local_hostname=CLIENT_NAME,
                )

    def value(name: str, **labels: str) -> float | None:
        return registry.get_sample_value(f"smtp_guard_{name}", labels)

    assert value("attempts_total", outcome="partial") == 1
    assert value("attempts_total", outcome="ok") == 1
    assert value("attempts_total", outcome="failed") == 1
    assert value("retries_total", category="greylisted") == 1
    assert value("recipients_total", outcome="delivered", category="") == 2
    refused = str(error_from_reply(550, "5.1.1 No such user", "rcpt").category)
    assert value("recipients_total", outcome="refused", category=refused) == 2
    assert value("messages_total", result="partial") == 1
    assert value("messages_total", result="failed") == 1
    assert value("attempts_per_message_count") == 2
    assert value("attempts_per_message_sum") == 3
    assert value("send_duration_seconds_count") == 2
    assert value("attempt_duration_seconds_count") == 3


def test_category_label_for_errors_that_are_not_replies() -> None:
    assert category_label(errors.ServerDisconnected("gone")) == "server_disconnected"
    assert category_label(errors.DeliveryUncertain("?")) == "delivery_uncertain"
    assert category_label(errors.TLSFailed("bad cert")) == "tls_failed"
    assert category_label(errors.SMTPTimeout("slow")) == "smtp_timeout"
    assert category_label(None) == ""
    unknown = error_from_reply(550, "5.1.1 No such user", "rcpt", "c@x.test")
    both = errors.RecipientsRefused({"b@x.test": unknown, "c@x.test": unknown})
    assert category_label(both) == str(unknown.category)
    grey = error_from_reply(451, "4.7.1 Greylisted", "rcpt", "b@x.test")
    assert category_label(grey) == str(grey.category)
