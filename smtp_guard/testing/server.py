"""FaultServer: a real SMTP server on loopback that misbehaves exactly as scripted.

Built on aiosmtpd's protocol class (``aiosmtpd.smtp.SMTP``) for everything aiosmtpd already
does right (command parsing, pipelined input, DATA transparency, STARTTLS, AUTH PLAIN/LOGIN);
the faults are applied in three places of our subclass:

* ``push``: every reply goes through it, so the transcript is complete and the greeting
  (phase ``connect``) can be replaced;
* a wrapper around each ``smtp_<COMMAND>`` method: the transcript of commands (AUTH payloads
  masked) and the faults of ``ehlo``, ``starttls``, ``auth``, ``data`` and ``quit``;
* the handler hooks ``handle_MAIL`` / ``handle_RCPT`` / ``handle_DATA``: the faults that need the
  parsed address or the message, and the built-in policies (AUTH required, SIZE, rate limit,
  too many recipients, greylisting).

Replies aiosmtpd cannot produce (no CRLF, not UTF-8, garbage, over-long) are written to the
stream directly. The server runs either on the caller's event loop (``async with``) or on its
own loop in a background thread (``start()`` / ``stop()`` / ``with``), so synchronous clients
such as :mod:`smtplib` can talk to it.
"""

from __future__ import annotations

import asyncio
import base64
import email
import email.message
import email.policy
import hmac
import ipaddress
import itertools
import math
import random
import re
import shutil
import ssl
import tempfile
import threading
import time
import weakref
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, Literal, cast

from aiosmtpd.smtp import MISSING, SMTP, AuthResult, Envelope, LoginPassword, Session

from smtp_guard._enums import Phase
from smtp_guard.testing.faults import Fault, FaultSpecError, RateLimit, Settings, parse_faults

__all__ = ["ConnectionRecord", "FaultServer", "Transaction"]

Outcome = Literal["open", "delivered", "stored-dropped", "rejected", "dropped", "aborted"]

_CRLF = "\r\n"

#: SASL mechanisms (IANA registry, the common part) a transcript names; any other word after
#: AUTH may be the credentials themselves, so it is masked.
_MECHANISMS = frozenset(
    [
        "PLAIN",
        "LOGIN",
        "XOAUTH2",
        "OAUTHBEARER",
        "CRAM-MD5",
        "DIGEST-MD5",
        "SCRAM-SHA-1",
        "SCRAM-SHA-1-PLUS",
        "SCRAM-SHA-256",
        "SCRAM-SHA-256-PLUS",
        "GSSAPI",
        "GS2-KRB5",
        "NTLM",
        "EXTERNAL",
        "ANONYMOUS",
    ]
)


@dataclass
class Transaction:
    """One mail transaction, from an accepted MAIL FROM to its end.

    ``outcome`` is ``"open"`` while it runs, then one of: ``"delivered"`` (stored, 2xx sent),
    ``"stored-dropped"`` (stored, the connection closed before the reply), ``"rejected"``
    (an error reply after the final dot), ``"dropped"`` (closed after the dot, not stored),
    ``"aborted"`` (RSET, QUIT, a new EHLO or a lost connection before the end of the data).
    """

    connection: int
    peer: str
    sender: str
    recipients: list[str] = field(default_factory=list)
    #: Recipients the server refused, with the reply it gave.
    refused: dict[str, str] = field(default_factory=dict)
    data: bytes | None = None
    outcome: Outcome = "open"
    #: The reply to the final dot, if one was sent.
    reply: str | None = None
    tls: bool = False
    user: str | None = None

    @property
    def stored(self) -> bool:
        """Whether the server kept the message (the recipients "received" it)."""
        return self.outcome in ("delivered", "stored-dropped")

    @property
    def message(self) -> email.message.EmailMessage:
        """The message content parsed (empty if no data arrived)."""
        return email.message_from_bytes(self.data or b"", policy=email.policy.default)


@dataclass
class ConnectionRecord:
    """One client connection: its transcript (``"C: ..."`` / ``"S: ..."`` lines)."""

    id: int
    peer: str
    transcript: list[str] = field(default_factory=list)
    tls: bool = False
    user: str | None = None
    closed: bool = False
    #: Commands that had already arrived when the one before them was read, so the client
    #: sent them without waiting for the reply: proof of pipelining (RFC 2920). A lower bound,
    #: since the network may split a batch; a client that waits for each reply scores 0.
    pipelined: int = 0


@dataclass
class _FaultState:
    rng: random.Random
    hits: int = 0


def _positive(reply: bytes | None) -> bool:
    return reply is not None and reply.startswith(b"2")


