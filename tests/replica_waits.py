"""What the tests of a write's replica wait share: a private master with a replica of
its own, and the last command a connection of it ran (``CLIENT LIST``), to see that
the connection that sends ``WAIT`` wrote first (Redis 7.2+ ``WAIT`` covers only its
own connection's writes)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from tests.redis_server import RedisServer

__all__ = ["last_command", "master_with_replica"]


@contextmanager
def master_with_replica() -> Iterator[RedisServer]:
    """A private master with a replica of its own (``WAIT 1`` is answered); no
    replication pings: only writes move its replication offset."""
    with RedisServer(config=("--repl-ping-replica-period", "3600")) as server:
        replica = RedisServer().start(replica_of=server)
        try:
            yield server
        finally:
            replica.stop()


def last_command(server: RedisServer, ident: int) -> str:
    """The last command the connection of ``CLIENT ID`` ``ident`` ran (``evalsha``)."""
    admin = server.client()
    try:
        listed = admin.execute_command("CLIENT", "LIST", "ID", ident)
    finally:
        admin.close()
    text = listed.decode() if isinstance(listed, bytes) else str(listed)
    fields = dict(part.split("=", 1) for part in text.split() if "=" in part)
    return fields["cmd"]
