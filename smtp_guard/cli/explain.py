"""``smtp-guard explain``: what an SMTP error reply means and what to do about it.

    smtp-guard explain 550 "5.1.1 <bob@example.com>: Recipient address rejected: User unknown"
    smtp-guard explain "451 4.7.1 Greylisted, try again in 5 minutes" --lang cs
    smtp-guard explain 535 5.7.8 Authentication credentials invalid --phase auth --json
    smtp-guard explain - < transcript.txt

With ``-`` it reads stdin: one whole reply (multi-line too), or an SMTP transcript with client
lines and server replies (``C:``/``S:`` prefixes, swaks's arrows, or no prefixes at all). Each
error reply (4xx/5xx) in it is explained; its phase comes from the client command it answers
(pipelined commands are matched to replies in order). Client lines are never printed, so AUTH
lines stay out of the output.

``--json`` prints one object (a reply given as arguments) or a list of objects (stdin), with
the keys in :data:`JSON_KEYS`.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import re
import sys
from collections import deque
from dataclasses import dataclass
from typing import Any, TextIO

from smtp_guard._enums import Category, Phase
from smtp_guard.classify import error_from_reply
from smtp_guard.enhanced import lookup_enhanced
from smtp_guard.errors import ReplyError, UserNotLocal
from smtp_guard.i18n import DEFAULT_LOCALE, _locale_candidates, available_locales, explain

__all__ = ["JSON_KEYS", "add_arguments", "run"]

HELP = "explain an SMTP error reply (or every error in a transcript) and what to do"

#: The keys of each JSON object, in order. Stable: new keys are only ever added at the end.
JSON_KEYS = (
    "line",
    "code",
    "enhanced",
    "enhanced_meaning",
    "text",
    "phase",
    "recipient",
    "category",
    "error",
    "permanent",
    "retry",
    "retry_after",
    "retry_advice",
    "hint",
    "explanation",
    "lang",
    "forward_path",
)

_REPLY_LINE = re.compile(r"^(?P<code>\d{3})(?P<sep>[ -]|$)(?P<text>.*)$")
# Who sent a line: "C:"/"S:" (RFC 5321's examples), or swaks's arrows: " -> " and " ~> " (client,
# plain and TLS), "<- ", "<~ " (server) and "<** ", "<~* " (server error).
_CLIENT = re.compile(r"^(?:[Cc]:|\s*->|\s*~>) ?")
_SERVER = re.compile(r"^(?:[Ss]:|<-|<~\*|<\*\*|<~)\s*")
_NOTE = re.compile(r"^(?:===|\*\*\*) ")  # swaks's own remarks, not part of the dialogue
_RCPT = re.compile(r"^RCPT\s+TO:\s*<?(?P<addr>[^<>\s]*)>?", re.IGNORECASE)
_VERB_PHASE: dict[str, Phase | None] = {
    "EHLO": Phase.EHLO,
    "HELO": Phase.EHLO,
    "LHLO": Phase.EHLO,
    "STARTTLS": Phase.STARTTLS,
    "AUTH": Phase.AUTH,
    "MAIL": Phase.MAIL,
    "RCPT": Phase.RCPT,
    "DATA": Phase.DATA,
    "BDAT": Phase.MESSAGE,
    "QUIT": Phase.QUIT,
    "RSET": None,
    "NOOP": None,
    "VRFY": None,
    "EXPN": None,
    "HELP": None,
}


_LOCALE_VARS = ("LC_ALL", "LC_MESSAGES", "LANG")


class UsageError(Exception):
    """A bad argument or unreadable input: one line on stderr, exit code 2."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "code",
        metavar="CODE",
        help="the reply code (e.g. 550), a whole reply line in quotes, or - to read stdin",
    )
    parser.add_argument(
        "text", metavar="TEXT", nargs="*", default=[], help="the reply text (may be unquoted)"
    )
    parser.add_argument(
        "--phase",
        choices=[p.value for p in Phase],
        help="the command the reply answered (for stdin: used when it cannot be told)",
    )
    parser.add_argument(
        "--lang",
        metavar="LANG",
        help="language of the user-facing explanation (cs, de, en, fr; default: from LANG)",
    )
    parser.add_argument("--json", action="store_true", help="print JSON (stable keys)")
    parser.add_argument(
        "--plain", action="store_true", help="plain text even when rich is installed"
    )


# --------------------------------------------------------------------------- input


@dataclass(frozen=True)
class _Found:
    """One server reply found in the input."""

    line: int | None  #: 1-based line of its first line in stdin; None for arguments
    code: int
    text: str  #: the lines' texts joined by newlines, enhanced codes still in
    phase: Phase | None
    recipient: str | None = None


def _reply_from_arguments(code: str, words: list[str], phase: Phase | None) -> _Found:
    if not words and (m := _REPLY_LINE.match(code.strip())) and m["sep"] != "":
        code, words = m["code"], [m["text"]]  # one quoted reply line: "550 5.1.1 ..."
    if not code.isdigit():
        raise UsageError(f"CODE must be a reply code such as 550, or -; got {code[:40]!r}")
    number = int(code)
    if not 400 <= number <= 599:
        raise UsageError(f"{number} is not an error reply (expected a code from 400 to 599)")
    return _Found(None, number, " ".join(words), phase)


