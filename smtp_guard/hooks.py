"""Instrumentation: hooks called for every attempt, every scheduled retry and every final result.

A hook is any callable that takes one details object; it may be a plain function or an
``async def`` (its coroutine is awaited). The details are frozen dataclasses:

- :class:`AttemptDetails` -- one SMTP transaction finished (well or not);
- :class:`RetryDetails` -- a retry is scheduled after ``wait`` seconds;
- :class:`ResultDetails` -- the send call is over; the final per-recipient outcomes.

Each carries the message id, the recipients concerned, the attempt number, the seconds elapsed
since the send started, and the typed error (or None). Never the message body, never
credentials. Register hooks globally or for a block::

    from smtp_guard.hooks import HookDetails, RetryDetails, add_hook, using_hooks

    def on_event(details: HookDetails) -> None:
        if isinstance(details, RetryDetails):
            print("retrying", details.recipients, "in", details.wait)

    add_hook(on_event)               # for the whole process; remove_hook(on_event) to stop
    with using_hooks(on_event):      # or only inside this block
        ...

The ``smtp_guard`` logger always receives one record per event, with structured ``extra``
fields named ``smtp_*`` (see :data:`LOG_FIELDS`): INFO per attempt outcome, WARNING per retry
(with the wait and the reason), INFO/WARNING/ERROR for the final result. Configure it like any
stdlib logger. Prometheus metrics: :class:`smtp_guard.contrib.prometheus.PrometheusHook`.

A hook that raises is logged (``smtp_guard.hooks`` logger) and otherwise ignored: instrumentation
never changes whether or how mail is sent. For the same reason an ``async`` hook gets
:data:`HOOK_TIMEOUT` seconds per event: one still running then is cancelled, logged (WARNING)
and left to end on its own, while the send goes on. A plain function cannot be interrupted;
it blocks the event loop while it runs, so keep it quick (or make it ``async``).

Call sites (for the sending code; every call is cheap when nobody listens)::

    track = hooks.SendTracker(message, sender=sender, recipients=recipients, server="host:25")
    for attempt in ...:
        track.begin_attempt()                      # marks the start (for the duration)
        ...                                        # one transaction
        await track.attempt(
            attempt,                               # 1, 2, ...
            recipients=tried,                      # the recipients of this transaction
            delivered=accepted,                    # accepted after the final "."
            refused={rcpt: typed_error, ...},      # refused at RCPT in this transaction
            error=message_level_error_or_None,     # connection drop, 4xx at DATA, ...
        )
        await track.retry(attempt, wait=seconds, recipients=still_owed, error=reason)
    await track.result(
        attempts=n, delivered=all_accepted, refused={rcpt: final_error}, error=raised_or_None
    )

This module does not import aiosmtplib; it uses asyncio only to bound ``async`` hooks.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import re
import threading
import time
from collections.abc import Awaitable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from email.message import Message
from types import MappingProxyType
from typing import Any, Protocol, runtime_checkable

from smtp_guard._enums import StrEnum
from smtp_guard.errors import DeliveryUncertain, ReplyError, SMTPGuardError

__all__ = [
    "AttemptDetails",
    "Hook",
    "HookDetails",
    "Outcome",
    "ResultDetails",
    "RetryDetails",
    "SendTracker",
    "add_hook",
    "message_id_of",
    "registered_hooks",
    "remove_hook",
    "using_hooks",
]

#: Seconds an ``async`` hook may run per event before it is cancelled and ignored (read at
#: each call: assign ``smtp_guard.hooks.HOOK_TIMEOUT`` to change it).
HOOK_TIMEOUT: float = 2.0

logger = logging.getLogger("smtp_guard")
# A library's loggers stay silent until the application configures logging (no "last resort"
# output to stderr from a script that did not ask for it).
logger.addHandler(logging.NullHandler())
_hook_logger = logging.getLogger("smtp_guard.hooks")


class Outcome(StrEnum):
    """What happened to one recipient. Values are stable strings (safe to store or log)."""

    DELIVERED = "delivered"  #: the server accepted the message for this recipient
    DEFERRED = "deferred"  #: a transient failure: sending again later may work
    REFUSED = "refused"  #: a permanent failure: do not send the same thing again
    UNCERTAIN = "uncertain"  #: the final "." went out, no reply came: may have been delivered


def _freeze(mapping: Mapping[str, Any] | None) -> Mapping[str, Any]:
    return MappingProxyType(dict(mapping or {}))


@dataclass(frozen=True)
class _Common:
    message_id: str | None  #: the message's Message-ID header, if it has one
    sender: str | None
    recipients: tuple[str, ...]  #: the recipients this event is about
    attempt: int  #: 1 for the first attempt
    elapsed: float  #: seconds since the send started
    error: SMTPGuardError | None  #: the typed error, or None
    server: str | None  #: "host:port", when the caller said


@dataclass(frozen=True)
class AttemptDetails(_Common):
    """One transaction (attempt) ended. ``outcomes`` says what happened to each recipient."""

    duration: float = 0.0  #: seconds this attempt took
    outcomes: Mapping[str, Outcome] = field(default_factory=lambda: _freeze(None))
    #: recipient -> the typed error for every recipient not delivered in this attempt
    errors: Mapping[str, SMTPGuardError] = field(default_factory=lambda: _freeze(None))
    kind: str = field(default="attempt", init=False)


@dataclass(frozen=True)
class RetryDetails(_Common):
    """A retry of ``recipients`` is scheduled in ``wait`` seconds because of ``error``."""

    wait: float = 0.0
    kind: str = field(default="retry", init=False)


@dataclass(frozen=True)
class ResultDetails(_Common):
    """The send is over. ``attempt`` is the number of attempts made.

    ``outcomes`` holds every recipient: delivered, refused (permanent), deferred (transient;
    retrying later may work) or uncertain; ``errors`` the typed error of each one not delivered.
    """

    outcomes: Mapping[str, Outcome] = field(default_factory=lambda: _freeze(None))
    errors: Mapping[str, SMTPGuardError] = field(default_factory=lambda: _freeze(None))
    kind: str = field(default="result", init=False)

    @property
    def delivered(self) -> tuple[str, ...]:
        """The recipients the message was delivered to."""
        return tuple(r for r, o in self.outcomes.items() if o is Outcome.DELIVERED)


HookDetails = AttemptDetails | RetryDetails | ResultDetails


@runtime_checkable
class Hook(Protocol):
    """Called with each event's details. May return an awaitable (``async def``)."""

    def __call__(self, details: HookDetails, /) -> Awaitable[None] | None: ...


