"""Helpers shared by the sending tests: ``from _helpers import kw, connect_params, ...``.

Fixtures live in ``conftest.py`` (``no_real_sleep``); plain functions live here, so a test
module imports them by name and mypy sees their types.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

from smtp_guard.client._connect import Connection, ConnectParams, open_connection
from smtp_guard.testing import FaultServer

#: The client's name in EHLO: given, so no test waits for a DNS lookup of our own name.
CLIENT_NAME = "client.test"


def kw(server: FaultServer, **extra: Any) -> dict[str, Any]:
    """Connection arguments of ``send``/``Mailer`` for ``server`` (``extra`` added/overridden)."""
    return {"hostname": server.host, "port": server.port, "local_hostname": CLIENT_NAME, **extra}


def connect_params(server: FaultServer, **extra: Any) -> ConnectParams:
    """:func:`kw` as the client's :class:`ConnectParams`."""
    return ConnectParams(**kw(server, **extra))


@contextlib.asynccontextmanager
async def connection(server: FaultServer, **extra: Any) -> AsyncIterator[Connection]:
    """A ready connection to ``server`` for the block, closed (QUIT) afterwards."""
    conn = await open_connection(connect_params(server, **extra))
    try:
        yield conn
    finally:
        await conn.close()


@contextlib.contextmanager
def refusing_port(host: str = "127.0.0.1") -> Iterator[int]:
    """A loopback port on which connections are refused, held for the block.

    The socket is bound (so no other process or test can be given the port meanwhile) but
    never listens, so a connection to it is refused at once. A port found free and released
    before use could be taken by anything in between.
    """
    with socket.socket() as holder:
        holder.bind((host, 0))
        port: int = holder.getsockname()[1]
        yield port


@contextlib.asynccontextmanager
async def loopback_server(
    factory: Callable[[], asyncio.BaseProtocol], host: str = "127.0.0.1"
) -> AsyncIterator[asyncio.Server]:
    """``loop.create_server(factory)`` on a port the kernel picks; closed after the block.

    For aiosmtpd's ``SMTP`` with settings the FaultServer does not offer (no SMTPUTF8, a
    custom authenticator): the port is the server's own, never one found free beforehand.
    """
    server = await asyncio.get_running_loop().create_server(factory, host, 0)
    try:
        yield server
    finally:
        server.close()
        await server.wait_closed()


def port_of(server: asyncio.Server) -> int:
    """The port ``server`` listens on."""
    port: int = server.sockets[0].getsockname()[1]
    return port
