"""``smtp-guard send``: send one message with the guard and say what happened to each recipient.

    smtp-guard send --host smtp.example.com --port 587 --from me@example.com \\
        --to alice@example.org --to bob@example.org message.eml
    SMTP_GUARD_USERNAME=me SMTP_GUARD_PASSWORD=... smtp-guard send --host ... message.eml
    smtp-guard send --to nobody@example.test message.eml \\
        --fault 'rcpt:nobody@*=550 5.1.1 No such user'     # no --host: a local test server
    cat message.eml | smtp-guard send --host ... -

Without ``--from`` / ``--to`` the sender and recipients come from the message's headers
(From/Sender, To/Cc/Bcc; Bcc is not sent), as :func:`aiosmtplib.send` does; with both, the file
is sent exactly as it is. Credentials come from the environment only (``SMTP_GUARD_USERNAME``,
``SMTP_GUARD_PASSWORD``), never from the command line, where other users could read them.
With credentials, STARTTLS is required (or ``--tls``); ``--insecure-auth`` allows a login over
an unencrypted connection.

With no ``--host`` the message goes to an embedded :class:`~smtp_guard.testing.FaultServer` on
127.0.0.1 (STARTTLS on, and AUTH with the credentials from the environment if there are any),
scripted with ``--fault`` (the FaultServer's text form), so the command can be tried safely.

Exit code: 0 every recipient got the message; 1 one or more were refused, deferred or
uncertain (or the server could not be reached); 2 bad arguments or an unreadable message
(nothing was sent).
"""

from __future__ import annotations

import argparse
import asyncio
import email
import email.errors
import email.message
import email.policy
import json
import logging
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
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
    tolerant_stdout,
)
from smtp_guard.errors import InvalidInput, ReplyError, SMTPGuardError
from smtp_guard.hooks import using_hooks
from smtp_guard.policy import RetryPolicy

if TYPE_CHECKING:
    import ssl

    from smtp_guard.testing import FaultServer

__all__ = ["PASSWORD_VARIABLE", "USERNAME_VARIABLE", "add_arguments", "run"]

HELP = "send a message (.eml) with retries and typed errors; no --host: to a local test server"

USERNAME_VARIABLE = "SMTP_GUARD_USERNAME"
PASSWORD_VARIABLE = "SMTP_GUARD_PASSWORD"  # noqa: S105 - the variable's name, not a password

_OUTCOME_STYLE = {REFUSED: "red", GAVE_UP: "yellow", UNCERTAIN: "magenta"}


class UsageError(Exception):
    """A bad argument or unreadable message: one line on stderr, exit code 2, nothing sent."""


