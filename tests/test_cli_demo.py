"""``smtp-guard demo``: the printed table and summary agree with the server's own records.

The demo runs for real (real sockets, STARTTLS, AUTH, short real waits): each run takes a few
seconds, so one run is shared by the tests that read its text output.
"""

from __future__ import annotations

import importlib.util
import io
import json
import os
import re
import subprocess
import sys
from contextlib import redirect_stderr, redirect_stdout
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

import smtp_guard.testing
from smtp_guard._enums import Category
from smtp_guard.cli import demo, main
from smtp_guard.cli._render import (
    DELIVERED,
    DELIVERED_LATE,
    REFUSED,
    UNCERTAIN,
    RecipientReport,
)
from smtp_guard.i18n import explain
from smtp_guard.testing import FaultServer

SEED = 5


class _Recording(FaultServer):
    """The real FaultServer, remembered so a test can read its records after the demo."""

    made: list[FaultServer] = []  # noqa: RUF012 - test bookkeeping

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        _Recording.made.append(self)


@dataclass
class Run:
    code: int
    out: str
    err: str
    server: FaultServer


def _run_demo(*argv: str) -> Run:
    _Recording.made.clear()
    out, err = io.StringIO(), io.StringIO()
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(smtp_guard.testing, "FaultServer", _Recording)
        with redirect_stdout(out), redirect_stderr(err):
            code = main(["demo", *argv])
    [server] = _Recording.made
    return Run(code, out.getvalue(), err.getvalue(), server)


@pytest.fixture(scope="module")
def text_run() -> Run:
    return _run_demo("--plain", "--lang", "cs", "--seed", str(SEED))


@dataclass
class Row:
    number: int
    recipient: str
    outcome: str
    category: str
    tries: int
    got: int


def _table(out: str) -> list[Row]:
    """The rows of the plain-text table, cut at the header's column positions."""
    lines = out.splitlines()
    start = next(i for i, x in enumerate(lines) if x.startswith("What happened, per recipient")) + 1
    header = lines[start]
    names = ["#", "recipient", "outcome", "category", "tries", "copies"]
    cuts = [header.index(name) for name in names]
    rows: list[Row] = []
    for line in lines[start + 1 :]:
        if not line.strip():
            break
        cells = [line[a:b].strip() for a, b in zip(cuts, [*cuts[1:], None], strict=True)]
        rows.append(Row(int(cells[0]), cells[1], cells[2], cells[3], int(cells[4]), int(cells[5])))
    return rows


def _by_recipient(rows: list[Row]) -> dict[str, Row]:
    return {row.recipient: row for row in rows}


def _summary(out: str) -> dict[str, float]:
    line = next(x for x in out.splitlines() if x.startswith("summary: "))
    numbers = dict(re.findall(r"(delivered|refused|uncertain|retries|gave up) (\d+)", line))
    found = {key: float(value) for key, value in numbers.items()}
    found["after_retry"] = float(re.search(r"\((\d+) after a retry\)", line)[1])  # type: ignore[index]
    return found


# --------------------------------------------------------------------------- the text run


def test_demo_exits_0_and_sends_the_whole_batch(text_run: Run) -> None:
    assert text_run.code == 0, text_run.out + text_run.err
    assert text_run.err == ""
    rows = _table(text_run.out)
    assert [row.recipient for row in rows] == [s.recipient for s in demo.plan(SEED)]
    assert len(rows) == len(demo.SCENARIOS) == 30


def test_each_row_agrees_with_what_the_server_kept(text_run: Run) -> None:
    server = text_run.server
    for row in _table(text_run.out):
        kept = server.deliveries_to(row.recipient)
        assert row.got == kept, row
        if row.outcome in (DELIVERED, DELIVERED_LATE):
            assert kept == 1, row
        elif row.outcome == REFUSED:
            assert kept == 0, row
    # Every attempt is a new connection: the attempts shown are all the server saw.
    rows = _table(text_run.out)
    assert sum(row.tries for row in rows) == server.connection_count
    assert max(server.deliveries_to(row.recipient) for row in rows) == 1


def test_the_scripted_failures_show_as_what_they_are(text_run: Run) -> None:
    rows = _by_recipient(_table(text_run.out))
    unknown = rows["nosuchuser@example.test"]
    assert (unknown.outcome, unknown.category) == (REFUSED, "mailbox_unknown")
    assert (
        "  nosuchuser@example.test: 550 5.1.1 <nosuchuser@example.test>: Recipient address "
        "rejected: User unknown in virtual mailbox table\n"
        "      do:    The address does not exist; fix the spelling or remove it from your list."
    ) in text_run.out
    full = rows["fullbox@example.test"]
    assert (full.outcome, full.category) == (REFUSED, "mailbox_full")
    stale = rows["subscriber@example.test"]
    assert (stale.outcome, stale.category, stale.tries) == (REFUSED, "auth_failed", 1)
    # The rate limit (10 messages a second) can defer any message first, depending on the
    # machine's speed; so the first reason shown is one of two, and the attempts at least 2.
    transcript = "\n".join(text_run.server.transcript)
    for name, category in (
        ("tom@greylisting.test", "greylisted"),
        ("uma@greylisting.test", "greylisted"),
        ("xena@lookup.test", "server_error"),
    ):
        row = rows[name]
        assert row.outcome == DELIVERED_LATE
        assert row.category in (category, "rate_limited")
        assert row.tries >= 2
        said = rf"\n  {re.escape(name)}: 45\d 4\.\d\.\d .* -> delivered on attempt {row.tries}\n"
        assert re.search(said, text_run.out)
    for name in ("tom@greylisting.test", "uma@greylisting.test"):
        assert f"S: 451 4.7.1 <{name}>: Recipient address rejected: Greylisted" in transcript
    # Dropped after the final dot: uncertain either way, and never sent again. The server
    # kept one of them.
    for name, outcome, copies in (
        ("yuri@kept-dropped.test", "stored-dropped", 1),
        ("zoe@dropped.test", "dropped", 0),
    ):
        row = rows[name]
        assert (row.outcome, row.category, row.got) == (UNCERTAIN, "DeliveryUncertain", copies)
        sent = [t.outcome for t in text_run.server.transactions if name in t.recipients]
        assert sent == [outcome]


