"""``smtp-guard explain``: arguments, stdin replies and transcripts, JSON, languages, errors."""

from __future__ import annotations

import base64
import io
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from smtp_guard._enums import Category
from smtp_guard.classify import error_from_reply
from smtp_guard.cli import explain as explain_cli
from smtp_guard.cli import main
from smtp_guard.errors import UserNotLocal
from smtp_guard.i18n import explain

UNKNOWN_USER = "5.1.1 <bob@example.com>: Recipient address rejected: User unknown"
SECRET = base64.b64encode(b"\0bob\0Sup3r-Secret-pa55").decode()

# A pipelined session as Postfix answers it; C:/S: as in RFC 5321's examples.
TRANSCRIPT = f"""\
S: 220 mx.example.com ESMTP Postfix
C: EHLO client.example.org
S: 250-mx.example.com
S: 250-PIPELINING
S: 250 AUTH PLAIN LOGIN
C: AUTH PLAIN {SECRET}
S: 535 5.7.8 Error: authentication failed: authentication failure
C: MAIL FROM:<alice@example.org>
C: RCPT TO:<bob@example.com>
C: RCPT TO:<carol@example.net>
C: DATA
S: 250 2.1.0 Ok
S: 550 {UNKNOWN_USER}
S: 451 4.7.1 <carol@example.net>: Recipient address rejected: Greylisted, try again in 5 minutes
S: 354 End data with <CR><LF>.<CR><LF>
C: Subject: numbers
C:
C: 550 is only a number in the body
C: .
S: 552 5.3.4 Message size exceeds fixed limit
C: QUIT
S: 221 2.0.0 Bye
"""


@pytest.fixture(autouse=True)
def _english_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("LC_ALL", "LC_MESSAGES", "LANG"):
        monkeypatch.delenv(name, raising=False)


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(["explain", *argv])
    out, err = capsys.readouterr()
    return code, out, err


def _stdin(monkeypatch: pytest.MonkeyPatch, data: str | bytes) -> None:
    raw = data.encode("utf-8") if isinstance(data, str) else data
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(raw), encoding="utf-8"))


def _json(capsys: pytest.CaptureFixture[str], *argv: str) -> Any:
    code, out, err = _run(capsys, *argv, "--json")
    assert code == 0, err
    return json.loads(out)


# --------------------------------------------------------------------------- arguments


