"""Celery: send one message per task, and let Celery do the long waits.

The ready task :data:`send_message` (name ``"smtp_guard.send_message"``) sends one message with
:func:`smtp_guard.client.send_sync` and turns the outcome into Celery's language:

- delivered to everyone -> the task succeeds; its result says what happened to each recipient
  (a JSON-serialisable dict, see :meth:`GuardedTask.guarded_send`);
- a transient failure (4xx, greylisting, a dropped connection, ...) -> ``self.retry(countdown=...)``
  with the server's own hint ("try again in 300 seconds") when it gave one, else the policy's
  backoff; the retry goes only to the recipients still owed, never to those already delivered;
- a permanent failure -> the task fails at once with the typed error (no retry); recipients
  refused permanently while others were delivered are listed in the result, and logged;
- :class:`~smtp_guard.errors.DeliveryUncertain` -> the task fails, not retried (a retry could
  deliver twice) unless the setting ``retry_uncertain`` is true.

Messages travel as bytes (kombu's JSON carries bytes), never as pickled objects::

    from smtp_guard.contrib.celery import enqueue
    enqueue(email_message)            # envelope from the headers, Bcc stripped, like aiosmtplib

Connection settings live in the worker's configuration, not in the task's arguments, so
passwords never go through the broker::

    app.conf.smtp_guard = {
        "hostname": "smtp.example.com", "port": 587, "start_tls": True,
        "username": "app", "password": os.environ["SMTP_PASSWORD"],
        "policy": {"attempts": 2, "deadline": 15},   # in-process retries for short blips
        "max_countdown": 3000,                       # cap on Celery countdowns (seconds)
        "retry_uncertain": False,
    }

With Redis (or SQS) as the broker, a retry scheduled further ahead than the broker's
``visibility_timeout`` (Redis: one hour by default) is delivered again to another worker, and
the recipients still owed could get the message twice: ``max_countdown`` (default 3000 s,
None for no cap) must stay below it (or raise ``broker_transport_options``'s
``visibility_timeout``).

Every other key is passed to ``send_sync`` as a keyword argument (``timeout``, ``use_tls``,
``validate_certs``, ``cert_bundle``, ``local_hostname``, ``allow_insecure_auth``, ...).
For your own task, subclass :class:`GuardedTask` (override :meth:`~GuardedTask.send_options`
for per-task settings) and call :meth:`~GuardedTask.guarded_send` from it.
"""

from __future__ import annotations

import dataclasses
import email
import email.policy
import logging
from collections.abc import Iterable, Mapping, Sequence
from email.message import Message
from typing import Any, NoReturn

from aiosmtplib.email import extract_recipients, extract_sender, flatten_message
from celery import Task, shared_task

from smtp_guard.errors import (
    DeliveryUncertain,
    InvalidInput,
    RecipientsRefused,
    ReplyError,
    SMTPGuardError,
)
from smtp_guard.hooks import Outcome, message_id_of
from smtp_guard.policy import RetryPolicy

__all__ = [
    "DEFAULT_MAX_COUNTDOWN",
    "DEFAULT_POLICY",
    "SETTINGS_KEY",
    "GuardedTask",
    "enqueue",
    "envelope",
    "error_to_dict",
    "send_message",
]

logger = logging.getLogger("smtp_guard.celery")

#: The key of the worker's configuration (``app.conf.smtp_guard``) that holds the settings.
SETTINGS_KEY = "smtp_guard"

#: In-process retries inside one task run: short, so the worker is not held; Celery does the rest.
DEFAULT_POLICY = RetryPolicy(attempts=2, deadline=15.0, initial_wait=1.0, max_wait=5.0)

_OWN_SETTINGS = frozenset({"policy", "max_countdown", "retry_uncertain"})

#: The longest Celery countdown unless ``max_countdown`` says otherwise: under the one hour
#: visibility timeout of Redis and SQS, past which a scheduled retry is delivered twice.
DEFAULT_MAX_COUNTDOWN = 3000.0


