"""A Celery worker that sends mail with smtp_guard, and a producer that queues one message.

Worker::

    CELERY_BROKER_URL=redis://127.0.0.1:6379/0 SMTP_HOST=127.0.0.1 SMTP_PORT=2525 \\
        celery -A examples.celery_worker worker --pool=solo

Producer (queues a message, waits for the per-recipient result, prints it)::

    CELERY_BROKER_URL=redis://127.0.0.1:6379/0 python examples/celery_worker.py a@example.com

Transient failures (greylisting, 4xx, dropped connections) are retried by Celery with the
server's own "try again in N seconds" or a backoff, and only for the recipients still owed.
``SMTP_GUARD_MAX_COUNTDOWN`` caps the wait (seconds), e.g. in a staging environment.
"""

from __future__ import annotations

import json
import os
import sys
from email.message import EmailMessage

from celery import Celery

from smtp_guard.contrib.celery import enqueue, send_message

BROKER = os.environ.get("CELERY_BROKER_URL", "redis://127.0.0.1:6379/0")

app = Celery("mail", broker=BROKER, backend=BROKER)
app.conf.update(
    task_serializer="json",
    result_serializer="json",
    accept_content=["json"],
    broker_connection_retry_on_startup=True,
    smtp_guard={
        "hostname": os.environ.get("SMTP_HOST", "localhost"),
        "port": int(os.environ.get("SMTP_PORT", "25")),
        "username": os.environ.get("SMTP_USER") or None,
        "password": os.environ.get("SMTP_PASSWORD") or None,
        "timeout": 10,
        "policy": {"attempts": 2, "deadline": 15.0},
        # below the broker's visibility timeout (Redis: 1 hour), or a retry runs twice
        "max_countdown": float(os.environ.get("SMTP_GUARD_MAX_COUNTDOWN", "3000")),
    },
)

__all__ = ["app", "send_message"]


def main(argv: list[str]) -> int:
    message = EmailMessage()
    message["From"] = os.environ.get("MAIL_FROM", "worker@example.com")
    message["To"] = ", ".join(argv or ["someone@example.com"])
    message["Subject"] = "Queued with smtp_guard"
    message.set_content("Sent by a Celery worker.\n")
    result = enqueue(message, app=app)
    outcome = result.get(timeout=float(os.environ.get("RESULT_TIMEOUT", "60")))
    print(json.dumps(outcome, indent=2, sort_keys=True))
    return 0 if not outcome["refused"] else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
