"""A forked child that closes an asyncio Redis broker it inherited, whose uvloop loop
is open but not running, leaves the parent's connections alone.

Under uvloop, such a close shuts each connection's socket down (``_loops._shut_down``,
235fd8a: uvloop keeps no ``_sock`` to close). ``shutdown`` acts on the socket, which
parent and child share after ``fork``, not on the child's descriptor: the child's close
ended the parent's live connections (found by review). A close in another process
than the broker's now only lets go of what is its own, as closing the descriptor does
under asyncio's loops. Skipped where uvloop is not installed (a test dependency)."""

from __future__ import annotations

import asyncio
import os
import socket
from collections.abc import Iterator
from typing import Any

import pytest

import brokerkit.aio
from brokerkit.backends.redis import _loops
from tests.redis_server import RedisServer

uvloop = pytest.importorskip("uvloop")

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")


@pytest.fixture(scope="module")
def server() -> Iterator[RedisServer]:
    with RedisServer() as redis_server:
        yield redis_server


def _sockets(broker: Any) -> list[socket.socket]:
    """The sockets of the connections the broker's clients hold."""
    found = []
    for name in _loops._HOLDERS:
        pool = getattr(getattr(broker, name, None), "connection_pool", None)
        if pool is None:
            continue
        for connection in [*pool._available_connections, *pool._in_use_connections]:
            writer = connection._writer
            if writer is not None:
                found.append(writer.transport.get_extra_info("socket"))
    return found


def _ended(sock: socket.socket) -> bool:
    """Whether reading ``sock`` says its connection ended (a shut down socket reads
    b'' at once; a live one with nothing to read would block)."""
    # (uvloop's socket stands in for the real one: it reads nothing; a duplicate does)
    with socket.fromfd(sock.fileno(), sock.family, sock.type) as duplicate:
        try:
            return duplicate.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT) == b""
        except BlockingIOError:
            return False


@pytest.mark.parametrize("scheme", ["redis+list", "redis+stream"])
def test_a_forked_childs_close_leaves_the_parents_connections(
    scheme: str, server: RedisServer, prefix: str
) -> None:
    loop = uvloop.new_event_loop()
    try:
        broker = loop.run_until_complete(brokerkit.aio.connect(server.url(scheme), prefix=prefix))
        loop.run_until_complete(broker.publish("jobs", "first"))
        sockets = _sockets(broker)
        assert sockets and not any(map(_ended, sockets))
        child = os.fork()
        if child == 0:  # the child: close what it inherited, from a loop of its own
            try:
                asyncio.run(asyncio.wait_for(broker.close(), 20))
            finally:
                os._exit(0)
        _, status = os.waitpid(child, 0)
        assert os.waitstatus_to_exitcode(status) == 0
        assert not any(map(_ended, sockets)), "the child's close ended the parent's connections"
        assert loop.run_until_complete(broker.topics()) is not None
        loop.run_until_complete(broker.close())
    finally:
        loop.close()
