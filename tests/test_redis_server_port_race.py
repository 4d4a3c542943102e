"""The suite's private redis-server picks another port when the one it picked was taken
before redis-server bound it.

A port is picked free (bound to 0, then let go) and handed to redis-server, which binds
it a moment later; the suite's other workers pick theirs at the same time, and one took
it first now and then: redis-server exited ("Address already in use") and the test
using it errored at setup (this session's last clean-clone CI run, a sentinel test)."""

from __future__ import annotations

import socket

from tests.redis_server import RedisServer


def test_a_taken_port_is_replaced() -> None:
    server = RedisServer()
    taken = socket.socket()
    taken.bind(("127.0.0.1", server.port))  # bound, not listening: refused, and taken
    try:
        with server:
            assert server.port != taken.getsockname()[1]
            assert server.client().ping()
    finally:
        taken.close()