class _Transcript:
    """Reads a transcript (or a bare reply) and pairs each reply with the command it answers."""

    def __init__(self, default_phase: Phase | None) -> None:
        self.default_phase = default_phase
        self.pending: deque[tuple[Phase | None, str | None]] = deque()
        self.client_seen = False
        self.last_verb: str | None = None
        self.in_message = False
        self.replies: list[_Found] = []

    def client(self, line: str) -> None:
        self.client_seen = True
        if self.in_message:
            if line == ".":
                self.in_message = False
                self.pending.append((Phase.MESSAGE, None))
            return
        verb = line.split(" ", 1)[0].split(":", 1)[0].upper()
        if verb in _VERB_PHASE:
            self.last_verb = verb
            rcpt = _RCPT.match(line) if verb == "RCPT" else None
            self.pending.append((_VERB_PHASE[verb], (rcpt["addr"] or None) if rcpt else None))
        elif self.last_verb == "AUTH":
            self.pending.append((Phase.AUTH, None))  # a SASL response line: answers AUTH
        else:
            self.last_verb = verb
            self.pending.append((self.default_phase, None))  # unknown command

    def reply(self, line_no: int, code: int, text: str) -> None:
        if self.pending:
            phase, recipient = self.pending.popleft()
        elif not self.replies and not self.client_seen:
            phase, recipient = None, None  # decided in finish(): greeting or bare reply
        else:
            phase, recipient = self.default_phase, None  # unsolicited (e.g. 421 shutdown)
        if code == 354:
            self.in_message = True
        self.replies.append(_Found(line_no, code, text, phase, recipient))

    def finish(self) -> list[_Found]:
        if self.client_seen and self.replies and self.replies[0].phase is None:
            first = self.replies[0]
            # The reply before any command is the greeting.
            self.replies[0] = _Found(first.line, first.code, first.text, Phase.CONNECT)
        return [
            r if r.phase is not None else _Found(r.line, r.code, r.text, self.default_phase)
            for r in self.replies
        ]


def _read_stdin() -> str:
    buffer = getattr(sys.stdin, "buffer", None)
    if buffer is not None:
        data: bytes = buffer.read()
        return data.decode("utf-8", errors="replace")
    return sys.stdin.read()


def _replies_from_text(text: str, default_phase: Phase | None) -> list[_Found]:
    transcript = _Transcript(default_phase)
    group: list[str] = []
    group_code = 0
    group_start = 0

    def close() -> None:
        nonlocal group
        if group:
            transcript.reply(group_start, group_code, "\n".join(group))
            group = []

    for number, raw in enumerate(text.replace("\r\n", "\n").split("\n"), start=1):
        line = raw.rstrip("\r")
        if not line.strip():
            continue
        if _NOTE.match(line):
            continue
        who: str | None = None
        body = line
        for side, pattern in (("C", _CLIENT), ("S", _SERVER)):
            if prefix := pattern.match(line):
                who, body = side, line[prefix.end() :]
                break
        match = _REPLY_LINE.match(body.strip()) if who != "C" else None
        if match is not None and not 200 <= int(match["code"]) <= 599:
            match = None  # RFC 5321 4.2: reply codes run from 2yz to 5yz
        if match is None or (who is None and transcript.in_message and not group):
            close()
            transcript.client(body.strip())
            continue
        code = int(match["code"])
        if group and code != group_code:
            close()
        if not group:
            group_code, group_start = code, number
        group.append(match["text"])
        if match["sep"] != "-":
            close()
    close()
    return transcript.finish()


# --------------------------------------------------------------------------- output


def _language(lang: str | None) -> str:
    """The catalog to use for ``--lang`` or, without it, the environment (as gettext reads it)."""
    asked = lang
    if asked is None:
        asked = next((os.environ[n] for n in _LOCALE_VARS if os.environ.get(n)), None)
    shipped = available_locales()
    return next((c for c in _locale_candidates(asked) if c in shipped), DEFAULT_LOCALE)


