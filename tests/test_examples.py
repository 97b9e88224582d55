"""Every example runs, as a user would run it, against the FaultServer on loopback."""

from __future__ import annotations

import json
import os
import runpy
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import django
import pytest
from django.conf import settings

if not settings.configured:
    settings.configure(EMAIL_HOST="127.0.0.1")
    django.setup()

from _redis import CeleryWorker, RedisServer, redis_available
from django.core import mail
from django.core.mail import DNS_NAME
from django.test import override_settings
from fastapi.testclient import TestClient

from smtp_guard.testing import FaultServer

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
FAULTS = (
    "rcpt:*@unknown.test=550 5.1.1 No such user",
    "rcpt:*@full.test=452 4.2.2 Mailbox full, try again in 120 seconds",
    "rcpt:*@grey.test=451 4.7.1 Greylisted, try again in 300 seconds x1",
)


@pytest.fixture
def server() -> Iterator[FaultServer]:
    with FaultServer(*FAULTS) as running:
        yield running


def _env(server: FaultServer, **more: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update(SMTP_HOST=server.host, SMTP_PORT=str(server.port), MAIL_FROM="ex@sender.test")
    env.update(more)
    return env


def _run(script: str, *args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(  # noqa: S603 (our interpreter, our example)
        [sys.executable, str(EXAMPLES / script), *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


# --------------------------------------------------------------------------- plain script


def test_plain_script_reports_each_recipient(server: FaultServer) -> None:
    done = _run("plain_script.py", "ok@x.test", "no@unknown.test", env=_env(server))
    assert done.returncode == 1, done.stderr
    assert "DELIVERED ok@x.test" in done.stdout
    assert "REFUSED   no@unknown.test: 550" in done.stdout
    assert [t.recipients for t in server.messages] == [["ok@x.test"]]


def test_plain_script_exit_status_when_all_delivered_or_nothing_sent(
    server: FaultServer,
) -> None:
    ok = _run("plain_script.py", "a@x.test", env=_env(server))
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout.strip() == "DELIVERED a@x.test"
    nobody = _run("plain_script.py", "b@unknown.test", env=_env(server))
    assert nobody.returncode == 2
    assert "REFUSED   b@unknown.test: 550" in nobody.stdout
    down = _run("plain_script.py", "c@x.test", env=_env(server, SMTP_PORT="1", SMTP_ATTEMPTS="1"))
    assert down.returncode == 2
    assert "NOT SENT" in down.stdout


# --------------------------------------------------------------------------- FastAPI


@pytest.fixture
def api(server: FaultServer, monkeypatch: pytest.MonkeyPatch) -> Iterator[TestClient]:
    monkeypatch.setenv("SMTP_HOST", server.host)
    monkeypatch.setenv("SMTP_PORT", str(server.port))
    namespace = runpy.run_path(str(EXAMPLES / "fastapi_app.py"))
    with TestClient(namespace["app"]) as client:
        yield client


def test_fastapi_route_returns_per_recipient_outcomes(api: TestClient, server: FaultServer) -> None:
    response = api.post(
        "/send", json={"to": ["ok@x.test", "no@unknown.test"], "subject": "s", "body": "b"}
    )
    assert response.status_code == 200
    body: dict[str, Any] = response.json()
    assert body["delivered"] == ["ok@x.test"]
    refused = body["refused"]["no@unknown.test"]
    assert refused["code"] == 550
    assert refused["enhanced"] == "5.1.1"
    assert refused["permanent"] is True
    assert refused["hint"]
    assert [t.recipients for t in server.messages] == [["ok@x.test"]]


def test_fastapi_route_maps_failures_to_http(api: TestClient, server: FaultServer) -> None:
    later = api.post("/send", json={"to": ["x@full.test"]})
    assert later.status_code == 503
    assert later.headers["Retry-After"] == "120"
    assert later.json()["refused"]["x@full.test"]["permanent"] is False

    never = api.post("/send", json={"to": ["y@unknown.test"]})
    assert never.status_code == 502
    assert never.json()["refused"]["y@unknown.test"]["code"] == 550

    bad = api.post("/send", json={"to": ["a@x.test>\r\nRCPT TO:<evil@x.test"]})
    assert bad.status_code == 422
    assert server.messages == []
    assert not any("evil" in line for line in server.transcript)


# --------------------------------------------------------------------------- Django


def test_django_settings_snippet_sends_through_the_guard(
    server: FaultServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Django's cached machine name (EHLO name, Message-ID domain), so that Django does not
    # ask socket.getfqdn(), slow or hanging on some CI hosts; the snippet stays as it is.
    monkeypatch.setattr(DNS_NAME, "_fqdn", "django-host.test", raising=False)
    env = {"SMTP_HOST": server.host, "SMTP_PORT": str(server.port), "MAIL_FROM": "dj@x.test"}
    with pytest.MonkeyPatch.context() as patch:
        for key, value in env.items():
            patch.setenv(key, value)
        snippet = runpy.run_path(str(EXAMPLES / "django_settings.py"))
    values = {k: v for k, v in snippet.items() if k.isupper()}
    assert values["EMAIL_BACKEND"] == "smtp_guard.contrib.django.EmailBackend"
    with override_settings(**values):
        sent = mail.send_mail("Hi", "Body", None, ["ok@x.test", "no@unknown.test"])
    assert sent == 1
    (txn,) = server.messages
    assert txn.sender == "dj@x.test"
    assert txn.recipients == ["ok@x.test"]


# --------------------------------------------------------------------------- Celery


@pytest.fixture
def redis_url(tmp_path: Path) -> Iterator[str]:
    if not redis_available():
        pytest.skip("redis-server is not installed (apt-get install redis-server)")
    with RedisServer(tmp_path) as redis_server:
        yield redis_server.url


def test_celery_worker_example_retries_a_greylisted_recipient(
    server: FaultServer, redis_url: str, tmp_path: Path
) -> None:
    env = {
        "CELERY_BROKER_URL": redis_url,
        "SMTP_HOST": server.host,
        "SMTP_PORT": str(server.port),
        "SMTP_GUARD_MAX_COUNTDOWN": "0.2",
    }
    worker = CeleryWorker(
        "celery_worker",
        broker_url=redis_url,
        log_path=tmp_path / "worker.log",
        env=env,
        pythonpath=[EXAMPLES],
    )
    worker.start()
    try:
        done = _run("celery_worker.py", "ok@x.test", "later@grey.test", env=_env(server, **env))
    finally:
        worker.stop()
    assert done.returncode == 0, done.stderr + worker.log()
    outcome = json.loads(done.stdout)
    assert outcome["delivered"] == ["ok@x.test", "later@grey.test"]
    assert outcome["retries"] == 1
    assert server.deliveries_to("ok@x.test") == 1
    assert server.deliveries_to("later@grey.test") == 1
