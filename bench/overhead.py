"""What the guard costs on the happy path: smtp_guard.send vs aiosmtplib.send.

One connection per message (connect, EHLO, MAIL, RCPT, DATA, QUIT), sequentially, against a
fast sink in another process (Postfix's ``smtp-sink`` when installed, else an aiosmtpd sink;
see ``_sinks.py``). Sends alternate message by message (who goes first alternates too); each round
takes the median time per message of each client, and the figure is the median over rounds of
(guard / aiosmtplib). CPU time of this process is shown too (the sink's is not in it).

    .venv/bin/python bench/overhead.py [--rounds 15] [--messages 200] [--sink auto]

Target: a median ratio of at most 1.05 (5 % overhead).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any

import aiosmtplib

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from _sinks import smtp_sink

import smtp_guard.client

MESSAGE = (
    b"From: bench@sender.test\r\nTo: sink@rcpt.test\r\nSubject: overhead\r\n"
    b"Message-ID: <bench@sender.test>\r\n\r\n" + b"Hello, sink.\r\n" * 20
)
Send = Callable[..., Awaitable[Any]]


async def _one(send: Send, kwargs: dict[str, Any]) -> tuple[float, float]:
    """Wall-clock and CPU seconds (this process only) of one send."""
    wall, cpu = time.perf_counter(), time.process_time()
    errors, _response = await send(MESSAGE, **kwargs)
    if errors:
        raise RuntimeError(f"the sink refused: {errors}")
    return time.perf_counter() - wall, time.process_time() - cpu


async def _bench(host: str, port: int, rounds: int, count: int) -> list[Round]:
    kwargs: dict[str, Any] = {
        "sender": "bench@sender.test",
        "recipients": ["sink@rcpt.test"],
        "hostname": host,
        "port": port,
        "local_hostname": "bench.test",
        "start_tls": False,
    }
    theirs: Send = aiosmtplib.send
    ours: Send = smtp_guard.client.send
    for _ in range(20):  # warm-up: imports, caches, the sink's first connections
        await _one(theirs, kwargs)
        await _one(ours, kwargs)
    results = []
    for index in range(rounds):
        base: list[tuple[float, float]] = []
        guard: list[tuple[float, float]] = []
        for n in range(count):  # interleaved message by message, alternating who goes first
            if (index + n) % 2 == 0:
                base.append(await _one(theirs, kwargs))
                guard.append(await _one(ours, kwargs))
            else:
                guard.append(await _one(ours, kwargs))
                base.append(await _one(theirs, kwargs))
        results.append(Round(base, guard))
    return results


class Round:
    """The per-message timings of one round, for both clients."""

    def __init__(self, base: list[tuple[float, float]], guard: list[tuple[float, float]]) -> None:
        self.base_wall = statistics.median(w for w, _ in base)
        self.guard_wall = statistics.median(w for w, _ in guard)
        self.base_cpu = statistics.median(c for _, c in base)
        self.guard_cpu = statistics.median(c for _, c in guard)

    @property
    def ratio(self) -> float:
        return self.guard_wall / self.base_wall


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--messages", type=int, default=200, help="sends per client per round")
    parser.add_argument("--sink", choices=["auto", "smtp-sink", "aiosmtpd"], default="auto")
    args = parser.parse_args(argv)
    with smtp_sink(args.sink) as sink:
        results = asyncio.run(_bench(sink.host, sink.port, args.rounds, args.messages))
    ratios = [r.ratio for r in results]
    base = statistics.median(r.base_wall for r in results) * 1e6
    guard = statistics.median(r.guard_wall for r in results) * 1e6
    base_cpu = statistics.median(r.base_cpu for r in results) * 1e6
    guard_cpu = statistics.median(r.guard_cpu for r in results) * 1e6
    median = statistics.median(ratios)
    print(f"sink: {sink.kind}; {args.rounds} rounds x {args.messages} messages per client")
    print(f"aiosmtplib.send:  {base:7.1f} us wall, {base_cpu:7.1f} us CPU per message (median)")
    print(f"smtp_guard.send:  {guard:7.1f} us wall, {guard_cpu:7.1f} us CPU per message (median)")
    print(f"ratio per round:  {' '.join(f'{r:.3f}' for r in ratios)}")
    print(f"CPU ratio:        {guard_cpu / base_cpu:.3f}")
    print(f"median ratio:     {median:.3f}  ({(median - 1) * 100:+.1f} % overhead; target <= +5 %)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
