"""redis+pubsub over the asyncio API (``brokerkit.aio``), against a real server: the
backend's promises, cancellation that loses nothing, closes that end readers, faults
(CLIENT KILL, a server restart, a frozen server), and an event loop that is never
blocked.

Each test runs one coroutine with ``asyncio.run`` (:func:`run`), under a deadline.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from typing import Any, TypeVar

import pytest
import redis
import redis.asyncio as aioredis
from redis._parsers import _AsyncRESP2Parser

import brokerkit
import brokerkit.aio
from brokerkit import Capability
from brokerkit.backends.redis.pubsub import AsyncRedisPubSubBroker, Gap, Published
from brokerkit.backends.redis.pubsub.listener_async import AsyncChannelListener
from brokerkit.backends.redis.pubsub.wire import AsyncHiredisWire, AsyncWire
from brokerkit.exceptions import BrokerClosed, BrokerError, ConnectionFailed, Unsupported
from tests.conftest import RedisTarget
from tests.loop_lag import Ticker, frozen_heap
from tests.redis_server import RedisServer
from tests.test_redis_pubsub_reading import _use_the_python_parser

_T = TypeVar("_T")

WAIT = 5.0
Connect = Callable[..., Awaitable[AsyncRedisPubSubBroker]]


def run(coroutine: Coroutine[Any, Any, _T], seconds: float = 90.0) -> _T:
    """Run ``coroutine`` on a new event loop; fail if it takes over ``seconds``."""

    async def bounded() -> _T:
        return await asyncio.wait_for(coroutine, seconds)

    return asyncio.run(bounded())


async def eventually(check: Callable[[], Awaitable[bool]], what: str) -> None:
    """Poll ``check`` (with a deadline) until it holds."""
    end = time.monotonic() + WAIT
    while not await check():
        assert time.monotonic() < end, f"never happened: {what}"
        await asyncio.sleep(0.01)


@contextlib.asynccontextmanager
async def brokers(url: str, **defaults: Any) -> AsyncIterator[Connect]:
    """``connect(**options)``: new async brokers for ``url``, all closed on exit."""
    made: list[AsyncRedisPubSubBroker] = []

    async def connect(**options: Any) -> AsyncRedisPubSubBroker:
        broker = await brokerkit.aio.connect(url, **{**defaults, **options})
        assert isinstance(broker, AsyncRedisPubSubBroker)
        made.append(broker)
        return broker

    try:
        yield connect
    finally:
        for broker in made:
            await broker.close()


@pytest.fixture
def url(redis_target: RedisTarget, prefix: str) -> str:
    return redis_target.url("redis+pubsub", prefix=prefix)


@pytest.fixture(params=["hiredis", "python"])
def parser(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Which parser the subscriber connections use: hiredis (the stream-reader fast
    path) or redis-py's pure-Python one (reads through ``read_response``)."""
    if request.param == "python":
        _use_the_python_parser(monkeypatch, aioredis.ConnectionPool, _AsyncRESP2Parser)
    return str(request.param)


def _listener(subscription: brokerkit.aio.AsyncSubscription) -> AsyncChannelListener:
    listener = subscription.state
    assert isinstance(listener, AsyncChannelListener)
    return listener


def _check_path(subscription: brokerkit.aio.AsyncSubscription, parser: str) -> None:
    link = _listener(subscription)._link
    assert isinstance(link, AsyncWire)
    assert isinstance(link, AsyncHiredisWire) == (parser == "hiredis")


async def _receive(subscription: brokerkit.aio.AsyncSubscription, count: int) -> list[Any]:
    bodies: list[Any] = []
    for _ in range(count):
        delivery = await subscription.receive(timeout=WAIT)
        assert delivery is not None, f"only {len(bodies)} of {count} arrived"
        bodies.append(delivery.body)
    return bodies


async def _subscribers(broker: AsyncRedisPubSubBroker, topic: str) -> int:
    info = await broker.inspect(topic)
    return int(info.details["subscribers"])


