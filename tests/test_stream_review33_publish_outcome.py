"""A redis+stream publish whose outcome a failure left unknown is looked for before it
is sent again, and the look covers every moment the server may have run it.

Before (review of c339a95): on a cluster, a ``max_age`` publish whose ``XADD`` reply was
lost was stored twice: redis.asyncio's cluster pipeline returned the connection error as
the ``XADD``'s reply, raised where the attempt was not marked possibly written, so the
retry sent it again without looking; redis-py's cluster pipeline sent the ``XADD`` again
itself. Whether an error proved nothing was written was judged from its text ("...
connecting to ..."), which the error of a written command can read too. And after a
timeout (a server frozen past ``socket_timeout``) the look read up to 5 s after the
failure only, while the server ran the ``XADD`` waiting in its socket buffer later, at
thaw: stored twice.

Against real redis-servers (the suite's), a one-node cluster reached through the TCP
proxy of test_stream_review33_lost_publish_reply (the node announces the proxy's port,
so that every connection of the cluster client goes through it).
"""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import Iterator

import pytest
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import MaxConnectionsError
from redis.exceptions import TimeoutError as RedisTimeoutError

import brokerkit
import brokerkit.aio
from brokerkit.backends.redis._held import Reader
from brokerkit.backends.redis._held_async import AsyncReader
from brokerkit.backends.redis.stream.landed import unwritten
from tests.redis_cluster import EverySlotNode, _ClusterNode
from tests.redis_server import RedisServer
from tests.test_stream_review33_lost_publish_reply import DropProxy, _named

TOPIC = "orders"


class _ProxiedNode(EverySlotNode, _ClusterNode):
    """A one-node cluster that announces ``announce_port`` (a proxy's) as its own."""

    def __init__(self) -> None:
        super().__init__()
        self.proxy = DropProxy(self)
        self.config = (*self.config, "--cluster-announce-port", str(self.proxy.port))


@pytest.fixture
def node() -> Iterator[_ProxiedNode]:
    made = _ProxiedNode()
    try:
        with made:
            yield made
    finally:
        made.proxy.close()


def _bodies(server: RedisServer, prefix: str) -> list[bytes]:
    client = server.client()
    try:
        return [f[b"body"] for _, f in client.xrange(f"{prefix}:{{{TOPIC}}}")]
    finally:
        client.close()


@pytest.mark.parametrize("aio", [False, True], ids=["sync", "asyncio"])
@pytest.mark.parametrize("query", ["max_age=60", "", "max_age=60&maxlen=1000"])
def test_a_cluster_publish_whose_xadd_reply_was_lost_stores_its_message_once(
    node: _ProxiedNode, prefix: str, query: str, aio: bool
) -> None:
    proxy = node.proxy
    url = f"redis+stream://127.0.0.1:{proxy.port}/0?cluster=true&{query}"
    if aio:

        async def main() -> None:
            async with brokerkit.aio.connect(url, prefix=prefix) as broker:
                await broker.publish(TOPIC, "a")
                proxy.drop_reply_to(_named(b"XADD"))
                await broker.publish(TOPIC, "b")

        asyncio.run(asyncio.wait_for(main(), 60))
    else:
        with brokerkit.connect(url, prefix=prefix) as broker:
            broker.publish(TOPIC, "a")
            proxy.drop_reply_to(_named(b"XADD"))
            broker.publish(TOPIC, "b")
    assert proxy.dropped == 1
    assert _bodies(node, prefix) == [b"a", b"b"]
    assert proxy.sent(b"XRANGE") == 1  # the retry looked, and found it


def test_only_a_failure_to_connect_or_the_pools_cap_proves_nothing_was_written() -> None:
    # the text of a written command's error may read so (a cluster pipeline's resend)
    assert not unwritten(RedisConnectionError("Error 111 connecting to 127.0.0.1:1."))
    assert not unwritten(RedisTimeoutError("Timeout connecting to server"))
    assert unwritten(MaxConnectionsError("Too many connections"))


@pytest.fixture
def refusing_port() -> Iterator[int]:
    """A port bound and never listened on, for the test's length: a connect to it is
    refused (a port merely freed could be another test's server's by then)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield int(sock.getsockname()[1])


def test_a_readers_command_that_could_not_connect_wrote_nothing(refusing_port: int) -> None:
    import redis
    import redis.asyncio as aioredis

    port = refusing_port
    client = redis.Redis(port=port, retry=None, socket_connect_timeout=5)
    try:
        with pytest.raises(RedisConnectionError) as sync_error:
            Reader(client).send(("XADD", "k", "*", "f", "v"))
    finally:
        client.close()
    assert unwritten(sync_error.value)

    async def main() -> BaseException:
        aclient = aioredis.Redis(port=port, retry=None, socket_connect_timeout=5)
        try:
            with pytest.raises(RedisConnectionError) as error:
                await AsyncReader(aclient).send(("XADD", "k", "*", "f", "v"))
        finally:
            await aclient.aclose()
        return error.value

    assert unwritten(asyncio.run(main()))


@pytest.mark.parametrize("aio", [False, True], ids=["sync", "asyncio"])
def test_a_publish_a_frozen_server_ran_after_its_timeout_is_stored_once(
    prefix: str, aio: bool
) -> None:
    """The XADD times out (socket_timeout=1) while the server is frozen (SIGSTOP) for
    longer than the timeout and the look's 5 s slack; at thaw the server runs it, from
    its socket buffer, stamped then. The retry's look must find it (before: three
    entries for two publishes)."""
    with RedisServer() as server:
        url = f"{server.url('redis+stream')}?socket_timeout=1&reconnect_timeout=60"
        thaw = threading.Timer(7.5, server.thaw)  # the outage's length, not a wait
        if aio:

            async def main() -> None:
                async with brokerkit.aio.connect(url, prefix=prefix) as broker:
                    await broker.publish(TOPIC, "a")
                    server.freeze()
                    thaw.start()
                    await broker.publish(TOPIC, "b")

            asyncio.run(asyncio.wait_for(main(), 90))
        else:
            with brokerkit.connect(url, prefix=prefix) as broker:
                broker.publish(TOPIC, "a")
                server.freeze()
                thaw.start()
                broker.publish(TOPIC, "b")
        thaw.join()
        assert _bodies(server, prefix) == [b"a", b"b"]
