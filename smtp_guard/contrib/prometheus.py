"""Prometheus metrics for every send, as a hook (needs ``prometheus_client``)::

    from smtp_guard.contrib.prometheus import PrometheusHook
    from smtp_guard.hooks import add_hook

    add_hook(PrometheusHook())          # metrics in prometheus_client's default registry

Metrics (prefix ``smtp_guard_``, changeable with ``namespace``):

=====================================  =============================================  ==========
``attempts_total{outcome}``            transactions: ``ok``, ``partial``, ``failed``   counter
``retries_total{category}``            retries scheduled, by the reason's category     counter
``recipients_total{outcome,category}`` final outcome per recipient: ``delivered``,     counter
                                       ``deferred``, ``refused``, ``uncertain``
                                       (category empty for delivered)
``messages_total{result}``             send calls: ``sent``, ``partial``, ``failed``   counter
``attempts_per_message``               attempts one send call made                     histogram
``send_duration_seconds``              a whole send call, retries included             histogram
``attempt_duration_seconds``           one transaction                                 histogram
=====================================  =============================================  ==========

A category is the reply's :class:`~smtp_guard.Category` value (``greylisted``,
``mailbox_full``, ...) or, for errors that are not replies, the error's name in snake case
(``server_disconnected``, ``delivery_uncertain``, ``read_timeout``); recipients refused for
one reason count under that reason. Labels never hold
addresses, so the number of series stays small.
"""

from __future__ import annotations

import re
from typing import Any

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Histogram

from smtp_guard.errors import RecipientsRefused, ReplyError, SMTPGuardError
from smtp_guard.hooks import AttemptDetails, HookDetails, Outcome, ResultDetails, RetryDetails

__all__ = ["PrometheusHook", "category_label"]

_SNAKE = re.compile(r"(?<!^)(?=[A-Z])")


def category_label(error: SMTPGuardError | None) -> str:
    """The ``category`` label for ``error``: its category, else its class name in snake case.

    :class:`~smtp_guard.errors.RecipientsRefused` takes its recipients' category when they
    share one.
    """
    if error is None:
        return ""
    if isinstance(error, ReplyError):
        return str(error.category)
    if isinstance(error, RecipientsRefused):
        # Recipients refused for one reason (the usual case): that reason's category.
        inner = {category_label(e) for e in error.refused.values()}
        if len(inner) == 1:
            return inner.pop()
    name = (type(error).__name__).replace("TLS", "Tls").replace("SMTP", "Smtp")
    return _SNAKE.sub("_", name).lower()


class PrometheusHook:
    """A hook that counts attempts, retries and results (see the module docstring)."""

    def __init__(
        self, registry: CollectorRegistry | None = None, *, namespace: str = "smtp_guard"
    ) -> None:
        where: dict[str, Any] = {"registry": REGISTRY if registry is None else registry}
        ns = namespace
        self.attempts = Counter(
            f"{ns}_attempts_total", "SMTP transactions, by outcome.", ["outcome"], **where
        )
        self.retries = Counter(
            f"{ns}_retries_total",
            "Retries scheduled, by category of the reason.",
            ["category"],
            **where,
        )
        self.recipients = Counter(
            f"{ns}_recipients_total",
            "Final outcome per recipient, by category of the error.",
            ["outcome", "category"],
            **where,
        )
        self.messages = Counter(
            f"{ns}_messages_total", "Send calls finished, by result.", ["result"], **where
        )
        self.attempts_per_message = Histogram(
            f"{ns}_attempts_per_message",
            "Attempts one send call made.",
            buckets=(1, 2, 3, 4, 5, 6, 8, 10, 15, 20),
            **where,
        )
        self.send_seconds = Histogram(
            f"{ns}_send_duration_seconds", "Whole send calls, retries included.", **where
        )
        self.attempt_seconds = Histogram(
            f"{ns}_attempt_duration_seconds", "One SMTP transaction.", **where
        )

    def __call__(self, details: HookDetails, /) -> None:
        """Record one event."""
        if isinstance(details, AttemptDetails):
            self.attempts.labels(outcome=_attempt_outcome(details)).inc()
            self.attempt_seconds.observe(details.duration)
        elif isinstance(details, RetryDetails):
            self.retries.labels(category=category_label(details.error)).inc()
        elif isinstance(details, ResultDetails):
            for rcpt, outcome in details.outcomes.items():
                error = details.errors.get(rcpt)
                self.recipients.labels(
                    outcome=outcome.value,
                    category="" if outcome is Outcome.DELIVERED else category_label(error),
                ).inc()
            self.messages.labels(result=_result(details)).inc()
            self.attempts_per_message.observe(details.attempt)
            self.send_seconds.observe(details.elapsed)


def _attempt_outcome(details: AttemptDetails) -> str:
    delivered = sum(1 for o in details.outcomes.values() if o is Outcome.DELIVERED)
    if delivered and delivered == len(details.outcomes):
        return "ok"
    return "partial" if delivered else "failed"


def _result(details: ResultDetails) -> str:
    delivered = len(details.delivered)
    if delivered and delivered == len(details.outcomes) and details.error is None:
        return "sent"
    return "partial" if delivered else "failed"