async def _wait_until_reading(listener: AsyncChannelListener) -> None:
    end = time.monotonic() + WAIT
    while not listener._reading.locked():
        assert time.monotonic() < end, "the reader never started reading"
        await asyncio.sleep(0.001)


# -- the backend and its promises ------------------------------------------------------


def test_the_async_broker_is_native_with_the_same_capabilities(url: str) -> None:
    async def main() -> None:
        async with brokers(url) as connect:
            broker = await connect()
            assert broker.capabilities == (
                Capability.FANOUT | Capability.ORDERED | Capability.PATTERNS
            )
            assert AsyncRedisPubSubBroker.schemes == ("redis+pubsub", "rediss+pubsub")
            async with await broker.subscribe("native") as subscription:
                assert isinstance(_listener(subscription)._link, AsyncHiredisWire)
            with pytest.raises(Unsupported):
                await broker.subscribe("native", group="g")

    run(main())


def test_a_published_message_reaches_a_subscriber_with_its_metadata(url: str) -> None:
    async def main() -> None:
        async with brokers(url) as connect:
            broker = await connect()
            async with await broker.subscribe("orders") as subscription:
                msg_id = await broker.publish(
                    "orders", {"orderId": 123}, headers={"trace-id": "abc"}
                )
                delivery = await subscription.receive(timeout=WAIT)
            assert delivery is not None
            assert (delivery.id, delivery.topic, delivery.body) == (
                msg_id,
                "orders",
                {"orderId": 123},
            )
            assert dict(delivery.headers) == {"trace-id": "abc"}
            assert delivery.attempt == 1 and not delivery.redelivered
            await delivery.ack()  # a harmless no-op
            with pytest.raises(Unsupported):
                await broker.extend(delivery)

    run(main())


def test_subscribe_returns_only_once_listening_and_nobody_listening_loses_it(url: str) -> None:
    async def main() -> None:
        async with brokers(url) as connect:
            publisher, consumer = await connect(), await connect()
            published = await publisher.publish_counted("ready", "lost")
            assert published == Published(published.id, 0)
            for n in range(10):
                async with await consumer.subscribe("ready") as subscription:
                    assert (await publisher.publish_counted("ready", n)).receivers == 1
                    assert await _receive(subscription, 1) == [n]

    run(main())


def test_publish_many_is_ordered_and_counted_and_fans_out_to_tasks(url: str) -> None:
    async def main() -> None:
        async with brokers(url) as connect:
            publisher = await connect()
            readers, count = 3, 200
            subscriptions = [
                await (await connect()).subscribe("fan", prefetch=7) for _ in range(readers)
            ]
            tasks = [asyncio.ensure_future(_receive(s, count)) for s in subscriptions]
            results = await publisher.publish_many_counted("fan", list(range(count)))
            assert [r.receivers for r in results] == [readers] * count
            assert await asyncio.gather(*tasks) == [list(range(count))] * readers
            assert await publisher.publish_many("fan", []) == []

    run(main())


def test_counted_publishes_from_many_tasks_each_get_their_own_counts(url: str) -> None:
    """publish_many_counted keeps each task's receiver counts apart while the tasks
    publish concurrently on one broker (its own connection and pooled ones)."""

    async def main() -> None:
        async with brokers(url) as connect:
            broker = await connect()
            async with await broker.subscribe("counted", prefetch=100) as subscription:

                async def publish(task: int) -> list[Published]:
                    counted: list[Published] = []
                    for n in range(20):
                        bodies = [f"{task}:{n}:{i}" for i in range(1 + (task + n) % 3)]
                        counted += await broker.publish_many_counted("counted", bodies)
                    return counted

                results = await asyncio.gather(*(publish(t) for t in range(8)))
                expected = sum(1 + (t + n) % 3 for t in range(8) for n in range(20))
                assert [len(r) for r in results] == [
                    sum(1 + (t + n) % 3 for n in range(20)) for t in range(8)
                ]
                assert all(p.receivers == 1 for r in results for p in r)
                bodies = await _receive(subscription, expected)
                for task in range(8):  # each task's messages in its order
                    mine = [b for b in bodies if b.startswith(f"{task}:")]
                    assert mine == [
                        f"{task}:{n}:{i}" for n in range(20) for i in range(1 + (task + n) % 3)
                    ]

    run(main())


