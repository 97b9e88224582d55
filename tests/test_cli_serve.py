"""``smtp-guard serve`` as a user runs it: a real process, a real client, then a signal."""

from __future__ import annotations

import asyncio
import re
import signal
import ssl
import sys

import aiosmtplib
import pytest

from smtp_guard.cli import main

LAUNCH = "import sys; from smtp_guard.cli import main; sys.exit(main())"
#: The clients' EHLO name: without it aiosmtplib asks socket.getfqdn() (slow or hanging on
#: some CI hosts).
CLIENT_NAME = "client.test"


async def start_serve(*args: str) -> tuple[asyncio.subprocess.Process, int, list[str]]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", LAUNCH, "serve", "--port", "0", *args,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    assert proc.stdout is not None
    seen: list[str] = []
    while True:
        line = (await asyncio.wait_for(proc.stdout.readline(), 20)).decode()
        if not line:
            err = await proc.stderr.read() if proc.stderr else b""
            pytest.fail(f"serve exited early: {seen} {err.decode()}")
        seen.append(line.rstrip("\n"))
        if line.startswith("Press Ctrl-C"):
            break
    m = re.search(r"Listening on 127\.0\.0\.1:(\d+)", "\n".join(seen))
    assert m, seen
    return proc, int(m.group(1)), seen


async def read_until(proc: asyncio.subprocess.Process, prefix: str) -> list[str]:
    assert proc.stdout is not None
    lines: list[str] = []
    while True:
        line = (await asyncio.wait_for(proc.stdout.readline(), 20)).decode()
        assert line, f"output ended before {prefix!r}: {lines}"
        lines.append(line.rstrip("\n"))
        if line.lstrip().startswith(prefix):
            return lines


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
async def test_serves_prints_each_transaction_and_stops_on_a_signal(signum: int) -> None:
    proc, port, banner = await start_serve(
        "--fault", "rcpt:*@gone.test=550 5.1.1 No such user", "-f", "size=1M"
    )
    try:
        assert "  fault: rcpt:*@gone.test=550 5.1.1 No such user" in banner
        refused, _ = await aiosmtplib.send(
            "Subject: hi\r\n\r\nhello\r\n", sender="a@x.test",
            recipients=["b@ok.test", "c@gone.test"], hostname="127.0.0.1", port=port,
            start_tls=False, timeout=5, local_hostname=CLIENT_NAME,
        )  # fmt: skip
        assert list(refused) == ["c@gone.test"]
        printed = await read_until(proc, "refused")
        assert re.search(r"#1 127\.0\.0\.1 <a@x\.test> -> b@ok\.test: delivered", printed[0])
        assert printed[-1].strip() == "refused <c@gone.test>: 550 5.1.1 No such user"
    finally:
        proc.send_signal(signum)
        out, err = await asyncio.wait_for(proc.communicate(), 20)
    assert proc.returncode == 0, err.decode()
    assert out.decode().strip().endswith("Stopped: 1 connections, 1 messages kept.")
    assert err.decode() == ""


async def test_transcript_option_prints_each_connection_with_auth_masked() -> None:
    proc, port, banner = await start_serve(
        "-f", "auth=alice:hunter2", "-f", "starttls=on", "--transcript"
    )
    try:
        assert "  setting: auth=alice:****" in banner
        [ca_line] = [line for line in banner if "CA certificate" in line]
        context = ssl.create_default_context(cafile=ca_line.rsplit(": ", 1)[1])
        await aiosmtplib.send(
            "Subject: hi\r\n\r\nhello\r\n", sender="a@x.test", recipients=["b@ok.test"],
            hostname="127.0.0.1", port=port, start_tls=True, tls_context=context, timeout=5,
            username="alice", password="hunter2", local_hostname=CLIENT_NAME,
        )  # fmt: skip
        lines = await read_until(proc, "S: 221")
        # AUTH LOGIN: user name and password each on a line of their own, base64
        client = aiosmtplib.SMTP(hostname="127.0.0.1", port=port, start_tls=True,
                                 tls_context=context, timeout=5,
                                 local_hostname=CLIENT_NAME)  # fmt: skip
        async with client:
            await client.ehlo()
            await client.auth_login("alice", "hunter2")
        lines += await read_until(proc, "S: 221")
    finally:
        proc.send_signal(signal.SIGINT)
        out, _ = await asyncio.wait_for(proc.communicate(), 20)
    text = "\n".join(lines) + out.decode()
    assert "--- connection #1 from 127.0.0.1" in text
    assert "C: AUTH PLAIN ****" in text
    assert "C: STARTTLS" in text
    assert "C: AUTH LOGIN ****" in text
    assert "C: ****" in text
    for secret in ("hunter2", "aHVudGVyMg", "AGFsaWNlAGh1bnRlcjI", "YWxpY2UAYWxpY2UAaHVudGVyMg"):
        assert secret not in text  # the password, as LOGIN and as PLAIN send it
    assert "\n".join(banner).count("hunter2") == 0


def test_bad_fault_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["serve", "--fault", "rcpt:*@x=550 ok x0"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("smtp-guard serve: error: bad fault 'rcpt:*@x=550 ok x0' in 'x0'")


def test_bad_auth_fault_does_not_print_the_password(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["serve", "--fault", "auth=alice-hunter2"]) == 2
    assert "hunter2" not in capsys.readouterr().err


def test_refuses_a_non_loopback_address(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["serve", "--host", "192.0.2.1"]) == 2  # never bound
    assert "not a loopback address" in capsys.readouterr().err


def test_port_in_use_is_reported(capsys: pytest.CaptureFixture[str]) -> None:
    import socket  # noqa: PLC0415

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert main(["serve", "--port", str(port)]) == 1
    assert f"cannot listen on 127.0.0.1:{port}" in capsys.readouterr().err


def test_help_faults_prints_the_grammar(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["serve", "--help-faults"]) == 0
    out = capsys.readouterr().out
    assert "PHASE[:PATTERN]=ACTION [MODIFIER ...]" in out
    assert "store-drop" in out
