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
from brokerkit._acompat import on_loop
from brokerkit.backends.redis import _loops
from brokerkit.backends.redis.stream.broker_async import AsyncRedisStreamBroker
from brokerkit.exceptions import BrokerClosed, Unsupported
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
@pytest.mark.parametrize("first_loop", ["closed", "open, not running"])
@pytest.mark.parametrize("scheme", SCHEMES)
def test_a_close_without_the_first_loop_on_tls_a_cluster_and_sentinel(
    scheme: str,
    first_loop: str,
    target: Target,
    name: str,
    prefix: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    url, servers = target
    loop = asyncio.new_event_loop()
    try:
        broker = loop.run_until_complete(brokerkit.aio.connect(url(scheme, name), prefix=prefix))
        subscription = loop.run_until_complete(_use(broker, name))
        assert _open(servers, name) >= 2
        if first_loop == "closed":  # as asyncio.run() ends: what runs there cancelled
            loop.run_until_complete(_others_end(cancelled=True))
            loop.close()
        with caplog.at_level(logging.WARNING):
            asyncio.run(asyncio.wait_for(broker.close(), GUARD))
            assert broker.closed and subscription.closed
            _wait_closed(servers, name)
            if not loop.is_closed():
                loop.run_until_complete(_others_end())
                assert _open(servers, name) == 0
        assert not caplog.records, [r.getMessage() for r in caplog.records]
    finally:
        loop.close()
    del broker, subscription
    gc.collect()


async def _others_end(cancelled: bool = False) -> None:
    """Wait for every other task of the running loop to end (the broker's background
    work, told to stop by a close without this loop), ``cancelled`` first or not."""
    others = asyncio.all_tasks() - {asyncio.current_task()}
    for task in others if cancelled else ():
        task.cancel()
    if others:
        _, pending = await asyncio.wait(others, timeout=GUARD)
        assert not pending, pending


@pytest.mark.filterwarnings("error::ResourceWarning")
@pytest.mark.parametrize("scheme", SCHEMES)
def test_a_close_while_the_first_loop_is_open_but_not_running_closes_without_it(
    scheme: str, server: RedisServer, name: str, prefix: str, caplog: pytest.LogCaptureFixture
) -> None:
    """A loop driven by run_until_complete (or one between stopping and closing at the
    end of asyncio.run()): nothing would run the close there, so it is done without it,
    as after the loop closed. Before, that close raised Unsupported with the broker
    already half-closed: two connections stayed open, and a renewal task pending."""
    url = server.url(scheme) + f"?client_name={name}"
    loop = asyncio.new_event_loop()
    try:
        broker = loop.run_until_complete(brokerkit.aio.connect(url, prefix=prefix))
        subscription = loop.run_until_complete(_use(broker, name))
        assert _open([server.client], name) >= 2
        with caplog.at_level(logging.WARNING):
            asyncio.run(asyncio.wait_for(broker.close(), GUARD))
            assert broker.closed and subscription.closed
            _wait_closed([server.client], name)
            # The loop runs again: its background work ends, nothing is reconnected
            # and nothing fails in a callback left on it.
            loop.run_until_complete(broker.close())
            loop.run_until_complete(_others_end())
        assert not caplog.records, [r.getMessage() for r in caplog.records]
        assert _open([server.client], name) == 0
    finally:
        loop.close()
    del broker, subscription
    gc.collect()  # an unclosed transport or connection would warn here


@pytest.mark.parametrize("scheme", SCHEMES)
def test_a_close_whose_running_loop_does_not_answer_goes_on_there(
    scheme: str,
    server: RedisServer,
    name: str,
    prefix: str,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Before, once the wait ran out the close raised Unsupported, the broker marked
    closed and nothing left to close it: its connection stayed open."""
    monkeypatch.setattr("brokerkit.backends.redis._loops._CLOSE_WAIT", 0.2)
    first = LoopThread()
    held, free = threading.Event(), threading.Event()
    try:

        async def make() -> brokerkit.aio.AsyncBroker:
            url = server.url(scheme) + f"?client_name={name}"
            broker = await brokerkit.aio.connect(url, prefix=prefix)
            await broker.publish("jobs", "first")
            return broker

        broker = first.run(make())
        assert _open([server.client], name) == 1

        def hold() -> None:  # the loop blocked, as by a long synchronous call
            held.set()
            free.wait(GUARD)

        first.loop.call_soon_threadsafe(hold)
        assert held.wait(GUARD)
        with caplog.at_level(logging.WARNING, logger="brokerkit.redis"):
            asyncio.run(asyncio.wait_for(broker.close(), GUARD))
        assert broker.closed
        assert "did not answer in 0 s; it goes on there" in caplog.text
        free.set()
        _wait_closed([server.client], name)
    finally:
        free.set()
        first.end()


@pytest.mark.parametrize("scheme", SCHEMES)
def test_a_subscription_closed_from_a_second_running_loop_unsubscribes_on_the_first(
    scheme: str, server: RedisServer, name: str, prefix: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Before, its unsubscribe was refused ("could not hand back"), the subscription
    marked closed all the same, and the broker's close no longer saw it: redis+pubsub's
    listener stayed subscribed, redis+stream's consumer stayed in its group."""
    admin = server.client()
    first = LoopThread()
    try:

        async def make() -> brokerkit.aio.AsyncBroker:
            url = server.url(scheme) + f"?client_name={name}"
            return await brokerkit.aio.connect(url, prefix=prefix)

        broker = first.run(make())
        group = None if "pubsub" in scheme else "g"
        subscription = first.run(broker.subscribe("jobs", group=group, consumer=f"{name}-c"))
        channels = f"{prefix}*"

        def consumers() -> int:
            if not isinstance(broker, AsyncRedisStreamBroker):
                return 0
            return len(admin.xinfo_consumers(broker.stream_key("jobs"), "g"))

        assert consumers() == (1 if scheme == "redis+stream" else 0)
        assert bool(admin.pubsub_channels(channels)) == (scheme == "redis+pubsub")
        with caplog.at_level(logging.WARNING):
            asyncio.run(asyncio.wait_for(subscription.close(), GUARD))
        assert subscription.closed
        assert not caplog.records, [r.getMessage() for r in caplog.records]
        assert admin.pubsub_channels(channels) == []
        assert consumers() == 0
        first.run(broker.close())
        _wait_closed([server.client], name)
    finally:
        first.end()
        admin.close()


class _Measured(AsyncRedisStreamBroker):
    """A user's subclass: a public coroutine of its own, a primitive it overrides
    without calling the broker's, and close overridden."""

    async def length(self, topic: str) -> int:
        return int(await self._client.xlen(self.stream_key(topic)))

    async def _purge(self, topic: str) -> int:
        return int(await self._client.delete(self.stream_key(topic)))

    async def close(self) -> None:
        await super().close()


def test_a_subclass_keeps_its_own_coroutines_to_the_first_loop(
    server: RedisServer, name: str, prefix: str
) -> None:
    """Before, its own coroutines ran on a new loop: redis-py's raw RuntimeError."""
    broker = _Measured.from_url(server.url("redis+stream") + f"?client_name={name}", prefix=prefix)

    async def on_the_first() -> int:
        await broker.publish("jobs", "first")
        return int(await broker.length("jobs"))

    assert asyncio.run(on_the_first()) == 1

    async def on_a_new_loop() -> None:
        with pytest.raises(Unsupported, match="now closed"):
            await broker.length("jobs")
        with pytest.raises(Unsupported, match="now closed"):
            await broker.purge("jobs")

    asyncio.run(on_a_new_loop())
    asyncio.run(broker.close())  # close, overridden, still works from anywhere
    _wait_closed([server.client], name)


async def _fetching(subscription: brokerkit.aio.AsyncSubscription) -> asyncio.Task[Any]:
    """A receive of ``subscription`` started and left pending in its fetch (the
    subscription's fetch lock held by it)."""
    receive = asyncio.ensure_future(subscription.receive(timeout=GUARD))
    while not subscription._fetching.locked():
        await asyncio.sleep(0)
    return receive


@pytest.mark.filterwarnings("error::ResourceWarning")
@pytest.mark.parametrize("scheme", SCHEMES)
def test_a_close_without_the_first_loop_does_not_wait_for_a_receive_pending_there(
    scheme: str, server: RedisServer, name: str, prefix: str
) -> None:
    """A receive pending on a loop driven by run_until_complete holds its fetch for as
    long as the loop does not run: the close without that loop does not wait for it.
    Before, it waited for ever (here: the guard's TimeoutError)."""
    url = server.url(scheme) + f"?client_name={name}"
    loop = asyncio.new_event_loop()
    try:
        broker = loop.run_until_complete(brokerkit.aio.connect(url, prefix=prefix))
        group = None if "pubsub" in scheme else "g"
        subscription = loop.run_until_complete(broker.subscribe("jobs", group=group))
        receive = loop.run_until_complete(_fetching(subscription))
        asyncio.run(asyncio.wait_for(broker.close(), GUARD))
        assert broker.closed and subscription.closed
        _wait_closed([server.client], name)
        loop.run_until_complete(asyncio.wait((receive,), timeout=GUARD))
        assert receive.done()
        assert isinstance(receive.exception(), BrokerClosed)
        loop.run_until_complete(_others_end())
        assert _open([server.client], name) == 0
    finally:
        loop.close()
    del broker, subscription, receive
    gc.collect()


@pytest.mark.parametrize("scheme", SCHEMES)
def test_a_close_whose_first_loop_starts_running_meanwhile_is_carried_out_there(
    scheme: str,
    server: RedisServer,
    name: str,
    prefix: str,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The first loop, not running as the close looks, starts running (in another
    thread) before the close is done without it: the close is carried out there, not
    beside it. Before, it was done without it while that loop ran (its sockets and
    selector touched from this thread)."""
    url = server.url(scheme) + f"?client_name={name}"
    loop = asyncio.new_event_loop()
    running = threading.Event()
    stop: asyncio.Future[None] = loop.create_future()
    thread = threading.Thread(target=lambda: loop.run_until_complete(home()))
    beside: list[bool] = []

    async def home() -> None:
        running.set()
        await stop
        await _others_end()

    real_drop = _loops._drop_connections

    async def late(home_loop: Any, work: Any, timeout: float) -> bool:
        async def started_meanwhile() -> None:
            if not running.is_set():  # (on_loop looked: not running)
                thread.start()
                assert running.wait(GUARD)
            await work()

        return await on_loop(home_loop, started_meanwhile, timeout)

    def drop(*holders: Any) -> None:
        beside.append(loop.is_running())
        real_drop(*holders)

    try:
        broker = loop.run_until_complete(brokerkit.aio.connect(url, prefix=prefix))
        subscription = loop.run_until_complete(_use(broker, name))
        monkeypatch.setattr(_loops, "on_loop", late)
        monkeypatch.setattr(_loops, "_drop_connections", drop)
        with caplog.at_level(logging.WARNING):
            asyncio.run(asyncio.wait_for(broker.close(), GUARD))
        assert broker.closed and subscription.closed
        assert beside == []
        _wait_closed([server.client], name)
        assert not caplog.records, [r.getMessage() for r in caplog.records]
    finally:
        if thread.is_alive():
            loop.call_soon_threadsafe(stop.set_result, None)
            thread.join(GUARD)
        loop.close()