def test_summary_numbers_match_the_server_records(text_run: Run) -> None:
    server = text_run.server
    summary = _summary(text_run.out)
    rows = _table(text_run.out)
    truly_delivered = [t for t in server.messages if t.outcome == "delivered"]
    assert summary["delivered"] == len(truly_delivered)
    assert summary["after_retry"] == sum(1 for r in rows if r.outcome == DELIVERED_LATE) >= 3
    assert summary["refused"] == 3
    assert summary["uncertain"] == 2
    # One retry = one more connection than messages.
    assert summary["retries"] == server.connection_count - len(rows)
    stored = re.search(r"server records: (\d+) messages stored", text_run.out)
    assert stored is not None
    assert int(stored[1]) == len(server.messages) == summary["delivered"] + 1
    assert "nobody got a message twice" in text_run.out


def test_lang_cs_prints_the_czech_explanations(text_run: Run) -> None:
    assert "what your users would read, cs" in text_run.out
    for category in (Category.MAILBOX_UNKNOWN, Category.MAILBOX_FULL, Category.AUTH_FAILED):
        assert f"      users: {explain(category, 'cs')}\n" in text_run.out
    assert explain(Category.MAILBOX_UNKNOWN, "en") not in text_run.out


def test_passwords_never_appear(text_run: Run) -> None:
    passwords = text_run.server.settings.credentials.values()
    assert passwords
    for password in passwords:
        assert password not in text_run.out
        assert password not in "\n".join(text_run.server.transcript)
    assert any("AUTH PLAIN ****" in line for line in text_run.server.transcript)


# --------------------------------------------------------------------------- other runs


def test_json_run_matches_the_server_records() -> None:
    run = _run_demo("--json", "--seed", "11")
    assert run.code == 0
    data = json.loads(run.out)
    server = run.server
    assert data["problems"] == []
    assert data["seed"] == 11
    recipients = data["recipients"]
    assert [r["recipient"] for r in recipients] == [s.recipient for s in demo.plan(11)]
    for item in recipients:
        assert item["received"] == server.deliveries_to(item["recipient"])
    assert sum(item["attempts"] for item in recipients) == server.connection_count
    assert data["server"]["messages_stored"] == len(server.messages)
    assert data["server"]["most_copies"] == 1
    unknown = next(r for r in recipients if r["recipient"] == "nosuchuser@example.test")
    assert (unknown["code"], unknown["enhanced"], unknown["permanent"]) == (550, "5.1.1", True)
    assert unknown["error"] == "MailboxNotFound"
    assert unknown["explanation"] == explain(Category.MAILBOX_UNKNOWN, "en")


def test_bad_lang_is_one_line_and_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    _Recording.made.clear()
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(smtp_guard.testing, "FaultServer", _Recording)
        assert main(["demo", "--lang", "xx"]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err.count("\n") == 1
    assert "--lang 'xx'" in err
    assert _Recording.made == []  # no server was started


@pytest.mark.parametrize(
    ("asked", "found"), [("cs", "cs"), ("cs-CZ.UTF-8", "cs"), ("de_DE", "de"), ("FR", "fr")]
)
def test_lang_takes_locale_spellings(asked: str, found: str) -> None:
    assert demo._language(asked) == found


def test_plan_is_reproducible_and_seeded() -> None:
    assert demo.plan(3) == demo.plan(3)
    assert demo.plan(3) != demo.plan(4)
    assert sorted(s.recipient for s in demo.plan(3)) == sorted(s.recipient for s in demo.SCENARIOS)


def test_a_second_copy_fails_the_check() -> None:
    # The self-check that makes the demo exit 1: a recipient the server has twice.
    report = RecipientReport("a@example.test", DELIVERED, 1, None)
    row = demo._Row(1, demo.Scenario("a@example.test", "accepts"), report, received=2)
    assert demo._check([row], stored=2) == ["a@example.test received 2 copies"]
    row.received = 1
    assert demo._check([row], stored=1) == []
    assert demo._check([row], stored=2) == ["the server stored 2 messages for 1 recipients"]


def test_installed_script_on_a_terminal_exits_0() -> None:
    # The entry point `make demo` runs, with rich told it is on a terminal (progress bar).
    script = Path(sys.executable).with_name("smtp-guard")
    env = {**os.environ, "TTY_COMPATIBLE": "1", "FORCE_COLOR": "1", "COLUMNS": "120"}
    done = subprocess.run(  # noqa: S603 - our own entry point
        [str(script), "demo", "--seed", "2"],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    text = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", done.stdout)
    assert "summary: delivered" in text
    assert "nobody got a message twice" in text
    assert "━" in text  # the progress bar was drawn


def test_without_the_testing_extra_one_line_exit_2(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "trustme" else real(name, *a)
    )
    assert main(["demo"]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err == (
        "smtp-guard demo: error: the embedded test server needs trustme: "
        "pip install 'smtp-guard[testing,cli]'\n"
    )
