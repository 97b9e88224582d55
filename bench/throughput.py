"""Throughput: messages per second through aiosmtplib, smtp_guard.send and the pooled Mailer.

Run: ``python bench/throughput.py`` (``--help`` for the options). Against a fast C sink in
another process (Postfix's ``smtp-sink``; an aiosmtpd sink if Postfix is not installed), on
loopback and again through a proxy of ours that adds ``--delay-ms`` (20 ms) each way. Modes:

- ``aiosmtplib.send x1``: one connection per message, one message at a time (through the
  proxy only 25 messages: at 20 ms each way one message costs about 260 ms);
- ``aiosmtplib.send xN``: the same from N concurrent tasks (N = ``--pool``);
- ``aiosmtplib 1 conn``: one reused connection, ``sendmail`` after ``sendmail``;
- ``aiosmtplib N conns``: N reused connections, one task each (the fair baseline for a pool);
- ``smtp_guard.send xN``: one connection per message from N tasks;
- ``Mailer N nopipe`` / ``Mailer N pipe``: the pooled Mailer, all messages gathered at once;
- ``smtp-source N``: Postfix's C client, N sessions reusing connections (the machine's limit).

Rounds are interleaved (every mode once per round) and the median rate per mode is printed;
the machine is shared and noisy, so read the figures with that in mind. Nothing is asserted.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from contextlib import ExitStack

import aiosmtplib
from _sinks import POSTFIX_HOWTO, delay_proxy, find_postfix_tool, smtp_sink, smtp_source_rate

from smtp_guard.client import send as guard_send
from smtp_guard.mailer import Mailer
from smtp_guard.policy import RetryPolicy

SENDER = "bench@sender.test"
BODY = (
    b"From: bench@sender.test\r\nTo: sink@rcpt.test\r\nSubject: throughput\r\n\r\n"
    + b"x" * 72
    + b"\r\n"
) * 12  # about 1 KB

Run = Callable[[str, int, int, int], Awaitable[None]]


def _rcpt(i: int) -> list[str]:
    return [f"r{i}@rcpt.test"]


async def aiosmtplib_send_sequential(host: str, port: int, count: int, pool: int) -> None:
    for i in range(count):
        await aiosmtplib.send(
            BODY, sender=SENDER, recipients=_rcpt(i), hostname=host, port=port, start_tls=False
        )


async def _workers(count: int, pool: int, one: Callable[[int], Awaitable[object]]) -> None:
    queue = iter(range(count))

    async def worker() -> None:
        for i in queue:
            await one(i)

    await asyncio.gather(*(worker() for _ in range(pool)))


async def aiosmtplib_send_concurrent(host: str, port: int, count: int, pool: int) -> None:
    async def one(i: int) -> object:
        return await aiosmtplib.send(
            BODY, sender=SENDER, recipients=_rcpt(i), hostname=host, port=port, start_tls=False
        )

    await _workers(count, pool, one)


async def _reused(host: str, port: int, count: int, connections: int) -> None:
    clients = [
        aiosmtplib.SMTP(hostname=host, port=port, start_tls=False) for _ in range(connections)
    ]
    await asyncio.gather(*(c.connect() for c in clients))
    free = list(clients)

    async def one(i: int) -> object:
        client = free.pop()
        try:
            return await client.sendmail(SENDER, _rcpt(i), BODY)
        finally:
            free.append(client)

    await _workers(count, connections, one)
    await asyncio.gather(*(c.quit() for c in clients))


async def aiosmtplib_one_connection(host: str, port: int, count: int, pool: int) -> None:
    await _reused(host, port, count, 1)


async def aiosmtplib_pool_connections(host: str, port: int, count: int, pool: int) -> None:
    await _reused(host, port, count, pool)


async def guard_send_concurrent(host: str, port: int, count: int, pool: int) -> None:
    async def one(i: int) -> object:
        return await guard_send(
            BODY, sender=SENDER, recipients=_rcpt(i), hostname=host, port=port, start_tls=False
        )

    await _workers(count, pool, one)


def _mailer_run(pipelining: bool) -> Run:
    async def run(host: str, port: int, count: int, pool: int) -> None:
        async with Mailer(
            hostname=host,
            port=port,
            start_tls=False,
            pool_size=pool,
            max_messages_per_connection=max(100, count),
            pipelining=pipelining,
            policy=RetryPolicy(attempts=1),
        ) as mailer:
            await asyncio.gather(
                *(mailer.send(BODY, sender=SENDER, recipients=_rcpt(i)) for i in range(count))
            )

    return run


async def _call(run: Run, host: str, port: int, count: int, pool: int) -> None:
    await run(host, port, count, pool)


def modes(pool: int) -> dict[str, Run]:
    found: dict[str, Run] = {
        "aiosmtplib.send x1": aiosmtplib_send_sequential,
        f"aiosmtplib.send x{pool}": aiosmtplib_send_concurrent,
        "aiosmtplib 1 conn": aiosmtplib_one_connection,
        f"aiosmtplib {pool} conns": aiosmtplib_pool_connections,
        f"smtp_guard.send x{pool}": guard_send_concurrent,
        f"Mailer {pool} nopipe": _mailer_run(pipelining=False),
        f"Mailer {pool} pipe": _mailer_run(pipelining=True),
    }
    return found


def measure(
    host: str, port: int, count: int, pool: int, *, rounds: int, delayed: bool
) -> dict[str, float]:
    rates: dict[str, list[float]] = {}
    for _ in range(rounds):
        for name, run in modes(pool).items():
            # One message at a time through the delay is slow; fewer messages say as much.
            n = min(count, 25) if delayed and name == "aiosmtplib.send x1" else count
            started = time.perf_counter()
            asyncio.run(_call(run, host, port, n, pool))
            rates.setdefault(name, []).append(n / (time.perf_counter() - started))
        source = smtp_source_rate(host, port, messages=count, sessions=pool, reuse=True)
        if source is not None:
            rates.setdefault(f"smtp-source {pool}", []).append(source)
    return {name: statistics.median(values) for name, values in rates.items()}


def report(title: str, rates: dict[str, float], count: int, pool: int) -> None:
    base = rates.get(f"aiosmtplib.send x{pool}")
    print(f"\n{title} ({count} messages per run, median of rounds)")
    print(f"  {'mode':<24}{'msg/s':>10}{'x send':>9}")
    for name, rate in rates.items():
        ratio = f"{rate / base:8.2f}x" if base else ""
        print(f"  {name:<24}{rate:>10.0f}{ratio}")


def targets(loop: dict[str, float], slow: dict[str, float] | None, pool: int) -> None:
    print("\nTargets")

    def line(ok: bool, text: str) -> None:
        print(f"  [{'MET ' if ok else 'MISS'}] {text}")

    mailer = loop[f"Mailer {pool} pipe"]
    raw = loop[f"aiosmtplib {pool} conns"]
    line(
        mailer >= 0.9 * raw,
        f"loopback: Mailer {mailer:.0f}/s within 10% of aiosmtplib over {pool} reused "
        f"connections {raw:.0f}/s ({mailer / raw - 1:+.0%})",
    )
    for per_message in (f"aiosmtplib.send x{pool}", "aiosmtplib.send x1"):
        send = loop[per_message]
        line(
            mailer >= 1.5 * send,
            f"loopback: Mailer >= 1.5x {per_message} ({mailer / send:.2f}x)",
        )
    if slow is None:
        return
    mailer_d = slow[f"Mailer {pool} pipe"]
    nopipe_d = slow[f"Mailer {pool} nopipe"]
    for per_message in (f"aiosmtplib.send x{pool}", "aiosmtplib.send x1"):
        send_d = slow[per_message]
        line(
            mailer_d >= 4 * send_d,
            f"delayed: Mailer >= 4x {per_message} ({mailer_d / send_d:.2f}x)",
        )
    line(
        mailer_d >= 1.5 * nopipe_d,
        f"delayed: pipelining >= 1.5x Mailer without it ({mailer_d / nopipe_d:.2f}x)",
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--messages", type=int, default=1000, help="messages per run on loopback")
    parser.add_argument("--delayed-messages", type=int, default=200, help="per run via the proxy")
    parser.add_argument("--pool", type=int, default=4, help="pool size / concurrency")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds on loopback")
    parser.add_argument("--delayed-rounds", type=int, default=1)
    parser.add_argument("--delay-ms", type=float, default=20.0, help="added each way; 0 skips")
    parser.add_argument("--sink", choices=["auto", "smtp-sink", "aiosmtpd"], default="auto")
    args = parser.parse_args(argv)
    if find_postfix_tool("smtp-source") is None:
        print(POSTFIX_HOWTO, file=sys.stderr)
    with ExitStack() as stack:
        sink = stack.enter_context(smtp_sink(args.sink))
        print(f"sink: {sink.kind} on {sink.host}:{sink.port} (PIPELINING advertised)")
        loop = measure(
            sink.host, sink.port, args.messages, args.pool, rounds=args.rounds, delayed=False
        )
        report("Loopback", loop, args.messages, args.pool)
        slow = None
        if args.delay_ms > 0:
            host, port = stack.enter_context(delay_proxy(sink.port, args.delay_ms))
            slow = measure(
                host,
                port,
                args.delayed_messages,
                args.pool,
                rounds=args.delayed_rounds,
                delayed=True,
            )
            report(
                f"Through the proxy, +{args.delay_ms:g} ms each way",
                slow,
                args.delayed_messages,
                args.pool,
            )
        targets(loop, slow, args.pool)
    return 0


if __name__ == "__main__":
    sys.exit(main())
