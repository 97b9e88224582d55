"""What :func:`smtp_guard.send` returns: aiosmtplib's ``(errors, response)`` and more."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from types import MappingProxyType
from typing import Any

from aiosmtplib import SMTPResponse

from smtp_guard.errors import RecipientsRefused, ReplyError, SMTPGuardError

__all__ = ["SendResult"]


class SendResult(tuple[dict[str, SMTPResponse], str]):
    """The outcome of a send. Unpacks exactly like ``aiosmtplib.send``'s return value::

        errors, response = await smtp_guard.send(...)

    ``errors`` maps each refused recipient to ``SMTPResponse(code, message)``; ``response`` is
    the server's reply to the end of the message. Also:

    - ``delivered``: the recipients the server accepted the message for;
    - ``refused``: recipient -> typed :class:`~smtp_guard.errors.ReplyError` (permanent ones,
      and transient ones still refused when the retries ran out);
    - ``attempts``: how many attempts were made; ``history``: their errors, oldest first;
    - :meth:`raise_for_refused`: raise one error listing every refused recipient.

    Recipients are the strings the caller passed (or found in the message's headers).
    """

    _delivered: tuple[str, ...]
    _refused: Mapping[str, ReplyError]
    _attempts: int
    _history: tuple[SMTPGuardError, ...]

    def __new__(
        cls,
        response: str,
        *,
        delivered: Iterable[str] = (),
        refused: Mapping[str, ReplyError] | None = None,
        attempts: int = 1,
        history: Iterable[SMTPGuardError] = (),
    ) -> SendResult:
        refused = dict(refused or {})
        errors = {r: SMTPResponse(e.code, e.message) for r, e in refused.items()}
        made = super().__new__(cls, (errors, response))
        made.__dict__.update(
            _delivered=tuple(delivered),
            _refused=MappingProxyType(refused),
            _attempts=attempts,
            _history=tuple(history),
        )
        return made

    @property
    def errors(self) -> dict[str, SMTPResponse]:
        """Refused recipient -> ``SMTPResponse(code, message)``, as aiosmtplib returns it."""
        return self[0]

    @property
    def response(self) -> str:
        """The server's reply text to the end of the message (often holds the queue id)."""
        return self[1]

    @property
    def delivered(self) -> tuple[str, ...]:
        """The recipients the server accepted the message for, in the caller's order."""
        return self._delivered

    @property
    def refused(self) -> Mapping[str, ReplyError]:
        """Each refused recipient's typed error (read-only mapping)."""
        return self._refused

    @property
    def attempts(self) -> int:
        """How many attempts the send made (1 if it worked at once)."""
        return self._attempts

    @property
    def history(self) -> tuple[SMTPGuardError, ...]:
        """The errors of the attempts that failed, oldest first."""
        return self._history

    @property
    def ok(self) -> bool:
        """True when no recipient was refused."""
        return not self._refused

    def raise_for_refused(self) -> None:
        """Raise :class:`RecipientsRefused` listing every refused recipient, if any was."""
        if self._refused:
            raise RecipientsRefused(
                dict(self._refused),
                delivered=self._delivered,
                attempts=self._attempts,
                history=self._history,
            )

    def __repr__(self) -> str:
        return (
            f"SendResult(delivered={list(self._delivered)!r}, "
            f"refused={ {r: e.code for r, e in self._refused.items()}!r}, "
            f"attempts={self._attempts}, response={self[1]!r})"
        )

    def __reduce__(self) -> tuple[Any, ...]:
        return (
            _restore,
            (self[1], self._delivered, dict(self._refused), self._attempts, self._history),
        )


def _restore(
    response: str,
    delivered: tuple[str, ...],
    refused: dict[str, ReplyError],
    attempts: int,
    history: tuple[SMTPGuardError, ...],
) -> SendResult:
    return SendResult(
        response, delivered=delivered, refused=refused, attempts=attempts, history=history
    )