def test_pattern_subscription_yields_concrete_topics(url: str) -> None:
    async def main() -> None:
        async with brokers(url) as connect:
            broker = await connect()
            async with await broker.subscribe("chat:room:*", pattern=True) as subscription:
                await broker.publish("chat:room:1", "hi")
                await broker.publish("chat:lobby", "not me")
                await broker.publish("chat:room:2", "there")
                got = [await subscription.receive(timeout=WAIT) for _ in range(2)]
                assert [(d.topic, d.body) for d in got if d] == [
                    ("chat:room:1", "hi"),
                    ("chat:room:2", "there"),
                ]
                assert await subscription.receive(timeout=0.1) is None

    run(main())


@pytest.mark.parametrize("prefetch", [1, 100])
def test_a_burst_spanning_many_reads_arrives_whole_and_in_order(
    url: str, parser: str, prefetch: int
) -> None:
    async def main() -> None:
        async with brokers(url) as connect:
            broker = await connect()
            bodies = [
                f"{i}:".encode() + b"x" * (150_000 + i if i % 100 == 0 else i % 300)
                for i in range(1000)
            ]
            async with await broker.subscribe("burst", prefetch=prefetch) as subscription:
                _check_path(subscription, parser)
                for start in range(0, len(bodies), 250):
                    counted = await broker.publish_many_counted(
                        "burst", bodies[start : start + 250]
                    )
                    assert all(p.receivers == 1 for p in counted)
                assert await _receive(subscription, len(bodies)) == bodies
                assert await subscription.receive(timeout=0.05) is None

    run(main())


def test_inspect_counts_subscribers_and_closing_the_broker_ends_them(url: str) -> None:
    async def main() -> None:
        async with brokers(url) as connect:
            observer, broker = await connect(), await connect()
            subscription = await broker.subscribe("bye")
            assert await _subscribers(observer, "bye") == 1
            assert await observer.purge("bye") == 0
            await broker.close()
            assert subscription.closed
            assert await _subscribers(observer, "bye") == 0

    run(main())


# -- cancellation and closing ----------------------------------------------------------


def test_a_cancelled_receive_loses_nothing_the_next_receive_gets_it_in_order(
    url: str, parser: str
) -> None:
    async def main() -> None:
        async with brokers(url) as connect:
            broker = await connect()
            async with await broker.subscribe("cancel", prefetch=100) as subscription:
                _check_path(subscription, parser)
                for round_ in range(5):
                    waiting = asyncio.ensure_future(subscription.receive())
                    await _wait_until_reading(_listener(subscription))
                    waiting.cancel()
                    with pytest.raises(asyncio.CancelledError):
                        await waiting
                    # The cancelled receive's fetch is still reading: what it reads
                    # must come back to the subscription, ahead of what follows.
                    bodies = [f"{round_}:{i}" for i in range(20)]
                    await broker.publish_many("cancel", bodies)
                    assert await _receive(subscription, 20) == bodies
                assert await subscription.receive(timeout=0.05) is None

    run(main())


