"""Test helpers: a misbehaving SMTP server and a pytest plugin (the ``testing`` extra).

``FaultServer`` is a real SMTP server on loopback that answers, stalls, defers, drops and
records exactly as scripted; the fault language is described in
:mod:`smtp_guard.testing.faults`. The pytest plugin (:mod:`smtp_guard.testing.plugin`) gives
a ``fault_smtp`` fixture and an ``@pytest.mark.smtp_faults(...)`` marker. ``no_wait()`` /
``set_testing()`` (from :mod:`smtp_guard.policy`) make retries skip their sleeps.

The server names are imported on first use, so importing this package (as pytest does for the
plugin) works without aiosmtpd installed; using ``FaultServer`` then needs the extra.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from smtp_guard.policy import no_wait, set_testing
from smtp_guard.testing.faults import (
    Fault,
    FaultSpecError,
    RateLimit,
    Settings,
    parse_fault,
    parse_faults,
)

if TYPE_CHECKING:
    from smtp_guard.testing.server import ConnectionRecord, FaultServer, Transaction

__all__ = [
    "ConnectionRecord",
    "Fault",
    "FaultServer",
    "FaultSpecError",
    "RateLimit",
    "Settings",
    "Transaction",
    "no_wait",
    "parse_fault",
    "parse_faults",
    "set_testing",
]

_FROM_SERVER = frozenset({"ConnectionRecord", "FaultServer", "Transaction"})


def __getattr__(name: str) -> Any:
    if name in _FROM_SERVER:
        from smtp_guard.testing import server  # noqa: PLC0415 - needs aiosmtpd

        return getattr(server, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