_EPILOG = f"""\
credentials: from the environment only, {USERNAME_VARIABLE} and {PASSWORD_VARIABLE}
(never on the command line, where other users can read them).
exit code: 0 every recipient got it; 1 some were refused, deferred or uncertain, or the
server could not be reached; 2 bad arguments or an unreadable message (nothing sent).
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.epilog = _EPILOG
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.add_argument("file", metavar="FILE", help="the message (RFC 5322, .eml); - for stdin")
    where = parser.add_argument_group("server")
    where.add_argument("--host", help="SMTP server; without it, an embedded local test server")
    where.add_argument(
        "--port", type=int, help="port (default 25; 465 with --tls, 587 with --starttls)"
    )
    where.add_argument("--local-hostname", metavar="NAME", help="name to give in EHLO")
    tls = where.add_mutually_exclusive_group()
    tls.add_argument("--tls", action="store_true", help="TLS from the first byte (port 465)")
    tls.add_argument(
        "--starttls",
        dest="starttls",
        action="store_const",
        const=True,
        default=None,
        help="require STARTTLS (default: use it when offered; required with credentials)",
    )
    tls.add_argument(
        "--no-starttls",
        dest="starttls",
        action="store_const",
        const=False,
        help="never upgrade with STARTTLS",
    )
    where.add_argument("--cafile", metavar="PEM", help="trust these CA certificates")
    where.add_argument(
        "--no-verify", action="store_true", help="do not check the server's certificate"
    )
    where.add_argument(
        "--insecure-auth",
        action="store_true",
        help="allow credentials over an unencrypted connection",
    )
    envelope = parser.add_argument_group("envelope")
    envelope.add_argument("--from", dest="sender", metavar="ADDR", help="envelope sender")
    envelope.add_argument(
        "--to",
        dest="recipients",
        metavar="ADDR",
        action="append",
        help="a recipient (repeat for more)",
    )
    retry = parser.add_argument_group("retries")
    default = RetryPolicy()
    retry.add_argument(
        "--timeout",
        type=float,
        default=60.0,
        metavar="SECONDS",
        help="per SMTP command (default 60)",
    )
    retry.add_argument(
        "--attempts",
        type=int,
        default=default.attempts,
        help=f"at most this many attempts (default {default.attempts}; 1: never retry)",
    )
    retry.add_argument(
        "--deadline",
        type=float,
        default=default.deadline,
        metavar="SECONDS",
        help=f"give up after this long, waits included (default {default.deadline:g})",
    )
    parser.add_argument(
        "--fault",
        action="append",
        default=[],
        metavar="SPEC",
        help="script the embedded test server (no --host), e.g. 'rcpt:bob@*=550 5.1.1 No such'",
    )
    parser.add_argument("--json", action="store_true", help="print the outcome as JSON")
    parser.add_argument("--plain", action="store_true", help="plain text even on a terminal")
    parser.add_argument(
        "-v", "--verbose", action="store_true", help="log each attempt and retry to stderr"
    )


# --------------------------------------------------------------------------- checking


@dataclass
class _Plan:
    """Everything checked, before a byte is sent."""

    message: email.message.Message | bytes
    sender: str | None
    recipients: list[str]
    username: str | None
    password: str | None = field(repr=False)
    policy: RetryPolicy


def _read(path: str) -> bytes:
    if path == "-":
        return sys.stdin.buffer.read()
    try:
        return Path(path).read_bytes()
    except IsADirectoryError:
        raise UsageError(f"{path}: is a directory, not a message file") from None
    except OSError as exc:
        raise UsageError(f"cannot read {path}: {exc.strerror or exc}") from None


def _parse(data: bytes, name: str) -> email.message.Message:
    if not data.strip():
        raise UsageError(f"{name}: the message is empty")
    message = email.message_from_bytes(data, policy=email.policy.default)
    missing = any(
        isinstance(d, email.errors.MissingHeaderBodySeparatorDefect) for d in message.defects
    )
    if missing or not message.keys():
        raise UsageError(
            f"{name}: not an email message (it should start with header lines such as "
            "'From: ...' and 'Subject: ...', then an empty line, then the body)"
        )
    return message


def _credentials() -> tuple[str | None, str | None]:
    username = os.environ.get(USERNAME_VARIABLE) or None
    password = os.environ.get(PASSWORD_VARIABLE) or None
    if username is None and password is not None:
        raise UsageError(f"{PASSWORD_VARIABLE} is set but {USERNAME_VARIABLE} is not")
    if username is not None and password is None:
        raise UsageError(f"{USERNAME_VARIABLE} is set but {PASSWORD_VARIABLE} is not")
    return username, password


def _check_numbers(args: argparse.Namespace) -> RetryPolicy:
    if args.port is not None and not 0 < args.port < 65536:
        raise UsageError(f"--port must be from 1 to 65535, got {args.port}")
    if not args.timeout > 0:
        raise UsageError(f"--timeout must be more than 0 seconds, got {args.timeout:g}")
    if args.deadline <= 0:
        raise UsageError(f"--deadline must be more than 0 seconds, got {args.deadline:g}")
    try:
        return RetryPolicy(attempts=args.attempts, deadline=args.deadline)
    except InvalidInput as exc:
        raise UsageError(str(exc.message).replace("RetryPolicy.", "--")) from None


def _plan(args: argparse.Namespace) -> _Plan:
    # Cheap checks first: a typo in a flag should not wait for stdin.
    policy = _check_numbers(args)
    if args.host is not None and args.fault:
        raise UsageError("--fault scripts the embedded test server; it cannot go with --host")
    if args.host is not None and not args.host.strip():
        raise UsageError("--host is empty")
    if args.cafile is not None and not Path(args.cafile).is_file():
        raise UsageError(f"--cafile {args.cafile}: no such file")
    username, password = _credentials()
    name = "stdin" if args.file == "-" else args.file
    data = _read(args.file)
    parsed = _parse(data, name)
    message: email.message.Message | bytes = parsed
    if args.sender is not None and args.recipients:
        message = data  # both given: the file goes exactly as it is
    from smtp_guard.client._validate import make_envelope  # noqa: PLC0415

    try:
        envelope = make_envelope(message, args.sender, args.recipients)
    except InvalidInput as exc:
        hint = " (give --to)" if "ecipient" in exc.message and not args.recipients else ""
        raise UsageError(f"{exc.message}{hint}") from None
    return _Plan(
        message=message,
        sender=envelope.sender,
        recipients=list(envelope.original.values()),
        username=username,
        password=password,
        policy=policy,
    )


# --------------------------------------------------------------------------- sending


def run(args: argparse.Namespace) -> int:
    try:
        plan = _plan(args)
        server = _embedded(args, plan) if args.host is None else None
    except UsageError as exc:
        print(f"smtp-guard send: error: {exc}", file=sys.stderr)
        return 2
    tolerant_stdout()
    return asyncio.run(_send(args, plan, server))


def _embedded(args: argparse.Namespace, plan: _Plan) -> FaultServer:
    missing = missing_testing_extra()
    if missing is not None:
        raise UsageError(f"no --host given, and {missing}")
    from smtp_guard.testing import FaultServer, FaultSpecError  # noqa: PLC0415

    settings = ["starttls=on"]
    if args.tls:
        settings.append("tls=implicit")
    try:
        server = FaultServer(*settings, *args.fault, port=args.port or 0)
    except FaultSpecError as exc:
        raise UsageError(str(exc.message)) from None
    if plan.username is not None and plan.password is not None:
        server.settings = server.settings.replace(credentials={plan.username: plan.password})
    return server


async def _send(args: argparse.Namespace, plan: _Plan, server: FaultServer | None) -> int:
    if server is None:
        return await _send_to(args, plan, args.host, args.port, None)
    try:
        await server.start_async()
    except OSError as exc:
        where = f"{server.host}:{server.port}"
        print(
            f"smtp-guard send: error: cannot start the embedded test server on {where}: "
            f"{exc.strerror or exc}",
            file=sys.stderr,
        )
        return 2
    try:
        print(
            f"no --host: sending to an embedded test server (FaultServer) on "
            f"{server.host}:{server.port}; nothing leaves this machine",
            file=sys.stderr,
        )
        return await _send_to(args, plan, server.host, server.port, server)
    finally:
        await server.stop_async()


async def _send_to(
    args: argparse.Namespace,
    plan: _Plan,
    host: str,
    port: int | None,
    server: FaultServer | None,
) -> int:
    from smtp_guard.client import send  # noqa: PLC0415 - keeps `smtp-guard --help` fast

    tls_context: ssl.SSLContext | None = server.tls_context() if server is not None else None
    watcher = Watcher()
    raised: SMTPGuardError | None = None
    response = ""
    try:
        with _logging(args.verbose), using_hooks(watcher):
            result = await send(
                plan.message,
                sender=plan.sender,
                recipients=plan.recipients,
                hostname=host,
                port=port,
                username=plan.username,
                password=plan.password,
                local_hostname=args.local_hostname,
                timeout=args.timeout,
                use_tls=args.tls,
                start_tls=args.starttls,
                validate_certs=not args.no_verify,
                tls_context=tls_context,
                cert_bundle=args.cafile if tls_context is None else None,
                policy=plan.policy,
                allow_insecure_auth=args.insecure_auth,
            )
        response = result.response
    except InvalidInput as exc:
        if watcher.attempts_seen == 0:  # refused before connecting: a bad argument
            print(f"smtp-guard send: error: {exc.message}", file=sys.stderr)
            return 2
        raised = exc
    except SMTPGuardError as exc:
        raised = exc
    reports = watcher.reports(plan.recipients, raised)
    ok = all(r.outcome in (DELIVERED, DELIVERED_LATE) for r in reports)
    where = f"{host}:{port}" if port is not None else host
    if args.json:
        print(json.dumps(_json(reports, where, server, response, raised), indent=2))
    else:
        _print(args, reports, where=where, server=server, response=response, raised=raised)
    return 0 if ok else 1


@contextmanager
def _logging(verbose: bool) -> Iterator[None]:
    """With ``--verbose``, the ``smtp_guard`` log records go to stderr; else nowhere."""
    if not verbose:
        with quiet_logs():
            yield
        return
    log = logging.getLogger("smtp_guard")
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(levelname)s %(message)s"))
    level = log.level
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    try:
        yield
    finally:
        log.removeHandler(handler)
        log.setLevel(level)


# --------------------------------------------------------------------------- output


def _kind(error: SMTPGuardError) -> str:
    """``MailboxNotFound, permanent, at RCPT``."""
    where = ""
    if isinstance(error, ReplyError) and error.phase is not None:
        where = f", at {error.phase.value.upper()}"
    return f"{type(error).__name__}, {'permanent' if error.permanent else 'transient'}{where}"


def _details(reports: list[RecipientReport]) -> list[str]:
    """Under the table: the reply and what to do for each recipient that was not plain sailing."""
    lines = []
    for report in reports:
        error = report.error
        if error is None:
            continue
        lines.append(f"  {report.recipient}: {describe(error)} ({_kind(error)})")
        if report.outcome == DELIVERED_LATE:
            lines[-1] += f" -> delivered on attempt {report.attempts}"
        else:
            lines.append(f"      do:    {error.hint}")
    return lines


def _print(
    args: argparse.Namespace,
    reports: list[RecipientReport],
    *,
    where: str,
    server: FaultServer | None,
    response: str,
    raised: SMTPGuardError | None,
) -> None:
    console = make_console(args.plain)
    rows = [[r.recipient, r.outcome, category_of(r.error), str(r.attempts)] for r in reports]
    print_table(
        console,
        f"Sent to {where}",
        ["recipient", "outcome", "category", "tries"],
        narrow_outcomes(console, rows, column=1),
        styles=[_OUTCOME_STYLE.get(r.outcome) for r in reports],
    )
    details = _details(reports)
    delivered = sum(1 for r in reports if r.delivered)
    attempts = max((r.attempts for r in reports), default=0)
    line = f"{delivered} of {len(reports)} recipients delivered; {attempts} attempt(s)"
    if response:
        line += f"; server: {one_line(response)}"
    summary = [line]
    if raised is not None and raised.retry_after:
        summary.append(f"the server asked to wait {raised.retry_after:g}s before trying again")
    if server is not None:
        kept = server.messages
        summary.append(
            f"the test server kept {len(kept)} message(s)"
            + (f" for {', '.join(r for t in kept for r in t.recipients)}" if kept else "")
        )
    if details:
        print_lines(console, ["", *details])
    print_lines(console, ["", *summary])


def _json(
    reports: list[RecipientReport],
    where: str,
    server: FaultServer | None,
    response: str,
    raised: SMTPGuardError | None,
) -> dict[str, Any]:
    data: dict[str, Any] = {
        "server": where,
        "embedded": server is not None,
        "delivered": [r.recipient for r in reports if r.delivered],
        "recipients": [as_json(r) for r in reports],
        "response": response or None,
        "error": type(raised).__name__ if raised is not None else None,
    }
    if server is not None:
        data["kept"] = [list(t.recipients) for t in server.messages]
    return data
