"""Opening a ready connection: TCP/TLS, greeting, EHLO, the TLS rules, AUTH. Errors mapped.

:func:`open_connection` is the one way the client (and the pooled ``Mailer``) gets a
:class:`Connection`. The TLS rules:

- ``use_tls=True``: TLS from the first byte.
- ``start_tls=True``: STARTTLS is required; a server that does not offer it is refused
  (:class:`ExtensionNotSupported`, ``extension == "STARTTLS"``).
- ``start_tls=None`` (default): STARTTLS when the server offers it. With credentials it is
  required, not opportunistic: no STARTTLS means :class:`InsecureConnection` before AUTH.
- ``start_tls=False``: no upgrade.
- Credentials (password or OAuth token) over an unencrypted connection: refused with
  :class:`InsecureConnection` before AUTH, unless ``allow_insecure_auth=True``.

A failed certificate check is a permanent :class:`TLSFailed`; a 454 to STARTTLS is transient.
"""

from __future__ import annotations

import asyncio
import base64
import re
import socket
import ssl
import weakref
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any, cast

import aiosmtplib
from aiosmtplib.auth import auth_plain_encode, auth_xoauth2_encode
from aiosmtplib.protocol import SMTPProtocol
from aiosmtplib.smtp import DEFAULT_TIMEOUT
from aiosmtplib.typing import SMTPTokenGenerator, SocketPathType

from smtp_guard._enums import Phase
from smtp_guard.client._deadline import bound, time_left
from smtp_guard.client._mapping import map_error, tls_error
from smtp_guard.client._validate import check_hostname
from smtp_guard.errors import (
    ExtensionNotSupported,
    InsecureConnection,
    InvalidInput,
    ServerDisconnected,
)

__all__ = ["ConnectParams", "Connection", "abort_transport", "open_connection", "unsent_bytes"]

#: What the client catches from aiosmtplib and the layers below it (everything else is a bug).
LOWER_ERRORS = (aiosmtplib.SMTPException, OSError, asyncio.TimeoutError, ssl.SSLError)

_NO_AUTH_HINT = (
    "The server offers no AUTH (or not the mechanism needed); check the port and the TLS "
    "settings (many servers offer AUTH only after STARTTLS)."
)


@dataclass(frozen=True)
class ConnectParams:
    """How to reach and log in to a server: the connection arguments of ``aiosmtplib.send``.

    The password and the token generator never appear in the repr.
    """

    hostname: str | None = "localhost"
    port: int | None = None
    username: str | bytes | None = None
    password: str | bytes | None = field(default=None, repr=False)
    oauth_token_generator: SMTPTokenGenerator | None = field(default=None, repr=False)
    local_hostname: str | None = None
    source_address: tuple[str, int] | None = None
    timeout: float | None = DEFAULT_TIMEOUT
    use_tls: bool = False
    start_tls: bool | None = None
    validate_certs: bool = True
    client_cert: str | None = None
    client_key: str | None = None
    tls_context: ssl.SSLContext | None = None
    cert_bundle: str | None = None
    socket_path: SocketPathType | None = None
    sock: socket.socket | None = None
    allow_insecure_auth: bool = False

    def __post_init__(self) -> None:
        check_hostname(self.hostname, "hostname")
        check_hostname(self.local_hostname, "local_hostname")
        if self.password is not None and self.oauth_token_generator is not None:
            raise InvalidInput("password and oauth_token_generator are mutually exclusive")
        if self.oauth_token_generator is not None and self.username is None:
            raise InvalidInput("username is required when using oauth_token_generator")
        if self.start_tls and self.use_tls:
            raise InvalidInput("The start_tls and use_tls options are not compatible.")
        if self.timeout is not None and (
            isinstance(self.timeout, bool)
            or not isinstance(self.timeout, int | float)
            or not self.timeout > 0
        ):
            raise InvalidInput(f"timeout must be a positive number or None, got {self.timeout!r}")
        # aiosmtplib's own checks of the remaining combinations (it would raise ValueError).
        if self.tls_context is not None and self.client_cert is not None:
            raise InvalidInput("Either a TLS context or a certificate/key must be provided")
        if self.sock is not None and self.socket_path is not None:
            raise InvalidInput("Either a socket or a socket path must be provided, not both")
        if (self.sock is not None or self.socket_path is not None) and self.port is not None:
            raise InvalidInput("If using a socket, port is not required")
        if (self.sock or self.socket_path) and self.use_tls and self.hostname is None:
            raise InvalidInput("If using a socket with TLS, hostname is required")

    @classmethod
    def of(cls, arguments: Mapping[str, Any]) -> ConnectParams:
        """The connection arguments among ``arguments`` (a call's ``locals()``), by name.

        :func:`smtp_guard.send` and :class:`smtp_guard.Mailer` spell these arguments out in
        their own signatures, so that IDEs and ``help()`` show them with aiosmtplib's
        defaults; this is the one place they become a ConnectParams. A test checks that each
        field here is such an argument there, with the same default and type.
        """
        return cls(**{name: arguments[name] for name in _field_names(cls) if name in arguments})

    @property
    def has_credentials(self) -> bool:
        """Whether a login will be attempted after connecting."""
        return self.username is not None

    @property
    def server(self) -> str:
        """``host:port`` (or the socket path) for logs."""
        if self.socket_path is not None:
            return str(self.socket_path)
        if self.sock is not None:
            try:
                peer = self.sock.getpeername()
            except OSError:
                return "the given socket"
            if isinstance(peer, tuple) and len(peer) >= 2:
                return f"{peer[0]}:{peer[1]}"
            return str(peer) or "the given socket"
        port = self.port or (465 if self.use_tls else 587 if self.start_tls else 25)
        return f"{self.hostname or 'localhost'}:{port}"

    def _client(self) -> aiosmtplib.SMTP:
        # Credentials and STARTTLS are handled in open_connection, never by aiosmtplib alone.
        return aiosmtplib.SMTP(
            hostname=self.hostname,
            port=self.port,
            local_hostname=self.local_hostname,
            source_address=self.source_address,
            timeout=self.timeout,
            use_tls=self.use_tls,
            start_tls=False,
            validate_certs=self.validate_certs,
            client_cert=self.client_cert,
            client_key=self.client_key,
            tls_context=self.tls_context,
            cert_bundle=self.cert_bundle,
            socket_path=self.socket_path,
            sock=self.sock,
        )