def _seconds(count: int) -> str:
    """``"1 second"``, ``"2 seconds"``: the wait as the server announces it."""
    return f"{count} second{'' if count == 1 else 's'}"


def _escape(text: str) -> str:
    """Control characters as ``\\xNN``, so a transcript line prints as one clean line."""
    return re.sub(r"[\x00-\x1f\x7f]", lambda m: f"\\x{ord(m[0]):02x}", text)


class _Session(Session):
    """aiosmtpd's session without the log warning its own AUTH code triggers on success."""

    @property
    def login_data(self) -> Any:
        return getattr(self, "_login_data", None)

    @login_data.setter
    def login_data(self, value: Any) -> None:
        self._login_data = value


class _Dropped(asyncio.CancelledError):
    """Raised inside the connection's task to end it after closing the transport."""


class _Hooks:
    """aiosmtpd's handler object; hands every hook to the connection's own method."""

    async def handle_EHLO(
        self, server: _FaultSMTP, session: Session, envelope: Envelope, hostname: str,
        responses: list[str],
    ) -> list[str]:  # fmt: skip
        return server.ehlo_lines(hostname)

    async def handle_MAIL(
        self, server: _FaultSMTP, session: Session, envelope: Envelope, address: str,
        options: list[str],
    ) -> str | None:  # fmt: skip
        return await server.on_mail(address, options)

    async def handle_RCPT(
        self, server: _FaultSMTP, session: Session, envelope: Envelope, address: str,
        options: list[str],
    ) -> str | None:  # fmt: skip
        return await server.on_rcpt(address, options)

    async def handle_DATA(self, server: _FaultSMTP, session: Session, envelope: Envelope) -> str:
        return await server.on_message()


