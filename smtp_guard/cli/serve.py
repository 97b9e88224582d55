"""``smtp-guard serve``: run a misbehaving SMTP server in the foreground.

Point an application at it to see how it copes with refusals, deferrals, drops and delays::

    smtp-guard serve --port 2525 --fault "rcpt:*@gone.test=550 5.1.1 No such user" \\
        --fault "message=store-drop x1" --fault greylist=30s

Each transaction is printed when it ends; Ctrl-C or SIGTERM stops the server cleanly.
The fault language is described in :mod:`smtp_guard.testing.faults` (``--help-faults``).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ipaddress
import logging
import signal
import sys
import time
from typing import TYPE_CHECKING, TextIO

if TYPE_CHECKING:
    from smtp_guard.testing.server import ConnectionRecord, FaultServer, Transaction

HELP = "Run an SMTP server on loopback that misbehaves as scripted (for testing your app)."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--host",
        default="127.0.0.1",
        help="address to listen on (default 127.0.0.1; only loopback unless --allow-remote)",
    )
    parser.add_argument(
        "--port", type=int, default=2525, help="port to listen on (default 2525; 0 picks one)"
    )
    parser.add_argument(
        "--fault",
        "-f",
        action="append",
        default=[],
        metavar="SPEC",
        help="a fault or setting, e.g. 'rcpt:*@gone.test=550 5.1.1 No such user' (repeatable)",
    )
    parser.add_argument(
        "--allow-remote",
        action="store_true",
        help="allow a --host that is not a loopback address",
    )
    parser.add_argument(
        "--transcript", action="store_true", help="also print each connection's dialogue"
    )
    parser.add_argument(
        "--help-faults", action="store_true", help="explain the fault language and exit"
    )


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def describe(txn: Transaction) -> str:
    """One line per finished transaction."""
    stamp = time.strftime("%H:%M:%S")
    size = f"{len(txn.data)} bytes" if txn.data is not None else "no data"
    to = ", ".join(txn.recipients) or "(no recipients)"
    line = f"[{stamp}] #{txn.connection} {txn.peer} <{txn.sender}> -> {to}: {txn.outcome}, {size}"
    if txn.reply:
        line += f" ({txn.reply.splitlines()[-1]})"
    for rcpt, reply in txn.refused.items():
        line += f"\n           refused <{rcpt}>: {reply.splitlines()[-1]}"
    return line


def run(args: argparse.Namespace) -> int:
    out: TextIO = sys.stdout
    if args.help_faults:
        from smtp_guard.testing import faults  # noqa: PLC0415

        print(faults.__doc__, file=out)
        return 0
    if not args.allow_remote and not _is_loopback(args.host):
        print(
            f"smtp-guard serve: error: {args.host} is not a loopback address; "
            "add --allow-remote to listen there",
            file=sys.stderr,
        )
        return 2
    try:
        from smtp_guard.testing.faults import FaultSpecError  # noqa: PLC0415
        from smtp_guard.testing.server import FaultServer  # noqa: PLC0415
    except ImportError as exc:  # pragma: no cover - depends on the installed extras
        print(f"smtp-guard serve: needs the testing extra ({exc})", file=sys.stderr)
        return 2

    # aiosmtpd logs a warning for every odd command; the transcript already shows them.
    logging.getLogger("mail.log").addHandler(logging.NullHandler())

    def printed(txn: Transaction) -> None:
        print(describe(txn), file=out, flush=True)

    def closed(record: ConnectionRecord) -> None:
        lines = [f"--- connection #{record.id} from {record.peer}"]
        lines += [f"    {line}" for line in record.transcript]
        print("\n".join(lines), file=out, flush=True)

    try:
        server = FaultServer(
            *args.fault,
            host=args.host,
            port=args.port,
            allow_remote=args.allow_remote,
            on_transaction=printed,
            on_disconnect=closed if args.transcript else None,
        )
    except FaultSpecError as exc:
        print(f"smtp-guard serve: error: {exc.message}", file=sys.stderr)
        return 2
    return asyncio.run(_serve(server, out))


async def _serve(server: FaultServer, out: TextIO) -> int:
    try:
        await server.start_async()
    except OSError as exc:
        print(f"smtp-guard serve: error: cannot listen on {server.host}:{server.port}: {exc}",
              file=sys.stderr)  # fmt: skip
        return 1
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):  # Windows: Ctrl-C still raises
            loop.add_signal_handler(signum, stop.set)
    faults = [str(f) for f in server.faults]
    print(f"Listening on {server.host}:{server.port}", file=out, flush=True)
    for line in faults or ["(none: a well-behaved server)"]:
        print(f"  fault: {line}", file=out)
    for line in server.settings.describe():
        print(f"  setting: {line}", file=out)
    if server.settings.starttls != "off" or server.settings.implicit_tls:
        print(f"  CA certificate (trust it in your client): {server.ca_cert_path}", file=out)
    print("Press Ctrl-C to stop.", file=out, flush=True)
    try:
        await stop.wait()
    finally:
        await server.stop_async()
        for signum in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError):
                loop.remove_signal_handler(signum)
    print(
        f"Stopped: {server.connection_count} connections, {len(server.messages)} messages kept.",
        file=out,
        flush=True,
    )
    return 0
