"""Closing a connection releases its socket before returning, TLS ones too.

A TLS close takes a close_notify exchange with the server, over later turns of the event
loop. If ``Connection.close()`` returned before it was done, a caller closing its loop right
afterwards (``send_sync``, ``SyncMailer``, the Django backend) left the socket to the garbage
collector: "ResourceWarning: unclosed transport", now and then, under load.
"""

from __future__ import annotations

import asyncio
import socket

import pytest
from _helpers import connect_params, kw

from smtp_guard.client import send_sync
from smtp_guard.client._connect import Connection, open_connection
from smtp_guard.mailer import SyncMailer
from smtp_guard.testing import FaultServer

RAW = b"From: a@sender.test\r\nTo: b@rcpt.test\r\nSubject: hi\r\n\r\nHello.\r\n"


def _socket_of(conn: Connection) -> socket.socket:
    sock = conn.client.get_transport_info("socket")
    assert sock is not None
    return sock  # type: ignore[no-any-return]


async def test_close_of_a_starttls_connection_returns_with_the_socket_closed() -> None:
    async with FaultServer("starttls=on") as srv:
        conn = await open_connection(connect_params(srv, tls_context=srv.tls_context()))
        assert conn.encrypted
        sock = _socket_of(conn)
        await conn.close()
        # Not later, on some turn of the loop: now.
        assert sock.fileno() == -1
        assert conn.protocol is not None
        assert conn.protocol.transport is None


async def test_abort_then_wait_closed_releases_a_tls_socket() -> None:
    async with FaultServer("starttls=on") as srv:
        conn = await open_connection(connect_params(srv, tls_context=srv.tls_context()))
        sock = _socket_of(conn)
        conn.abort()
        assert sock.fileno() != -1  # abort() only starts the close
        await conn.wait_closed()
        assert sock.fileno() == -1


async def test_a_tls_peer_that_never_answers_close_notify_is_aborted() -> None:
    """The graceful close is bounded: past the limit, the transport is aborted."""
    from smtp_guard.client import _connect  # noqa: PLC0415

    async with FaultServer("starttls=on") as srv:
        conn = await open_connection(connect_params(srv, tls_context=srv.tls_context()))
        sock = _socket_of(conn)
        # Pause reading: the server's close_notify is never seen, so the TLS close cannot end.
        transport = conn.client.transport
        assert transport is not None
        transport.pause_reading()  # type: ignore[attr-defined]
        conn.abort()
        await _connect._wait_closed(conn.protocol, limit=0.05)
        assert sock.fileno() == -1


@pytest.mark.parametrize("tls", [True, False])
def test_send_sync_leaves_no_socket_open(tls: bool) -> None:
    """With TLS, close() waits for the close_notify exchange; without, after a clean QUIT,
    the socket is released by a callback already queued, which runs before the loop closes."""
    opened: list[socket.socket] = []
    real = socket.socket.connect

    def spy(self: socket.socket, address: object) -> None:
        opened.append(self)
        real(self, address)  # type: ignore[arg-type]

    with FaultServer("starttls=on" if tls else "starttls=off") as srv:
        original = socket.socket.connect
        socket.socket.connect = spy  # type: ignore[method-assign,assignment]
        try:
            send_sync(
                RAW, sender="a@sender.test", recipients=["b@rcpt.test"],
                tls_context=srv.tls_context() if tls else None,
                start_tls=tls, **kw(srv),
            )  # fmt: skip
        finally:
            socket.socket.connect = original  # type: ignore[method-assign]
        assert srv.messages[0].tls is tls
    assert opened
    assert all(s.fileno() == -1 for s in opened)


def test_sync_mailer_close_over_starttls_leaves_no_socket_open() -> None:
    with FaultServer("starttls=on") as srv:
        mailer = SyncMailer(tls_context=srv.tls_context(), **kw(srv))
        with mailer:
            mailer.send(RAW, sender="a@sender.test", recipients=["b@rcpt.test"])
            conns = list(mailer.mailer._pool._idle)
            socks = [_socket_of(c) for c in conns]
        assert socks
        assert all(s.fileno() == -1 for s in socks)
        assert len(srv.messages) == 1


async def test_wait_closed_on_a_connection_already_gone_returns_at_once() -> None:
    async with FaultServer() as srv:
        conn = await open_connection(connect_params(srv))
        await conn.close()
        await asyncio.wait_for(conn.wait_closed(), 1)
