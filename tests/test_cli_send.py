"""``smtp-guard send`` against a real FaultServer on loopback (run on its own thread).

Exit codes: 0 all delivered, 1 some not, 2 bad arguments (and then nothing reached the server).
Retries run in the testing mode (no real sleep).
"""

from __future__ import annotations

import importlib.util
import io
import json
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from smtp_guard.cli import main
from smtp_guard.cli.send import PASSWORD_VARIABLE, USERNAME_VARIABLE
from smtp_guard.policy import no_wait
from smtp_guard.testing import FaultServer

MESSAGE = (
    b"From: Shop <shop@sender.test>\r\n"
    b"To: alice@rcpt.test, Bob <bob@rcpt.test>\r\n"
    b"Bcc: hidden@rcpt.test\r\n"
    b"Subject: Your order\r\n"
    b"Message-ID: <order-1@sender.test>\r\n"
    b"\r\n"
    b"It has shipped.\r\n"
)
PASSWORD = "pa55-W0rd-that-must-not-show"


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.delenv(USERNAME_VARIABLE, raising=False)
    monkeypatch.delenv(PASSWORD_VARIABLE, raising=False)
    monkeypatch.setenv("COLUMNS", "200")
    with no_wait():
        yield


@pytest.fixture
def eml(tmp_path: Path) -> Path:
    path = tmp_path / "order.eml"
    path.write_bytes(MESSAGE)
    return path


def send(capsys: pytest.CaptureFixture[str], *argv: Any) -> tuple[int, str, str]:
    code = main(["send", *(str(a) for a in argv)])
    out, err = capsys.readouterr()
    return code, out, err


#: The EHLO name, given so that aiosmtplib does not ask socket.getfqdn() (slow or hanging on
#: some CI hosts).
NAMED = ("--local-hostname", "cli.test")


def at(server: FaultServer) -> list[str]:
    return ["--host", server.host, "--port", str(server.port), *NAMED]


def envelope(*recipients: str) -> list[str]:
    return ["--from", "shop@sender.test", *(x for r in recipients for x in ("--to", r))]


def rows(out: str) -> dict[str, str]:
    """recipient -> its line of the plain table."""
    return {
        line.split()[0]: line
        for line in out.splitlines()
        if line and not line.startswith(" ") and "@" in line.split()[0]
    }


# --------------------------------------------------------------------------- delivered


def test_delivered_to_everyone_sends_the_file_as_it_is(
    capsys: pytest.CaptureFixture[str], eml: Path
) -> None:
    with FaultServer() as srv:
        code, out, err = send(
            capsys, *at(srv), *envelope("alice@rcpt.test", "carol@rcpt.test"), "--plain", eml
        )
    assert (code, err) == (0, "")
    [txn] = srv.messages
    assert txn.sender == "shop@sender.test"
    assert txn.recipients == ["alice@rcpt.test", "carol@rcpt.test"]
    assert txn.data is not None
    assert txn.data.replace(b"\r\n", b"\n") == MESSAGE.replace(b"\r\n", b"\n")
    table = rows(out)
    assert "delivered" in table["alice@rcpt.test"]
    assert "delivered" in table["carol@rcpt.test"]
    assert "2 of 2 recipients delivered; 1 attempt(s)" in out
    assert "queued as" in out


def test_without_from_and_to_the_headers_decide_and_bcc_is_not_sent(
    capsys: pytest.CaptureFixture[str], eml: Path
) -> None:
    with FaultServer() as srv:
        code, out, _ = send(capsys, *at(srv), "--plain", eml)
    assert code == 0
    [txn] = srv.messages
    assert txn.sender == "shop@sender.test"
    assert sorted(txn.recipients) == ["alice@rcpt.test", "bob@rcpt.test", "hidden@rcpt.test"]
    assert txn.data is not None
    assert b"Bcc" not in txn.data
    assert b"hidden@rcpt.test" not in txn.data
    assert "3 of 3 recipients delivered" in out


