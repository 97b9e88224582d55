"""The retry loop: attempts, per-recipient bookkeeping, backoff, the final typed error.

:func:`deliver` is parameterised by how a connection is obtained and given back
(``acquire`` / ``release``), so :func:`smtp_guard.send` (one connection per attempt) and the
pooled ``Mailer`` share it. tenacity does the looping and stays inside: what escapes is the
last typed error, with ``attempts`` and ``history`` set, never a ``RetryError``.

The rules that protect the user's mail:

- Recipients accepted in a transaction that completed are done; only recipients still owed
  (deferred with a 4xx, or whose transaction failed before the final ".") go in the next one.
- A connection lost after the final "." is :class:`DeliveryUncertain`: not retried unless the
  policy says ``retry_uncertain=True``.
- Partial delivery is never silent: when the call ends with an error after some recipients
  got the message (in an earlier attempt or transaction), the error's ``delivered`` names them.
- "Too many recipients": the rest go in further transactions on the same connection at once.
- A wait (the server's hint or the backoff) that does not fit the deadline: stop now and raise
  the error with ``retry_after`` set. Within an attempt, each network operation is bounded by
  ``min(timeout, time left to the deadline)`` (:mod:`._deadline`), a hanging connect too.
- The deadline never makes a healthy send uncertain: waiting for a pooled connection or the
  rate limit ends by it (a retry-safe :class:`SMTPTimeout`, nothing sent), and a message is
  not started with less time left than its reply may need (the connection's timeout, at most
  half of what the attempt started with).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Iterable
from contextvars import Token
from dataclasses import dataclass, field
from functools import cached_property

from tenacity import AsyncRetrying, RetryCallState, stop_never

from smtp_guard import hooks
from smtp_guard.client._connect import Connection
from smtp_guard.client._deadline import reset_deadline, set_deadline, time_left
from smtp_guard.client._transaction import (
    TransactionResult,
    keep_for_reply,
    run_transaction,
    stop_keeping,
)
from smtp_guard.client._validate import Envelope
from smtp_guard.client.result import SendResult
from smtp_guard.errors import (
    DeliveryUncertain,
    RecipientsRefused,
    ReplyError,
    SMTPGuardError,
    SMTPTimeout,
)
from smtp_guard.policy import RetryDecision, RetryPolicy, is_testing

__all__ = ["DEFAULT_POLICY", "Acquire", "Release", "Transaction", "deliver"]

#: ``RetryPolicy()``, built once for every call that gives none (an immutable value; building
#: one, with its checks, on every call cost ~1.7 us of the happy path).
DEFAULT_POLICY = RetryPolicy()

#: Gives a ready connection (connected, EHLO'd, TLS, logged in) or raises a typed error.
Acquire = Callable[[], Awaitable[Connection]]
#: Takes a connection back after an attempt; it may be closed (``conn.is_connected``).
Release = Callable[[Connection], Awaitable[None]]
#: Runs one transaction: ``(conn, envelope, recipients)``, like :func:`run_transaction` (the
#: default); a pipelined one (RFC 2920) can be plugged in.
Transaction = Callable[[Connection, Envelope, tuple[str, ...]], Awaitable[TransactionResult]]


@dataclass
class _State:
    envelope: Envelope
    policy: RetryPolicy
    tracker: hooks.SendTracker
    owed: list[str]
    delivered: list[str] = field(default_factory=list)
    refused: dict[str, ReplyError] = field(default_factory=dict)  # permanent
    deferred: dict[str, ReplyError] = field(default_factory=dict)  # last transient
    history: list[SMTPGuardError] = field(default_factory=list)
    response: str = ""
    attempt: int = 0
    started: float = field(default_factory=time.monotonic)
    skipped: float = 0.0  # seconds of waits skipped in testing mode, counted as elapsed
    decision: RetryDecision | None = None

    def elapsed(self) -> float:
        return time.monotonic() - self.started + self.skipped

    def apply(self, txn: TransactionResult) -> None:
        for rcpt, error in txn.refused.items():
            if error.permanent:
                self.refused[rcpt] = error
                self.deferred.pop(rcpt, None)
            else:
                self.deferred[rcpt] = error
        for rcpt in txn.delivered:
            self.delivered.append(rcpt)
            self.deferred.pop(rcpt, None)
        if txn.response is not None:
            self.response = txn.response.message
        gone = set(txn.delivered) | {r for r, e in txn.refused.items() if e.permanent}
        self.owed = [r for r in self.owed if r not in gone]

    def keyed(self, errors: dict[str, ReplyError]) -> dict[str, ReplyError]:
        given = self.envelope.given
        return {given(r): e for r, e in errors.items()}

    @cached_property
    def order(self) -> dict[str, int]:
        """Each recipient's place in the caller's list (results and errors keep that order)."""
        return {r: i for i, r in enumerate(self.envelope.recipients)}

    def in_order(self, rcpts: Iterable[str]) -> list[str]:
        """``rcpts`` in the order the caller gave them."""
        order = self.order
        return sorted(rcpts, key=lambda r: order.get(r, 0))

    def names(self, rcpts: Iterable[str]) -> list[str]:
        given = self.envelope.given
        return [given(r) for r in rcpts]


async def deliver(
    envelope: Envelope,
    *,
    acquire: Acquire,
    release: Release,
    policy: RetryPolicy | None = None,
    tracker: hooks.SendTracker | None = None,
    transaction: Transaction | None = None,
) -> SendResult:
    """Deliver ``envelope`` to all its recipients, retrying what is safe under ``policy``.

    Returns a :class:`SendResult` when at least one recipient got the message (refused ones
    are in it). Raises :class:`RecipientsRefused` when every recipient was refused, else the
    last attempt's typed error (``attempts``, ``history``, ``delivered`` -- who already got the
    message -- and, when the wait did not fit the deadline, ``retry_after`` set).
    ``tracker`` reports attempts/retries/result to the hooks; ``transaction`` replaces
    :func:`run_transaction` (same contract).
    """
    policy = policy or DEFAULT_POLICY
    if tracker is None:
        tracker = hooks.SendTracker(
            envelope.message, sender=envelope.sender, recipients=envelope.original.values()
        )
    state = _State(envelope, policy, tracker, owed=list(envelope.recipients))

    transact: Transaction = transaction or run_transaction

    try:
        try:
            # The first attempt runs without tenacity (nor the wrapper it needs): the happy
            # path pays nothing for it.
            result = await _attempt(state, acquire, release, transact)
        except SMTPGuardError as first:
            state.decision = policy.decide(state.attempt, state.elapsed(), first)
            if not state.decision.retry:
                raise
            result = await _retry(state, acquire, release, transact, state.decision.wait)
    except SMTPGuardError as final:
        outcome = _finish(state, final)
        if isinstance(outcome, SendResult):
            await _report(state, None)
            return outcome
        await _report(state, outcome)
        raise outcome from None
    await _report(state, None)
    return result


async def _retry(
    state: _State, acquire: Acquire, release: Release, transact: Transaction, first_wait: float
) -> SendResult:
    """The attempts after a first one that failed and is to be retried: wait ``first_wait``,
    then let tenacity loop. Its callbacks are built only here, off the happy path."""
    policy, tracker = state.policy, state.tracker

    async def attempt() -> SendResult:
        return await _attempt(state, acquire, release, transact)

    def should_retry(retry_state: RetryCallState) -> bool:
        outcome = retry_state.outcome
        if outcome is None or not outcome.failed:
            return False
        error = outcome.exception()
        if not isinstance(error, SMTPGuardError):
            return False  # a bug, not an SMTP event: let it through untouched
        state.decision = policy.decide(state.attempt, state.elapsed(), error)
        return state.decision.retry

    def wait(_: RetryCallState) -> float:
        return state.decision.wait if state.decision is not None else 0.0

    async def sleep(seconds: float) -> None:
        await tracker.retry(
            state.attempt,
            wait=seconds,
            recipients=state.names(state.owed),
            error=state.history[-1] if state.history else None,
        )
        if is_testing():
            state.skipped += seconds
        else:
            await asyncio.sleep(seconds)

    await sleep(first_wait)
    retrying = AsyncRetrying(
        retry=should_retry, wait=wait, sleep=sleep, stop=stop_never, reraise=True
    )
    return await retrying(attempt)


async def _attempt(
    state: _State, acquire: Acquire, release: Release, transact: Transaction
) -> SendResult:
    # Every network operation of the attempt ends by the deadline: min(timeout, time left).
    # (A token rather than a with-block: this is the happy path.)
    token = set_deadline(state.policy.deadline - state.elapsed())
    kept = _keep_for_reply()
    try:
        state.attempt += 1
        number = state.attempt
        tracker = state.tracker
        tracker.begin_attempt()
        tried = tuple(state.owed)
        error: SMTPGuardError | None = None
        delivered: list[str] = []
        refused: dict[str, ReplyError] = {}
        try:
            conn = await acquire()
        except SMTPGuardError as exc:
            error = exc
        else:
            try:
                todo = tried
                while todo:
                    txn = await transact(conn, state.envelope, todo)
                    state.apply(txn)
                    delivered += txn.delivered
                    refused.update(txn.refused)
                    error = txn.error
                    if error is not None or not txn.delivered:
                        break
                    todo = txn.not_attempted  # "too many recipients": the rest, at once
            except SMTPGuardError as exc:  # refused before MAIL (SIZE, SMTPUTF8)
                error = exc
            except BaseException:  # cancelled, or a bug: no polite QUIT, just close
                conn.abort()
                await release(conn)
                raise
            await release(conn)
        if error is None and state.owed:
            owed_errors = {r: state.deferred[r] for r in state.owed if r in state.deferred}
            error = RecipientsRefused(state.keyed(owed_errors), delivered=state.names(delivered))
        if error is None and not state.delivered:
            error = RecipientsRefused(state.keyed(state.refused))
        if tracker.listening():  # (INFO, the level of an attempt's event)
            await tracker.attempt(
                number,
                recipients=state.names(tried),
                delivered=state.names(delivered),
                refused=state.keyed(refused),
                error=error,
            )
        if error is not None:
            state.history.append(error)
            raise error
        return _result(state)
    finally:
        stop_keeping(kept)
        reset_deadline(token)


def _keep_for_reply() -> Token[float]:
    """Keep half of what the attempt starts with for the reply to the final "." (or the
    connection's timeout, if less): time eaten by queueing for a pooled connection or the rate
    limit then fails the send before any of the message is written (retry-safe), never by
    cutting that reply short (a :class:`DeliveryUncertain` for a healthy server)."""
    start = time_left()
    return keep_for_reply(0.0 if start is None else start / 2)


def _result(state: _State, extra: dict[str, ReplyError] | None = None) -> SendResult:
    refused = {**state.refused, **extra} if extra else state.refused
    delivered: Iterable[str] = state.delivered
    if refused or len(state.delivered) > 1:  # else nothing to put in the caller's order
        delivered = state.in_order(delivered)
        order = state.order
        refused = dict(sorted(refused.items(), key=lambda kv: order.get(kv[0], 0)))
    return SendResult(
        state.response,
        delivered=state.names(delivered),
        refused=state.keyed(refused),  # (a new dict: state.refused is never handed out)
        attempts=state.attempt,
        history=state.history,  # every failed attempt (the last one too, if it failed)
    )


def _finish(state: _State, final: SMTPGuardError) -> SMTPGuardError | SendResult:
    """After the last attempt failed: the result to return, or the error to raise."""
    decision = state.decision
    if decision is not None and decision.retry_after is not None and final.retry_after is None:
        final.retry_after = decision.retry_after
    history = state.history[:-1] if state.history and state.history[-1] is final else []
    if state.delivered and not isinstance(final, DeliveryUncertain):
        # Some recipients got it: report the others as refused, with their own errors.
        extra: dict[str, ReplyError] = {}
        for rcpt in state.owed:
            own = state.deferred.get(rcpt) or (final if isinstance(final, ReplyError) else None)
            if own is None:
                break
            extra[rcpt] = own
        else:
            return _result(state, extra)
    if isinstance(final, RecipientsRefused):
        every = {
            **state.refused,
            **{r: state.deferred[r] for r in state.owed if r in state.deferred},
        }
        final = RecipientsRefused(
            state.keyed(every),
            delivered=state.names(state.in_order(state.delivered)),
            attempts=state.attempt,
            history=history,
        )
        if decision is not None and decision.retry_after is not None and final.retry_after is None:
            final.retry_after = decision.retry_after
        return final
    if isinstance(final, DeliveryUncertain):
        final.recipients = tuple(state.names(final.recipients))
    if (
        isinstance(final, SMTPTimeout)
        and final.hint == type(final).default_hint
        and state.elapsed() >= state.policy.deadline
    ):
        final.hint = (
            f"The call's deadline ({state.policy.deadline:g}s) ran out while waiting for the "
            "server; retry later, or raise RetryPolicy.deadline."
        )
    final.attempts = state.attempt
    final.history = tuple(history)
    # Partial delivery is never silent: whoever already got the message is on the error.
    final.delivered = tuple(state.names(state.in_order(state.delivered)))
    return final


async def _report(state: _State, error: SMTPGuardError | None) -> None:
    quiet = error is None and not state.refused and not state.deferred  # an INFO event
    if quiet and not state.tracker.listening():
        return
    undelivered = {**state.refused, **{r: e for r, e in state.deferred.items() if r in state.owed}}
    await state.tracker.result(
        attempts=state.attempt,
        delivered=state.names(state.delivered),
        refused=state.keyed(undelivered),
        error=error,
        recipients=state.names(state.envelope.recipients),
    )
