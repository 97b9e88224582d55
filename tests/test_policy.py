"""RetryPolicy is a pure value: decisions tested without sockets or sleeps."""

from __future__ import annotations

import dataclasses

import pytest

from smtp_guard.errors import (
    AuthFailed,
    DeliveryUncertain,
    InvalidInput,
    ServerDisconnected,
    ServiceUnavailable,
)
from smtp_guard.policy import RetryPolicy, is_testing, no_wait, set_testing


def no_jitter() -> float:
    return 0.0


def test_defaults_match_the_issue() -> None:
    policy = RetryPolicy()
    assert (policy.attempts, policy.deadline, policy.initial_wait, policy.max_wait) == (
        4,
        60.0,
        1.0,
        30.0,
    )
    assert (policy.jitter, policy.honor_server_hints, policy.retry_uncertain) == (1.0, True, False)


def test_it_is_immutable() -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        RetryPolicy().attempts = 9  # type: ignore[misc]


@pytest.mark.parametrize(
    "kwargs",
    [
        {"attempts": 0},
        {"attempts": 1.5},
        {"attempts": True},
        {"deadline": -1},
        {"deadline": 0},
        {"jitter": float("nan")},
        {"initial_wait": "1"},
        {"initial_wait": 10, "max_wait": 5},
    ],
)
def test_bad_values_are_refused(kwargs: dict[str, object]) -> None:
    with pytest.raises(InvalidInput):
        RetryPolicy(**kwargs)  # type: ignore[arg-type]


def test_backoff_is_exponential_capped_and_jittered() -> None:
    policy = RetryPolicy(initial_wait=1.0, max_wait=5.0, jitter=0.5)
    assert [policy.backoff(n, rng=no_jitter) for n in range(1, 6)] == [1.0, 2.0, 4.0, 5.0, 5.0]
    assert policy.backoff(1, rng=lambda: 0.999) == pytest.approx(1.4995)
    assert policy.backoff(10_000, rng=no_jitter) == 5.0  # no overflow


def test_transient_error_is_retried_after_backoff() -> None:
    decision = RetryPolicy().decide(1, 0.0, ServerDisconnected("gone"), rng=no_jitter)
    assert decision.retry
    assert decision.wait == 1.0


def test_permanent_error_is_not_retried() -> None:
    error = AuthFailed(535, "5.7.8 Bad credentials", phase="auth")
    decision = RetryPolicy().decide(1, 0.0, error)
    assert not decision.retry
    assert "permanent" in decision.reason


def test_uncertain_is_retried_only_on_opt_in() -> None:
    error = DeliveryUncertain("no reply to the final dot", recipients=["b@rcpt.test"])
    assert not RetryPolicy().decide(1, 0.0, error).retry
    assert RetryPolicy(retry_uncertain=True).decide(1, 0.0, error).retry


def test_attempts_bound_the_retries() -> None:
    policy = RetryPolicy(attempts=2)
    assert policy.decide(1, 0.0, ServerDisconnected("x")).retry
    assert not policy.decide(2, 0.0, ServerDisconnected("x")).retry


def test_server_hint_replaces_the_backoff() -> None:
    error = ServiceUnavailable(421, "4.7.0 Try again in 20 seconds", retry_after=20.0)
    assert RetryPolicy().decide(1, 0.0, error).wait == 20.0
    ignored = RetryPolicy(honor_server_hints=False).decide(1, 0.0, error, rng=no_jitter)
    assert ignored.wait == 1.0


def test_hint_beyond_the_deadline_stops_with_retry_after() -> None:
    error = ServiceUnavailable(421, "4.7.0 Try again in 5 minutes", retry_after=300.0)
    decision = RetryPolicy(deadline=60.0).decide(1, 1.0, error)
    assert not decision.retry
    assert decision.retry_after == 300.0
    assert "deadline" in decision.reason


def test_backoff_beyond_what_is_left_stops() -> None:
    policy = RetryPolicy(deadline=10.0, initial_wait=4.0, jitter=0.0)
    assert policy.decide(1, 0.0, ServerDisconnected("x")).retry
    late = policy.decide(2, 4.0, ServerDisconnected("x"))
    assert not late.retry
    assert late.retry_after == 8.0


def test_non_smtp_errors_are_never_retried() -> None:
    assert not RetryPolicy().decide(1, 0.0, KeyError("bug")).retry


def test_testing_switch_and_context_manager() -> None:
    assert not is_testing()
    with no_wait():
        assert is_testing()
        with no_wait():
            assert is_testing()
        assert is_testing()
    assert not is_testing()
    set_testing(True)
    try:
        assert is_testing()
    finally:
        set_testing(False)
    assert not is_testing()