# --------------------------------------------------------------------------- registry

# Copy-on-write: readers (every send, any thread) take the tuple without a lock; writers
# replace it under the lock, so two threads registering at once both get in.
_global: tuple[Hook, ...] = ()
_registry_lock = threading.Lock()


def add_hook(hook: Hook) -> None:
    """Register ``hook`` for every send in this process (all threads and event loops)."""
    global _global  # noqa: PLW0603
    _check(hook)
    with _registry_lock:
        _global = (*_global, hook)


def remove_hook(hook: Hook) -> None:
    """Unregister ``hook`` (ValueError if it was not registered)."""
    global _global  # noqa: PLW0603
    with _registry_lock:
        items = list(_global)
        items.remove(hook)
        _global = tuple(items)


def registered_hooks() -> tuple[Hook, ...]:
    """The hooks registered now, in the order they are called."""
    return _global


@contextmanager
def using_hooks(*added: Hook) -> Iterator[None]:
    """Register ``added`` hooks for the duration of a ``with`` block.

    The registration is process-wide: sends in other threads or tasks during the block are
    reported to them too.
    """
    for hook in added:
        add_hook(hook)
    try:
        yield
    finally:
        for hook in added:
            remove_hook(hook)


def _check(hook: object) -> None:
    if not callable(hook):
        raise TypeError(f"a hook must be callable, got {type(hook).__name__}")


# --------------------------------------------------------------------------- message id

_MESSAGE_ID = re.compile(rb"^message-id:[ \t]*([^\r\n]*)", re.IGNORECASE | re.MULTILINE)
_HEADER_END = re.compile(rb"\r?\n\r?\n")


