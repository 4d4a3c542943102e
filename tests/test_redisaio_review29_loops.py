"""An asyncio Redis broker (redis+list, redis+stream, redis+pubsub) belongs to the event
loop that first uses it, as an asyncio NATS broker does (review 29).

A call from any other loop (a second loop running in another thread, or a new loop
after the first one closed: a second ``asyncio.run()``, a test framework's new loop per
test) raises ``Unsupported`` before anything is sent, naming that loop and what to do.
``close()`` works from anywhere: from a second running loop it is carried out on the
first; after the first loop closed, without it, leaving no connection open (the
servers' CLIENT LIST counts them: the broker's are named by the URL's ``client_name``,
a pub/sub subscription's by its consumer) and nothing to warn of (``ResourceWarning``
is an error here). On one server, plain and over TLS, on a cluster and under Sentinel.

Before, such a call failed with redis-py's raw RuntimeError ("got Future attached to a
different loop", "Event loop is closed"), and then (c068f51) a broker moved to the new
loop by walking its objects.
"""

from __future__ import annotations

import asyncio
import functools
import gc
import logging
import threading
import uuid
from collections.abc import Callable, Coroutine, Iterator
from typing import Any, TypeVar

import pytest
import redis

import brokerkit.aio
from brokerkit.exceptions import Unsupported
from tests.redis_cluster import RedisClusterSet, SentinelSet
from tests.redis_server import RedisServer, wait_until
from tests.redis_tls import TLSRedisServer, require_tls_redis_server

#: Seconds any wait here may take at most: a hang guard, never a pace.
GUARD = 20.0

SCHEMES = ("redis+list", "redis+stream", "redis+pubsub")

_T = TypeVar("_T")

#: ``(scheme, client name) -> URL``, and the servers to count the connections on.
Target = tuple[Callable[[str, str], str], list[Callable[[], redis.Redis]]]


class LoopThread:
    """An event loop that ``asyncio.run()`` runs in a thread of its own, as a program's
    second thread would: :meth:`run` runs a coroutine there, :meth:`end` ends it as
    ``asyncio.run()`` ends (what still runs there cancelled, the loop closed)."""

    def __init__(self) -> None:
        self._ready = threading.Event()
        self._thread = threading.Thread(target=asyncio.run, args=(self._serve(),))
        self._thread.start()
        assert self._ready.wait(GUARD)

    async def _serve(self) -> None:
        self.loop = asyncio.get_running_loop()
        self._end = asyncio.Event()
        self._ready.set()
        await self._end.wait()

    def run(self, work: Coroutine[Any, Any, _T]) -> _T:
        return asyncio.run_coroutine_threadsafe(work, self.loop).result(GUARD)

    def end(self) -> None:
        if self._thread.is_alive():
            self.loop.call_soon_threadsafe(self._end.set)
            self._thread.join(GUARD)
        assert not self._thread.is_alive()


@pytest.fixture(scope="module")
def server() -> Iterator[RedisServer]:
    with RedisServer() as redis_server:
        yield redis_server


@pytest.fixture
def name() -> str:
    """The client name of the broker's connections (a pub/sub listener's holds it too)."""
    return f"bkloops-{uuid.uuid4().hex[:10]}"


def _connect(url: str, prefix: str) -> brokerkit.aio.AsyncBroker:
    async def connect() -> brokerkit.aio.AsyncBroker:
        return await brokerkit.aio.connect(url, prefix=prefix)

    return asyncio.run(connect())


async def _use(broker: brokerkit.aio.AsyncBroker, name: str) -> brokerkit.aio.AsyncSubscription:
    """Subscribe, publish two messages and receive the first, leaving it unsettled (a
    lease renewed in the background, on list and stream) and the second in flight."""
    group = None if "pubsub" in broker.url.scheme else "g"  # pub/sub has no groups
    subscription = await broker.subscribe("jobs", group=group, consumer=f"{name}-c")
    await broker.publish("jobs", "first")
    delivery = await subscription.receive(timeout=GUARD)
    assert delivery is not None and delivery.body == "first"
    await broker.publish("jobs", "second")
    return subscription


def _open(servers: list[Callable[[], redis.Redis]], name: str) -> int:
    """The connections open on ``servers`` whose client name holds ``name``."""
    count = 0
    for make in servers:
        client = make()
        try:
            count += sum(name in str(c.get("name")) for c in client.client_list())
        finally:
            client.close()
    return count


def _wait_closed(servers: list[Callable[[], redis.Redis]], name: str) -> None:
    wait_until(
        lambda: _open(servers, name) == 0,
        GUARD,
        f"{_open(servers, name)} connection(s) named {name} still open",
    )


def _commands(admin: redis.Redis) -> int:
    """The commands the server has run so far (this INFO not counted)."""
    return int(admin.info("stats")["total_commands_processed"])


