"""``smtp-guard demo``: a batch of mail through a server that misbehaves on purpose.

    smtp-guard demo                 # what `make demo` runs
    smtp-guard demo --lang cs       # what your users would read, in Czech (also de, fr)
    smtp-guard demo --seed 7        # another (reproducible) run
    smtp-guard demo --json          # the outcomes and the server's records as JSON

An embedded :class:`~smtp_guard.testing.FaultServer` on 127.0.0.1 (STARTTLS with a certificate
made at start, AUTH required) greylists one domain, has a full mailbox and an unknown user,
rate-limits the sender, answers one transient 451, refuses a stale password, closes the
connection after the final dot (once after keeping the message, once without) and treats
everyone else normally. Thirty messages go through :func:`smtp_guard.client.send`, one at a
time in an order drawn from ``--seed``, with a demo :class:`RetryPolicy` whose waits are short
but real (the server's own "try again in 1 second" is honoured), so the retries you see are
real retries. Then a table says, for each recipient, what happened and what to do, and the
server's records are checked: everyone delivered got exactly one copy, nobody got two.

Exit code 0; 1 only if that check fails. Nothing leaves the machine.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import secrets
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid
from typing import TYPE_CHECKING, Any

from smtp_guard.cli._render import (
    DELIVERED,
    DELIVERED_LATE,
    GAVE_UP,
    REFUSED,
    UNCERTAIN,
    RecipientReport,
    Watcher,
    as_json,
    category_of,
    describe,
    make_console,
    missing_testing_extra,
    narrow_outcomes,
    one_line,
    print_lines,
    print_table,
    quiet_logs,
    reason_of,
    tolerant_stdout,
)
from smtp_guard.errors import SMTPGuardError
from smtp_guard.hooks import RetryDetails, using_hooks
from smtp_guard.i18n import available_locales, explain
from smtp_guard.policy import RetryPolicy

if TYPE_CHECKING:
    from rich.console import Console
    from rich.progress import Progress, TaskID

    from smtp_guard.testing import FaultServer

__all__ = ["FAULTS", "POLICY", "SCENARIOS", "Scenario", "add_arguments", "plan", "run"]

HELP = "watch smtp_guard send 30 messages through a local server that misbehaves on purpose"

#: The server's misbehaviour, in the FaultServer's text form (see smtp_guard.testing.faults).
FAULTS: tuple[str, ...] = (
    "rcpt:*@greylisting.test=greylist=1s",
    "rcpt:*@popular.test=450 4.2.1 The user you are trying to contact is receiving mail at a "
    "rate that prevents additional messages from being delivered x2",
    "rcpt:fullbox@*=552 5.2.2 <{rcpt}>: Mailbox full, over quota",
    "rcpt:nosuchuser@*=550 5.1.1 <{rcpt}>: Recipient address rejected: User unknown in "
    "virtual mailbox table",
    "rcpt:*@lookup.test=451 4.3.0 <{rcpt}>: Temporary lookup failure x1",
    "message:*@kept-dropped.test=store-drop",
    "message:*@dropped.test=drop",
    "ratelimit=10/1s",
)

#: Short waits, but real ones: the demo retries for real.
POLICY = RetryPolicy(attempts=4, deadline=10.0, initial_wait=0.2, max_wait=1.0, jitter=0.05)

SERVER_NAME = "mx.demo.test"
CLIENT_NAME = "app.demo.test"


@dataclass(frozen=True)
class Scenario:
    """One message of the batch: its recipient, what the server does, the account used."""

    recipient: str
    server_does: str
    account: str = "orders"


_NORMAL = (
    "alice", "bob", "carol", "dave", "erin", "frank", "grace", "heidi", "ivan", "judy",
    "karl", "lena", "mike", "nora", "olga", "oscar", "petra", "quinn", "rosa", "sam",
)  # fmt: skip

SCENARIOS: tuple[Scenario, ...] = (
    *(Scenario(f"{name}@example.test", "accepts (rate limit: 10 messages/s)") for name in _NORMAL),
    Scenario("tom@greylisting.test", "greylists (1 s)"),
    Scenario("uma@greylisting.test", "greylists (1 s)"),
    Scenario("vera@popular.test", "rate-limits the first two tries for popular.test"),
    Scenario("will@popular.test", "rate-limits the first two tries for popular.test"),
    Scenario("fullbox@example.test", "mailbox full"),
    Scenario("nosuchuser@example.test", "unknown user"),
    Scenario("xena@lookup.test", "451 once"),
    Scenario("yuri@kept-dropped.test", "keeps the message, drops the connection"),
    Scenario("zoe@dropped.test", "drops the connection after the final dot"),
    Scenario("subscriber@example.test", "refuses the stale password", account="newsletter"),
)

_OUTCOME_STYLE = {
    DELIVERED: "green",
    DELIVERED_LATE: "green",
    REFUSED: "red",
    GAVE_UP: "yellow",
    UNCERTAIN: "magenta",
}


class UsageError(Exception):
    """A bad argument: one line on stderr, exit code 2."""


_EPILOG = """\
An embedded test server on 127.0.0.1 greylists, rate-limits, refuses and drops on purpose;
30 messages go through smtp_guard with real (short) retries, then a table shows what
happened to each recipient, checked against the server's records. Nothing leaves the machine.
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.epilog = _EPILOG
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.add_argument(
        "--seed", type=int, default=1, help="seed of the batch order and the random faults"
    )
    parser.add_argument(
        "--lang",
        metavar="LANG",
        default="en",
        help="language of what users would read (cs, de, en, fr; default en)",
    )
    parser.add_argument(
        "--json", action="store_true", help="print the outcomes and server records as JSON"
    )
    parser.add_argument(
        "--plain", action="store_true", help="plain text even on a terminal (no progress bar)"
    )


