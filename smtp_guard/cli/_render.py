"""What ``smtp-guard demo`` and ``smtp-guard send`` share: per-recipient outcomes and tables.

The outcomes come from the instrumentation hooks (:mod:`smtp_guard.hooks`), not from picking
exceptions apart: :class:`Watcher` counts the attempts each recipient was tried in, keeps the
error that first deferred it, and takes the final outcome from the send's result event. So the
same code serves :func:`smtp_guard.client.send` and anything else that reports to the hooks.

rich (the ``cli`` extra) draws the tables when it is installed; without it, or with
``plain=True``, they are plain text that reads well in a CI log.
"""

from __future__ import annotations

import importlib.util
import logging
import sys
import textwrap
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TextIO

from smtp_guard.errors import DeliveryUncertain, ReplyError, SMTPGuardError
from smtp_guard.hooks import AttemptDetails, HookDetails, ResultDetails, RetryDetails

if TYPE_CHECKING:
    from rich.console import Console

__all__ = [
    "DELIVERED",
    "DELIVERED_LATE",
    "GAVE_UP",
    "REFUSED",
    "UNCERTAIN",
    "RecipientReport",
    "Watcher",
    "as_json",
    "category_of",
    "describe",
    "has_rich",
    "make_console",
    "missing_testing_extra",
    "narrow_outcomes",
    "one_line",
    "print_lines",
    "print_table",
    "quiet_logs",
    "reason_of",
    "tolerant_stdout",
]

#: The outcomes shown for a recipient (stable strings: tests and JSON use them).
DELIVERED = "delivered"
DELIVERED_LATE = "deferred, then delivered"
REFUSED = "refused"
GAVE_UP = "deferred, gave up"
UNCERTAIN = "uncertain"


@dataclass(frozen=True)
class RecipientReport:
    """What happened to one recipient of one send."""

    recipient: str
    outcome: str  #: one of the outcome constants above
    attempts: int  #: how many attempts this recipient was part of
    #: Why it was not delivered (refused, gave up, uncertain), or why it had to be retried
    #: (delivered late); None when it went through at once.
    error: SMTPGuardError | None

    @property
    def delivered(self) -> bool:
        return self.outcome in (DELIVERED, DELIVERED_LATE)


def reason_of(error: SMTPGuardError, recipient: str | None = None) -> SMTPGuardError:
    """The error that concerns ``recipient``: its own reply error inside a RecipientsRefused."""
    refused = getattr(error, "refused", None)
    if isinstance(refused, Mapping) and recipient is not None:
        own = refused.get(recipient)
        if isinstance(own, SMTPGuardError):
            return own
    return error


def category_of(error: SMTPGuardError | None) -> str:
    """``greylisted`` for a reply error (its category); the class name for the others."""
    if error is None:
        return ""
    if isinstance(error, ReplyError):
        return error.category.value
    return type(error).__name__


def one_line(text: str, limit: int = 160) -> str:
    """``text`` on one line, cut at ``limit`` characters."""
    flat = " / ".join(part.strip() for part in text.splitlines() if part.strip())
    return flat if len(flat) <= limit else flat[: limit - 1] + "\N{HORIZONTAL ELLIPSIS}"