def test_receives_cut_short_by_wait_for_lose_nothing_while_messages_flow(
    url: str, parser: str
) -> None:
    """A consumer polling with ``asyncio.wait_for(receive(), tiny)`` is cancelled over
    and over, mid-fetch: every message still arrives once, in order."""

    async def main() -> None:
        async with brokers(url) as connect:
            broker, publisher = await connect(), await connect()
            count = 600
            async with await broker.subscribe("flow", prefetch=10) as subscription:
                _check_path(subscription, parser)

                async def publish() -> None:
                    for start in range(0, count, 3):
                        await publisher.publish_many("flow", list(range(start, start + 3)))
                        await asyncio.sleep(0.0005)

                feeding = asyncio.ensure_future(publish())
                got: list[Any] = []
                timeouts = 0
                end = time.monotonic() + 60
                while len(got) < count:
                    assert time.monotonic() < end, f"only {len(got)} of {count} arrived"
                    try:
                        delivery = await asyncio.wait_for(subscription.receive(), 0.001)
                    except asyncio.TimeoutError:
                        timeouts += 1
                        continue
                    if delivery is not None:
                        got.append(delivery.body)
                await feeding
                assert timeouts > 0, "no receive was cut short: the test proves nothing"
                assert got == list(range(count))
                assert await subscription.receive(timeout=0.05) is None

    run(main())


def test_a_consumer_task_cancelled_mid_batch_leaves_no_subscriber_behind(url: str) -> None:
    async def main() -> None:
        async with brokers(url) as connect:
            broker, observer = await connect(), await connect()
            handled: list[Any] = []
            started = asyncio.Event()

            async def consume() -> None:
                async for delivery in broker.consume("batch", prefetch=10):
                    handled.append(delivery.body)
                    if len(handled) == 3:
                        started.set()
                        await asyncio.sleep(3600)  # a handler, cancelled mid-batch

            task = asyncio.ensure_future(consume())
            await eventually(lambda: _at_least(observer, "batch", 1), "the consumer subscribed")
            await broker.publish_many("batch", list(range(10)))
            await asyncio.wait_for(started.wait(), WAIT)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            # The subscription ends with the task (its close goes on shielded from the
            # cancellation, a loop turn or so later): Redis counts no receiver soon.
            await eventually(lambda: _none_left(observer, "batch"), "the subscriber left")
            assert handled == [0, 1, 2]
            assert not broker._subscriptions

    run(main())


async def _at_least(broker: AsyncRedisPubSubBroker, topic: str, count: int) -> bool:
    return await _subscribers(broker, topic) >= count


async def _none_left(broker: AsyncRedisPubSubBroker, topic: str) -> bool:
    return await _subscribers(broker, topic) == 0


def test_leaving_async_for_early_leaves_no_subscriber_behind(url: str) -> None:
    async def main() -> None:
        async with brokers(url) as connect:
            broker, observer = await connect(), await connect()

            async def publish_once_subscribed() -> None:
                await eventually(lambda: _at_least(observer, "early", 1), "subscribed")
                await observer.publish_many("early", list(range(10)))

            got: list[Any] = []
            feeder = asyncio.ensure_future(publish_once_subscribed())
            consuming = broker.consume("early", prefetch=10)
            async with contextlib.aclosing(consuming):
                async for delivery in consuming:
                    got.append(delivery.body)
                    if len(got) == 3:
                        break
            await feeder
            assert got == [0, 1, 2]
            assert await _subscribers(observer, "early") == 0  # at once
            # Without aclosing, the loop's subscription ends when asyncio finalizes
            # the dropped generator, soon after.
            feeder = asyncio.ensure_future(publish_once_subscribed())
            async for _ in broker.consume("early", prefetch=10):
                break
            await feeder
            await eventually(lambda: _zero(observer, "early"), "the abandoned loop ended")

    run(main())


async def _zero(broker: AsyncRedisPubSubBroker, topic: str) -> bool:
    return await _subscribers(broker, topic) == 0


