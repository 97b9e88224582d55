"""pytest plugin: a ``fault_smtp`` fixture and the ``smtp_faults`` marker.

Test your own error handling against a real SMTP server that misbehaves on purpose::

    import pytest

    @pytest.mark.smtp_faults("rcpt:*@gone.test=550 5.1.1 No such user", "message=store-drop x1")
    def test_my_app_reports_unknown_users(fault_smtp):
        my_app.send_newsletter(host=fault_smtp.host, port=fault_smtp.port)
        assert fault_smtp.deliveries_to("ann@example.test") == 1

The marker takes fault descriptions (or :class:`~smtp_guard.testing.Fault` objects) as
positional arguments and :class:`~smtp_guard.testing.FaultServer` settings as keyword
arguments (``credentials={"u": "p"}``, ``starttls="on"``, ...). Markers on the module or class
apply too; the test's own faults come first (the first matching fault wins) and its settings
win. The server runs on its own thread, so sync and async tests (any event loop) can use it.
``fault_smtp_factory(*faults, **settings)`` starts more servers, all stopped after the test.

Enable it with ``-p smtp_guard.testing.plugin`` or
``pytest_plugins = ["smtp_guard.testing.plugin"]`` (installed packages register it as the
``smtp_guard`` pytest11 entry point). It does not need aiosmtpd until a test uses the fixture.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import pytest

from smtp_guard.testing.faults import FaultSpecError

if TYPE_CHECKING:
    from smtp_guard.testing.server import FaultServer

__all__ = ["fault_smtp", "fault_smtp_factory", "pytest_configure"]

MARKER = "smtp_faults"


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        f"{MARKER}(*faults, **settings): script the fault_smtp server for this test, e.g. "
        f'@pytest.mark.{MARKER}("rcpt:*@gone.test=550 5.1.1 No such user")',
    )


def _start(faults: tuple[Any, ...], settings: dict[str, Any]) -> FaultServer:
    from smtp_guard.testing.server import FaultServer  # noqa: PLC0415 - needs aiosmtpd

    problem = ""
    try:
        server = FaultServer(*faults, **settings)
    except FaultSpecError as exc:
        problem = exc.message
    except TypeError as exc:
        problem = str(exc)
    if problem:  # outside the except block, so pytest shows one line and no chained traceback
        pytest.fail(f"@pytest.mark.{MARKER}: {problem}", pytrace=False)
    return server.start()


@pytest.fixture
def fault_smtp_factory() -> Iterator[Callable[..., FaultServer]]:
    """Start a FaultServer per call (``factory(*faults, **settings)``); all stop afterwards."""
    started: list[FaultServer] = []

    def factory(*faults: Any, **settings: Any) -> FaultServer:
        server = _start(faults, settings)
        started.append(server)
        return server

    yield factory
    for server in reversed(started):
        server.stop()


@pytest.fixture
def fault_smtp(
    request: pytest.FixtureRequest, fault_smtp_factory: Callable[..., FaultServer]
) -> FaultServer:
    """A running FaultServer scripted by the test's ``@pytest.mark.smtp_faults`` markers."""
    faults: list[Any] = []
    settings: dict[str, Any] = {}
    markers = list(request.node.iter_markers(MARKER))  # closest (the test itself) first
    for marker in markers:
        faults.extend(marker.args)
    for marker in reversed(markers):
        settings.update(marker.kwargs)
    return fault_smtp_factory(*faults, **settings)