def envelope(
    message: Message | bytes | str,
    sender: str | None = None,
    recipients: str | Sequence[str] | None = None,
) -> tuple[bytes, str, list[str]]:
    """The bytes to send and the envelope, taken from the headers where not given.

    Like aiosmtplib: sender from Sender/From (or Resent-*), recipients from To, Cc and Bcc, and
    Bcc removed from the bytes. Raises :class:`InvalidInput` when no sender or no recipient.
    """
    if isinstance(message, Message):
        parsed: Message | None = message
        raw = None
    else:
        raw = message.encode("utf-8") if isinstance(message, str) else bytes(message)
        parsed = None
        if sender is None or recipients is None:
            parsed = email.message_from_bytes(raw, policy=email.policy.SMTP)
    if parsed is not None:
        if sender is None:
            sender = extract_sender(parsed)
        if recipients is None:
            recipients = extract_recipients(parsed)
        if raw is None or "Bcc" in parsed or "Resent-Bcc" in parsed:
            raw = flatten_message(parsed)
    assert raw is not None  # noqa: S101 (set on every path above)
    if sender is None:
        raise InvalidInput("no sender: pass sender= or give the message a From header")
    rcpts = [recipients] if isinstance(recipients, str) else list(recipients or ())
    if not rcpts:
        raise InvalidInput("no recipients: pass recipients= or give the message a To header")
    return raw, sender, rcpts


def error_to_dict(error: SMTPGuardError) -> dict[str, Any]:
    """A JSON-serialisable description of a typed error (for task results and logs)."""
    reply = error if isinstance(error, ReplyError) else None
    return {
        "error": type(error).__name__,
        "code": reply.code if reply else None,
        "enhanced": reply.enhanced if reply else None,
        "category": str(reply.category) if reply else None,
        "phase": str(reply.phase) if reply and reply.phase else None,
        "permanent": error.permanent,
        "retry_after": error.retry_after,
        "text": reply.text if reply else error.message,
        "hint": error.hint,
    }


class GuardedTask(Task):  # type: ignore[misc]  # Celery ships no type information
    """Base class for tasks that send mail with the guard (see the module docstring)."""

    #: Celery retries at most this many times (then the task fails with the typed error).
    max_retries = 10

    def settings(self) -> dict[str, Any]:
        """The ``smtp_guard`` settings of the app (a copy)."""
        conf = self.app.conf
        value = conf.get(SETTINGS_KEY) if hasattr(conf, "get") else None
        return dict(value or {})

    def send_options(self) -> dict[str, Any]:
        """Keyword arguments for ``send_sync``: the settings minus the task's own keys."""
        return {k: v for k, v in self.settings().items() if k not in _OWN_SETTINGS}

    def retry_policy(self) -> RetryPolicy:
        """The in-process policy: ``policy`` setting (a RetryPolicy or a dict of its fields)."""
        value = self.settings().get("policy")
        if value is None:
            return DEFAULT_POLICY
        if isinstance(value, RetryPolicy):
            return value
        return dataclasses.replace(DEFAULT_POLICY, **dict(value))

    def countdown_for(self, error: SMTPGuardError) -> float:
        """Seconds until Celery's retry: the server's hint if honoured, else the backoff."""
        policy = self.retry_policy()
        if policy.honor_server_hints and error.retry_after is not None:
            wait = float(error.retry_after)
        else:
            wait = policy.backoff(int(self.request.retries) + 1)
        cap = self.settings().get("max_countdown", DEFAULT_MAX_COUNTDOWN)
        if cap is not None:
            wait = min(wait, float(cap))
        return max(0.0, wait)

    def guarded_send(
        self,
        message: bytes | str,
        sender: str | None = None,
        recipients: Sequence[str] | None = None,
        previous: Mapping[str, Any] | None = None,
    ) -> dict[str, Any]:
        """Send, and retry through Celery what is still owed. Returns the task's result::

            {"message_id": "<...>", "delivered": [...], "refused": {rcpt: error_to_dict},
             "outcomes": {rcpt: "delivered" | "refused"}, "attempts": 3, "retries": 1}

        ``previous`` is the bookkeeping a retry carries (who got it earlier); leave it out.
        """
        from smtp_guard.client import send_sync  # noqa: PLC0415 (keeps the import cheap)

        raw, sender, owed = envelope(message, sender, recipients)
        done: list[str] = list((previous or {}).get("delivered", ()))
        refused: dict[str, dict[str, Any]] = dict((previous or {}).get("refused", {}))
        attempts = int((previous or {}).get("attempts", 0))
        still_owed: dict[str, SMTPGuardError] = {}
        try:
            result = send_sync(
                raw,
                sender=sender,
                recipients=owed,
                policy=self.retry_policy(),
                **self.send_options(),
            )
        except RecipientsRefused as error:
            attempts += error.attempts
            done += [r for r in error.delivered if r not in done]
            self._sort(error.refused, refused, still_owed)
            if not still_owed:
                self._log_refused(raw, refused)
                raise
            failure: SMTPGuardError = error
        except DeliveryUncertain as error:
            attempts += error.attempts
            if not self.settings().get("retry_uncertain", False):
                raise
            still_owed = self._owed_after(error, owed, done)
            failure = error
        except SMTPGuardError as error:
            attempts += error.attempts
            if error.permanent:
                raise
            still_owed = self._owed_after(error, owed, done)
            failure = error
        else:
            attempts += int(result.attempts)
            done += [r for r in result.delivered if r not in done]
            self._sort(result.refused, refused, still_owed)
            failure = RecipientsRefused(
                {r: e for r, e in still_owed.items() if isinstance(e, ReplyError)},
                delivered=done,
                attempts=attempts,
            )
        if still_owed:
            self._retry(
                message,
                sender=sender,
                still_owed=still_owed,
                failure=failure,
                done=done,
                refused=refused,
                attempts=attempts,
            )
        self._log_refused(raw, refused)
        outcomes = {r: str(Outcome.DELIVERED) for r in done}
        outcomes.update({r: str(Outcome.REFUSED) for r in refused})
        return {
            "message_id": message_id_of(raw),
            "delivered": done,
            "refused": refused,
            "outcomes": outcomes,
            "attempts": attempts,
            "retries": int(self.request.retries),
        }

    @staticmethod
    def _owed_after(
        error: SMTPGuardError, owed: Sequence[str], done: list[str]
    ) -> dict[str, SMTPGuardError]:
        """Who the retry goes to after ``error``: not those it says already got the message.

        An attempt can deliver to some recipients (an earlier transaction, "too many
        recipients") and then fail for the rest; they are recorded in ``done`` and left out.
        """
        got = set(error.delivered)
        done += [r for r in error.delivered if r not in done]
        return {r: error for r in owed if r not in got}

    @staticmethod
    def _sort(
        errors: Mapping[str, SMTPGuardError],
        refused: dict[str, dict[str, Any]],
        still_owed: dict[str, SMTPGuardError],
    ) -> None:
        for rcpt, error in errors.items():
            if error.permanent:
                refused[rcpt] = error_to_dict(error)
            else:
                still_owed[rcpt] = error

    def _retry(
        self,
        message: bytes | str,
        *,
        sender: str,
        still_owed: Mapping[str, SMTPGuardError],
        failure: SMTPGuardError,
        done: Iterable[str],
        refused: Mapping[str, Any],
        attempts: int,
    ) -> NoReturn:
        countdown = self.countdown_for(failure)
        logger.warning(
            "task %s: retrying %d recipient(s) in %.1fs (Celery retry %d): %s",
            self.request.id,
            len(still_owed),
            countdown,
            int(self.request.retries) + 1,
            failure,
            extra={
                "smtp_task_id": self.request.id,
                "smtp_recipients": list(still_owed),
                "smtp_wait": countdown,
            },
        )
        previous = {"delivered": list(done), "refused": dict(refused), "attempts": attempts}
        raise self.retry(
            args=(message,),
            kwargs={"sender": sender, "recipients": list(still_owed), "previous": previous},
            countdown=countdown,
            exc=failure,
        )

    def _log_refused(self, raw: bytes, refused: Mapping[str, Mapping[str, Any]]) -> None:
        for rcpt, info in refused.items():
            logger.warning(
                "task %s: %s refused for <%s>: %s %s",
                self.request.id,
                message_id_of(raw) or "message",
                rcpt,
                info.get("code"),
                info.get("error"),
                extra={"smtp_task_id": self.request.id, "smtp_recipients": [rcpt]},
            )