@pytest.mark.parametrize("scheme", SCHEMES)
def test_a_new_loop_after_the_first_closed_is_refused_before_anything_is_sent(
    scheme: str, server: RedisServer, name: str, prefix: str
) -> None:
    broker = _connect(server.url(scheme) + f"?client_name={name}", prefix)
    subscription = asyncio.run(_use(broker, name))  # the loop the broker belongs to
    admin = server.client()
    before = _commands(admin)

    async def on_a_new_loop() -> None:
        refused = r"belongs to: the first to use it, .*closed=True.*, now closed"
        advice = r"one broker per event loop \(per asyncio.run\(\), per test\).*brokerkit.connect"
        with pytest.raises(Unsupported, match=refused):
            await broker.publish("jobs", "on a new loop")
        with pytest.raises(Unsupported, match=advice):
            await broker.inspect("jobs")
        with pytest.raises(Unsupported, match=refused):
            await subscription.receive(timeout=0)
        with pytest.raises(Unsupported, match=refused):
            await broker.subscribe("other", group=None if "pubsub" in scheme else "g")

    asyncio.run(on_a_new_loop())
    assert _commands(admin) == before + 1  # the INFO of `before`: nothing else was sent
    admin.close()
    asyncio.run(broker.close())
    _wait_closed([server.client], name)


@pytest.mark.filterwarnings("error::ResourceWarning")
@pytest.mark.parametrize("scheme", SCHEMES)
def test_a_close_after_the_first_loop_closed_leaves_no_connection(
    scheme: str, server: RedisServer, name: str, prefix: str, caplog: pytest.LogCaptureFixture
) -> None:
    broker = _connect(server.url(scheme) + f"?client_name={name}", prefix)
    subscription = asyncio.run(_use(broker, name))
    assert _open([server.client], name) >= 2  # the broker's, the subscription's
    with caplog.at_level(logging.WARNING):
        asyncio.run(asyncio.wait_for(broker.close(), GUARD))
        assert broker.closed and subscription.closed
        asyncio.run(asyncio.wait_for(broker.close(), GUARD))  # again: nothing more
    assert not caplog.records, [r.getMessage() for r in caplog.records]
    _wait_closed([server.client], name)
    del broker, subscription
    gc.collect()  # an unclosed transport or connection would warn here


@pytest.mark.parametrize("scheme", SCHEMES)
def test_a_second_running_loop_is_refused_and_its_close_is_carried_out_on_the_first(
    scheme: str, server: RedisServer, name: str, prefix: str
) -> None:
    first = LoopThread()
    try:

        async def make() -> brokerkit.aio.AsyncBroker:
            url = server.url(scheme) + f"?client_name={name}"
            return await brokerkit.aio.connect(url, prefix=prefix)

        broker = first.run(make())
        subscription = first.run(_use(broker, name))

        async def elsewhere() -> None:
            with pytest.raises(Unsupported, match="running in another thread"):
                await broker.publish("jobs", "from the second loop")
            with pytest.raises(Unsupported, match="one broker per event loop"):
                await broker.inspect("jobs")

        asyncio.run(asyncio.wait_for(elsewhere(), GUARD))

        async def at_home() -> list[str]:
            await broker.publish("jobs", "third")
            bodies = []
            for _ in range(2):
                delivery = await subscription.receive(timeout=GUARD)
                assert delivery is not None
                bodies.append(str(delivery.body))
                await delivery.ack()
            assert await subscription.receive(timeout=0.2) is None  # nothing more
            return bodies

        assert first.run(at_home()) == ["second", "third"]

        asyncio.run(asyncio.wait_for(broker.close(), GUARD))
        assert broker.closed and subscription.closed
        _wait_closed([server.client], name)
        assert first.run(asyncio.sleep(0, "still running")) == "still running"
    finally:
        first.end()


@pytest.fixture(params=["tls", "cluster", "sentinel"])
def target(request: pytest.FixtureRequest) -> Iterator[Target]:
    """A TLS server of this test's own, or the session's cluster or Sentinel set."""
    if request.param == "tls":
        with TLSRedisServer(require_tls_redis_server()) as tls:
            yield (
                lambda scheme, name: tls.url(f"rediss{scheme[5:]}") + f"&client_name={name}",
                [tls.client],
            )
        return
    if request.param == "cluster":
        cluster: RedisClusterSet = request.getfixturevalue("redis_cluster")
        # (list and stream wait for a replica: on a connection of their own to a node)
        yield (
            lambda scheme, name: (
                cluster.url(scheme, client_name=name)
                + ("" if "pubsub" in scheme else "&replicas=1")
            ),
            [node.client for node in cluster.nodes],
        )
        return
    sentinels: SentinelSet = request.getfixturevalue("redis_sentinel")
    servers = [sentinels.master.client, sentinels.replica.client]
    servers += [
        functools.partial(redis.Redis, host="127.0.0.1", port=s.port, socket_timeout=5)
        for s in sentinels.sentinels
    ]
    yield (lambda scheme, name: sentinels.url(scheme, client_name=name)), servers


@pytest.mark.filterwarnings("error::ResourceWarning")
@pytest.mark.parametrize("scheme", SCHEMES)
def test_a_close_after_the_first_loop_closed_on_tls_a_cluster_and_sentinel(
    scheme: str, target: Target, name: str, prefix: str
) -> None:
    url, servers = target
    broker = _connect(url(scheme, name), prefix)
    subscription = asyncio.run(_use(broker, name))
    assert _open(servers, name) >= 2
    asyncio.run(asyncio.wait_for(broker.close(), GUARD))
    assert broker.closed and subscription.closed
    _wait_closed(servers, name)
    del broker, subscription
    gc.collect()
