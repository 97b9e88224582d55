"""Django: ``EMAIL_BACKEND = "smtp_guard.contrib.django.EmailBackend"``.

A drop-in for ``django.core.mail.backends.smtp.EmailBackend``: the same settings with the same
meaning (``EMAIL_HOST``, ``EMAIL_PORT``, ``EMAIL_HOST_USER``, ``EMAIL_HOST_PASSWORD``,
``EMAIL_USE_TLS`` = STARTTLS, ``EMAIL_USE_SSL`` = TLS from the first byte, ``EMAIL_TIMEOUT``,
``EMAIL_SSL_CERTFILE`` / ``EMAIL_SSL_KEYFILE`` = a client certificate), the same constructor
arguments, and ``send_messages()`` returns the number of messages sent, where a message counts as
sent when at least one recipient accepted it (as with Django's backend).

What changes:

- every failure is a typed :mod:`smtp_guard.errors` error (also an ``aiosmtplib`` exception;
  code that catches ``smtplib.SMTPException`` should catch ``smtp_guard.SMTPGuardError``);
- transient failures are retried by the ``SMTP_GUARD_POLICY`` setting (a
  :class:`~smtp_guard.policy.RetryPolicy` or a dict of its fields), recipients already
  delivered are never sent the message twice;
- partial failures are not swallowed: each refused recipient is logged (``smtp_guard.django``
  logger, WARNING) with its typed error, and every message sent gets
  ``message.smtp_guard_result`` (the :class:`SendResult`, or the error when it failed);
- ``SMTP_GUARD_OPTIONS``: a dict of further ``smtp_guard.send`` arguments (``cert_bundle``
  for a private CA, ``validate_certs``, ``local_hostname``, ...);
- with a username and password, the password never travels unencrypted: STARTTLS is used when
  the server offers it, and without it :class:`~smtp_guard.errors.InsecureConnection` is raised
  unless ``SMTP_GUARD_ALLOW_INSECURE_AUTH = True`` (for a trusted local relay).

``fail_silently=True`` keeps Django's meaning: no exception; failed messages are not counted.
Messages in one ``send_messages()`` call share one connection (a one-connection
:class:`~smtp_guard.mailer.SyncMailer`); ``open()``/``close()`` or ``with backend:`` keep it
across calls, as in Django. Unlike Django's backend, the connection is made at the first
message rather than in ``open()``; errors surface (or are silenced) in ``send_messages()``.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
from collections.abc import Sequence
from typing import Any

from django.conf import settings
from django.core.mail.backends.base import BaseEmailBackend
from django.core.mail.message import EmailMessage, sanitize_address
from django.core.mail.utils import DNS_NAME

from smtp_guard.client import SendResult, send_sync
from smtp_guard.errors import SMTPGuardError
from smtp_guard.mailer import SyncMailer
from smtp_guard.policy import RetryPolicy

__all__ = ["EmailBackend"]

logger = logging.getLogger("smtp_guard.django")


class EmailBackend(BaseEmailBackend):  # type: ignore[misc]  # Django ships no type information
    """Django email backend that sends through smtp_guard (see the module docstring)."""

    def __init__(  # noqa: PLR0917 (Django's own positional signature)
        self,
        host: str | None = None,
        port: int | None = None,
        username: str | None = None,
        password: str | None = None,
        use_tls: bool | None = None,
        fail_silently: bool = False,
        use_ssl: bool | None = None,
        timeout: float | None = None,
        ssl_keyfile: str | None = None,
        ssl_certfile: str | None = None,
        policy: RetryPolicy | dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(fail_silently=fail_silently, **kwargs)
        self.host: str = host or settings.EMAIL_HOST
        self.port: int = int(port or settings.EMAIL_PORT)
        self.username: str = settings.EMAIL_HOST_USER if username is None else username
        self.password: str = settings.EMAIL_HOST_PASSWORD if password is None else password
        self.use_tls: bool = bool(settings.EMAIL_USE_TLS if use_tls is None else use_tls)
        self.use_ssl: bool = bool(settings.EMAIL_USE_SSL if use_ssl is None else use_ssl)
        self.timeout: float | None = settings.EMAIL_TIMEOUT if timeout is None else timeout
        self.ssl_keyfile: str | None = (
            settings.EMAIL_SSL_KEYFILE if ssl_keyfile is None else ssl_keyfile
        )
        self.ssl_certfile: str | None = (
            settings.EMAIL_SSL_CERTFILE if ssl_certfile is None else ssl_certfile
        )
        if self.use_ssl and self.use_tls:
            raise ValueError(
                "EMAIL_USE_TLS/EMAIL_USE_SSL are mutually exclusive, so only set "
                "one of those settings to True."
            )
        self.policy: RetryPolicy | None = _policy(
            getattr(settings, "SMTP_GUARD_POLICY", None) if policy is None else policy
        )
        self.allow_insecure_auth: bool = bool(
            getattr(settings, "SMTP_GUARD_ALLOW_INSECURE_AUTH", False)
        )
        #: ``SMTP_GUARD_OPTIONS``: more keyword arguments of ``smtp_guard.send`` (e.g.
        #: ``cert_bundle`` for a private CA, ``validate_certs``); they win over the above.
        self.extra_options: dict[str, Any] = dict(getattr(settings, "SMTP_GUARD_OPTIONS", {}))
        self.connection: SyncMailer | None = None  # while open, as in Django's backend
        self._lock = threading.RLock()

    def __repr__(self) -> str:
        # Never the password.
        return f"<{type(self).__name__} {self.host}:{self.port} user={self.username!r}>"

    def send_options(self) -> dict[str, Any]:
        """The keyword arguments of ``smtp_guard.send`` these settings mean."""
        credentials = bool(self.username and self.password)
        options: dict[str, Any] = {
            "hostname": self.host,
            "port": self.port,
            "use_tls": self.use_ssl,
            # EMAIL_USE_TLS=True: STARTTLS required. Otherwise plain, as Django does, except
            # that with credentials STARTTLS is used when offered (the password stays private).
            "start_tls": True if self.use_tls else (None if credentials else False),
            "timeout": self.timeout,
            "local_hostname": DNS_NAME.get_fqdn(),
            "allow_insecure_auth": self.allow_insecure_auth,
        }
        if credentials:
            options["username"] = self.username
            options["password"] = self.password
        if self.ssl_certfile:
            options["client_cert"] = self.ssl_certfile
        if self.ssl_keyfile:
            options["client_key"] = self.ssl_keyfile
        if self.policy is not None:
            options["policy"] = self.policy
        options.update(self.extra_options)
        return options

    # ------------------------------------------------------------------ connection

    def open(self) -> bool | None:
        """Start a one-connection :class:`~smtp_guard.mailer.SyncMailer` for the messages to
        come (it connects on the first message). True if newly opened, False if already open,
        None if it failed silently -- as Django's backend."""
        if self.connection is not None:
            return False
        try:
            self.connection = SyncMailer(**self.send_options(), pool_size=1, pipelining=False)
        except SMTPGuardError as error:
            logger.warning("could not open the SMTP connection: %s", error)
            if not self.fail_silently:
                raise
            return None
        return True

    def close(self) -> None:
        """Close the connection, if open (QUIT)."""
        mailer, self.connection = self.connection, None
        if mailer is None:
            return
        try:
            mailer.close()
        except SMTPGuardError:
            if not self.fail_silently:
                raise

    # ------------------------------------------------------------------ sending

    def send_messages(self, email_messages: Sequence[EmailMessage]) -> int:
        """Send the messages; return how many were sent (delivered to at least one recipient)."""
        if not email_messages:
            return 0
        with self._lock:
            new_conn_created = self.open()
            if new_conn_created is None:
                return 0  # failed silently on open(), as Django
            sent = 0
            try:
                for message in email_messages:
                    if self._send(message):
                        sent += 1
            finally:
                if new_conn_created:
                    self.close()
        return sent

    def _send(self, email_message: EmailMessage) -> bool:
        if not email_message.recipients():
            return False
        encoding = email_message.encoding or settings.DEFAULT_CHARSET
        # As Django: a bad address raises ValueError here, even with fail_silently.
        from_email = sanitize_address(email_message.from_email, encoding)
        recipients = [sanitize_address(a, encoding) for a in email_message.recipients()]
        raw = email_message.message().as_bytes(linesep="\r\n")
        try:
            result = self._deliver(raw, from_email, recipients)
        except SMTPGuardError as error:
            email_message.smtp_guard_result = error
            logger.warning(
                "message to %d recipient(s) not sent: %s",
                len(email_message.recipients()),
                error,
                extra={"smtp_error_type": type(error).__name__},
            )
            if not self.fail_silently:
                raise
            # Sent when anyone got it (an earlier transaction, before the failure): counted,
            # so a caller who resends what was not counted does not send it twice.
            return bool(error.delivered)
        email_message.smtp_guard_result = result
        for rcpt, refusal in result.refused.items():
            logger.warning(
                "recipient <%s> refused: %s",
                rcpt,
                refusal,
                extra={
                    "smtp_recipients": [rcpt],
                    "smtp_error_type": type(refusal).__name__,
                    "smtp_error_code": getattr(refusal, "code", None),
                    "smtp_error_category": str(getattr(refusal, "category", "")) or None,
                    "smtp_error_permanent": refusal.permanent,
                },
            )
        return bool(result.delivered)

    def _deliver(self, raw: bytes, sender: str, recipients: list[str]) -> SendResult:
        if self.connection is not None:
            return self.connection.send(raw, sender=sender, recipients=recipients)
        return send_sync(raw, sender=sender, recipients=recipients, **self.send_options())


def _policy(value: RetryPolicy | dict[str, Any] | None) -> RetryPolicy | None:
    if value is None or isinstance(value, RetryPolicy):
        return value
    if isinstance(value, dict):
        return dataclasses.replace(RetryPolicy(), **value)
    raise TypeError(
        f"SMTP_GUARD_POLICY must be a RetryPolicy or a dict of its fields, got {value!r}"
    )