def test_close_during_a_receive_ends_it_cleanly(url: str, parser: str) -> None:
    async def main() -> None:
        async with brokers(url) as connect:
            broker, observer = await connect(), await connect()
            subscription = await broker.subscribe("blocked", prefetch=10)
            _check_path(subscription, parser)
            ended: list[BaseException | None] = []

            async def iterate() -> None:
                try:
                    async for _ in subscription:
                        pass
                    ended.append(None)
                except BaseException as exc:
                    ended.append(exc)

            task = asyncio.ensure_future(iterate())
            await _wait_until_reading(_listener(subscription))
            await subscription.close()
            assert await _subscribers(observer, "blocked") == 0
            await asyncio.wait_for(task, WAIT)
            assert ended == [None]
            with pytest.raises(BrokerClosed):
                await subscription.receive(timeout=0)

    run(main())


def test_a_listener_closed_under_a_blocked_reader_confirms_and_wakes_it(
    url: str, parser: str
) -> None:
    async def main() -> None:
        async with brokers(url) as connect:
            broker, observer = await connect(), await connect()
            for pattern in (False, True):
                subscription = await broker.subscribe(
                    "room.*" if pattern else "room.1", pattern=pattern
                )
                _check_path(subscription, parser)
                listener = _listener(subscription)
                reader = asyncio.ensure_future(listener.read(10, 30.0))
                await _wait_until_reading(listener)
                started = time.monotonic()
                await listener.close()
                if pattern:
                    numpat = (await observer.inspect("x")).details["server_pattern_subscriptions"]
                    assert numpat == 0
                else:
                    assert await _subscribers(observer, "room.1") == 0
                assert await asyncio.wait_for(reader, WAIT) == ([], None)
                assert time.monotonic() - started < WAIT, "close() did not wake the reader"
                await subscription.close()

    run(main())


# -- faults -----------------------------------------------------------------------------


def _subscriber_ids(client: redis.Redis) -> list[int]:
    return [
        int(c["id"])
        for c in client.client_list(_type="pubsub")
        if c["name"].startswith("brokerkit-pubsub-")
    ]


async def _receive_until_gap(
    subscription: brokerkit.aio.AsyncSubscription, gaps: list[Gap], deadline: float = 20.0
) -> list[Any]:
    bodies = []
    end = time.monotonic() + deadline
    while not gaps:
        assert time.monotonic() < end, "no gap was reported: the subscriber hangs"
        delivery = await subscription.receive(timeout=0.5)
        if delivery is not None:
            bodies.append(delivery.body)
    return bodies


def test_a_connection_killed_while_awaiting_resubscribes_with_a_gap(
    redis_server: RedisServer, parser: str
) -> None:
    gaps: list[Gap] = []
    client = redis_server.client()

    async def main() -> None:
        async with brokers(redis_server.url("redis+pubsub"), on_gap=gaps.append) as connect:
            broker = await connect()
            channel = await broker.subscribe("news")
            pattern = await broker.subscribe("ne*", pattern=True)
            _check_path(channel, parser)

            async def until_own_gap(subscription: brokerkit.aio.AsyncSubscription) -> list[Any]:
                bodies = []
                end = time.monotonic() + 20
                while not broker.gaps(subscription):
                    assert time.monotonic() < end, "no gap was reported: the subscriber hangs"
                    delivery = await subscription.receive(timeout=0.5)
                    if delivery is not None:
                        bodies.append(delivery.body)
                return bodies

            waiting = asyncio.ensure_future(until_own_gap(channel))
            await _wait_until_reading(_listener(channel))  # the kill lands while it awaits
            killed = _subscriber_ids(client)
            assert len(killed) == 2
            for client_id in killed:
                assert client.client_kill_filter(_id=client_id) == 1
            assert await waiting == []
            assert await until_own_gap(pattern) == []
            assert sorted(g.topic for g in gaps) == ["ne*", "news"]
            assert all(g.reason and g.resumed_at >= g.lost_at for g in gaps)
            assert [g.number for g in broker.gaps(channel)] == [1]
            assert sorted(_subscriber_ids(client)) != sorted(killed)
            assert (await broker.publish_counted("news", "after")).receivers == 2
            for subscription in (channel, pattern):
                assert await _receive(subscription, 1) == ["after"]

    try:
        run(main())
    finally:
        client.close()


