"""Fast local SMTP sinks and a delaying TCP proxy for the benchmarks (loopback only).

Used by ``bench/throughput.py`` and ``bench/overhead.py``; run a bench script directly
(``python bench/throughput.py``) so that this module imports as ``_sinks``.

* :func:`smtp_sink` starts a sink in another process and yields a :class:`Sink`:
  Postfix's ``smtp-sink`` (C, fast) when installed, else an aiosmtpd sink
  (``python bench/_sinks.py aiosmtpd-sink``). Nothing is installed here;
  :data:`POSTFIX_HOWTO` says how to get the Postfix tools.
* :func:`smtp_source_rate` runs Postfix's ``smtp-source`` against a sink and returns
  messages per second: the machine's reference limit.
* :func:`delay_proxy` starts, in another process, a TCP proxy that adds ``delay_ms`` to every
  chunk in each direction (so one round trip costs ``2 * delay_ms`` more), and yields its
  address. :class:`DelayProxy` is the same proxy in the current event loop.

Every listener binds 127.0.0.1; every connection goes to 127.0.0.1 or ::1 only.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Literal

__all__ = [
    "LOOPBACK",
    "POSTFIX_HOWTO",
    "DelayProxy",
    "Sink",
    "delay_proxy",
    "find_postfix_tool",
    "smtp_sink",
    "smtp_source_rate",
]

LOOPBACK = "127.0.0.1"
_ALLOWED_HOSTS = frozenset({"127.0.0.1", "::1", "localhost"})
POSTFIX_HOWTO = (
    "Postfix's smtp-sink/smtp-source are not installed; for the C reference figures run: "
    "sudo apt-get install postfix  (then make sure no postfix daemon is left on port 25: "
    "sudo systemctl disable --now postfix)"
)
_POSTFIX_DIRS = ("/usr/sbin", "/usr/lib/postfix/sbin", "/usr/libexec/postfix", "/usr/bin")
_READY_TIMEOUT = 10.0

SinkKind = Literal["auto", "smtp-sink", "aiosmtpd"]


def _check_loopback(host: str) -> None:
    if host not in _ALLOWED_HOSTS:
        raise ValueError(f"benchmarks only talk to loopback, not {host!r}")


def find_postfix_tool(name: str) -> str | None:
    """Path of a Postfix tool (``smtp-sink``, ``smtp-source``) or None if not installed."""
    for directory in _POSTFIX_DIRS:
        path = os.path.join(directory, name)
        if os.access(path, os.X_OK):
            return path
    return shutil.which(name)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((LOOPBACK, 0))
        port: int = probe.getsockname()[1]
        return port


def _wait_listening(port: int, proc: subprocess.Popen[bytes], what: str) -> None:
    deadline = time.monotonic() + _READY_TIMEOUT
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            err = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
            raise RuntimeError(f"{what} exited with {proc.returncode}: {err.strip()[:500]}")
        with contextlib.suppress(OSError), socket.create_connection((LOOPBACK, port), 0.5):
            return
        time.sleep(0.02)
    raise RuntimeError(f"{what} did not listen on {LOOPBACK}:{port} within {_READY_TIMEOUT}s")


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
    for stream in (proc.stdout, proc.stderr):
        if stream is not None:
            stream.close()


@dataclass(frozen=True)
class Sink:
    """A running SMTP sink in another process."""

    kind: Literal["smtp-sink", "aiosmtpd"]
    host: str
    port: int
    pipelining: bool
    process: subprocess.Popen[bytes] = field(repr=False, compare=False)

    @property
    def address(self) -> tuple[str, int]:
        return (self.host, self.port)


@contextlib.contextmanager
def smtp_sink(kind: SinkKind = "auto", *, pipelining: bool = True) -> Iterator[Sink]:
    """Start an SMTP sink in another process for the duration of the ``with`` block.

    ``kind="auto"`` prefers Postfix's ``smtp-sink`` and falls back to aiosmtpd (printing
    :data:`POSTFIX_HOWTO` to stderr once). ``pipelining=False`` makes the sink not advertise
    PIPELINING. The sink accepts every message and discards it.
    """
    tool = find_postfix_tool("smtp-sink") if kind in ("auto", "smtp-sink") else None
    if kind == "smtp-sink" and tool is None:
        raise RuntimeError(POSTFIX_HOWTO)
    if kind == "auto" and tool is None:
        print(POSTFIX_HOWTO, file=sys.stderr)
    port = _free_port()
    if tool is not None:
        # -P: do not advertise PIPELINING. Backlog 256.
        # As root, smtp-sink insists on dropping privileges after binding.
        cmd = [tool]
        if os.geteuid() == 0:
            cmd += ["-u", "nobody"]
        if not pipelining:
            cmd.append("-P")
        cmd += [f"{LOOPBACK}:{port}", "256"]
        what: Literal["smtp-sink", "aiosmtpd"] = "smtp-sink"
    else:
        cmd = [sys.executable, os.path.abspath(__file__), "aiosmtpd-sink", "--port", str(port)]
        if not pipelining:
            cmd.append("--no-pipelining")
        what = "aiosmtpd"
    proc = subprocess.Popen(  # noqa: S603 - fixed argv, no shell
        cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    try:
        _wait_listening(port, proc, what)
        yield Sink(what, LOOPBACK, port, pipelining, proc)
    finally:
        _stop(proc)


def smtp_source_rate(
    host: str,
    port: int,
    *,
    messages: int = 1000,
    sessions: int = 4,
    reuse: bool = True,
    recipients: int = 1,
    size: int = 1024,
) -> float | None:
    """Messages per second Postfix's ``smtp-source`` reaches, or None if it is not installed.

    ``sessions`` parallel SMTP sessions; with ``reuse`` (``-d``) each session sends message
    after message over the same connection, else one connection per message.
    """
    _check_loopback(host)
    tool = find_postfix_tool("smtp-source")
    if tool is None:
        return None
    cmd = [tool, "-s", str(sessions), "-m", str(messages), "-r", str(recipients)]
    cmd += ["-l", str(size), "-M", "bench.test", "-f", "bench@sender.test", "-t", "sink@rcpt.test"]
    if reuse:
        cmd.append("-d")
    cmd.append(f"{host}:{port}")
    started = time.perf_counter()
    subprocess.run(  # noqa: S603 - fixed argv, no shell
        cmd, check=True, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, timeout=600
    )
    return messages / (time.perf_counter() - started)


# --------------------------------------------------------------------------- delaying proxy


class DelayProxy:
    """A TCP proxy on 127.0.0.1 that delays every chunk by ``delay_ms`` in each direction.

    Chunks are forwarded in order at ``arrival + delay`` (latency is added, bandwidth is not
    cut: many chunks can be in flight). ``async with DelayProxy(port, 20) as (host, port):``.
    """

    def __init__(self, target_port: int, delay_ms: float, *, target_host: str = LOOPBACK) -> None:
        _check_loopback(target_host)
        self.target = (target_host, target_port)
        self.delay = delay_ms / 1000.0
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._writers: set[asyncio.StreamWriter] = set()

    @property
    def address(self) -> tuple[str, int]:
        if self._server is None:
            raise RuntimeError("the proxy is not started")
        sock = self._server.sockets[0]
        host, port = sock.getsockname()[:2]
        return (str(host), int(port))

    async def start(self, port: int = 0) -> tuple[str, int]:
        self._server = await asyncio.start_server(self._accept, LOOPBACK, port, backlog=256)
        return self.address

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
        for writer in list(self._writers):
            writer.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()
            self._server = None

    async def __aenter__(self) -> tuple[str, int]:
        return await self.start()

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()

    def _spawn(self, coro: Any) -> None:
        task: asyncio.Task[None] = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.add(writer)
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.target)
        except OSError:
            writer.close()
            self._writers.discard(writer)
            return
        self._writers.add(up_writer)
        self._spawn(self._pump(reader, up_writer))
        self._spawn(self._pump(up_reader, writer))

    async def _pump(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()

        async def deliver() -> None:
            while True:
                due, chunk = await queue.get()
                wait = due - loop.time()
                if wait > 0:
                    await asyncio.sleep(wait)
                if not chunk:
                    if writer.can_write_eof():
                        with contextlib.suppress(OSError):
                            writer.write_eof()
                    return
                writer.write(chunk)
                await writer.drain()

        sender = asyncio.ensure_future(deliver())
        try:
            while True:
                chunk = await reader.read(65536)
                queue.put_nowait((loop.time() + self.delay, chunk))
                if not chunk:
                    break
            await sender
        except (OSError, asyncio.IncompleteReadError):
            pass
        finally:
            sender.cancel()
            with contextlib.suppress(BaseException):
                await sender
            writer.close()
            self._writers.discard(writer)


@contextlib.contextmanager
def delay_proxy(target_port: int, delay_ms: float) -> Iterator[tuple[str, int]]:
    """Run :class:`DelayProxy` in another process (so it does not share the bench's CPU time)."""
    port = _free_port()
    cmd = [
        sys.executable,
        os.path.abspath(__file__),
        "proxy",
        "--port",
        str(port),
        "--target-port",
        str(target_port),
        "--delay-ms",
        str(delay_ms),
    ]
    proc = subprocess.Popen(  # noqa: S603 - fixed argv, no shell
        cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    try:
        _wait_listening(port, proc, "delay proxy")
        yield (LOOPBACK, port)
    finally:
        _stop(proc)


# --------------------------------------------------------------------------- child processes


async def _serve_forever_until_term(server_close: Any) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await server_close()


async def _run_aiosmtpd_sink(port: int, pipelining: bool) -> None:
    from aiosmtpd.smtp import SMTP  # noqa: PLC0415 - only the sink child process needs it

    class _Discard:
        async def handle_EHLO(
            self, server: Any, session: Any, envelope: Any, hostname: str, responses: list[str]
        ) -> list[str]:
            session.host_name = hostname
            if pipelining:
                responses.insert(-1, "250-PIPELINING")
            return responses

        async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
            return "250 2.0.0 Ok: discarded"

    handler = _Discard()
    loop = asyncio.get_running_loop()
    server = await loop.create_server(
        lambda: SMTP(handler, hostname="sink.bench", ident="bench sink"),
        LOOPBACK,
        port,
        backlog=256,
    )

    async def close() -> None:
        server.close()
        await server.wait_closed()

    await _serve_forever_until_term(close)


async def _run_proxy(port: int, target_port: int, delay_ms: float) -> None:
    proxy = DelayProxy(target_port, delay_ms)
    await proxy.start(port)
    await _serve_forever_until_term(proxy.stop)


def _main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    sub = parser.add_subparsers(dest="what", required=True)
    sink = sub.add_parser("aiosmtpd-sink", help="an aiosmtpd sink that discards every message")
    sink.add_argument("--port", type=int, required=True)
    sink.add_argument("--no-pipelining", action="store_true")
    proxy = sub.add_parser("proxy", help="a TCP proxy adding a delay each way")
    proxy.add_argument("--port", type=int, required=True)
    proxy.add_argument("--target-port", type=int, required=True)
    proxy.add_argument("--delay-ms", type=float, required=True)
    args = parser.parse_args(argv)
    if args.what == "aiosmtpd-sink":
        asyncio.run(_run_aiosmtpd_sink(args.port, not args.no_pipelining))
    else:
        asyncio.run(_run_proxy(args.port, args.target_port, args.delay_ms))
    return 0


if __name__ == "__main__":
    sys.exit(_main())