@shared_task(bind=True, base=GuardedTask, name="smtp_guard.send_message")  # type: ignore[untyped-decorator]
def send_message(
    self: GuardedTask,
    message: bytes | str,
    sender: str | None = None,
    recipients: Sequence[str] | None = None,
    previous: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Send one message (bytes) with the guard; retried by Celery while recipients are owed."""
    return self.guarded_send(message, sender, recipients, previous)


def enqueue(
    message: Message | bytes | str,
    *,
    sender: str | None = None,
    recipients: str | Sequence[str] | None = None,
    task: Any = None,
    app: Any = None,
    **options: Any,
) -> Any:
    """Queue ``message`` for :data:`send_message` (or ``task``); returns the AsyncResult.

    The envelope is resolved now (a bad message fails here, not in the worker) and the message
    goes as bytes. With ``app`` (a producer that does not import the worker's tasks) the task
    is sent by name through that app. ``options`` go to ``apply_async`` (``countdown``, ...).
    """
    raw, sender, rcpts = envelope(message, sender, recipients)
    kwargs = {"sender": sender, "recipients": rcpts}
    chosen = send_message if task is None else task
    if app is not None:
        return app.send_task(chosen.name, args=(raw,), kwargs=kwargs, **options)
    return chosen.apply_async(args=(raw,), kwargs=kwargs, **options)