class Watcher:
    """A hook that collects what happened to each recipient of the sends it watches.

    Register it with :func:`smtp_guard.hooks.using_hooks` around one send at a time (the
    hooks are process-wide); call :meth:`reports` after the send, then :meth:`clear`.
    ``on_retry`` is called with each retry's details (the demo shows them as they happen).
    """

    def __init__(self, on_retry: Callable[[RetryDetails], None] | None = None) -> None:
        self.on_retry = on_retry
        self.retries = 0
        self.clear()

    def clear(self) -> None:
        """Forget the current send (the retry total is kept)."""
        self._tries: dict[str, int] = {}
        self._first_error: dict[str, SMTPGuardError] = {}
        self._result: ResultDetails | None = None
        #: Attempts reported for the current send (0: it failed before connecting).
        self.attempts_seen = 0

    def __call__(self, details: HookDetails) -> None:
        if isinstance(details, AttemptDetails):
            self.attempts_seen += 1
            for rcpt in details.recipients:
                self._tries[rcpt] = self._tries.get(rcpt, 0) + 1
            for rcpt, error in details.errors.items():
                self._first_error.setdefault(rcpt, error)
        elif isinstance(details, RetryDetails):
            self.retries += 1
            if self.on_retry is not None:
                self.on_retry(details)
        else:
            self._result = details

    def reports(
        self, recipients: Sequence[str], raised: SMTPGuardError | None = None
    ) -> list[RecipientReport]:
        """One report per recipient, in the order given.

        ``raised`` is what the send raised, if anything: used for recipients the hooks never
        heard of (the send failed before its first attempt).
        """
        result = self._result
        reports = []
        for rcpt in recipients:
            tries = self._tries.get(rcpt, 0)
            outcome = result.outcomes.get(rcpt) if result is not None else None
            if outcome == "delivered":
                late = tries > 1
                reports.append(
                    RecipientReport(
                        rcpt,
                        DELIVERED_LATE if late else DELIVERED,
                        tries,
                        self._first_error.get(rcpt) if late else None,
                    )
                )
                continue
            error = result.errors.get(rcpt) if result is not None else None
            if error is None:
                error = self._first_error.get(rcpt)
            if error is None and raised is not None:
                error = reason_of(raised, rcpt)
            if outcome == "uncertain" or isinstance(error, DeliveryUncertain):
                label = UNCERTAIN
            elif outcome == "refused" or (error is not None and error.permanent):
                label = REFUSED
            else:
                label = GAVE_UP
            reports.append(RecipientReport(rcpt, label, tries, error))
        return reports


@contextmanager
def quiet_logs() -> Iterator[None]:
    """Keep the ``smtp_guard`` log records off stderr (Python's last-resort handler)."""
    log = logging.getLogger("smtp_guard")
    handler = logging.NullHandler()
    log.addHandler(handler)
    try:
        yield
    finally:
        log.removeHandler(handler)


# --------------------------------------------------------------------------- output


def tolerant_stdout() -> None:
    """Let stdout replace what its encoding cannot show (a Czech text on an ASCII CI log)."""
    reconfigure = getattr(sys.stdout, "reconfigure", None)
    if reconfigure is not None:
        reconfigure(errors="replace")


def missing_testing_extra() -> str | None:
    """A one-line message if the embedded test server cannot run (no aiosmtpd/trustme)."""
    missing = [name for name in ("aiosmtpd", "trustme") if importlib.util.find_spec(name) is None]
    if not missing:
        return None
    return (
        f"the embedded test server needs {' and '.join(missing)}: "
        "pip install 'smtp-guard[testing,cli]'"
    )


def has_rich() -> bool:
    """Whether rich (the ``cli`` extra) is installed."""
    return importlib.util.find_spec("rich") is not None


def make_console(plain: bool, file: TextIO | None = None) -> Console | None:
    """A rich console for ``file`` (stdout), or None for plain text.

    Not on a terminal (a CI log, a pipe) rich draws no colours and no live display, and the
    width is 120 columns unless ``COLUMNS`` says otherwise, so tables stay readable.
    """
    if plain or not has_rich():
        return None
    from rich.console import Console  # noqa: PLC0415 - the optional extra, only when used

    out = file if file is not None else sys.stdout
    console = Console(file=out, highlight=False)
    if not console.is_terminal:
        console = Console(file=out, highlight=False, width=_plain_width(), soft_wrap=False)
    return console


def _plain_width() -> int:
    import os  # noqa: PLC0415

    columns = os.environ.get("COLUMNS", "")
    return int(columns) if columns.isdigit() and int(columns) >= 60 else 120