_FIELD_NAMES: dict[type[ConnectParams], tuple[str, ...]] = {}


def _field_names(cls: type[ConnectParams]) -> tuple[str, ...]:
    """The names of ``cls``'s fields, looked up once (``fields()`` cost ~1 us per call)."""
    names = _FIELD_NAMES.get(cls)
    if names is None:
        names = _FIELD_NAMES[cls] = tuple(f.name for f in fields(cls))
    return names


class Connection:
    """An open, greeted, EHLO'd (and, if asked, encrypted and logged-in) SMTP connection.

    ``client`` is the underlying :class:`aiosmtplib.SMTP`. One transaction at a time.
    """

    __slots__ = ("client", "encrypted", "params", "protocol", "transactions")

    def __init__(self, client: aiosmtplib.SMTP, params: ConnectParams, encrypted: bool) -> None:
        self.client = client
        #: The connection's protocol, kept to see when its socket is gone (the client forgets
        #: it when closed).
        self.protocol: SMTPProtocol | None = client.protocol
        self.params = params
        self.encrypted = encrypted
        self.transactions = 0  #: transactions completed (for pools)

    def __repr__(self) -> str:
        state = "open" if self.is_connected else "closed"
        tls = ", tls" if self.encrypted else ""
        return f"<Connection {self.params.server} {state}{tls}>"

    @property
    def is_connected(self) -> bool:
        """Whether the connection is still open."""
        return self.client.is_connected

    def supports(self, extension: str) -> bool:
        """Whether the server advertised ``extension`` in its EHLO reply."""
        return self.client.supports_extension(extension)

    @property
    def max_size(self) -> int | None:
        """The SIZE limit the server advertised (RFC 1870), or None if none/unlimited."""
        value = self.client.esmtp_extensions.get("size", "").strip()
        if not value.isdigit() or int(value) == 0:
            return None
        return int(value)

    async def reset(self) -> bool:
        """RSET, to reuse the connection for another transaction. False if it is not usable."""
        if not self.is_connected:
            return False
        try:
            response = await self.client.execute_command(
                b"RSET", timeout=bound(self.client.timeout)
            )
        except LOWER_ERRORS:
            self.abort()
            return False
        if response.code != 250:
            self.abort()
            return False
        return True

    async def close(self) -> None:
        """QUIT politely (errors ignored), close, and wait until the socket is released.

        A TLS connection's graceful close takes a few turns of the loop (and the server's
        close_notify): returning only once it is done, a caller may close its event loop
        right afterwards without leaving a transport behind. Cancelled, it still closes.
        """
        said_bye = False
        try:
            if self.is_connected:
                try:  # (not contextlib.suppress: three Python calls, on every send)
                    await self.client.quit(timeout=bound(min(self.params.timeout or 5.0, 5.0)))
                    said_bye = True
                except LOWER_ERRORS:
                    pass
        finally:
            self.abort()
            if not said_bye or self.encrypted:
                await self.wait_closed()
            # else (the happy path, plain TCP): nothing is left to write, so the socket is
            # released by a callback already queued, which the loop runs before it can stop.

    def abort(self) -> None:
        """Close the connection at once, without QUIT (:meth:`wait_closed` waits for it).

        What is still in the write buffer is discarded, not flushed: ``transport.close()``
        would still send it, and a message's final "." sent after we gave up on it would be
        delivered behind the back of a retry.
        """
        abort_transport(self.client)

    async def wait_closed(self) -> None:
        """Wait until the socket is released (after :meth:`abort` or a drop)."""
        await _wait_closed(self.protocol)