def test_stdin(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("sys.stdin", io.TextIOWrapper(io.BytesIO(MESSAGE)))
    with FaultServer() as srv:
        code, _, _ = send(capsys, *at(srv), *envelope("alice@rcpt.test"), "-")
    assert code == 0
    assert [t.recipients for t in srv.messages] == [["alice@rcpt.test"]]


def test_no_host_uses_an_embedded_server_and_says_so(
    capsys: pytest.CaptureFixture[str], eml: Path
) -> None:
    code, out, err = send(capsys, *envelope("alice@rcpt.test"), "--plain", *NAMED, eml)
    assert code == 0
    assert "no --host: sending to an embedded test server (FaultServer) on 127.0.0.1:" in err
    assert "the test server kept 1 message(s) for alice@rcpt.test" in out


def test_embedded_server_scripted_with_fault(capsys: pytest.CaptureFixture[str], eml: Path) -> None:
    fault = "rcpt:bob@*=550 5.1.1 <{rcpt}>: No such user here"
    code, out, _ = send(
        capsys,
        *envelope("alice@rcpt.test", "bob@rcpt.test"),
        "--fault",
        fault,
        "--json",
        *NAMED,
        eml,
    )
    assert code == 1
    data = json.loads(out)
    assert data["embedded"] is True
    assert data["delivered"] == ["alice@rcpt.test"]
    assert data["kept"] == [["alice@rcpt.test"]]


# --------------------------------------------------------------------------- refused / retried


def test_refused_recipient_exit_1_with_typed_error_and_hint(
    capsys: pytest.CaptureFixture[str], eml: Path
) -> None:
    fault = "rcpt:bob@*=550 5.1.1 <{rcpt}>: Recipient address rejected: User unknown"
    with FaultServer(fault) as srv:
        code, out, _ = send(
            capsys, *at(srv), *envelope("alice@rcpt.test", "bob@rcpt.test"), "--plain", eml
        )
    assert code == 1
    assert [t.recipients for t in srv.messages] == [["alice@rcpt.test"]]
    assert rows(out)["bob@rcpt.test"].split()[1:] == ["refused", "mailbox_unknown", "1"]
    assert (
        "  bob@rcpt.test: 550 5.1.1 <bob@rcpt.test>: Recipient address rejected: User unknown "
        "(MailboxNotFound, permanent, at RCPT)\n"
        "      do:    The address does not exist; fix the spelling or remove it from your list.\n"
    ) in out
    assert "1 of 2 recipients delivered" in out


def test_json_outcome_matches_the_server(capsys: pytest.CaptureFixture[str], eml: Path) -> None:
    with FaultServer("rcpt:bob@*=552 5.2.2 Mailbox full") as srv:
        code, out, _ = send(
            capsys, *at(srv), *envelope("alice@rcpt.test", "bob@rcpt.test"), "--json", eml
        )
    assert code == 1
    data = json.loads(out)
    assert data["server"] == f"{srv.host}:{srv.port}"
    assert data["embedded"] is False
    assert data["delivered"] == [r for t in srv.messages for r in t.recipients]
    bob = data["recipients"][1]
    assert bob["recipient"] == "bob@rcpt.test"
    assert (bob["outcome"], bob["category"], bob["code"], bob["enhanced"]) == (
        "refused",
        "mailbox_full",
        552,
        "5.2.2",
    )
    assert bob["error"] == "MailboxFull"
    assert bob["permanent"] is True


def test_greylisted_is_retried_and_delivered_once(
    capsys: pytest.CaptureFixture[str], eml: Path
) -> None:
    fault = "rcpt:*=451 4.7.1 Greylisted, try again in 2 seconds x1"
    with FaultServer(fault) as srv:
        code, out, _ = send(capsys, *at(srv), *envelope("alice@rcpt.test"), "--plain", eml)
    assert code == 0
    assert srv.connection_count == 2
    assert srv.deliveries_to("alice@rcpt.test") == 1
    alice = rows(out)["alice@rcpt.test"]
    assert alice.split()[1:] == ["deferred,", "then", "delivered", "greylisted", "2"]
    assert "(Greylisted, transient, at RCPT) -> delivered on attempt 2\n" in out


def test_attempts_1_gives_up_on_a_transient_reply(
    capsys: pytest.CaptureFixture[str], eml: Path
) -> None:
    with FaultServer("rcpt:*=451 4.3.0 Temporary lookup failure") as srv:
        code, out, _ = send(
            capsys, *at(srv), *envelope("alice@rcpt.test"), "--attempts", "1", "--plain", eml
        )
    assert code == 1
    assert srv.connection_count == 1
    assert srv.messages == []
    assert "deferred, gave up" in rows(out)["alice@rcpt.test"]
    assert "(ServerError, transient, at RCPT)" in out


def test_drop_after_the_dot_is_uncertain_and_not_retried(
    capsys: pytest.CaptureFixture[str], eml: Path
) -> None:
    with FaultServer("message=store-drop") as srv:
        code, out, _ = send(capsys, *at(srv), *envelope("alice@rcpt.test"), "--plain", eml)
    assert code == 1
    assert srv.connection_count == 1
    assert srv.deliveries_to("alice@rcpt.test") == 1
    assert rows(out)["alice@rcpt.test"].split()[1:] == ["uncertain", "DeliveryUncertain", "1"]
    assert "      do:    The message may or may not have arrived" in out


def test_unreachable_server_exit_1(capsys: pytest.CaptureFixture[str], eml: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # bound, not listening: connections are refused
        code, out, _ = send(
            capsys,
            "--host", "127.0.0.1", "--port", port, *NAMED,
            *envelope("alice@rcpt.test"), "--attempts", "2", "--plain", eml,
        )  # fmt: skip
    assert code == 1
    line = rows(out)["alice@rcpt.test"].split()
    assert line[1:] == ["deferred,", "gave", "up", "ConnectionFailed", "2"]


# --------------------------------------------------------------------------- credentials


def test_auth_from_the_environment_over_starttls(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, eml: Path
) -> None:
    monkeypatch.setenv(USERNAME_VARIABLE, "shop")
    monkeypatch.setenv(PASSWORD_VARIABLE, PASSWORD)
    with FaultServer(starttls="on", credentials={"shop": PASSWORD}) as srv:
        code, out, err = send(
            capsys,
            *at(srv), "--cafile", srv.ca_cert_path, *envelope("alice@rcpt.test"), "-v", eml,
        )  # fmt: skip
    assert code == 0, out + err
    [txn] = srv.messages
    assert (txn.user, txn.tls) == ("shop", True)
    assert any(line.startswith("C: AUTH PLAIN ****") for line in srv.transcript)
    assert PASSWORD not in out + err
    assert "INFO" in err  # -v: the attempt was logged


def test_wrong_password_is_auth_failed_never_shown(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, eml: Path
) -> None:
    monkeypatch.setenv(USERNAME_VARIABLE, "shop")
    monkeypatch.setenv(PASSWORD_VARIABLE, PASSWORD)
    with FaultServer(starttls="on", credentials={"shop": "another"}) as srv:
        code, out, err = send(
            capsys, *at(srv), "--cafile", srv.ca_cert_path, *envelope("alice@rcpt.test"), eml
        )
    assert code == 1
    assert srv.transactions == []
    assert srv.connection_count == 1  # a 535 is not retried
    assert "auth_failed" in out
    assert "AuthFailed" in out
    assert PASSWORD not in out + err


def test_credentials_not_sent_over_plain_text_unless_allowed(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, eml: Path
) -> None:
    monkeypatch.setenv(USERNAME_VARIABLE, "shop")
    monkeypatch.setenv(PASSWORD_VARIABLE, PASSWORD)
    with FaultServer(credentials={"shop": PASSWORD}) as srv:
        code, out, _ = send(capsys, *at(srv), *envelope("alice@rcpt.test"), "--plain", eml)
        assert code == 1
        assert "InsecureConnection" in out
        assert not any("AUTH" in line for line in srv.transcript if line.startswith("C:"))
        code, out, _ = send(
            capsys, *at(srv), *envelope("alice@rcpt.test"), "--insecure-auth", "--plain", eml
        )
        assert code == 0
        assert [t.user for t in srv.messages] == ["shop"]
    assert PASSWORD not in out


# --------------------------------------------------------------------------- bad arguments


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["--to", "a@b.test>\r\nRCPT TO:<evil@x.test>"], "control character"),
        (["--to", "not-an-address"], "not one valid address"),
        (["--from", "shop@sender.test\r\nRSET"], "control character"),
        (["--attempts", "0"], "--attempts must be at least 1"),
        (["--timeout", "0"], "--timeout must be more than 0"),
        (["--deadline", "-1"], "--deadline must be more than 0"),
        (["--port", "70000"], "--port must be from 1 to 65535"),
        (["--fault", "rcpt:*=550 5.1.1 No"], "--fault scripts the embedded test server"),
        (["--cafile", "/nonexistent/ca.pem"], "--cafile /nonexistent/ca.pem: no such file"),
    ],
)
def test_bad_arguments_exit_2_one_line_nothing_sent(
    capsys: pytest.CaptureFixture[str], eml: Path, argv: list[str], expected: str
) -> None:
    with FaultServer() as srv:
        code, out, err = send(capsys, *at(srv), *envelope("alice@rcpt.test"), *argv, eml)
    assert code == 2
    assert out == ""
    assert err.startswith("smtp-guard send: error: ")
    assert err.count("\n") == 1
    assert expected in err
    assert srv.connection_count == 0


