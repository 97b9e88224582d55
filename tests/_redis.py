"""A real redis-server on a free loopback port and a real Celery worker, for the Celery tests.

Debian package ``redis-server``; ``.ci/run`` installs it when missing. Tests that need it skip
with a clear reason when the binary is not on PATH.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import IO

import redis

__all__ = ["CeleryWorker", "RedisServer", "redis_available"]

_STARTUP_TIMEOUT = 10.0


def redis_available() -> bool:
    """Whether a redis-server binary is on PATH."""
    return shutil.which("redis-server") is not None


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class RedisServer:
    """``with RedisServer(tmp_path) as server: server.url`` -- started and gone afterwards."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.port = 0
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """``redis://127.0.0.1:PORT/0``."""
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        """Start redis-server and wait until it answers PING (retrying if the port was taken)."""
        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError("redis-server is not installed (apt-get install redis-server)")
        for _ in range(3):
            self.port = _free_port()
            self._process = subprocess.Popen(  # noqa: S603 (fixed arguments, our own binary)
                [
                    binary,
                    "--bind",
                    "127.0.0.1",
                    "--port",
                    str(self.port),
                    "--save",
                    "",
                    "--appendonly",
                    "no",
                    "--dir",
                    str(self.workdir),
                    "--loglevel",
                    "warning",
                ],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
            )
            if self._wait_ready():
                return
            self.stop()
        raise RuntimeError("redis-server did not start on a free loopback port")

    def _wait_ready(self) -> bool:
        client = redis.Redis(host="127.0.0.1", port=self.port, socket_connect_timeout=0.5)
        deadline = time.monotonic() + _STARTUP_TIMEOUT
        try:
            while time.monotonic() < deadline:
                if self._process is not None and self._process.poll() is not None:
                    return False
                try:
                    if client.ping():
                        return True
                except redis.ConnectionError:
                    time.sleep(0.02)
            return False
        finally:
            client.close()

    def stop(self) -> None:
        """Stop redis-server (terminate, then kill if it lingers)."""
        process, self._process = self._process, None
        if process is None:
            return
        process.terminate()
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        if process.stderr is not None:
            process.stderr.close()

    def flush(self) -> None:
        """Empty every database (between tests sharing one server)."""
        client = redis.Redis(host="127.0.0.1", port=self.port)
        try:
            client.flushall()
        finally:
            client.close()

    def __enter__(self) -> RedisServer:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


class CeleryWorker:
    """A real ``celery worker`` process (solo pool) for ``app_module``, against ``broker_url``.

    ``env`` adds environment variables (the app module reads its settings from them). The
    worker's output goes to ``log_path``; :meth:`start` returns once the worker says it is ready.
    """

    def __init__(
        self,
        app_module: str,
        *,
        broker_url: str,
        log_path: Path,
        env: dict[str, str] | None = None,
        pythonpath: Sequence[Path] = (),
    ) -> None:
        self.app_module = app_module
        self.broker_url = broker_url
        self.log_path = log_path
        self.env = dict(env or {})
        self.pythonpath = list(pythonpath)
        self._process: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    def start(self, timeout: float = 30.0) -> None:
        """Start the worker and wait for its "ready" line (RuntimeError with its log if not)."""
        env = dict(os.environ)
        env.update(self.env)
        env["SMTP_GUARD_TEST_BROKER"] = self.broker_url
        paths = [str(p) for p in self.pythonpath]
        if env.get("PYTHONPATH"):
            paths.append(env["PYTHONPATH"])
        env["PYTHONPATH"] = os.pathsep.join(paths)
        self._log = self.log_path.open("wb")
        self._process = subprocess.Popen(  # noqa: S603 (our interpreter, fixed arguments)
            [
                sys.executable,
                "-m",
                "celery",
                "-A",
                self.app_module,
                "worker",
                "--pool=solo",
                "--loglevel=INFO",
                "--without-gossip",
                "--without-mingle",
                "--without-heartbeat",
                "--hostname=smtp-guard-test@%h",
            ],
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env=env,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                break
            if b" ready." in self.log_path.read_bytes():
                return
            time.sleep(0.05)
        log = self.log()
        self.stop()
        raise RuntimeError(f"the Celery worker did not start; its log:\n{log}")

    def log(self) -> str:
        """Everything the worker wrote so far."""
        return self.log_path.read_text("utf-8", "replace")

    def stop(self) -> None:
        """Warm shutdown (SIGTERM), then kill if it lingers."""
        process, self._process = self._process, None
        if process is not None:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        if self._log is not None:
            self._log.close()
            self._log = None