class _FaultSMTP(SMTP):
    """One connection of a FaultServer."""

    def __init__(self, owner: FaultServer, record: ConnectionRecord) -> None:
        settings = owner.settings
        super().__init__(
            owner._hooks,
            data_size_limit=None,  # SIZE is enforced here, with RFC 3463 codes
            enable_SMTPUTF8=True,
            decode_data=False,
            hostname=owner.hostname,
            ident="smtp_guard FaultServer",
            tls_context=owner._server_tls if settings.starttls != "off" else None,
            require_starttls=settings.starttls == "required",
            auth_require_tls=False,  # decided here, so implicit TLS counts as encrypted
            authenticator=self._check_login,
            auth_exclude_mechanism=() if settings.xoauth2 else ("XOAUTH2",),
            timeout=owner.idle_timeout,
            loop=owner._loop,
        )
        self.owner = owner
        self.record = record
        self._greeted = False
        self._refusing = False  # after a 5xx greeting: only QUIT is served
        self._swallow = False  # a fault already wrote the reply the hook's caller will push
        self._auth_answer = False  # the next line read is an AUTH continuation (a secret)
        self._replacement: bytes | None = None  # written instead of the next normal reply
        self._txn: Transaction | None = None
        self._smtp_methods = {
            name: self._wrap(name, method) for name, method in self._smtp_methods.items()
        }

    # -- state ---------------------------------------------------------------------------

    def _create_session(self) -> Session:
        return _Session(self.loop)

    @property
    def encrypted(self) -> bool:
        return self.owner.settings.implicit_tls or self._tls_protocol is not None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        if not self.record.peer:
            peer = transport.get_extra_info("peername")
            self.record.peer = str(peer[0]) if peer else "?"
        super().connection_made(transport)
        self.record.tls = self.encrypted

    def connection_lost(self, error: Exception | None) -> None:
        self._end_transaction("aborted")
        self.record.closed = True
        self.owner._detach(self)
        super().connection_lost(error)

    def _set_rset_state(self) -> None:
        self._end_transaction("aborted")
        super()._set_rset_state()  # type: ignore[no-untyped-call]

    def _end_transaction(self, outcome: Outcome, reply: str | None = None) -> None:
        txn = getattr(self, "_txn", None)
        if txn is None:
            return
        self._txn = None
        txn.outcome = outcome
        txn.reply = reply
        self.owner._finished(txn)

    def _cb_client_connected(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        super()._cb_client_connected(reader, writer)
        read_line = reader.readuntil

        async def readuntil(separator: bytes = b"\n") -> bytes:
            line = await read_line(separator)
            if separator == b"\n" and self._auth_answer:
                # The client's answer to a 334 challenge (AUTH LOGIN's user name and password,
                # AUTH PLAIN's credentials sent on their own line, XOAUTH2's answer): base64
                # of the secrets, so never written down.
                self._note("C", "****")
            elif separator == b"\n":  # a command line; DATA content is read up to b"\r\n"
                self._note_command(line)
                if b"\n" in getattr(reader, "_buffer", b""):
                    self.record.pipelined += 1  # the next command is already here
            return line

        # Every command line, also those aiosmtpd refuses before dispatching them.
        reader.readuntil = readuntil  # type: ignore[method-assign, assignment]

    def _note_command(self, line: bytes) -> None:
        text = line.rstrip(b"\r\n").decode("utf-8", "backslashreplace")
        words = text.split(maxsplit=2)  # any whitespace: a sloppy client's line is masked too
        if words and words[0].upper() == "AUTH":  # never the credentials, only the mechanism
            mechanism = words[1] if len(words) > 1 else ""
            if mechanism and mechanism.upper() not in _MECHANISMS:
                mechanism = "****"  # "AUTH <credentials>": no mechanism, or one unheard of
            text = " ".join([words[0], mechanism, "****" if len(words) > 2 else ""]).rstrip()
        self._note("C", _escape(text))

    def _note(self, direction: str, text: str) -> None:
        for line in text.split(_CRLF) if text else [""]:
            self.record.transcript.append(f"{direction}: {line}")

    # -- writing -------------------------------------------------------------------------

    async def push(self, status: str | bytes) -> None:
        if self._swallow:
            self._swallow = False
            return
        if self._replacement is not None:
            data, self._replacement = self._replacement, None
            await self._write(data)
            return
        if not self._greeted:
            self._greeted = True
            if self.owner._too_many_connections():
                await self._write(f"{self.owner.settings.max_connections_reply}\r\n".encode())
                self._drop()
            fault = self.owner._pick(Phase.CONNECT, ())
            if fault is not None and await self._act(fault):
                self._refusing = (fault.wire_bytes() or b"").startswith(b"5")
                return
        text = status if isinstance(status, str) else status.decode("utf-8", "replace")
        self._note("S", text)
        await super().push(status)  # type: ignore[type-var]

    async def _write(self, data: bytes) -> None:
        text = data.decode("utf-8", "backslashreplace")
        complete = text.endswith(_CRLF)
        lines = (text[:-2] if complete else text).split(_CRLF)
        for i, line in enumerate(lines):
            last_unfinished = not complete and i == len(lines) - 1
            self._note("S", _escape(line) + (" (no CRLF)" if last_unfinished else ""))
        self._writer.write(data)
        await self._writer.drain()

    def _drop(self) -> None:
        """Close the connection now (what was written is still flushed) and end this task."""
        self._note("S", "(connection closed)")
        if self.transport is not None:
            self.transport.close()
        raise _Dropped

    async def _act(self, fault: Fault, sender: str = "", rcpt: str = "") -> bool:
        """Carry out ``fault``; True if it answered (so the normal reply must not be sent)."""
        if fault.delay:
            await asyncio.sleep(fault.delay)
        if fault.action in ("delay", "greylist"):
            return False
        if fault.action == "drop":
            self._drop()
        data = fault.wire_bytes(sender=sender, rcpt=rcpt) or b""
        await self._write(data)
        if fault.close or data.startswith(b"421"):
            self._drop()
        return True

    async def _act_in_hook(self, fault: Fault, sender: str = "", rcpt: str = "") -> bool:
        answered = await self._act(fault, sender, rcpt)
        if answered:
            self._swallow = True  # aiosmtpd pushes the hook's status next; drop it
        return answered

    # -- commands ------------------------------------------------------------------------

    _PHASES: Mapping[str, Phase] = {
        "EHLO": Phase.EHLO,
        "HELO": Phase.EHLO,
        "STARTTLS": Phase.STARTTLS,
        "AUTH": Phase.AUTH,
        "DATA": Phase.DATA,
        "QUIT": Phase.QUIT,
    }

    def _wrap(self, name: str, method: Callable[[str | None], Any]) -> Callable[..., Any]:
        phase = self._PHASES.get(name)

        async def command(arg: str | None) -> None:
            if self._refusing and name != "QUIT":
                await self.push("503 5.5.1 Bad sequence of commands: this server refused you")
                return
            if phase is not None and await self._command_fault(phase):
                return
            if name == "AUTH" and not await self._auth_allowed():
                return
            await method(arg)

        return command

    async def _command_fault(self, phase: Phase) -> bool:
        addresses: Iterable[str] = ()
        if phase is Phase.DATA:
            if self.envelope is None or not self.envelope.rcpt_tos:
                return False  # aiosmtpd answers 503; a scripted DATA fault needs recipients
            addresses = self.envelope.rcpt_tos
        fault = self.owner._pick(phase, addresses)
        if fault is None:
            return False
        sender = (self.envelope.mail_from or "") if self.envelope is not None else ""
        data = fault.wire_bytes(sender, ", ".join(addresses))
        if phase is Phase.DATA and data is not None and data.startswith(b"3"):
            # A scripted 354 (or other 3xx) still starts the data: it replaces aiosmtpd's text.
            if fault.delay:
                await asyncio.sleep(fault.delay)
            self._replacement = data
            return False
        return await self._act(fault, sender, ", ".join(addresses))

    async def _auth_allowed(self) -> bool:
        settings = self.owner.settings
        if not settings.credentials:
            await self.push("503 5.5.1 Error: authentication not enabled")
            return False
        if settings.auth_requires_tls and not self.encrypted:
            await self.push("538 5.7.11 Encryption required for requested authentication mechanism")
            return False
        return True

    async def challenge_auth(
        self, challenge: str | bytes, encode_to_b64: bool = True, log_client_response: bool = False
    ) -> Any:
        # The answer is read through ``readuntil`` above, which masks it while this is set.
        self._auth_answer = True
        try:
            return await super().challenge_auth(challenge, encode_to_b64, False)
        finally:
            self._auth_answer = False

    async def auth_XOAUTH2(self, server: SMTP, args: list[str]) -> AuthResult:
        """Google's and Microsoft's OAuth 2.0 mechanism (setting ``xoauth2=on``).

        The client sends base64 of ``user=USER\\x01auth=Bearer TOKEN\\x01\\x01``, inline or
        after an empty 334; the user's password is the token accepted.
        """
        if len(args) == 1:
            answer = await self.challenge_auth("", encode_to_b64=False)
            if not isinstance(answer, bytes):
                return AuthResult(success=False, handled=True)  # "*" or not base64: answered
            blob = answer
        else:
            try:
                blob = base64.b64decode(args[1], validate=True)
            except ValueError:
                await self.push("501 5.5.2 Can't decode base64")
                return AuthResult(success=False, handled=True)
        fields = dict(
            part.split(b"=", 1) for part in blob.rstrip(b"\x01").split(b"\x01") if b"=" in part
        )
        user, auth = fields.get(b"user"), fields.get(b"auth", b"")
        if user is None or not auth.startswith(b"Bearer "):
            await self.push("501 5.5.2 Malformed XOAUTH2 initial response")
            return AuthResult(success=False, handled=True)
        token = auth[len(b"Bearer ") :]
        result = self._check_login(self, self.session, self.envelope, "XOAUTH2",
                                   LoginPassword(user, token))  # fmt: skip
        if result.success:
            return result
        # The provider's way: the error as a base64 JSON challenge, the client answers with an
        # empty line, and only then the final reply.
        error = b'{"status":"401","schemes":"Bearer","scope":"https://mail.google.com/"}'
        if await self.challenge_auth(error) is MISSING:
            return AuthResult(success=False, handled=True)
        return AuthResult(success=False, handled=False)

    def _check_login(
        self, server: SMTP, session: Session | None, envelope: Envelope | None, mechanism: str,
        data: Any,
    ) -> AuthResult:  # fmt: skip
        if isinstance(data, LoginPassword):
            user = data.login.decode("utf-8", "replace")
            expected = self.owner.settings.credentials.get(user)
            if expected is not None and hmac.compare_digest(
                expected.encode("utf-8"), bytes(data.password)
            ):
                self.record.user = user
                return AuthResult(success=True, auth_data=user)
        return AuthResult(success=False, handled=False)

    def ehlo_lines(self, hostname: str) -> list[str]:
        if self.session is not None:  # pragma: no branch - set in connection_made
            self.session.host_name = hostname
        settings = self.owner.settings
        lines = [self.hostname]
        lines.append(f"SIZE {settings.size_limit}" if settings.size_limit else "SIZE")
        lines += ["8BITMIME", "SMTPUTF8"]
        if settings.pipelining:
            lines.append("PIPELINING")
        if settings.starttls != "off" and not self.encrypted:
            lines.append("STARTTLS")
        if settings.credentials and (self.encrypted or not settings.auth_requires_tls):
            lines.append("AUTH LOGIN PLAIN" + (" XOAUTH2" if settings.xoauth2 else ""))
        lines.append("HELP")
        return [f"250{' ' if i == len(lines) - 1 else '-'}{x}" for i, x in enumerate(lines)]

    # -- hooks: MAIL, RCPT, the message --------------------------------------------------

    async def on_mail(self, address: str, options: list[str]) -> str | None:
        owner, settings = self.owner, self.owner.settings
        fault = owner._pick(Phase.MAIL, (address,))
        if fault is not None:
            if _positive(fault.wire_bytes(sender=address)):
                self._accept_sender(address, options)  # a scripted 2xx accepts, too
            if await self._act_in_hook(fault, sender=address):
                return "250 (already answered)"
        session = cast("Session", self.session)
        if settings.credentials and not session.authenticated:
            return "530 5.7.0 Authentication required"
        size = next((o[5:] for o in options if o.startswith("SIZE=")), None)
        if settings.size_limit and size and size.isdigit() and int(size) > settings.size_limit:
            return "552 5.3.4 Message size exceeds fixed maximum message size"
        limited = owner._rate_limited()
        if limited is not None:
            if limited.startswith("421"):
                await self._write(f"{limited}\r\n".encode())
                self._drop()
            return limited
        self._accept_sender(address, options)
        return "250 2.1.0 Sender OK"

    def _accept_sender(self, address: str, options: list[str]) -> None:
        envelope = cast("Envelope", self.envelope)
        self._end_transaction("aborted")
        envelope.mail_from = address
        envelope.mail_options.extend(options)
        self._txn = Transaction(
            connection=self.record.id,
            peer=self.record.peer,
            sender=address,
            tls=self.encrypted,
            user=self.record.user,
        )
        self.owner._begin(self._txn)

    def _accept_recipient(self, address: str, options: list[str]) -> None:
        envelope = cast("Envelope", self.envelope)
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(options)
        if self._txn is not None:
            self._txn.recipients.append(address)

    async def on_rcpt(self, address: str, options: list[str]) -> str | None:
        owner, settings = self.owner, self.owner.settings
        session, envelope = cast("Session", self.session), cast("Envelope", self.envelope)
        sender = envelope.mail_from or ""
        fault = owner._pick(Phase.RCPT, (address,))
        refusal: str | None = None
        if fault is not None and fault.action == "greylist":
            await self._act(fault)
            refusal = owner._greylist(session.peer, sender, address, fault.amount)
        elif fault is not None:
            data = fault.wire_bytes(sender=sender, rcpt=address)
            if _positive(data):
                self._accept_recipient(address, options)  # a scripted 2xx accepts, too
            elif data is not None and self._txn is not None:
                self._txn.refused[address] = data.decode("utf-8", "replace").strip()
            if await self._act_in_hook(fault, sender=sender, rcpt=address):
                return "250 (already answered)"
        limit = settings.max_recipients
        if refusal is None and limit is not None and len(envelope.rcpt_tos) >= limit:
            refusal = settings.max_recipients_reply
        if refusal is None and settings.greylist is not None:
            refusal = owner._greylist(session.peer, sender, address, settings.greylist)
        if refusal is not None:
            if self._txn is not None:
                self._txn.refused[address] = refusal
            return refusal
        self._accept_recipient(address, options)
        return "250 2.1.5 Recipient OK"

    async def on_message(self) -> str:
        envelope = cast("Envelope", self.envelope)
        content = bytes(envelope.original_content or b"")
        txn = self._txn
        if txn is not None:
            txn.data = content
        settings = self.owner.settings
        fault = self.owner._pick(Phase.MESSAGE, envelope.rcpt_tos)
        sender = envelope.mail_from or ""
        rcpts = ", ".join(envelope.rcpt_tos)
        if fault is not None:
            if fault.delay:
                await asyncio.sleep(fault.delay)
            if fault.action == "store-drop":
                self.owner._delivered()
                self._end_transaction("stored-dropped")
                self._drop()
            if fault.action == "drop":
                self._end_transaction("dropped")
                self._drop()
            data = fault.wire_bytes(sender=sender, rcpt=rcpts)
            if data is not None:
                stored = data.startswith(b"2")
                if stored:
                    self.owner._delivered()
                reply = data.decode("utf-8", "replace").strip()
                self._end_transaction("delivered" if stored else "rejected", reply)
                await self._write(data)
                self._swallow = True
                if fault.close or data.startswith(b"421"):
                    self._drop()
                return "250 (already answered)"
        if settings.size_limit and len(content) > settings.size_limit:
            reply = "552 5.3.4 Message size exceeds fixed maximum message size"
            self._end_transaction("rejected", reply)
            return reply
        queue_id = f"{self.record.id:04X}{next(self.owner._queue_ids):06X}"
        reply = f"250 2.0.0 OK: queued as {queue_id}"
        self.owner._delivered()
        self._end_transaction("delivered", reply)
        return reply


def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class FaultServer:
    """A real SMTP server on loopback that misbehaves as scripted; records what it received.

    ``faults`` are :class:`~smtp_guard.testing.faults.Fault` objects or their text form (see
    :mod:`smtp_guard.testing.faults`; settings such as ``"size=1M"`` are accepted there too).
    Keyword arguments set the same settings directly and win over the text form.

    Use it as ``async with FaultServer(...) as srv:`` on the running loop, or as
    ``with FaultServer(...) as srv:`` / ``srv.start()`` ... ``srv.stop()`` from synchronous code
    (the server then runs on its own loop in a background thread). ``srv.host`` and
    ``srv.port`` say where it listens; the port is picked free unless given. Only loopback
    addresses are accepted unless ``allow_remote=True``. ``hostname`` (default
    ``"fault-smtp.test"``) is the name it gives in its greeting, its EHLO reply and its
    certificate: fixed, so starting a server never looks up the machine's own name (aiosmtpd's
    default, :func:`socket.getfqdn`, is slow or hangs on some hosts). Clients do the same
    lookup for EHLO unless given a name (aiosmtplib's and smtplib's ``local_hostname``).

    Example::

        async with FaultServer("rcpt:*@gone.test=550 5.1.1 No such user",
                               "message=store-drop x1", greylist=0) as srv:
            await my_app.send_newsletter(host=srv.host, port=srv.port)
        assert srv.deliveries_to("ann@example.test") == 1
        assert "C: AUTH PLAIN ****" in srv.transcript

    What it saw: :attr:`transactions` (every accepted MAIL FROM and how it ended),
    :attr:`messages` (those whose message it kept), :meth:`deliveries_to`,
    :attr:`connections` / :attr:`connection_count`, :attr:`transcript` (``"C: ..."`` /
    ``"S: ..."`` lines, AUTH payloads masked) and :attr:`fault_hits`. Time-based behaviour
    (greylisting, rate-limit windows) follows :meth:`now`, which :meth:`advance_clock` moves
    on without sleeping; ``clock`` (default :func:`time.monotonic`) is where it starts from:
    pass one that stands still (``clock=lambda: 0.0``) and only :meth:`advance_clock` moves
    it, so the waits the server announces do not depend on how fast the machine is.
    """

    def __init__(
        self,
        *faults: str | Fault,
        host: str = "127.0.0.1",
        port: int = 0,
        hostname: str = "fault-smtp.test",
        size_limit: int | None = None,
        max_recipients: int | None = None,
        max_connections: int | None = None,
        rate_limit: RateLimit | None = None,
        greylist: float | None = None,
        credentials: Mapping[str, str] | None = None,
        auth_requires_tls: bool | None = None,
        xoauth2: bool | None = None,
        starttls: Literal["off", "on", "required"] | None = None,
        implicit_tls: bool | None = None,
        pipelining: bool | None = None,
        seed: int | None = None,
        idle_timeout: float = 300.0,
        allow_remote: bool = False,
        clock: Callable[[], float] = time.monotonic,
        on_transaction: Callable[[Transaction], None] | None = None,
        on_disconnect: Callable[[ConnectionRecord], None] | None = None,
    ) -> None:
        if host == "localhost":
            host = "127.0.0.1"  # one socket: "localhost" may also bind ::1 on another port
        if not allow_remote and not _is_loopback(host):
            raise FaultSpecError(
                f"host {host!r} is not a loopback address; pass allow_remote=True to listen there",
                part="host",
            )
        parsed, settings = parse_faults(faults)
        overrides: dict[str, object] = {
            "size_limit": size_limit,
            "max_recipients": max_recipients,
            "max_connections": max_connections,
            "rate_limit": rate_limit,
            "greylist": greylist,
            "auth_requires_tls": auth_requires_tls,
            "xoauth2": xoauth2,
            "starttls": starttls,
            "implicit_tls": implicit_tls,
            "pipelining": pipelining,
            "seed": seed,
        }
        settings = settings.replace(**{k: v for k, v in overrides.items() if v is not None})
        if credentials:
            settings = settings.replace(credentials={**settings.credentials, **credentials})
        self.settings: Settings = settings
        self.faults: tuple[Fault, ...] = parsed
        self.host = host
        self.port = port
        self.hostname = hostname
        self.idle_timeout = idle_timeout
        self._clock = clock
        #: Called (on the server's loop) with each transaction when it ends.
        self.on_transaction = on_transaction
        #: Called (on the server's loop) with each connection's record when it closes.
        self.on_disconnect = on_disconnect
        self._state = [
            _FaultState(
                random.Random(  # noqa: S311 - reproducible test faults, not security
                    f.seed if f.seed is not None else f"{settings.seed}:{i}"
                )
            )
            for i, f in enumerate(parsed)
        ]
        self._hooks = _Hooks()
        self._lock = threading.Lock()
        self._transactions: list[Transaction] = []
        self._connections: list[ConnectionRecord] = []
        self._active: set[_FaultSMTP] = set()
        self._peak = 0
        self._greylist_seen: dict[tuple[str, str, str], float] = {}
        self._deliveries: deque[float] = deque()
        self._clock_offset = 0.0
        self._ids = itertools.count(1)
        self._queue_ids = itertools.count(1)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: asyncio.Server | None = None
        self._thread: threading.Thread | None = None
        self._tmpdir: str | None = None
        self._ca: Any = None
        self._server_tls: ssl.SSLContext | None = None
        if settings.starttls != "off" or settings.implicit_tls:
            self._make_certificates()

    def __repr__(self) -> str:
        state = f"{self.host}:{self.port}" if self._server is not None else "stopped"
        described = [str(f) for f in self.faults] + self.settings.describe()
        return f"<FaultServer {state} {described}>"

    # -- TLS -----------------------------------------------------------------------------

    def _make_certificates(self) -> None:
        import trustme  # noqa: PLC0415 - only when TLS is wanted

        self._ca = trustme.CA()
        cert = self._ca.issue_cert("localhost", "127.0.0.1", "::1", self.hostname)
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        cert.configure_cert(context)
        self._server_tls = context

    def tls_context(self) -> ssl.SSLContext:
        """A client context that trusts this server's certificate (and checks it)."""
        if self._ca is None:
            self._make_certificates()
        context = ssl.create_default_context()
        self._ca.configure_trust(context)
        return context

    @property
    def ca_cert_path(self) -> Path:
        """A PEM file with the CA certificate that signed the server's certificate."""
        if self._ca is None:
            self._make_certificates()
        if self._tmpdir is None:
            self._tmpdir = tempfile.mkdtemp(prefix="smtp-guard-ca-")
            # Removed on stop, or when this object goes away if it never ran.
            weakref.finalize(self, shutil.rmtree, self._tmpdir, ignore_errors=True)
        path = Path(self._tmpdir) / "ca.pem"
        if not path.exists():
            self._ca.cert_pem.write_to_path(str(path))
        return path

    # -- running -------------------------------------------------------------------------

    async def __aenter__(self) -> FaultServer:
        await self.start_async()
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop_async()

    def __enter__(self) -> FaultServer:
        self.start()
        return self

    def __exit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    async def start_async(self) -> None:
        """Start listening on the running event loop."""
        if self._server is not None:
            raise RuntimeError("this FaultServer is already running")
        self._loop = asyncio.get_running_loop()
        tls = self._server_tls if self.settings.implicit_tls else None
        self._server = await self._loop.create_server(self._connect, self.host, self.port, ssl=tls)
        self.port = int(self._server.sockets[0].getsockname()[1])

    async def stop_async(self) -> None:
        """Stop listening, close every open connection and wait for them to end."""
        if self._server is None:
            return
        if self._thread is not None and threading.current_thread() is not self._thread:
            raise RuntimeError("this FaultServer was started with start(); stop it with stop()")
        server, self._server = self._server, None
        server.close()
        tasks = []
        for protocol in list(self._active):
            if protocol.transport is not None:
                protocol.transport.close()
            if protocol._handler_coroutine is not None:
                protocol._handler_coroutine.cancel()
                tasks.append(protocol._handler_coroutine)
        await asyncio.gather(*tasks, return_exceptions=True)
        await server.wait_closed()
        if self._tmpdir is not None:
            shutil.rmtree(self._tmpdir, ignore_errors=True)
            self._tmpdir = None

    def start(self) -> FaultServer:
        """Start on a background thread with its own event loop; returns once listening."""
        if self._thread is not None:
            raise RuntimeError("this FaultServer is already running")
        ready = threading.Event()
        failure: list[BaseException] = []
        loop = asyncio.new_event_loop()

        def run() -> None:
            asyncio.set_event_loop(loop)
            try:
                loop.run_until_complete(self.start_async())
            except BaseException as exc:  # handed to the starting thread
                failure.append(exc)
                ready.set()
                loop.close()
                return
            ready.set()
            loop.run_forever()
            loop.run_until_complete(self.stop_async())
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()

        self._thread = threading.Thread(target=run, name=f"FaultServer-{id(self):x}", daemon=True)
        self._thread.start()
        ready.wait()
        if failure:
            self._thread.join()
            self._thread = None
            raise failure[0]
        return self

    def stop(self) -> None:
        """Stop the background server started by :meth:`start` (idempotent)."""
        thread, self._thread = self._thread, None
        if thread is None:
            return
        loop = cast("asyncio.AbstractEventLoop", self._loop)
        loop.call_soon_threadsafe(loop.stop)
        thread.join()

    def _connect(self) -> _FaultSMTP:
        record = ConnectionRecord(id=next(self._ids), peer="")
        protocol = _FaultSMTP(self, record)
        with self._lock:
            self._connections.append(record)
            self._active.add(protocol)
            self._peak = max(self._peak, len(self._active))
        return protocol

    def _detach(self, protocol: _FaultSMTP) -> None:
        with self._lock:
            self._active.discard(protocol)
        if self.on_disconnect is not None:
            self.on_disconnect(protocol.record)

    # -- decisions -----------------------------------------------------------------------

    def now(self) -> float:
        """The server's clock (``clock()`` seconds), moved on by :meth:`advance_clock`."""
        return self._clock() + self._clock_offset

    def advance_clock(self, seconds: float) -> None:
        """Pretend ``seconds`` passed: greylisting periods and rate-limit windows move on."""
        self._clock_offset += seconds

    def _pick(self, phase: Phase, addresses: Iterable[str]) -> Fault | None:
        addresses = tuple(addresses)
        for fault, state in zip(self.faults, self._state, strict=True):
            if fault.phase is not phase or not fault.matches(addresses):
                continue
            if fault.times is not None and state.hits >= fault.times:
                continue
            if fault.probability is not None and state.rng.random() >= fault.probability:
                continue
            state.hits += 1
            return fault
        return None

    def _greylist(self, peer: Any, sender: str, rcpt: str, period: float) -> str | None:
        ip = str(peer[0]) if isinstance(peer, tuple) and peer else str(peer)
        key = (ip, sender.lower(), rcpt.lower())
        now = self.now()
        first = self._greylist_seen.get(key)
        if first is None:  # never seen: always deferred once, even with a period of 0
            self._greylist_seen[key] = first = now
        elif now - first >= period:
            return None  # retried after the period: accepted from now on
        wait = max(1, math.ceil(first + period - now))
        return (
            f"451 4.7.1 <{rcpt}>: Recipient address rejected: Greylisted, "
            f"try again in {_seconds(wait)}"
        )

    def _too_many_connections(self) -> bool:
        limit = self.settings.max_connections
        with self._lock:
            return limit is not None and len(self._active) > limit

    def _rate_limited(self) -> str | None:
        limit = self.settings.rate_limit
        if limit is None:
            return None
        now = self.now()
        while self._deliveries and self._deliveries[0] <= now - limit.window:
            self._deliveries.popleft()
        if len(self._deliveries) < limit.messages:
            return None
        retry = max(1, math.ceil(self._deliveries[0] + limit.window - now))
        # "{retry} seconds" is said properly ("1 second"); a bare "{retry}" is the number.
        reply = limit.reply.replace("{retry} seconds", _seconds(retry))
        return reply.replace("{retry}", str(retry))

    def _delivered(self) -> None:
        self._deliveries.append(self.now())

    def _begin(self, txn: Transaction) -> None:
        with self._lock:
            self._transactions.append(txn)

    def _finished(self, txn: Transaction) -> None:
        if self.on_transaction is not None:
            self.on_transaction(txn)

    # -- what happened -------------------------------------------------------------------

    @property
    def transactions(self) -> list[Transaction]:
        """Every transaction so far (a MAIL FROM the server accepted), oldest first."""
        with self._lock:
            return list(self._transactions)

    @property
    def messages(self) -> list[Transaction]:
        """The transactions whose message the server kept (delivered or stored-dropped)."""
        return [t for t in self.transactions if t.stored]

    @property
    def connections(self) -> list[ConnectionRecord]:
        with self._lock:
            return list(self._connections)

    @property
    def connection_count(self) -> int:
        with self._lock:
            return len(self._connections)

    @property
    def open_connections(self) -> int:
        """How many connections are open right now."""
        with self._lock:
            return len(self._active)

    @property
    def peak_connections(self) -> int:
        """The most connections that were open at the same time (e.g. to check a pool size)."""
        with self._lock:
            return self._peak

    @property
    def transcript(self) -> list[str]:
        """All transcript lines of all connections, in connection order."""
        return [line for c in self.connections for line in list(c.transcript)]

    @property
    def fault_hits(self) -> list[int]:
        """How many times each fault fired, in the order given."""
        return [s.hits for s in self._state]

    def deliveries_to(self, address: str) -> int:
        """How many kept messages had ``address`` (any case) among their recipients."""
        wanted = address.lower()
        return sum(1 for t in self.messages if wanted in (r.lower() for r in t.recipients))

    def reset(self) -> None:
        """Forget the records, fault counters, greylist and rate-limit history."""
        with self._lock:
            self._transactions.clear()
            self._connections.clear()
            self._peak = len(self._active)
        for state in self._state:
            state.hits = 0
        self._greylist_seen.clear()
        self._deliveries.clear()
