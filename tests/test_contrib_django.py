"""Django email backend: Django's own settings and mail API, against the FaultServer."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import django
import pytest
from django.conf import settings

if not settings.configured:
    settings.configure(
        EMAIL_BACKEND="smtp_guard.contrib.django.EmailBackend",
        DEFAULT_FROM_EMAIL="app@sender.test",
        EMAIL_HOST="127.0.0.1",
    )
    django.setup()

from django.core import mail
from django.core.mail import DNS_NAME, EmailMessage
from django.test import override_settings

from smtp_guard import errors
from smtp_guard.client import SendResult
from smtp_guard.contrib.django import EmailBackend
from smtp_guard.policy import RetryPolicy, no_wait
from smtp_guard.testing import FaultServer

FAST = {"attempts": 3, "deadline": 30.0}
#: The machine's name as Django's DNS_NAME caches it (EHLO name and Message-ID domain).
HOST_NAME = "django-host.test"


@pytest.fixture(autouse=True)
def _known_host_name(monkeypatch: pytest.MonkeyPatch) -> None:
    # Django asks socket.getfqdn() once per process (slow or hanging on some CI hosts); its
    # own cache, filled here, is what both Message-ID and the backend's EHLO name read.
    # SMTP_GUARD_OPTIONS={"local_hostname": ...} alone would not do: send_options() asks
    # DNS_NAME before the options override it, and EmailMessage.message() asks it too.
    monkeypatch.setattr(DNS_NAME, "_fqdn", HOST_NAME, raising=False)


@pytest.fixture(autouse=True)
def _no_real_sleep() -> Iterator[None]:
    # Also this module's own settings: another module may have configured Django first.
    with (
        no_wait(),
        override_settings(
            EMAIL_BACKEND="smtp_guard.contrib.django.EmailBackend",
            DEFAULT_FROM_EMAIL="app@sender.test",
        ),
    ):
        yield


def _settings(server: FaultServer, **more: Any) -> Any:
    return override_settings(
        EMAIL_HOST=server.host, EMAIL_PORT=server.port, SMTP_GUARD_POLICY=FAST, **more
    )


def _email(*to: str, subject: str = "hi", body: str = "hello") -> EmailMessage:
    return EmailMessage(subject, body, "app@sender.test", list(to))


def test_batch_is_sent_over_one_connection_and_counted() -> None:
    with FaultServer() as server, _settings(server):
        sent = mail.get_connection().send_messages(
            [_email("a@x.test"), _email("b@x.test", subject="second"), _email("c@x.test")]
        )
    assert sent == 3
    assert f"C: EHLO {HOST_NAME}" in server.transcript  # Django's DNS_NAME, as Django's backend
    assert [t.recipients for t in server.messages] == [["a@x.test"], ["b@x.test"], ["c@x.test"]]
    assert server.connection_count == 1  # reused across the batch (RSET between messages)


def test_send_mail_through_the_email_backend_setting() -> None:
    with FaultServer() as server, _settings(server):
        count = mail.send_mail("Subject", "Body text", None, ["to@x.test"])
    assert count == 1
    (txn,) = server.messages
    assert txn.sender == "app@sender.test"
    assert txn.message["Subject"] == "Subject"
    assert "Body text" in txn.message.get_content()


def test_partial_failure_is_logged_and_kept_on_the_message(
    caplog: pytest.LogCaptureFixture,
) -> None:
    message = _email("ok@x.test", "nobody@unknown.test")
    with (
        FaultServer("rcpt:*@unknown.test=550 5.1.1 No such user") as server,
        _settings(server),
        caplog.at_level(logging.WARNING, "smtp_guard.django"),
    ):
        sent = mail.get_connection().send_messages([message])
    assert sent == 1  # as Django: sent when at least one recipient accepted it
    result = message.smtp_guard_result
    assert isinstance(result, SendResult)
    assert result.delivered == ("ok@x.test",)
    refused = result.refused["nobody@unknown.test"]
    assert isinstance(refused, errors.MailboxUnavailable)
    assert refused.permanent
    assert [t.recipients for t in server.messages] == [["ok@x.test"]]
    (record,) = [r for r in caplog.records if r.name == "smtp_guard.django"]
    assert "nobody@unknown.test" in record.getMessage()
    assert "550" in record.getMessage()
    assert vars(record)["smtp_error_permanent"] is True


def test_greylisted_recipient_is_retried_and_delivered_once() -> None:
    message = _email("ok@x.test", "later@grey.test")
    with (
        FaultServer("rcpt:*@grey.test=451 4.7.1 Greylisted, try again in 5 seconds x1") as server,
        _settings(server),
    ):
        sent = mail.get_connection().send_messages([message])
    assert sent == 1
    assert message.smtp_guard_result.delivered == ("ok@x.test", "later@grey.test")
    assert message.smtp_guard_result.attempts == 2
    assert server.deliveries_to("ok@x.test") == 1
    assert server.deliveries_to("later@grey.test") == 1


def test_partial_delivery_then_a_drop_counts_the_message_as_sent() -> None:
    """ok@ gets it in a first transaction ("too many recipients"), then every transaction
    for later@ drops at DATA: the message was sent (to ok@), and ok@ got it once."""
    message = _email("ok@x.test", "later@split.test")
    faults = ("rcpt:*@split.test=452 4.5.3 Too many recipients x1", "data:*@split.test=drop")
    with FaultServer(*faults) as server, _settings(server):
        sent = mail.get_connection(fail_silently=True).send_messages([message])
    assert sent == 1
    assert [t.recipients for t in server.messages] == [["ok@x.test"]]
    error = message.smtp_guard_result
    assert isinstance(error, errors.ServerDisconnected)
    assert error.delivered == ("ok@x.test",)
    assert error.attempts == FAST["attempts"]


def test_all_refused_raises_the_typed_error_unless_fail_silently() -> None:
    with FaultServer("rcpt:*=550 5.1.1 No such user") as server, _settings(server):
        loud = _email("a@x.test")
        with pytest.raises(errors.RecipientsRefused) as raised:
            mail.get_connection().send_messages([loud])
        assert raised.value.refused["a@x.test"].code == 550
        assert loud.smtp_guard_result is raised.value

        quiet = _email("b@x.test")
        assert mail.get_connection(fail_silently=True).send_messages([quiet]) == 0
        assert isinstance(quiet.smtp_guard_result, errors.RecipientsRefused)
    assert server.messages == []


def test_permanent_error_is_not_retried() -> None:
    with (
        FaultServer("mail=554 5.7.1 Sender blocked") as server,
        _settings(server),
        pytest.raises(errors.PermanentError),
    ):
        mail.get_connection().send_messages([_email("a@x.test")])
    assert len([line for line in server.transcript if line.startswith("C: MAIL")]) == 1


def test_unreachable_server_fails_in_open_or_silently() -> None:
    with FaultServer() as server:
        port = server.port
    with override_settings(EMAIL_HOST="127.0.0.1", EMAIL_PORT=port, SMTP_GUARD_POLICY=FAST):
        with pytest.raises(errors.ConnectionFailed):
            mail.get_connection().send_messages([_email("a@x.test")])
        assert mail.get_connection(fail_silently=True).send_messages([_email("a@x.test")]) == 0


def test_starttls_and_login_with_django_settings(caplog: pytest.LogCaptureFixture) -> None:
    with (
        FaultServer("starttls=required", "auth=mailer:s3cret-pw") as server,
        _settings(
            server,
            EMAIL_USE_TLS=True,
            EMAIL_HOST_USER="mailer",
            EMAIL_HOST_PASSWORD="s3cret-pw",
            SMTP_GUARD_OPTIONS={"cert_bundle": str(server.ca_cert_path)},
        ),
        caplog.at_level(logging.DEBUG),
    ):
        backend = mail.get_connection()
        assert backend.send_messages([_email("a@x.test")]) == 1
    (txn,) = server.messages
    assert txn.tls
    assert txn.user == "mailer"
    assert "s3cret-pw" not in repr(backend)
    assert all("s3cret-pw" not in r.getMessage() for r in caplog.records)


def test_credentials_never_go_unencrypted() -> None:
    with (
        FaultServer("auth=mailer:s3cret-pw") as server,
        _settings(server, EMAIL_HOST_USER="mailer", EMAIL_HOST_PASSWORD="s3cret-pw"),
    ):
        with pytest.raises(errors.InsecureConnection):
            mail.get_connection().send_messages([_email("a@x.test")])
        assert not any(line.startswith("C: AUTH") for line in server.transcript)
        with override_settings(SMTP_GUARD_ALLOW_INSECURE_AUTH=True):
            assert mail.get_connection().send_messages([_email("a@x.test")]) == 1
    assert [t.user for t in server.messages] == ["mailer"]


def test_backend_settings_keep_djangos_meaning() -> None:
    with override_settings(
        EMAIL_HOST="mail.example.test",
        EMAIL_PORT=465,
        EMAIL_USE_SSL=True,
        EMAIL_TIMEOUT=7,
        EMAIL_SSL_CERTFILE="/etc/client.pem",
        EMAIL_SSL_KEYFILE="/etc/client.key",
        SMTP_GUARD_POLICY=RetryPolicy(attempts=2),
    ):
        backend = EmailBackend()
        options = backend.send_options()
        with override_settings(SMTP_GUARD_OPTIONS={"local_hostname": "app.example.test"}):
            named = EmailBackend().send_options()
    assert options["hostname"] == "mail.example.test"
    assert options["local_hostname"] == HOST_NAME
    assert named["local_hostname"] == "app.example.test"
    assert options["port"] == 465
    assert options["use_tls"] is True
    assert options["start_tls"] is False
    assert options["timeout"] == 7
    assert options["client_cert"] == "/etc/client.pem"
    assert options["client_key"] == "/etc/client.key"
    assert options["policy"] == RetryPolicy(attempts=2)
    assert "password" not in options
    with pytest.raises(ValueError, match="mutually exclusive"):
        EmailBackend(use_tls=True, use_ssl=True)
    with pytest.raises(TypeError, match="SMTP_GUARD_POLICY"):
        EmailBackend(policy=3)  # type: ignore[arg-type]


def test_header_injection_in_an_address_is_refused_before_sending() -> None:
    with FaultServer() as server, _settings(server):
        bad = _email("a@x.test>\r\nRCPT TO:<evil@x.test")
        with pytest.raises(ValueError, match=r"newline|Invalid address"):
            mail.get_connection(fail_silently=True).send_messages([bad])
    assert server.connection_count <= 1
    assert not any("evil@x.test" in line for line in server.transcript)


def test_empty_batch_and_message_without_recipients() -> None:
    with FaultServer() as server, _settings(server):
        backend = mail.get_connection()
        assert backend.send_messages([]) == 0
        assert backend.send_messages([EmailMessage("s", "b", "app@sender.test", [])]) == 0
    assert server.messages == []


def test_open_close_keep_the_connection_across_calls() -> None:
    with FaultServer() as server, _settings(server):
        with mail.get_connection() as backend:
            assert backend.send_messages([_email("a@x.test")]) == 1
            assert backend.send_messages([_email("b@x.test")]) == 1
        assert backend.connection is None
    assert server.connection_count == 1
    assert len(server.messages) == 2


def test_email_use_ssl_is_tls_from_the_first_byte() -> None:
    with (
        FaultServer("tls=implicit") as server,
        _settings(
            server, EMAIL_USE_SSL=True, SMTP_GUARD_OPTIONS={"cert_bundle": str(server.ca_cert_path)}
        ),
    ):
        assert mail.get_connection().send_messages([_email("a@x.test")]) == 1
    (txn,) = server.messages
    assert txn.tls