def message_id_of(message: Message | str | bytes | None) -> str | None:
    """The Message-ID of a message object or raw message (headers only are read), or None."""
    if message is None:
        return None
    if isinstance(message, Message):
        value = message.get("Message-ID")
        return str(value).strip() if value is not None else None
    raw = message.encode("utf-8", "replace") if isinstance(message, str) else bytes(message)
    end = _HEADER_END.search(raw)
    found = _MESSAGE_ID.search(raw, 0, end.start() if end else len(raw))
    if found is None:
        return None
    return found.group(1).decode("ascii", "replace").strip() or None


# --------------------------------------------------------------------------- dispatch


async def _dispatch(details: HookDetails, extra_hooks: Iterable[Hook] = ()) -> None:
    """Log ``details`` and call every registered hook (and ``extra_hooks``) with it."""
    _log(details)
    for hook in (*_global, *extra_hooks):
        try:
            returned = hook(details)
            if inspect.isawaitable(returned):
                await _bounded(hook, returned, details)
        except Exception:
            _hook_logger.exception("smtp_guard hook %r failed on a %s event", hook, details.kind)


#: Hooks cancelled on timeout, referenced until they end (the loop keeps only weak ones).
_overdue: set[asyncio.Future[Any]] = set()


async def _bounded(hook: Hook, awaitable: Awaitable[Any], details: HookDetails) -> None:
    """Await ``awaitable`` for at most HOOK_TIMEOUT seconds; past that, cancel and log it."""
    limit = HOOK_TIMEOUT
    task = asyncio.ensure_future(awaitable)
    try:
        await asyncio.wait({task}, timeout=limit)
    except asyncio.CancelledError:  # the send itself was cancelled: so is its hook
        task.cancel()
        raise
    if task.done():
        task.result()  # its exception, if any, is logged by the caller
        return
    # Not awaited after cancel(): a hook that ignores cancellation must not stall us either.
    task.cancel()
    _overdue.add(task)
    task.add_done_callback(_forget)
    _hook_logger.warning(
        "smtp_guard hook %r did not finish within %gs (%s event); cancelled and ignored",
        hook,
        limit,
        details.kind,
    )


def _forget(task: asyncio.Future[Any]) -> None:
    _overdue.discard(task)
    if not task.cancelled() and task.exception() is not None:  # ended with an error anyway
        _hook_logger.error("smtp_guard hook failed after its timeout", exc_info=task.exception())