def _duration(seconds: float) -> str:
    if seconds >= 3600 and seconds % 3600 == 0:
        hours = int(seconds // 3600)
        return f"{hours} hour{'s' if hours != 1 else ''}"
    if seconds >= 60 and seconds % 60 == 0:
        minutes = int(seconds // 60)
        return f"{minutes} minute{'s' if minutes != 1 else ''}"
    return f"{seconds:g} second{'s' if seconds != 1 else ''}"


def _retry(err: ReplyError) -> tuple[str, str]:
    """("never" | "now" | "later", one line of advice)."""
    if err.permanent:
        return "never", "never: the same message will fail again; fix the cause first"
    if err.category is Category.TOO_MANY_RECIPIENTS:
        return "now", "now: send the remaining recipients in a new transaction"
    if err.retry_after is not None:
        return "later", f"later: in {_duration(err.retry_after)}, as the server asked"
    if err.category is Category.SERVICE_UNAVAILABLE:
        return "later", "later: on a new connection, after a short backoff"
    if err.category is Category.GREYLISTED:
        return "later", "later: in a few minutes (greylisting clears on a retry)"
    return "later", "later: with backoff (the server gave no time)"


def _describe(found: _Found, lang: str) -> dict[str, Any]:
    err = error_from_reply(found.code, found.text, found.phase, found.recipient)
    enhanced_meaning = None
    if err.enhanced:
        status = lookup_enhanced(err.enhanced)
        enhanced_meaning = status.meaning
    retry, advice = _retry(err)
    row: dict[str, Any] = {
        "line": found.line,
        "code": err.code,
        "enhanced": err.enhanced,
        "enhanced_meaning": enhanced_meaning,
        "text": err.text,
        "phase": err.phase.value if err.phase else None,
        "recipient": err.recipient,
        "category": err.category.value,
        "error": type(err).__name__,
        "permanent": err.permanent,
        "retry": retry,
        "retry_after": err.retry_after,
        "retry_advice": advice,
        "hint": err.hint,
        "explanation": explain(err, lang),
        "lang": lang,
        "forward_path": err.forward_path if isinstance(err, UserNotLocal) else None,
    }
    assert tuple(row) == JSON_KEYS  # noqa: S101 - the stable-key promise
    return row


def _one_line(text: str) -> str:
    return " / ".join(part.strip() for part in text.splitlines() if part.strip())


def _rows(info: dict[str, Any]) -> list[tuple[str, str]]:
    permanence = "permanent (do not retry as is)" if info["permanent"] else "transient"
    rows = [
        ("category", f"{info['category']} ({info['error']})"),
        ("permanence", permanence),
    ]
    if info["enhanced"]:
        rows.append(("enhanced", f"{info['enhanced']} {info['enhanced_meaning']}"))
    if info["phase"]:
        where = info["phase"].upper()
        if info["recipient"]:
            where += f" <{info['recipient']}>"
        rows.append(("phase", where))
    if info["forward_path"]:
        rows.append(("forward to", f"<{info['forward_path']}> (the server's suggestion)"))
    rows += [
        ("retry", info["retry_advice"]),
        ("what to do", info["hint"]),
        ("for users", info["explanation"]),
    ]
    return rows


def _title(info: dict[str, Any]) -> str:
    head = f"line {info['line']}: " if info["line"] is not None else ""
    text = _one_line(info["text"])
    enhanced = f" {info['enhanced']}" if info["enhanced"] else ""
    return f"{head}{info['code']}{enhanced} {text}".rstrip()


def _print_plain(infos: list[dict[str, Any]]) -> None:
    blocks = []
    for info in infos:
        lines = [_title(info)]
        lines += [f"  {label + ':':<12} {value}" for label, value in _rows(info)]
        blocks.append("\n".join(lines))
    print("\n\n".join(blocks))


def _print_rich(infos: list[dict[str, Any]], file: TextIO | None = None) -> None:
    # rich is the optional "cli" extra, imported only when it is used.
    from rich.console import Console  # noqa: PLC0415
    from rich.table import Table  # noqa: PLC0415

    console = Console(file=file)
    for info in infos:
        table = Table(title=_title(info), show_header=False, title_justify="left", expand=False)
        table.add_column(style="bold")
        table.add_column(overflow="fold")
        colour = "red" if info["permanent"] else "yellow"
        for label, value in _rows(info):
            style = colour if label in ("permanence", "retry") else None
            table.add_row(label, value, style=style)
        console.print(table)


def _use_rich(args: argparse.Namespace) -> bool:
    """rich output only on a terminal, when the optional extra is installed."""
    if args.plain or not sys.stdout.isatty():
        return False
    return importlib.util.find_spec("rich") is not None


def run(args: argparse.Namespace) -> int:
    try:
        return _run(args)
    except UsageError as exc:
        print(f"smtp-guard explain: error: {exc}", file=sys.stderr)
        return 2


def _run(args: argparse.Namespace) -> int:
    phase = Phase.coerce(args.phase)
    if args.lang is not None and not _locale_candidates(args.lang):
        raise UsageError(f"--lang must be a language tag such as cs or de_DE, got {args.lang!r}")
    lang = _language(args.lang)
    from_stdin = args.code == "-"
    if from_stdin:
        if args.text:
            raise UsageError("give either - (read stdin) or CODE TEXT, not both")
        replies = _replies_from_text(_read_stdin(), phase)
        if not replies:
            raise UsageError("no SMTP reply found on stdin (lines such as '550 5.1.1 ...')")
        found = [r for r in replies if r.code >= 400]
        if not found:
            print("no error replies (4xx or 5xx) in the input", file=sys.stderr)
            if args.json:
                print("[]")
            return 0
    else:
        found = [_reply_from_arguments(args.code, list(args.text), phase)]
    infos = [_describe(r, lang) for r in found]
    if args.json:
        print(json.dumps(infos if from_stdin else infos[0], ensure_ascii=False, indent=2))
    elif _use_rich(args):
        _print_rich(infos)
    else:
        _print_plain(infos)
    return 0
