"""Test helpers: a misbehaving SMTP server and a pytest plugin (the ``testing`` extra).

``FaultServer`` is a real SMTP server on loopback that answers, stalls, defers, drops and
records exactly as scripted; the fault language is described in
:mod:`smtp_guard.testing.faults`. The pytest plugin (:mod:`smtp_guard.testing.plugin`) gives
a ``fault_smtp`` fixture and an ``@pytest.mark.smtp_faults(...)`` marker.
"""

from __future__ import annotations

from smtp_guard.testing.faults import (
    Fault,
    FaultSpecError,
    RateLimit,
    Settings,
    parse_fault,
    parse_faults,
)
from smtp_guard.testing.server import ConnectionRecord, FaultServer, Transaction

__all__ = [
    "ConnectionRecord",
    "Fault",
    "FaultServer",
    "FaultSpecError",
    "RateLimit",
    "Settings",
    "Transaction",
    "parse_fault",
    "parse_faults",
]