class SendTracker:
    """Builds the details of one send's events and dispatches them (see the module docstring).

    Nothing is built when nobody listens (no hooks and the logger disabled for the level).
    """

    __slots__ = (
        "_attempt_started",
        "_hooks",
        "_message",
        "_message_id",
        "_started",
        "recipients",
        "sender",
        "server",
    )

    def __init__(
        self,
        message: Message | str | bytes | None = None,
        *,
        sender: str | None = None,
        recipients: Iterable[str] = (),
        server: str | None = None,
        hooks: Iterable[Hook] = (),
    ) -> None:
        self._message = message
        self._message_id: str | None = None
        self.sender = sender
        self.recipients: tuple[str, ...] = tuple(recipients)
        self.server = server
        self._hooks: tuple[Hook, ...] = tuple(hooks)
        for hook in self._hooks:
            _check(hook)
        self._started = time.monotonic()
        self._attempt_started = self._started

    @property
    def message_id(self) -> str | None:
        """The tracked message's Message-ID (read once, on first use)."""
        if self._message is not None:
            self._message_id = message_id_of(self._message)
            self._message = None
        return self._message_id

    def listening(self, level: int = logging.INFO) -> bool:
        """Whether anyone receives this send's events at ``level`` (a hook, or the logger
        enabled for it): callers skip building an event's arguments when not."""
        return bool(_global or self._hooks) or logger.isEnabledFor(level)

    def begin_attempt(self) -> None:
        """Mark the start of an attempt (its ``duration`` is measured from here)."""
        self._attempt_started = time.monotonic()

    async def attempt(
        self,
        attempt: int,
        *,
        recipients: Iterable[str] | None = None,
        delivered: Iterable[str] = (),
        refused: Mapping[str, SMTPGuardError] | None = None,
        error: SMTPGuardError | None = None,
    ) -> None:
        """Report the end of attempt number ``attempt`` (see the module docstring)."""
        if not self.listening(logging.INFO):
            return
        now = time.monotonic()
        tried = self.recipients if recipients is None else tuple(recipients)
        outcomes, errors = _outcomes(tried, delivered, refused, error)
        await _dispatch(
            AttemptDetails(
                message_id=self.message_id,
                sender=self.sender,
                recipients=tried,
                attempt=attempt,
                elapsed=now - self._started,
                error=error,
                server=self.server,
                duration=now - self._attempt_started,
                outcomes=outcomes,
                errors=errors,
            ),
            self._hooks,
        )

    async def retry(
        self,
        attempt: int,
        *,
        wait: float,
        recipients: Iterable[str] | None = None,
        error: SMTPGuardError | None = None,
    ) -> None:
        """Report that attempt ``attempt + 1`` will start in ``wait`` seconds."""
        if not self.listening(logging.WARNING):
            return
        await _dispatch(
            RetryDetails(
                message_id=self.message_id,
                sender=self.sender,
                recipients=self.recipients if recipients is None else tuple(recipients),
                attempt=attempt,
                elapsed=time.monotonic() - self._started,
                error=error,
                server=self.server,
                wait=wait,
            ),
            self._hooks,
        )

    async def result(
        self,
        *,
        attempts: int,
        delivered: Iterable[str] = (),
        refused: Mapping[str, SMTPGuardError] | None = None,
        error: SMTPGuardError | None = None,
        recipients: Iterable[str] | None = None,
    ) -> None:
        """Report the end of the send call: ``error`` is what it raised, if anything."""
        # A failed or partial result is logged at WARNING or ERROR: build it whenever that
        # level is on, even where INFO is off.
        quiet = error is None and not refused
        if not self.listening(logging.INFO if quiet else logging.WARNING):
            return
        everyone = self.recipients if recipients is None else tuple(recipients)
        outcomes, errors = _outcomes(everyone, delivered, refused, error)
        await _dispatch(
            ResultDetails(
                message_id=self.message_id,
                sender=self.sender,
                recipients=everyone,
                attempt=attempts,
                elapsed=time.monotonic() - self._started,
                error=error,
                server=self.server,
                outcomes=outcomes,
                errors=errors,
            ),
            self._hooks,
        )


def _outcome_of(error: SMTPGuardError) -> Outcome:
    if isinstance(error, DeliveryUncertain):
        return Outcome.UNCERTAIN
    return Outcome.REFUSED if error.permanent else Outcome.DEFERRED


def _outcomes(
    recipients: tuple[str, ...],
    delivered: Iterable[str],
    refused: Mapping[str, SMTPGuardError] | None,
    error: SMTPGuardError | None,
) -> tuple[Mapping[str, Outcome], Mapping[str, SMTPGuardError]]:
    """Per recipient: delivered, or the outcome of its own error, or of the message's error."""
    done = set(delivered)
    refused = refused or {}
    outcomes: dict[str, Outcome] = {}
    errors: dict[str, SMTPGuardError] = {}
    for rcpt in (*recipients, *(r for r in refused if r not in recipients)):
        if rcpt in outcomes:
            continue
        if rcpt in done:
            outcomes[rcpt] = Outcome.DELIVERED
            continue
        own = refused.get(rcpt)
        if own is None and isinstance(error, SMTPGuardError):
            own = _own_error(error, rcpt)
        if own is not None:
            errors[rcpt] = own
            outcomes[rcpt] = _outcome_of(own)
        else:
            outcomes[rcpt] = Outcome.DEFERRED
    for rcpt in done - outcomes.keys():
        outcomes[rcpt] = Outcome.DELIVERED
    return MappingProxyType(outcomes), MappingProxyType(errors)


def _own_error(error: SMTPGuardError, recipient: str) -> SMTPGuardError:
    """The error for ``recipient``: from a RecipientsRefused's map when it names them."""
    refused = getattr(error, "refused", None)
    if isinstance(refused, Mapping):
        own = refused.get(recipient)
        if isinstance(own, SMTPGuardError):
            return own
    return error