@pytest.mark.parametrize(
    ("content", "argv", "expected"),
    [
        (b"", [], "the message is empty"),
        (b"just some words, no headers at all\n", [], "not an email message"),
        (b"Subject: no from\r\nTo: a@rcpt.test\r\n\r\nbody\r\n", [], "No From header"),
        (b"From: a@sender.test\r\nSubject: nobody\r\n\r\nbody\r\n", [], "give --to"),
    ],
)
def test_unreadable_or_incomplete_message_exit_2(
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    content: bytes,
    argv: list[str],
    expected: str,
) -> None:
    path = tmp_path / "bad.eml"
    path.write_bytes(content)
    with FaultServer() as srv:
        code, out, err = send(capsys, *at(srv), *argv, path)
    assert (code, out) == (2, "")
    assert expected in err
    assert err.count("\n") == 1
    assert srv.connection_count == 0


def test_missing_file_and_directory_exit_2(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    code, _, err = send(capsys, *envelope("a@rcpt.test"), tmp_path / "nope.eml")
    assert code == 2
    assert "cannot read" in err
    assert "No such file or directory" in err
    code, _, err = send(capsys, *envelope("a@rcpt.test"), tmp_path)
    assert code == 2
    assert "is a directory" in err


def test_half_the_credentials_exit_2(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, eml: Path
) -> None:
    monkeypatch.setenv(USERNAME_VARIABLE, "shop")
    code, _, err = send(capsys, *envelope("a@rcpt.test"), eml)
    assert code == 2
    assert f"{USERNAME_VARIABLE} is set but {PASSWORD_VARIABLE} is not" in err


def test_bad_fault_spec_for_the_embedded_server_exit_2(
    capsys: pytest.CaptureFixture[str], eml: Path
) -> None:
    code, _, err = send(capsys, *envelope("a@rcpt.test"), "--fault", "rcpt:*=bogus", eml)
    assert code == 2
    assert "rcpt:*=bogus" in err


def test_password_is_not_an_option(capsys: pytest.CaptureFixture[str], eml: Path) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["send", "--password", PASSWORD, eml.as_posix()])
    assert exited.value.code == 2
    _, err = capsys.readouterr()
    assert "unrecognized arguments" in err


