"""The Celery app the end-to-end tests' worker runs (``celery -A _celery_app worker``).

Settings come from the environment the test fixture sets: the Redis URL (broker and results)
and the loopback port of the test SMTP server. Countdowns are capped so no test waits minutes.
"""

from __future__ import annotations

import os

from celery import Celery

import smtp_guard.contrib.celery  # noqa: F401 (registers the ready task with this app)

broker = os.environ["SMTP_GUARD_TEST_BROKER"]
app = Celery("smtp_guard_tests", broker=broker, backend=broker)
app.conf.update(
    task_serializer="json",
    result_serializer="json",
    accept_content=["json"],
    broker_connection_retry_on_startup=True,
    worker_hijack_root_logger=False,
    worker_prefetch_multiplier=1,
    smtp_guard={
        "hostname": "127.0.0.1",
        "port": int(os.environ["SMTP_GUARD_TEST_SMTP_PORT"]),
        "local_hostname": "client.test",  # no lookup of the machine's FQDN for EHLO
        "timeout": 5,
        # one attempt per task run: every retry in these tests is Celery's
        "policy": {"attempts": 1, "deadline": 5.0},
        "max_countdown": float(os.environ.get("SMTP_GUARD_TEST_MAX_COUNTDOWN", "0.2")),
    },
)