# --------------------------------------------------------------------------- logging

#: The ``extra`` fields of the ``smtp_guard`` logger's records (absent ones are None).
LOG_FIELDS = (
    "smtp_event",  # "attempt" | "retry" | "result"
    "smtp_message_id",
    "smtp_sender",
    "smtp_recipients",  # list of addresses this event is about
    "smtp_attempt",
    "smtp_elapsed",  # seconds since the send started
    "smtp_duration",  # attempt only: seconds the attempt took
    "smtp_wait",  # retry only: seconds until the next attempt
    "smtp_outcomes",  # attempt/result: {recipient: "delivered" | "deferred" | ...}
    "smtp_error_type",  # class name of the typed error
    "smtp_error_code",  # SMTP reply code, for reply errors
    "smtp_error_enhanced",
    "smtp_error_category",
    "smtp_error_permanent",
    "smtp_server",
)


def _error_fields(error: SMTPGuardError | None) -> dict[str, Any]:
    if error is None:
        return {
            "smtp_error_type": None,
            "smtp_error_code": None,
            "smtp_error_enhanced": None,
            "smtp_error_category": None,
            "smtp_error_permanent": None,
        }
    reply = error if isinstance(error, ReplyError) else None
    return {
        "smtp_error_type": type(error).__name__,
        "smtp_error_code": reply.code if reply else None,
        "smtp_error_enhanced": reply.enhanced if reply else None,
        "smtp_error_category": str(reply.category) if reply else None,
        "smtp_error_permanent": error.permanent,
    }


def _log(details: HookDetails) -> None:
    if isinstance(details, RetryDetails):
        level = logging.WARNING
    elif isinstance(details, ResultDetails):
        level = _result_level(details)
    else:
        level = logging.INFO
    if not logger.isEnabledFor(level):
        return
    extra: dict[str, Any] = {
        "smtp_event": details.kind,
        "smtp_message_id": details.message_id,
        "smtp_sender": details.sender,
        "smtp_recipients": list(details.recipients),
        "smtp_attempt": details.attempt,
        "smtp_elapsed": round(details.elapsed, 6),
        "smtp_duration": None,
        "smtp_wait": None,
        "smtp_outcomes": None,
        "smtp_server": details.server,
        **_error_fields(details.error),
    }
    ident = details.message_id or "(no Message-ID)"
    if isinstance(details, RetryDetails):
        extra["smtp_wait"] = details.wait
        logger.warning(
            "retrying %s to %d recipient(s) in %.1fs after attempt %d: %s",
            ident,
            len(details.recipients),
            details.wait,
            details.attempt,
            details.error if details.error is not None else "no reason given",
            extra=extra,
        )
        return
    extra["smtp_outcomes"] = {r: str(o) for r, o in details.outcomes.items()}
    summary = _summary(details.outcomes)
    if isinstance(details, AttemptDetails):
        extra["smtp_duration"] = round(details.duration, 6)
        logger.info(
            "attempt %d for %s: %s%s",
            details.attempt,
            ident,
            summary,
            _reason(details.error),
            extra=extra,
        )
        return
    logger.log(
        level,
        "sent %s after %d attempt(s): %s%s",
        ident,
        details.attempt,
        summary,
        _reason(details.error),
        extra=extra,
    )


def _result_level(details: ResultDetails) -> int:
    outcomes = set(details.outcomes.values())
    if details.error is None and outcomes <= {Outcome.DELIVERED}:
        return logging.INFO
    if Outcome.DELIVERED in outcomes:
        return logging.WARNING
    return logging.ERROR


def _summary(outcomes: Mapping[str, Outcome]) -> str:
    counts: dict[str, int] = {}
    for outcome in outcomes.values():
        counts[outcome.value] = counts.get(outcome.value, 0) + 1
    return ", ".join(f"{n} {name}" for name, n in counts.items()) or "no recipients"


def _reason(error: SMTPGuardError | None) -> str:
    return "" if error is None else f" ({type(error).__name__}: {error})"