def test_a_server_restart_while_consuming_is_survived_with_a_gap(
    redis_server: RedisServer,
) -> None:
    gaps: list[Gap] = []

    async def main() -> None:
        async with brokers(redis_server.url("redis+pubsub"), on_gap=gaps.append) as connect:
            broker = await connect()
            received: list[Any] = []

            async def consume() -> None:
                async for delivery in broker.consume("restart"):
                    received.append(delivery.body)
                    if delivery.body == "back":
                        return

            consumer = asyncio.ensure_future(consume())
            await eventually(lambda: _at_least(broker, "restart", 1), "subscribed")
            await broker.publish("restart", "before")
            await eventually(_async(lambda: received == ["before"]), "the first message")
            await asyncio.to_thread(redis_server.restart)  # the loop keeps running
            await eventually(_async(lambda: bool(gaps)), "a gap after the restart")
            assert gaps[0].topic == "restart" and not gaps[0].pattern
            await broker.publish("restart", "back")
            await asyncio.wait_for(consumer, WAIT)
            assert received == ["before", "back"]

    run(main())


def _async(check: Callable[[], bool]) -> Callable[[], Awaitable[bool]]:
    async def checked() -> bool:
        return check()

    return checked


def test_a_server_that_stays_down_gives_connection_failed_then_recovery(
    redis_server: RedisServer,
) -> None:
    gaps: list[Gap] = []

    async def main() -> None:
        url = redis_server.url("redis+pubsub")
        async with brokers(url, reconnect_timeout=0.3, on_gap=gaps.append) as connect:
            broker = await connect()
            subscription = await broker.subscribe("down")
            redis_server.kill()
            end = time.monotonic() + 20
            failure: ConnectionFailed | None = None
            while failure is None:
                assert time.monotonic() < end, "the loss was never reported: a silent hang"
                try:
                    await subscription.receive(timeout=0.5)
                except ConnectionFailed as exc:
                    failure = exc
            assert "'down'" in str(failure) and "lost" in str(failure)
            await asyncio.to_thread(redis_server.start)
            await _receive_until_gap(subscription, gaps)
            await broker.publish("down", "up again")
            assert await _receive(subscription, 1) == ["up again"]

    run(main())


def test_a_frozen_server_is_noticed_by_ping_not_a_silent_hang(
    redis_server: RedisServer, parser: str
) -> None:
    gaps: list[Gap] = []

    async def main() -> None:
        url = redis_server.url("redis+pubsub") + "?socket_timeout=0.5&socket_connect_timeout=0.5"
        async with brokers(
            url, ping_interval=0.1, reconnect_timeout=0.5, on_gap=gaps.append
        ) as connect:
            broker = await connect()
            subscription = await broker.subscribe("frozen")
            _check_path(subscription, parser)
            for _ in range(3):  # several ping intervals of silence, each answered
                assert await subscription.receive(timeout=0.25) is None
            assert not gaps
            redis_server.freeze()
            failure: ConnectionFailed | None = None
            try:
                end = time.monotonic() + 20
                while failure is None:
                    assert time.monotonic() < end, "a frozen server went unnoticed"
                    try:
                        await subscription.receive(timeout=0.5)
                    except ConnectionFailed as exc:
                        failure = exc
            finally:
                redis_server.thaw()
            assert "PING" in str(failure)
            await _receive_until_gap(subscription, gaps)
            await broker.publish("frozen", "thawed")
            assert await _receive(subscription, 1) == ["thawed"]

    run(main())


def test_subscribing_to_an_unreachable_server_fails_without_the_password(
    redis_server: RedisServer,
) -> None:
    async def main() -> None:
        url = redis_server.url("redis+pubsub").replace("://", "://user:s3cret@")
        redis_server.kill()
        async with brokers(url, reconnect_timeout=0.2) as connect:
            broker = await connect()
            with pytest.raises(ConnectionFailed) as failed:
                await broker.subscribe("nowhere")
            with pytest.raises(ConnectionFailed) as failed_publish:
                await broker.publish("nowhere", "x")
        for error in (failed.value, failed_publish.value):
            assert "s3cret" not in str(error) and "***" in str(error)

    run(main())