async def open_connection(params: ConnectParams) -> Connection:
    """Connect, read the greeting, EHLO, apply the TLS rules, log in. Errors are typed.

    A socket given as ``params.sock`` must be open and connected (else :class:`InvalidInput`,
    nothing sent); it belongs to the connection from then on and is closed with it.

    Raises :class:`ConnectionFailed`/:class:`ConnectTimeout` (retry), a :class:`ReplyError`
    for a refusing reply (421 greeting, 454 to STARTTLS, 535 to AUTH...), :class:`TLSFailed`,
    or :class:`InsecureConnection` (nothing secret was sent). Never leaves a socket open.
    """
    _check_sock(params.sock)
    client = params._client()
    try:
        try:
            await _connect(client, params)
        except LOWER_ERRORS as exc:
            raise map_error(exc, phase=Phase.CONNECT) from exc
        await _ehlo(client)
        encrypted = params.use_tls
        if not encrypted:
            encrypted = await _maybe_starttls(client, params)
        if params.has_credentials:
            if not encrypted and not params.allow_insecure_auth:
                raise InsecureConnection(
                    "refusing to send credentials over an unencrypted connection to "
                    f"{params.server} (the server offers no STARTTLS, or TLS is off); "
                    "nothing was sent"
                )
            await _login(client, params)
    except BaseException:
        protocol = client.protocol
        client.close()
        await _wait_closed(protocol)
        raise
    return Connection(client, params, encrypted)


#: Sockets given as ``sock=`` that already served a connection (closed, or about to be: the
#: transport closes them on the loop's next turn).
_SOCKETS_USED: weakref.WeakSet[socket.socket] = weakref.WeakSet()


def _check_sock(sock: socket.socket | None) -> None:
    """A given socket must be open and connected: it serves one connection, then is closed."""
    if sock is None:
        return
    if sock.fileno() == -1 or sock in _SOCKETS_USED:
        raise InvalidInput(
            "sock was already used (or closed): a socket passed as sock= serves one "
            "connection and is closed with it; pass a new connected socket for each send"
        )
    try:
        sock.getpeername()
    except OSError as exc:
        raise InvalidInput(
            f"sock is not connected ({exc.strerror or exc}); connect it first"
        ) from None
    _SOCKETS_USED.add(sock)


async def _connect(client: aiosmtplib.SMTP, params: ConnectParams) -> None:
    """TCP (or TLS) connect and greeting, each bounded by the timeout and the deadline.

    Without ``local_hostname``, aiosmtplib first looks up the local host name
    (``socket.getfqdn``) outside its timeout: under a deadline the whole of it is bounded
    then (``wait_for`` costs a task, so only then).
    """
    left = time_left()
    if left is None or client.local_hostname is not None:
        await client.connect(timeout=bound(params.timeout))
        return
    try:
        await asyncio.wait_for(client.connect(timeout=bound(params.timeout)), left)
    except asyncio.TimeoutError as exc:
        if isinstance(exc, aiosmtplib.SMTPException):
            raise  # aiosmtplib's own (typed) timeout
        raise aiosmtplib.SMTPConnectTimeoutError(
            f"Timed out connecting to {params.server}: the call's deadline was reached"
        ) from exc


def abort_transport(client: aiosmtplib.SMTP) -> None:
    """Close ``client`` at once, discarding what it has not handed to the kernel yet."""
    transport = client.transport
    if isinstance(transport, asyncio.WriteTransport) and not transport.is_closing():
        transport.abort()
    client.close()


