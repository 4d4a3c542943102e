"""Under uvloop, an asyncio Redis broker closed while its event loop is open but not
running (driven by ``run_until_complete``, or between stopping and closing) closes its
connections without that loop, as it does under asyncio's own loops
(brokerkit/backends/redis/_loops.py promises "the sockets of the broker's connections
are closed where they stand").

Before, ``_drop`` looked for the socket of an asyncio selector transport
(``transport._sock``); a uvloop transport has none, so it closed nothing: the broker's
connections stayed open on the server until that loop ran again or was closed (for
ever, for a loop kept stopped). Skipped where uvloop is not installed."""

from __future__ import annotations

import asyncio
import gc
import logging
import uuid
from collections.abc import Iterator

import pytest

import brokerkit.aio
from tests.redis_server import RedisServer, wait_until
from tests.redis_tls import TLSRedisServer, require_tls_redis_server

uvloop = pytest.importorskip("uvloop")

#: Seconds any wait here may take at most: a hang guard, never a pace.
GUARD = 20.0


@pytest.fixture(scope="module", params=["plain", "tls"])
def server(request: pytest.FixtureRequest) -> Iterator[RedisServer]:
    if request.param == "tls":
        with TLSRedisServer(require_tls_redis_server()) as tls:
            yield tls
        return
    with RedisServer() as redis_server:
        yield redis_server


def _open(server: RedisServer, name: str) -> int:
    """The connections open on ``server`` whose client name holds ``name``."""
    client = server.client()
    try:
        return sum(name in str(c.get("name")) for c in client.client_list())
    finally:
        client.close()


async def _use(broker: brokerkit.aio.AsyncBroker, name: str) -> brokerkit.aio.AsyncSubscription:
    group = None if "pubsub" in broker.url.scheme else "g"  # pub/sub has no groups
    subscription = await broker.subscribe("jobs", group=group, consumer=f"{name}-c")
    await broker.publish("jobs", "first")
    delivery = await subscription.receive(timeout=GUARD)
    assert delivery is not None and delivery.body == "first"
    return subscription


@pytest.mark.parametrize("scheme", ["redis+list", "redis+stream", "redis+pubsub"])
def test_a_close_without_its_uvloop_loop_closes_the_connections(
    scheme: str, server: RedisServer, prefix: str, caplog: pytest.LogCaptureFixture
) -> None:
    name = f"bkuv-{uuid.uuid4().hex[:10]}"
    tls = isinstance(server, TLSRedisServer)
    url = server.url(f"rediss{scheme[5:]}") if tls else server.url(scheme)
    url += ("&" if "?" in url else "?") + f"client_name={name}"
    loop = uvloop.new_event_loop()
    try:
        broker = loop.run_until_complete(brokerkit.aio.connect(url, prefix=prefix))
        subscription = loop.run_until_complete(_use(broker, name))
        assert _open(server, name) >= 2  # the broker's, the subscription's
        with caplog.at_level(logging.WARNING):
            asyncio.run(asyncio.wait_for(broker.close(), GUARD))  # another loop, here
            assert broker.closed and subscription.closed
            wait_until(
                lambda: _open(server, name) == 0,
                GUARD,
                f"{_open(server, name)} connection(s) named {name} still open",
            )
            # The loop runs again: nothing fails there, nothing is reconnected.
            loop.run_until_complete(broker.close())
            loop.run_until_complete(asyncio.sleep(0))
        assert not caplog.records, [r.getMessage() for r in caplog.records]
        assert _open(server, name) == 0
    finally:
        loop.close()
    del broker, subscription
    gc.collect()