def test_explains_a_reply_given_as_arguments(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = _run(capsys, "550", UNKNOWN_USER)
    assert code == 0
    assert err == ""
    expected = error_from_reply(550, UNKNOWN_USER)
    lines = out.splitlines()
    assert lines[0] == "550 5.1.1 <bob@example.com>: Recipient address rejected: User unknown"
    assert f"  category:    {expected.category.value} ({type(expected).__name__})" in lines
    assert "  permanence:  permanent (do not retry as is)" in lines
    assert "  enhanced:    5.1.1 Bad destination mailbox address" in lines
    assert any(line.startswith("  retry:       never") for line in lines)
    assert f"  what to do:  {expected.hint}" in lines
    assert f"  for users:   {explain(expected, 'en')}" in lines


def test_lang_gives_the_user_text_in_that_language(capsys: pytest.CaptureFixture[str]) -> None:
    _, out, _ = _run(capsys, "550", UNKNOWN_USER, "--lang", "cs")
    expected = error_from_reply(550, UNKNOWN_USER)
    assert f"  for users:   {explain(expected, 'cs')}" in out.splitlines()
    assert explain(expected, "cs") != explain(expected, "en")


def test_language_comes_from_the_environment_without_lang(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LANG", "de_DE.UTF-8")
    info = _json(capsys, "452", "4.2.2 Mailbox full")
    assert info["lang"] == "de"
    assert info["explanation"] == explain(Category(info["category"]), "de")
    monkeypatch.setenv("LC_ALL", "fr_FR.UTF-8")
    assert _json(capsys, "452", "4.2.2 Mailbox full")["lang"] == "fr"


def test_unknown_language_falls_back_to_english(capsys: pytest.CaptureFixture[str]) -> None:
    info = _json(capsys, "421", "Service not available", "--lang", "xx_YY")
    assert info["lang"] == "en"
    assert info["explanation"] == explain(Category(info["category"]), "en")


def test_phase_option(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = _run(capsys, "550", UNKNOWN_USER, "--phase", "rcpt")
    assert code == 0
    assert "  phase:       RCPT" in out.splitlines()
    assert _json(capsys, "550", UNKNOWN_USER, "--phase", "RCPT".lower())["phase"] == "rcpt"
    assert _json(capsys, "550", UNKNOWN_USER)["phase"] is None


def test_json_has_the_stable_keys_and_values(capsys: pytest.CaptureFixture[str]) -> None:
    info = _json(capsys, "550", UNKNOWN_USER, "--phase", "rcpt", "--lang", "cs-CZ.UTF-8")
    assert tuple(info) == explain_cli.JSON_KEYS
    # Stable: these keys keep their names and order; new ones are only appended.
    assert list(info)[:17] == [
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
    ]
    expected = error_from_reply(550, UNKNOWN_USER, "rcpt")
    assert info == {
        "line": None,
        "code": 550,
        "enhanced": "5.1.1",
        "enhanced_meaning": "Bad destination mailbox address",
        "text": "<bob@example.com>: Recipient address rejected: User unknown",
        "phase": "rcpt",
        "recipient": None,
        "category": expected.category.value,
        "error": type(expected).__name__,
        "permanent": True,
        "retry": "never",
        "retry_after": None,
        "retry_advice": info["retry_advice"],
        "hint": expected.hint,
        "explanation": explain(expected, "cs"),
        "lang": "cs",
        "forward_path": None,
    }
    assert info["retry_advice"].startswith("never")


def test_transient_reply_with_a_server_hint_says_when(capsys: pytest.CaptureFixture[str]) -> None:
    info = _json(capsys, "451 4.7.1 Greylisted, try again in 5 minutes")
    assert info["code"] == 451
    assert info["enhanced"] == "4.7.1"
    assert info["permanent"] is False
    assert info["retry"] == "later"
    assert info["retry_after"] == 300
    assert "in 5 minutes" in info["retry_advice"]


def test_retry_advice_for_each_kind_of_reply() -> None:
    def advice(code: int, text: str, **kwargs: Any) -> tuple[str, str]:
        return explain_cli._retry(error_from_reply(code, text, **kwargs))

    assert advice(554, "5.7.1 Rejected")[0] == "never"
    assert advice(450, "4.2.0 Busy, try again in 90 seconds") == (
        "later",
        "later: in 90 seconds, as the server asked",
    )
    assert advice(421, "4.3.2 Service shutting down, try again in 1 hour")[1].endswith(
        "in 1 hour, as the server asked"
    )
    too_many = error_from_reply(452, "4.5.3 Too many recipients")
    if too_many.category is Category.TOO_MANY_RECIPIENTS:
        assert explain_cli._retry(too_many)[0] == "now"
    unhinted = error_from_reply(451, "4.3.0 Local error in processing")
    assert explain_cli._retry(unhinted)[0] == "later"


def test_unquoted_words_are_the_text(capsys: pytest.CaptureFixture[str]) -> None:
    info = _json(capsys, "535", "5.7.8", "Authentication", "credentials", "invalid")
    assert info["text"] == "Authentication credentials invalid"
    assert info["enhanced"] == "5.7.8"


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["abc", "x"], "CODE must be a reply code"),
        (["250", "OK"], "250 is not an error reply"),
        (["99"], "99 is not an error reply"),
        (["-", "extra"], "either - (read stdin) or CODE TEXT"),
        (["550", "x", "--lang", "!!"], "--lang must be a language tag"),
    ],
)
def test_bad_arguments_give_one_line_and_exit_2(
    capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    code, out, err = _run(capsys, *argv)
    assert code == 2
    assert out == ""
    assert len(err.splitlines()) == 1
    assert err.startswith("smtp-guard explain: error: ")
    assert message in err


@pytest.mark.parametrize("argv", [[], ["550", "--phase", "nowhere"], ["550", "--bogus"]])
def test_argparse_errors_are_one_line_and_exit_2(
    capsys: pytest.CaptureFixture[str], argv: list[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["explain", *argv])
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1
    assert "error:" in err


# --------------------------------------------------------------------------- stdin


def test_stdin_multiline_reply(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    _stdin(
        monkeypatch,
        "550-5.7.1 The user or domain that you are sending to (or from) has a policy\r\n"
        "550 5.7.1 that prohibited the mail that you sent.\r\n",
    )
    infos = _json(capsys, "-", "--phase", "rcpt")
    assert len(infos) == 1
    assert infos[0]["line"] == 1
    assert infos[0]["code"] == 550
    assert infos[0]["enhanced"] == "5.7.1"
    assert infos[0]["phase"] == "rcpt"  # no client lines: the --phase given
    assert infos[0]["text"] == (
        "The user or domain that you are sending to (or from) has a policy\n"
        "that prohibited the mail that you sent."
    )


@pytest.mark.parametrize("prefixed", [True, False], ids=["with C:/S:", "bare"])
def test_stdin_transcript_takes_each_phase_from_its_command(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, prefixed: bool
) -> None:
    text = TRANSCRIPT
    if not prefixed:
        text = "\n".join(line[3:] if line[:2] in ("C:", "S:") else "" for line in text.split("\n"))
    _stdin(monkeypatch, text)
    infos = _json(capsys, "-")
    found = [(i["line"], i["code"], i["phase"], i["recipient"]) for i in infos]
    assert found == [
        (7, 535, "auth", None),
        (13, 550, "rcpt", "bob@example.com"),
        (14, 451, "rcpt", "carol@example.net"),
        (20, 552, "message", None),
    ]
    assert infos[2]["retry_after"] == 300
    assert infos[1]["enhanced_meaning"] == "Bad destination mailbox address"


def test_transcript_output_never_shows_client_lines(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    for extra in ([], ["--json"]):
        _stdin(monkeypatch, TRANSCRIPT)
        code, out, err = _run(capsys, "-", *extra)
        assert code == 0
        assert SECRET not in out + err
        assert "AUTH PLAIN" not in out + err
        assert "only a number in the body" not in out


def test_plain_transcript_output_names_lines(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    _stdin(monkeypatch, TRANSCRIPT)
    code, out, _ = _run(capsys, "-", "--lang", "fr")
    assert code == 0
    titles = [line for line in out.splitlines() if line.startswith("line ")]
    assert [t.split(":")[0] for t in titles] == ["line 7", "line 13", "line 14", "line 20"]
    assert "  phase:       RCPT <carol@example.net>" in out.splitlines()
    first = error_from_reply(535, "5.7.8 Error: authentication failed", "auth")
    assert f"  for users:   {explain(first, 'fr')}" in out.splitlines()


def test_greeting_refusal_is_at_connect(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    _stdin(monkeypatch, "S: 554 5.7.1 mx.example.com No SMTP service here\nC: QUIT\nS: 221 Bye\n")
    infos = _json(capsys, "-")
    assert [(i["code"], i["phase"]) for i in infos] == [(554, "connect")]


def test_unsolicited_421_gets_no_phase(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    _stdin(
        monkeypatch,
        "220 mx ESMTP\nEHLO me\n250 mx\n421 4.4.2 mx.example.com Error: timeout exceeded\n",
    )
    infos = _json(capsys, "-")
    assert [(i["code"], i["phase"]) for i in infos] == [(421, None)]


def test_stdin_without_errors_exits_0(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    _stdin(monkeypatch, "220 ready\nEHLO me\n250 ok\n")
    code, out, err = _run(capsys, "-")
    assert code == 0
    assert out == ""
    assert "no error replies" in err


@pytest.mark.parametrize("data", ["", "\n\n", "hello there\nno replies here\n"])
def test_stdin_without_any_reply_is_an_error(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, data: str
) -> None:
    _stdin(monkeypatch, data)
    code, out, err = _run(capsys, "-")
    assert out == ""
    assert code == 2
    assert len(err.splitlines()) == 1
    assert "no SMTP reply found" in err


def test_stdin_with_undecodable_bytes_does_not_crash(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    _stdin(monkeypatch, b"550 5.1.1 \xff\xfe user \xc3 unknown\n")
    infos = _json(capsys, "-")
    assert infos[0]["code"] == 550
    assert "\N{REPLACEMENT CHARACTER}" in infos[0]["text"]


# --------------------------------------------------------------------------- output forms


def test_rich_output_has_the_same_facts() -> None:
    pytest.importorskip("rich")
    info = explain_cli._describe(
        explain_cli._reply_from_arguments("550", [UNKNOWN_USER], None), "en"
    )
    buffer = io.StringIO()
    explain_cli._print_rich([info], file=buffer)
    shown = buffer.getvalue()
    assert "550 5.1.1" in shown
    assert info["category"] in shown
    assert "Bad destination mailbox address" in shown
    assert "never" in shown


def test_the_installed_script_runs() -> None:
    script = Path(sys.executable).parent / "smtp-guard"
    assert script.exists(), "pip install -e . puts the smtp-guard script next to python"
    done = subprocess.run(  # noqa: S603 - our own script, fixed arguments
        [str(script), "explain", "-", "--json", "--lang", "cs"],
        input="C: RCPT TO:<bob@example.com>\nS: 550 " + UNKNOWN_USER + "\n",
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    infos = json.loads(done.stdout)
    assert infos[0]["recipient"] == "bob@example.com"
    assert infos[0]["lang"] == "cs"
    assert infos[0]["explanation"] == explain(Category(infos[0]["category"]), "cs")


# The layout swaks (the common SMTP test tool) prints: "<-" server, " ->" client, "<**" a
# server error, "~>"/"<~" the same over TLS, "===" its own remarks.
SWAKS = """\
=== Trying mx.example.com:25...
=== Connected to mx.example.com.
<-  220 mx.example.com ESMTP Postfix
 -> EHLO client.example.org
<-  250-mx.example.com
<-  250 STARTTLS
 -> STARTTLS
<-  220 2.0.0 Ready to start TLS
=== TLS started with cipher TLSv1.3:TLS_AES_256_GCM_SHA384:256
 ~> EHLO client.example.org
<~  250 mx.example.com
 ~> MAIL FROM:<alice@example.org>
<~  250 2.1.0 Ok
 ~> RCPT TO:<bob@example.com>
<~* 550 5.1.1 <bob@example.com>: Recipient address rejected: User unknown
 ~> QUIT
<~  221 2.0.0 Bye
=== Connection closed with remote host.
"""


def test_swaks_transcripts(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    _stdin(monkeypatch, SWAKS)
    infos = _json(capsys, "-")
    assert [(i["line"], i["code"], i["phase"], i["recipient"]) for i in infos] == [
        (15, 550, "rcpt", "bob@example.com")
    ]
    plain = SWAKS.replace("~", "-").replace("<-*", "<**")
    _stdin(monkeypatch, plain)
    assert [i["code"] for i in _json(capsys, "-")] == [550]


def test_json_without_errors_is_an_empty_list(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    _stdin(monkeypatch, "220 ready\n")
    assert _json(capsys, "-") == []


def test_codes_outside_2yz_to_5yz_are_not_replies(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    _stdin(monkeypatch, "999 not a reply\n100 nor this\n550 5.1.1 but this is\n")
    assert [i["code"] for i in _json(capsys, "-")] == [550]


@given(st.text(alphabet=st.sampled_from("0123459 -.:CS<>*~\n=abcRCPT")))
@settings(max_examples=200, deadline=None)
def test_any_input_is_explained_or_refused_in_one_line(text: str) -> None:
    found = explain_cli._replies_from_text(text, None)
    for reply in found:
        assert 200 <= reply.code <= 599
        if reply.code >= 400:
            info = explain_cli._describe(reply, "en")
            assert tuple(info) == explain_cli.JSON_KEYS
            json.dumps(info)


def test_user_not_local_shows_where_to_send(capsys: pytest.CaptureFixture[str]) -> None:
    reply = "551 User not local; please try <bob@elsewhere.example>"  # RFC 5321's wording
    assert isinstance(error_from_reply(551, reply[4:], "rcpt"), UserNotLocal)
    code, out, _ = _run(capsys, reply, "--phase", "rcpt")
    assert code == 0
    assert "  forward to:  <bob@elsewhere.example> (the server's suggestion)" in out
    assert _json(capsys, reply)["forward_path"] == "bob@elsewhere.example"