def unsent_bytes(transport: asyncio.BaseTransport | None) -> int | None:
    """Bytes written to ``transport`` and not yet handed to the kernel; None when unknown.

    Exact for a plain socket transport. Under TLS the plaintext is encrypted and queued in
    the socket's transport at once, where the bytes of one write can no longer be told apart:
    unknown (callers must then assume everything written may have been sent).
    """
    if transport is None or transport.get_extra_info("ssl_object") is not None:
        return None
    get_size = getattr(transport, "get_write_buffer_size", None)
    if get_size is None:
        return None
    size = get_size()
    return size if isinstance(size, int) else None


#: How long a closed connection may take to release its socket (the TLS close_notify
#: exchange) before its transport is aborted.
CLOSE_WAIT = 2.0


async def _wait_closed(protocol: SMTPProtocol | None, limit: float = CLOSE_WAIT) -> None:
    """Return once the closed transport of ``protocol`` has released its socket.

    ``transport.close()`` only starts closing: a plain socket is released on the loop's next
    turn, a TLS one after the close_notify exchange with the server. A caller that closes its
    event loop before then leaks the socket ("ResourceWarning: unclosed transport"). The
    protocol forgets its transport in ``connection_lost``, right after the socket is closed;
    wait for that, and abort the transport if the exchange takes longer than ``limit``.
    """
    if protocol is None or protocol.transport is None:
        return
    loop = asyncio.get_running_loop()
    give_up = loop.time() + limit
    aborted = False
    turns = 0
    while protocol.transport is not None:
        if not aborted and loop.time() >= give_up:
            transport = cast("asyncio.Transport", protocol.transport)
            transport.abort()  # frees the socket within a few turns, without close_notify
            aborted, turns = True, 0
        elif aborted and turns > 100:  # pragma: no cover (abort always ends the connection)
            return
        # A few bare turns cover a plain socket; then do not spin while TLS finishes.
        await asyncio.sleep(0 if turns < 4 else 0.001)
        turns += 1


async def _ehlo(client: aiosmtplib.SMTP) -> None:
    try:
        try:
            await client.ehlo(timeout=bound(client.timeout))
        except aiosmtplib.SMTPHeloError:
            if not client.is_connected:
                raise
            await client.helo(timeout=bound(client.timeout))
    except LOWER_ERRORS as exc:
        raise map_error(exc, phase=Phase.EHLO) from exc


async def _maybe_starttls(client: aiosmtplib.SMTP, params: ConnectParams) -> bool:
    """Upgrade when the rules say so; return whether the connection is now encrypted."""
    offered = client.supports_extension("starttls")
    required = params.start_tls is True or (
        params.start_tls is None and params.has_credentials and not params.allow_insecure_auth
    )
    if params.start_tls is False or not (offered or required):
        return False
    if not offered:
        if params.start_tls is True:
            # Where aiosmtplib raises SMTPException("SMTP STARTTLS extension not supported by
            # server."): a missing extension, not a failed handshake (none took place).
            raise ExtensionNotSupported(
                f"start_tls=True but {params.server} does not offer STARTTLS; nothing was sent",
                extension="STARTTLS",
                hint="Use use_tls=True for an implicit-TLS port (465), or another server.",
            )
        raise InsecureConnection(
            f"{params.server} does not offer STARTTLS, so the credentials were not sent"
        )
    try:
        await client.starttls(timeout=bound(client.timeout))
    except ssl.SSLError as exc:
        raise tls_error(exc) from exc
    except LOWER_ERRORS as exc:
        raise map_error(exc, phase=Phase.STARTTLS) from exc
    await _ehlo(client)
    return True