def plan(seed: int) -> list[Scenario]:
    """The batch, in the order the seed gives."""
    batch = list(SCENARIOS)
    random.Random(seed).shuffle(batch)  # noqa: S311 - a reproducible order, not security
    return batch


def run(args: argparse.Namespace) -> int:
    try:
        lang = _language(args.lang)
        missing = missing_testing_extra()
        if missing is not None:
            raise UsageError(missing)
    except UsageError as exc:
        print(f"smtp-guard demo: error: {exc}", file=sys.stderr)
        return 2
    tolerant_stdout()
    return asyncio.run(_demo(args.seed, lang, json_out=args.json, plain=args.plain))


def _language(asked: str) -> str:
    """The shipped catalog for ``--lang`` (``cs``, ``cs_CZ``, ``cs-CZ.UTF-8``, ...)."""
    tag = asked.strip().split(".")[0].split("@")[0].replace("-", "_")
    language, _, region = tag.partition("_")
    shipped = available_locales()
    for name in (f"{language.lower()}_{region.upper()}", language.lower()):
        if name in shipped:
            return name
    raise UsageError(f"--lang {asked!r}: no such catalog; available: {', '.join(shipped)}")


# --------------------------------------------------------------------------- the run


def _message(number: int, scenario: Scenario, sender: str) -> EmailMessage:
    message = EmailMessage()
    message["From"] = f"Demo Shop <{sender}>"
    message["To"] = scenario.recipient
    message["Subject"] = f"Your order #{1000 + number} has shipped"
    message["Date"] = format_datetime(datetime.now().astimezone())
    message["Message-ID"] = make_msgid(f"demo{number}", domain="shop.test")
    message.set_content(f"Hello,\n\nyour order #{1000 + number} is on its way.\n\nDemo Shop\n")
    return message


@dataclass
class _Row:
    number: int
    scenario: Scenario
    report: RecipientReport
    received: int = 0  #: copies the server kept for this recipient


@dataclass
class _Run:
    """Everything the report needs: the rows and the server's records."""

    seed: int
    lang: str
    rows: list[_Row]
    retries: int
    elapsed: float
    stored: int  #: messages the server kept
    kept_uncertain: int  #: of those, kept while the connection dropped before the reply
    problems: list[str]


