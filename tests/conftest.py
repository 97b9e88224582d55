"""Shared pytest configuration. Area-specific fixtures live next to their tests.

Tests here run on a shared, loaded CI machine: nothing may depend on how fast it is.
"""

from __future__ import annotations

import socket
from collections.abc import Callable, Iterator

import pytest
from hypothesis import settings

from smtp_guard.policy import no_wait

# Hypothesis' per-example deadline is a timing assertion: a loaded machine fails it.
settings.register_profile("smtp_guard", deadline=None)
settings.load_profile("smtp_guard")


def _assert_port_released(host: str, port: int) -> None:
    """Fail unless nothing listens on ``host:port`` any more.

    Binds a listener there (SO_REUSEADDR, so connections the server closed and left in
    TIME_WAIT do not count, while a listening socket still does). Connecting instead would
    race: on loopback a client socket may be given that very port and connect to itself.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
            probe.listen()
        except OSError as exc:
            pytest.fail(f"{host}:{port} is still in use after the server stopped: {exc}")


@pytest.fixture
def assert_port_released() -> Callable[[str, int], None]:
    """``assert_port_released(host, port)``: fail unless the port is free to listen on again."""
    return _assert_port_released


@pytest.fixture
def no_real_sleep() -> Iterator[None]:
    """Retries run in the testing mode: backoff and server hints are counted, never slept.

    A module opts in with ``pytestmark = pytest.mark.usefixtures("no_real_sleep")``.
    """
    with no_wait():
        yield