def print_table(
    console: Console | None,
    title: str,
    columns: Sequence[str],
    rows: Sequence[Sequence[str]],
    *,
    styles: Sequence[str | None] | None = None,
    file: TextIO | None = None,
) -> None:
    """A table: rich when ``console`` is given, else aligned plain text (``file``: stdout).

    ``styles`` is one rich style per row (ignored in plain text). Only the last column wraps;
    in plain text a newline in it continues on the next line, under that column.
    """
    if console is not None:
        from rich import box  # noqa: PLC0415
        from rich.table import Table  # noqa: PLC0415

        table = Table(
            title=title,
            title_justify="left",
            box=box.SIMPLE_HEAD,
            padding=(0, 1, 0, 0),
            pad_edge=False,
            show_edge=False,
            expand=False,
        )
        for index, name in enumerate(columns):
            last = index == len(columns) - 1
            table.add_column(name, overflow="fold", no_wrap=not last)
        for index, row in enumerate(rows):
            style = styles[index] if styles is not None else None
            table.add_row(*row, style=style)
        console.print(table)
        return
    out = file if file is not None else sys.stdout
    widths = [len(c) for c in columns]
    for row in rows:
        for index, cell in enumerate(row[:-1]):
            widths[index] = max(widths[index], len(cell))
    lines = [title]
    indent = " " * (sum(widths[:-1]) + 2 * (len(columns) - 1))
    for cells in [list(columns), *(list(r) for r in rows)]:
        padded = [cell.ljust(widths[i]) for i, cell in enumerate(cells[:-1])]
        first, *more = cells[-1].split("\n") or [""]
        lines.append("  ".join([*padded, first]).rstrip())
        lines += [indent + line for line in more]
    print("\n".join(lines), file=out)


def print_lines(console: Console | None, lines: list[str], heading: str | None = None) -> None:
    """Print ``lines``; on rich, the first in ``heading`` style, wrapped under their own indent.

    A line starting (after its indent) with ``do:`` or ``users:`` wraps under its text.
    """
    if console is None:
        print("\n".join(lines))
        return
    from rich.text import Text  # noqa: PLC0415 - the optional extra, only when used

    for index, line in enumerate(lines):
        body = line.lstrip(" ")
        indent = len(line) - len(body)
        style = (heading or "") if index == 0 else ""
        hang = indent + 2 if indent else 0
        if body.startswith("CHECK FAILED"):
            style = "bold red"
        elif body.startswith(("do:", "users:")):
            style = "cyan" if body.startswith("do:") else "italic"
            hang = indent + 7
        wrapped = textwrap.fill(
            body,
            width=max(40, console.width),
            initial_indent=" " * indent,
            subsequent_indent=" " * hang,
            break_on_hyphens=False,
        )
        console.print(Text(wrapped, style=style), highlight=False, soft_wrap=True)


def narrow_outcomes(console: Console | None, rows: list[list[str]], column: int) -> list[list[str]]:
    """On a terminal under 100 columns, break "deferred, then delivered" after the comma."""
    if console is not None and console.width < 100:
        for cells in rows:
            cells[column] = cells[column].replace(", ", ",\n")
    return rows


def describe(error: SMTPGuardError) -> str:
    """One line for a typed error: code, enhanced code, text (or the error's own message)."""
    if isinstance(error, ReplyError):
        enhanced = f" {error.enhanced}" if error.enhanced else ""
        return one_line(f"{error.code}{enhanced} {error.text}".strip())
    return one_line(error.message)


def as_json(report: RecipientReport, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """A recipient report as a JSON-ready dict (keys stable)."""
    error = report.error
    data: dict[str, Any] = {
        "recipient": report.recipient,
        "outcome": report.outcome,
        "attempts": report.attempts,
        "category": category_of(error) or None,
        "error": type(error).__name__ if error is not None else None,
        "code": error.code if isinstance(error, ReplyError) else None,
        "enhanced": error.enhanced if isinstance(error, ReplyError) else None,
        "reply": describe(error) if error is not None else None,
        "permanent": error.permanent if error is not None else None,
        "retry_after": error.retry_after if error is not None else None,
        "hint": error.hint if error is not None else None,
    }
    data.update(extra or {})
    return data