def test_a_publish_whose_connection_was_killed_is_sent_on_a_new_one(
    redis_server: RedisServer,
) -> None:
    client = redis_server.client()

    def kill_the_publisher() -> None:
        me = int(client.client_id())
        (publisher,) = [c["id"] for c in client.client_list(_type="normal") if int(c["id"]) != me]
        assert client.client_kill_filter(_id=publisher) == 1

    async def main() -> None:
        async with brokers(redis_server.url("redis+pubsub")) as connect:
            broker = await connect()
            async with await broker.subscribe("again", prefetch=10) as subscription:
                assert (await broker.publish_counted("again", "first")).receivers == 1
                kill_the_publisher()
                assert (await broker.publish_counted("again", "second")).receivers == 1
                kill_the_publisher()
                counted = await broker.publish_many_counted("again", ["3", "4"])
                assert [p.receivers for p in counted] == [1, 1]
                assert await _receive(subscription, 4) == ["first", "second", "3", "4"]

    try:
        run(main())
    finally:
        client.close()


def test_an_error_reply_to_a_publish_is_a_broker_error_and_the_connection_stays_usable(
    redis_server: RedisServer,
) -> None:
    admin = redis_server.client()
    # A user who may do anything but PUBLISH.
    admin.execute_command(
        "ACL", "SETUSER", "mute", "on", ">s3cret", "~*", "&*", "+@all", "-publish"
    )

    async def main() -> None:
        url = redis_server.url("redis+pubsub").replace("://", "://mute:s3cret@")
        async with brokers(url) as connect:
            broker = await connect()
            for _ in range(2):  # the connection that got the error is not reused dirty
                with pytest.raises(BrokerError, match=r"NOPERM|permission") as failed:
                    await broker.publish_many("muted", ["a", "b", "c"])
                assert "s3cret" not in str(failed.value)
                assert await _subscribers(broker, "muted") == 0

    try:
        run(main())
    finally:
        admin.close()


# -- the event loop is never blocked -----------------------------------------------------


def test_the_event_loop_is_never_blocked_while_50_consumers_drain_10000_messages(
    url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """50 consumer tasks (one subscription each) drain 10,000 messages under a
    :class:`~tests.loop_lag.Ticker`; a blocking call anywhere in the read, publish or
    decode path would show as a stall. The worst lag is printed."""
    consumers, per_consumer = 50, 200

    async def main() -> Ticker:
        async with brokers(url) as connect:
            broker, publisher = await connect(), await connect()
            subscriptions = [
                await broker.subscribe(f"lag.{i}", prefetch=100) for i in range(consumers)
            ]

            async def drain(subscription: brokerkit.aio.AsyncSubscription) -> int:
                count = 0
                while count < per_consumer:
                    delivery = await subscription.receive(timeout=WAIT)
                    assert delivery is not None, f"{subscription.topic}: only {count} arrived"
                    count += 1
                return count

            async def publish() -> None:
                for start in range(0, per_consumer, 20):
                    for i in range(consumers):
                        await publisher.publish_many(
                            f"lag.{i}", [b"m" * 100] * min(20, per_consumer - start)
                        )

            async with Ticker() as ticker:
                drained = asyncio.gather(*(drain(s) for s in subscriptions))
                await publish()
                assert sum(await drained) == consumers * per_consumer
            for subscription in subscriptions:
                await subscription.close()
            return ticker

    with frozen_heap():
        ticker = run(main())
    with capsys.disabled():
        print("\n" + ticker.report("50 consumers drained 10,000 messages"))
    assert ticker.net < 0.1, ticker.report("stalled")
