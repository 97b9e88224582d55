"""Guarded sending: :func:`send` (drop-in for ``aiosmtplib.send``) and :func:`send_sync`.

The pieces, for code in this package that builds on them (the pooled ``Mailer``); import
them from their modules (``from smtp_guard.client._connect import open_connection``):

- :func:`open_connection` (``_connect``): a ready :class:`Connection` from
  :class:`ConnectParams`: connect, EHLO, the TLS rules, AUTH; errors typed.
- :func:`run_transaction` (``_transaction``): one MAIL/RCPT/DATA transaction on an open
  connection, returning a :class:`TransactionResult` with per-recipient outcomes.
- :func:`deliver` (``_deliver``): the retry loop, given ``acquire``/``release`` callables.
- :func:`make_envelope` (``_validate``): every input check, before any byte is sent.
- :func:`map_error` (``_mapping``): the one place aiosmtplib's exceptions become ours.
"""

from __future__ import annotations

import asyncio
import dataclasses
import email.message
import functools
import inspect
import socket
import ssl
import sys
from collections.abc import Callable, Coroutine, Sequence
from typing import Any, ParamSpec, TypeVar

from aiosmtplib.smtp import DEFAULT_TIMEOUT
from aiosmtplib.typing import SMTPTokenGenerator, SocketPathType

from smtp_guard import hooks
from smtp_guard.client._connect import Connection, ConnectParams, open_connection
from smtp_guard.client._deliver import DEFAULT_POLICY, deliver
from smtp_guard.client._validate import make_envelope
from smtp_guard.client.result import SendResult
from smtp_guard.errors import InvalidInput
from smtp_guard.policy import RetryPolicy

P = ParamSpec("P")
R = TypeVar("R")

__all__ = ["SendResult", "send", "send_sync"]


async def send(
    message: email.message.EmailMessage | email.message.Message | str | bytes,
    /,
    *,
    sender: str | None = None,
    recipients: str | Sequence[str] | None = None,
    mail_options: Sequence[str] | None = None,
    rcpt_options: Sequence[str] | None = None,
    hostname: str | None = "localhost",
    port: int | None = None,
    username: str | bytes | None = None,
    password: str | bytes | None = None,
    oauth_token_generator: SMTPTokenGenerator | None = None,
    local_hostname: str | None = None,
    source_address: tuple[str, int] | None = None,
    timeout: float | None = DEFAULT_TIMEOUT,
    use_tls: bool = False,
    start_tls: bool | None = None,
    validate_certs: bool = True,
    client_cert: str | None = None,
    client_key: str | None = None,
    tls_context: ssl.SSLContext | None = None,
    cert_bundle: str | None = None,
    socket_path: SocketPathType | None = None,
    sock: socket.socket | None = None,
    policy: RetryPolicy | None = None,
    allow_insecure_auth: bool = False,
) -> SendResult:
    """Send a message like ``aiosmtplib.send``, with typed errors and safe retries.

    Every argument of ``aiosmtplib.send`` has the same meaning and default, except that
    credentials are never sent unencrypted: with a username, STARTTLS is required (unless
    ``use_tls``), and a connection without TLS is refused with ``InsecureConnection`` before
    AUTH unless ``allow_insecure_auth=True``. ``policy`` is the :class:`RetryPolicy`
    (default ``RetryPolicy()``). With ``sock`` (a socket that can be used once) nothing that
    needs a new connection is retried.

    Returns a :class:`SendResult`, which unpacks as ``(errors, response)``. Raises
    :class:`~smtp_guard.errors.InvalidInput` (nothing sent) for bad arguments,
    :class:`~smtp_guard.errors.RecipientsRefused` when every recipient was refused, else the
    last attempt's typed error. A raised error's ``delivered`` names the recipients that got
    the message before it happened: never send to them again.

    ``policy.deadline`` bounds the whole call: each network operation waits at most
    ``min(timeout, time left)``. A socket given as ``sock`` serves this one call and is closed
    with its connection (a used or unconnected one is ``InvalidInput``).
    """
    if policy is None:
        policy = DEFAULT_POLICY
    elif not isinstance(policy, RetryPolicy):
        raise InvalidInput(f"policy must be a RetryPolicy, got {type(policy).__name__}")
    envelope = make_envelope(message, sender, recipients, mail_options, rcpt_options)
    params = ConnectParams.of(locals())
    if sock is not None and policy.attempts > 1:
        policy = dataclasses.replace(policy, attempts=1)

    # Plain callables, not async wrappers: each wrapper was one more coroutine to create and
    # one more frame to resume at every wake-up of the send.
    acquire = functools.partial(open_connection, params)
    release = Connection.close
    tracker = hooks.SendTracker(
        message,
        sender=envelope.sender,
        recipients=list(envelope.original.values()),
        server=params.server,
    )
    return await deliver(envelope, acquire=acquire, release=release, policy=policy, tracker=tracker)


def _synchronous(func: Callable[P, Coroutine[Any, Any, R]]) -> Callable[P, R]:
    def run(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            pass
        else:
            raise RuntimeError(
                f"smtp_guard.{func.__name__}_sync() was called from inside a running event "
                f"loop; use `await smtp_guard.{func.__name__}(...)` there instead"
            )
        return _run_in_own_loop(func(*args, **kwargs))

    run.__signature__ = inspect.signature(func)  # type: ignore[attr-defined]  # for help()
    return run


def _run_in_own_loop(coro: Coroutine[Any, Any, R]) -> R:
    """Run ``coro`` in a new event loop, closed afterwards, like :func:`asyncio.run`.

    Unlike it, the calling thread's current event loop is left alone: ``asyncio.run`` sets
    it to None when done, which breaks code that set a loop for its thread and calls
    ``run_until_complete`` on it between our calls (older sync-over-async code does).
    """
    if sys.version_info >= (3, 11):
        # With a loop_factory the Runner never touches the thread's current loop; it still
        # turns Ctrl-C into a cancellation of the send (the connection is closed).
        with asyncio.Runner(loop_factory=asyncio.new_event_loop) as runner:
            return runner.run(coro)
    return _run_in_own_loop_310(coro)  # pragma: no cover (Python 3.10)


def _run_in_own_loop_310(coro: Coroutine[Any, Any, R]) -> R:
    """What ``asyncio.run`` does on Python 3.10, without ``set_event_loop``."""
    loop = asyncio.new_event_loop()
    try:
        return loop.run_until_complete(coro)
    finally:
        try:
            pending = asyncio.all_tasks(loop)
            for task in pending:
                task.cancel()
            if pending:
                loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.run_until_complete(loop.shutdown_default_executor())
        finally:
            loop.close()


send_sync = _synchronous(send)
send_sync.__name__ = send_sync.__qualname__ = "send_sync"
send_sync.__doc__ = """:func:`send` for synchronous code (scripts, Django views): same arguments.

Runs its own event loop, in any thread, and leaves the thread's current event loop (if one
was set) as it was. Called from inside a running event loop it raises ``RuntimeError`` saying
to await :func:`send` instead.
"""