def test_tls_and_starttls_together_exit_2(capsys: pytest.CaptureFixture[str], eml: Path) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["send", "--tls", "--starttls", eml.as_posix()])
    assert exited.value.code == 2
    assert "not allowed with argument" in capsys.readouterr().err


def test_certificate_not_trusted_is_tls_failed_unless_no_verify(
    capsys: pytest.CaptureFixture[str], eml: Path
) -> None:
    with FaultServer(starttls="on") as srv:
        code, out, _ = send(
            capsys, *at(srv), "--starttls", *envelope("alice@rcpt.test"), "--plain", eml
        )
        assert code == 1
        assert rows(out)["alice@rcpt.test"].split()[-2:] == ["TLSFailed", "1"]
        assert srv.transactions == []
        code, out, _ = send(
            capsys, *at(srv), "--starttls", "--no-verify", *envelope("a@rcpt.test"), eml
        )
        assert code == 0
        assert [t.tls for t in srv.messages] == [True]


def test_bad_host_name_exit_2(capsys: pytest.CaptureFixture[str], eml: Path) -> None:
    code, out, err = send(capsys, "--host", "bad host", *envelope("a@rcpt.test"), eml)
    assert (code, out) == (2, "")
    assert "not a valid host name" in err


def test_embedded_server_port_in_use_exit_2(capsys: pytest.CaptureFixture[str], eml: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        code, out, err = send(capsys, "--port", port, *envelope("a@rcpt.test"), eml)
    assert (code, out) == (2, "")
    assert f"cannot start the embedded test server on 127.0.0.1:{port}" in err


def test_implicit_tls_to_the_embedded_server(capsys: pytest.CaptureFixture[str], eml: Path) -> None:
    code, out, _ = send(capsys, "--tls", *envelope("a@rcpt.test"), "--json", *NAMED, eml)
    assert code == 0
    assert json.loads(out)["kept"] == [["a@rcpt.test"]]


def test_no_host_without_the_testing_extra_exit_2(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, eml: Path
) -> None:
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "aiosmtpd" else real(name, *a)
    )
    code, out, err = send(capsys, *envelope("a@rcpt.test"), eml)
    assert (code, out) == (2, "")
    assert "no --host given, and the embedded test server needs aiosmtpd" in err
    assert "pip install 'smtp-guard[testing,cli]'" in err