async def _login(client: aiosmtplib.SMTP, params: ConnectParams) -> None:
    username = params.username
    assert username is not None  # noqa: S101 (has_credentials was checked)
    if not client.supports_extension("auth"):
        raise ExtensionNotSupported(
            f"{params.server} does not offer AUTH", extension="AUTH", hint=_NO_AUTH_HINT
        )
    if params.oauth_token_generator is not None and "xoauth2" not in client.server_auth_methods:
        raise ExtensionNotSupported(
            f"{params.server} does not offer AUTH XOAUTH2",
            extension="AUTH XOAUTH2",
            hint=_NO_AUTH_HINT,
        )
    token: str | None = None
    try:
        if params.oauth_token_generator is not None:
            token = await asyncio.wait_for(params.oauth_token_generator(), bound(None))
            await client.auth_xoauth2(username, token, timeout=bound(client.timeout))
        else:
            await _login_password(client, username, params.password or "", params.server)
    except LOWER_ERRORS as exc:
        # A server may echo the line it refused: the credentials, in any form, never reach
        # the error (short ones too, which the generic redaction of the errors cannot tell).
        secrets = _secret_forms(username, params.password, token)
        error = map_error(_scrubbed(exc, secrets), phase=Phase.AUTH)
    else:
        return
    # Raised outside the except block: aiosmtplib's exception (whose text is the server's
    # reply, unredacted) is then neither the cause nor the context of ours.
    raise error


_REDACTION = "[redacted]"
_BASE64_CHARS = "A-Za-z0-9+/="


def _secret_forms(
    username: str | bytes, password: str | bytes | None, token: str | None
) -> list[tuple[str, bool]]:
    """Every form in which AUTH sends the credentials: ``(text, is_base64)``, longest first.

    The plain username, password and token, their base64 (AUTH LOGIN), the AUTH PLAIN blob
    and the XOAUTH2 one.
    """
    forms: set[tuple[str, bool]] = set()

    def plain(value: str | bytes) -> None:
        text = value.decode("utf-8", "replace") if isinstance(value, bytes) else value
        if text:
            forms.add((text, False))
            # With and without padding: a server may show the token either way.
            encoded = base64.b64encode(text.encode("utf-8")).decode("ascii")
            forms.add((encoded, True))
            forms.add((encoded.rstrip("="), True))

    plain(username)
    if password is not None:
        plain(password)
        forms.add((auth_plain_encode(username, password).decode("ascii"), True))
    if token is not None:
        plain(token)
        forms.add((auth_xoauth2_encode(username, token).decode("ascii"), True))
    return sorted((f for f in forms if f[0]), key=lambda f: -len(f[0]))


def _scrub_text(text: str, secrets: list[tuple[str, bool]]) -> str:
    """``text`` with each secret form, standing alone, replaced by "[redacted]"."""
    for secret, encoded in secrets:
        if encoded:  # not inside a longer base64 run
            pattern = f"(?<![{_BASE64_CHARS}]){re.escape(secret)}(?![{_BASE64_CHARS}])"
        else:  # not inside a longer word ("pass" in "password" stays)
            pattern = rf"(?<!\w){re.escape(secret)}(?!\w)"
        text = re.sub(pattern, _REDACTION, text)
    return text


def _scrubbed(exc: BaseException, secrets: list[tuple[str, bool]]) -> BaseException:
    """``exc`` with the credentials taken out of the server's text (a copy, same class)."""
    if isinstance(exc, aiosmtplib.SMTPResponseException):
        message = _scrub_text(exc.message, secrets)
        if message != exc.message:
            return type(exc)(exc.code, message)
    elif isinstance(exc, aiosmtplib.SMTPException) and len(exc.args) == 1:
        message = _scrub_text(exc.message, secrets)
        if message != exc.message:
            return type(exc)(message)
    return exc


async def _login_password(
    client: aiosmtplib.SMTP, username: str | bytes, password: str | bytes, server: str
) -> None:
    """Try the mechanisms both sides support, best first, like aiosmtplib's ``login``.

    Unlike it, stop at a 4xx: after a 421 the connection is closed (its reply is the error,
    not a "Server not connected" from the next mechanism), and a 454 is worth a retry later.
    """
    methods = client.supported_auth_methods
    if not methods:
        offered = ", ".join(client.server_auth_methods) or "none"
        raise ExtensionNotSupported(
            f"{server} offers no AUTH mechanism smtp_guard supports ({offered})",
            extension="AUTH " + "/".join(m.upper() for m in client.AUTH_METHODS),
            hint=_NO_AUTH_HINT,
        )
    last: aiosmtplib.SMTPAuthenticationError | None = None
    for name in methods:
        method = getattr(client, f"auth_{name.replace('-', '')}")
        try:
            await method(username, password, timeout=bound(client.timeout))
        except aiosmtplib.SMTPAuthenticationError as exc:
            last = exc
            if exc.code < 500 or not client.is_connected:
                break  # 454 (retry later) or 421 (closed): another mechanism will not help
        else:
            return
    if last is not None:
        raise last
    raise ServerDisconnected("connection lost during AUTH")  # pragma: no cover