class _Display:
    """The progress as it happens: a rich progress bar, or one line per message."""

    def __init__(self, console: Console | None, total: int, quiet: bool) -> None:
        self.console = console
        self.total = total
        self.quiet = quiet
        self.progress: Progress | None = None
        self.task: TaskID | None = None

    @contextmanager
    def running(self) -> Iterator[None]:
        if self.quiet or self.console is None or not self.console.is_terminal:
            yield
            return
        from rich.progress import (  # noqa: PLC0415 - the optional extra, only when used
            BarColumn,
            MofNCompleteColumn,
            Progress,
            SpinnerColumn,
            TextColumn,
            TimeElapsedColumn,
        )

        with Progress(
            SpinnerColumn(),
            TextColumn("{task.description}", style="bold"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=self.console,
        ) as progress:
            self.progress = progress
            self.task = progress.add_task("sending", total=self.total)
            try:
                yield
            finally:
                progress.update(self.task, description="done")
                self.progress = None

    def sending(self, scenario: Scenario) -> None:
        if self.progress is not None and self.task is not None:
            self.progress.update(self.task, description=f"to {scenario.recipient}")

    def retry(self, details: RetryDetails) -> None:
        if self.quiet:
            return
        rcpt = details.recipients[0] if details.recipients else "?"
        why = reason_of(details.error, rcpt) if details.error is not None else None
        text = f"{category_of(why)}: {describe(why)}" if why is not None else "no reply"
        line = "      " + one_line(f"retry {rcpt} in {details.wait:.1f}s ({text})", 140)
        if self.progress is not None:
            self.progress.console.print(
                line, style="yellow", highlight=False, no_wrap=True, overflow="ellipsis"
            )
        else:
            print(line, flush=True)

    def done(self, number: int, report: RecipientReport) -> None:
        if self.quiet:
            return
        tries = f"{report.attempts} attempt{'s' if report.attempts != 1 else ''}"
        line = f"{number:>4}/{self.total} {report.recipient}: {report.outcome} ({tries})"
        if self.progress is not None and self.task is not None:
            if not report.delivered:
                style = _OUTCOME_STYLE.get(report.outcome)
                self.progress.console.print(line, style=style, highlight=False)
            self.progress.advance(self.task)
        else:
            print(line, flush=True)


async def _send_batch(
    server: FaultServer, batch: list[Scenario], passwords: dict[str, str], display: _Display
) -> tuple[list[_Row], int]:
    from smtp_guard.client import send  # noqa: PLC0415 - keeps `smtp-guard --help` fast

    tls = server.tls_context()
    watcher = Watcher(on_retry=display.retry)
    rows: list[_Row] = []
    with quiet_logs(), using_hooks(watcher), display.running():
        for number, scenario in enumerate(batch, start=1):
            display.sending(scenario)
            sender = f"{scenario.account}@shop.test"
            password = passwords[scenario.account]
            if scenario.account == "newsletter":
                password = "old-" + password  # rotated on the server, not in this app
            watcher.clear()
            raised: SMTPGuardError | None = None
            try:
                await send(
                    _message(number, scenario, sender),
                    sender=sender,
                    recipients=[scenario.recipient],
                    hostname=server.host,
                    port=server.port,
                    username=scenario.account,
                    password=password,
                    tls_context=tls,
                    local_hostname=CLIENT_NAME,
                    timeout=5.0,
                    policy=POLICY,
                )
            except SMTPGuardError as exc:
                raised = exc
            [report] = watcher.reports([scenario.recipient], raised)
            rows.append(_Row(number, scenario, report))
            display.done(number, report)
    return rows, watcher.retries


async def _demo(seed: int, lang: str, *, json_out: bool, plain: bool) -> int:
    from smtp_guard.testing import FaultServer  # noqa: PLC0415 - the testing extra

    console = None if json_out else make_console(plain)
    batch = plan(seed)
    passwords = {"orders": secrets.token_urlsafe(12), "newsletter": secrets.token_urlsafe(12)}
    server = FaultServer(
        *FAULTS,
        hostname=SERVER_NAME,
        starttls="on",
        credentials=passwords,
        seed=seed,
    )
    started = time.monotonic()
    async with server:
        if not json_out:
            _intro(console, server, len(batch), seed)
        display = _Display(console, len(batch), quiet=json_out)
        rows, retries = await _send_batch(server, batch, passwords, display)
        elapsed = time.monotonic() - started
        for row in rows:
            row.received = server.deliveries_to(row.scenario.recipient)
        stored = len(server.messages)
        kept_uncertain = sum(1 for t in server.transactions if t.outcome == "stored-dropped")
    outcome = _Run(seed, lang, rows, retries, elapsed, stored, kept_uncertain, [])
    outcome.problems = _check(rows, stored)
    if json_out:
        print(json.dumps(_json(outcome), indent=2))
    else:
        _report(console, outcome)
    return 1 if outcome.problems else 0


def _check(rows: list[_Row], stored: int) -> list[str]:
    """What the server's records contradict in the outcomes (empty when all is well)."""
    problems = []
    for row in rows:
        report, got = row.report, row.received
        if got > 1:
            problems.append(f"{report.recipient} received {got} copies")
        elif report.delivered and got != 1:
            problems.append(f"{report.recipient} is reported delivered, the server has {got}")
        elif report.outcome in (REFUSED, GAVE_UP) and got != 0:
            problems.append(f"{report.recipient} is reported {report.outcome}, the server has it")
    if stored != sum(row.received for row in rows):
        problems.append(f"the server stored {stored} messages for {len(rows)} recipients")
    return problems


# --------------------------------------------------------------------------- output


def _intro(console: Console | None, server: FaultServer, total: int, seed: int) -> None:
    lines = [
        f"smtp_guard demo: {total} messages to a local test server that misbehaves on purpose",
        f"server: FaultServer on {server.host}:{server.port} (STARTTLS, AUTH required); "
        f"seed {seed}; retries: up to {POLICY.attempts} attempts, waits as the server asks",
        "what the server does:",
        *(f"  {spec}" for spec in FAULTS),
    ]
    print_lines(console, lines, heading="bold")


def _table_rows(rows: list[_Row]) -> list[list[str]]:
    return [
        [
            str(row.number),
            row.report.recipient,
            row.report.outcome,
            category_of(row.report.error),
            str(row.report.attempts),
            str(row.received),
        ]
        for row in rows
    ]


def _counts(rows: list[_Row]) -> dict[str, int]:
    outcomes = [row.report.outcome for row in rows]
    return {
        "delivered": sum(1 for o in outcomes if o in (DELIVERED, DELIVERED_LATE)),
        "delivered_after_retry": outcomes.count(DELIVERED_LATE),
        "refused": outcomes.count(REFUSED),
        "gave_up": outcomes.count(GAVE_UP),
        "uncertain": outcomes.count(UNCERTAIN),
    }


def _summary(rows: list[_Row], retries: int, elapsed: float) -> str:
    c = _counts(rows)
    parts = [
        f"delivered {c['delivered']} ({c['delivered_after_retry']} after a retry)",
        f"refused {c['refused']}",
        f"uncertain {c['uncertain']}",
    ]
    if c["gave_up"]:
        parts.append(f"gave up {c['gave_up']}")
    parts += [f"retries {retries}", f"elapsed {elapsed:.1f}s"]
    return "summary: " + ", ".join(parts)


def _server_line(rows: list[_Row], stored: int, kept_uncertain: int) -> list[str]:
    most = max((row.received for row in rows), default=0)
    twice = sum(1 for row in rows if row.received > 1)
    lines = [
        f"server records: {stored} messages stored for {len(rows)} recipients; "
        f"most copies any recipient got: {most}; "
        + ("nobody got a message twice" if not twice else f"{twice} got a message twice!")
    ]
    uncertain = sum(1 for row in rows if row.report.outcome == UNCERTAIN)
    if uncertain:
        lines.append(
            f"the {uncertain} uncertain: the connection closed after the final dot, so the "
            f"client cannot know; the server kept {kept_uncertain} of them. smtp_guard does not "
            "retry these (a retry could deliver twice) unless told to (retry_uncertain=True)."
        )
    return lines


def _retried(rows: list[_Row]) -> list[str]:
    """One line per recipient delivered after a retry: the reply that made smtp_guard wait."""
    lines = []
    for row in rows:
        report = row.report
        if report.outcome == DELIVERED_LATE and report.error is not None:
            lines.append(
                f"  {report.recipient}: {describe(report.error)}"
                f" -> delivered on attempt {report.attempts}"
            )
    return lines


def _not_delivered(rows: list[_Row], lang: str) -> list[tuple[str, str, str, str]]:
    """(recipient, server reply, what the developer should do, what the user would read)."""
    return [
        (
            row.report.recipient,
            describe(row.report.error),
            row.report.error.hint,
            explain(row.report.error, lang),
        )
        for row in rows
        if not row.report.delivered and row.report.error is not None
    ]


def _report(console: Console | None, run: _Run) -> None:
    rows = run.rows
    columns = ["#", "recipient", "outcome", "category", "tries", "copies"]
    styles = [_OUTCOME_STYLE.get(row.report.outcome) for row in rows]
    title = "What happened, per recipient (copies: what the server kept for them)"
    table = narrow_outcomes(console, _table_rows(rows), column=2)
    print_table(console, title, columns, table, styles=styles)
    _blank(console)
    retried = _retried(rows)
    if retried:
        print_lines(console, ["Retried automatically, nothing to do:", *retried], heading="bold")
        _blank(console)
    failed = _not_delivered(rows, run.lang)
    if failed:
        lines = [f"Not delivered: what to do (and what your users would read, {run.lang}):"]
        for recipient, reply, hint, user_text in failed:
            lines += [
                f"  {recipient}: {reply}",
                f"      do:    {hint}",
                f"      users: {user_text}",
            ]
        print_lines(console, lines, heading="bold")
        _blank(console)
    lines = [
        _summary(rows, run.retries, run.elapsed),
        *_server_line(rows, run.stored, run.kept_uncertain),
        *(f"CHECK FAILED: {problem}" for problem in run.problems),
    ]
    print_lines(console, lines, heading="bold")


def _blank(console: Console | None) -> None:
    if console is not None:
        console.print()
    else:
        print()


def _json(run: _Run) -> dict[str, Any]:
    recipients = []
    for row in run.rows:
        extra: dict[str, Any] = {"received": row.received, "server_does": row.scenario.server_does}
        if row.report.error is not None and not row.report.delivered:
            extra["explanation"] = explain(row.report.error, run.lang)
        recipients.append(as_json(row.report, extra))
    return {
        "seed": run.seed,
        "lang": run.lang,
        "recipients": recipients,
        "summary": {**_counts(run.rows), "retries": run.retries, "elapsed": round(run.elapsed, 3)},
        "server": {
            "messages_stored": run.stored,
            "kept_uncertain": run.kept_uncertain,
            "most_copies": max((row.received for row in run.rows), default=0),
        },
        "problems": run.problems,
    }
