"""redis+pubsub against a real server: channels, patterns, fan-out, raw mode, options."""

from __future__ import annotations

import functools
import subprocess
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest
import redis

import brokerkit
from brokerkit import Capability
from brokerkit.backends.redis.pubsub import Published, RedisPubSubBroker
from brokerkit.exceptions import InvalidOption, Unsupported
from tests.conftest import RedisTarget

Make = Callable[..., RedisPubSubBroker]
WAIT = 5.0


@pytest.fixture
def make(redis_broker: Callable[..., Any]) -> Make:
    """``make(**options)``: a redis+pubsub broker under this test's prefix, closed at the end."""
    return functools.partial(redis_broker, "redis+pubsub")


def _cli_publish(cli: str, target: RedisTarget, channel: str, payload: str) -> int:
    """PUBLISH as a program outside brokerkit does, with the real redis-cli."""
    where = ["-h", target.host, "-p", str(target.port), "-n", str(target.db)]
    out = subprocess.run(
        [cli, *where, "PUBLISH", channel, payload],
        check=True,
        capture_output=True,
        text=True,
        timeout=10,
    )
    return int(out.stdout.strip())


# -- the backend and its promises ------------------------------------------------------


def test_schemes_and_capabilities(make: Make) -> None:
    broker = make()
    assert RedisPubSubBroker.schemes == ("redis+pubsub", "rediss+pubsub")
    assert broker.capabilities == Capability.FANOUT | Capability.ORDERED | Capability.PATTERNS
    for absent in (Capability.PERSISTENT, Capability.ACK, Capability.COMPETING):
        assert absent not in broker.capabilities


def test_a_published_message_reaches_a_subscriber_with_its_metadata(make: Make) -> None:
    broker = make()
    with broker.subscribe("orders") as subscription:
        msg_id = broker.publish("orders", {"orderId": 123}, headers={"trace-id": "abc"})
        delivery = subscription.receive(timeout=WAIT)
    assert delivery is not None
    assert (delivery.id, delivery.topic, delivery.body) == (msg_id, "orders", {"orderId": 123})
    assert dict(delivery.headers) == {"trace-id": "abc"}
    assert delivery.content_type == "application/json"
    assert delivery.attempt == 1 and not delivery.redelivered


def test_subscribe_returns_only_once_listening(make: Make) -> None:
    """Without persistence, a publish right after subscribe must still be heard."""
    publisher, consumer = make(), make()
    for n in range(20):
        with consumer.subscribe("ready") as subscription:
            assert publisher.publish_counted("ready", n).receivers == 1
            delivery = subscription.receive(timeout=WAIT)
            assert delivery is not None and delivery.body == n


def test_nobody_listening_means_the_message_is_gone(make: Make) -> None:
    broker = make()
    published = broker.publish_counted("void", "lost")
    assert published == Published(published.id, 0)
    with broker.subscribe("void") as subscription:
        assert subscription.receive(timeout=0.3) is None


def test_publish_many_is_ordered_and_counted(make: Make) -> None:
    broker = make()
    with broker.subscribe("batch", prefetch=7) as first, broker.subscribe("batch") as second:
        results = broker.publish_many_counted("batch", [f"m{i}" for i in range(25)])
        assert [r.receivers for r in results] == [2] * 25
        for subscription in (first, second):
            bodies = []
            for _ in range(25):
                delivery = subscription.receive(timeout=WAIT)
                assert delivery is not None
                bodies.append(delivery.body)
            assert bodies == [f"m{i}" for i in range(25)]
    assert broker.publish_many("batch", []) == []


def test_fan_out_to_three_subscribers_in_threads(make: Make) -> None:
    publisher = make()
    count, readers = 200, 3
    ready = threading.Barrier(readers + 1, timeout=WAIT)
    received: dict[int, list[Any]] = {}
    errors: list[BaseException] = []

    def reader(index: int) -> None:
        try:
            broker = make()
            with broker.subscribe("fan") as subscription:
                ready.wait()
                got = []
                while len(got) < count:
                    delivery = subscription.receive(timeout=WAIT)
                    if delivery is None:
                        break
                    got.append(delivery.body)
                received[index] = got
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=reader, args=(i,)) for i in range(readers)]
    for thread in threads:
        thread.start()
    ready.wait()
    results = publisher.publish_many_counted("fan", list(range(count)))
    for thread in threads:
        thread.join(timeout=30)
    assert not errors, errors
    assert all(r.receivers == readers for r in results)
    assert received == {i: list(range(count)) for i in range(readers)}


def test_publishers_in_many_threads_share_the_broker(make: Make) -> None:
    """One thread publishes on the broker's own connection, the others meanwhile on
    pooled ones: every message arrives once, each thread's in its order."""
    broker = make()
    threads, per_thread = 4, 150
    errors: list[BaseException] = []
    start = threading.Barrier(threads, timeout=WAIT)

    def publish(index: int) -> None:
        try:
            start.wait()
            for n in range(0, per_thread, 3):
                assert broker.publish_counted("busy", f"{index}:{n}").receivers == 1
                counted = broker.publish_many_counted(
                    "busy", [f"{index}:{n + 1}", f"{index}:{n + 2}"]
                )
                assert [p.receivers for p in counted] == [1, 1]
        except BaseException as exc:
            errors.append(exc)

    with broker.subscribe("busy", prefetch=50) as subscription:
        workers = [threading.Thread(target=publish, args=(i,)) for i in range(threads)]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join(timeout=30)
        assert not errors, errors
        bodies = _drain(subscription, threads * per_thread)
    for index in range(threads):
        mine = [d.body for d in bodies if d.body.startswith(f"{index}:")]
        assert mine == [f"{index}:{n}" for n in range(per_thread)]


def test_pattern_subscription_yields_concrete_topics(make: Make) -> None:
    broker = make()
    with (
        broker.subscribe("chat:room:*", pattern=True) as rooms,
        broker.subscribe("chat:room:?", pattern=True) as short,
        broker.subscribe("chat:room:[12]", pattern=True) as set_,
    ):
        broker.publish("chat:lobby", "not a room")
        broker.publish("chat:room:1", "one")
        broker.publish("chat:room:22", "twenty-two")
        broker.publish("chat:room:3", "three")
        seen = [(d.topic, d.body) for d in _drain(rooms, 3)]
        assert seen == [
            ("chat:room:1", "one"),
            ("chat:room:22", "twenty-two"),
            ("chat:room:3", "three"),
        ]
        assert [d.topic for d in _drain(short, 2)] == ["chat:room:1", "chat:room:3"]
        assert [d.topic for d in _drain(set_, 1)] == ["chat:room:1"]
        for subscription in (rooms, short, set_):
            assert subscription.receive(timeout=0.2) is None


def test_prefixes_separate_brokers(make: Make, prefix: str) -> None:
    mine, theirs = make(), make(prefix=f"{prefix}-other")
    with mine.subscribe("news") as subscription, mine.subscribe("*", pattern=True) as everything:
        assert theirs.publish_counted("news", "elsewhere").receivers == 0
        assert subscription.receive(timeout=0.2) is None
        assert everything.receive(timeout=0.01) is None


# -- talking to programs outside brokerkit ---------------------------------------------


def test_redis_cli_publish_of_a_plain_payload_reaches_a_subscriber(
    make: Make, redis_target: RedisTarget, prefix: str, redis_cli: str
) -> None:
    broker = make()
    assert broker.channel("sensors") == f"{prefix}:{{sensors}}"
    with broker.subscribe("sensors") as subscription:
        assert _cli_publish(redis_cli, redis_target, broker.channel("sensors"), '{"a":1}') == 1
        delivery = subscription.receive(timeout=WAIT)
    assert delivery is not None
    assert delivery.topic == "sensors" and delivery.body == {"a": 1}
    assert delivery.content_type == "application/json"
    assert delivery.id.startswith("raw-") and dict(delivery.headers) == {}


def test_plain_channels_and_raw_mode_match_a_plain_redis_program(
    make: Make, redis_target: RedisTarget, redis_cli: str
) -> None:
    broker = make(plain_channels=True, raw=True)
    assert broker.channel("chat:room:9") == "chat:room:9"
    client = redis_target.client()
    plain = client.pubsub()
    try:
        plain.subscribe("chat:room:9")
        assert plain.get_message(timeout=WAIT)["type"] == "subscribe"  # type: ignore[index]
        with broker.subscribe("chat:room:9") as subscription:
            assert broker.publish_counted("chat:room:9", {"text": "hi"}).receivers == 2
            message = plain.get_message(timeout=WAIT)
            assert message is not None and message["data"] == b'{"text":"hi"}'
            delivery = subscription.receive(timeout=WAIT)
            assert delivery is not None and delivery.body == {"text": "hi"}
            assert _cli_publish(redis_cli, redis_target, "chat:room:9", "plain text") == 2
            delivery = subscription.receive(timeout=WAIT)
            assert delivery is not None and delivery.body == "plain text"
    finally:
        plain.close()
        client.close()


def test_binary_and_text_bodies_round_trip(make: Make) -> None:
    broker = make()
    with broker.subscribe("bin") as subscription:
        broker.publish("bin", b"\x00\xffBK1{not an envelope")
        broker.publish("bin", "żółw ☃")
        first, second = _drain(subscription, 2)
    assert first.body == b"\x00\xffBK1{not an envelope"
    assert second.body == "żółw ☃"


def test_resp3_connections_work(redis_target: RedisTarget, prefix: str) -> None:
    url = redis_target.url("redis+pubsub", protocol="3", socket_timeout="3")
    with (
        brokerkit.connect(url, prefix=prefix) as broker,
        broker.subscribe("r3") as subscription,
        broker.subscribe("r*", pattern=True) as pat,
    ):
        broker.publish("r3", "over resp3")
        for sub in (subscription, pat):
            delivery = sub.receive(timeout=WAIT)
            assert delivery is not None and delivery.body == "over resp3"
            assert delivery.topic == "r3"


@pytest.mark.parametrize("protocol", ["2", "3"])
def test_idle_pings_keep_a_quiet_subscription_without_gaps(
    redis_target: RedisTarget, prefix: str, protocol: str
) -> None:
    url = redis_target.url("redis+pubsub", protocol=protocol)
    with brokerkit.connect(url, prefix=prefix, ping_interval=0.05) as broker:
        assert isinstance(broker, RedisPubSubBroker)
        with broker.subscribe("quiet") as subscription:
            for _ in range(4):  # several ping intervals of silence, each answered
                assert subscription.receive(timeout=0.15) is None
            broker.publish("quiet", "still here")
            delivery = subscription.receive(timeout=WAIT)
            assert delivery is not None and delivery.body == "still here"
            assert broker.gaps(subscription) == ()


# -- what pub/sub does not do ----------------------------------------------------------


def test_settling_is_a_harmless_no_op_and_the_rest_is_unsupported(make: Make) -> None:
    broker = make()
    with broker.subscribe("settle", prefetch=2) as subscription:
        broker.publish_many("settle", ["a", "b"])
        first, second = _drain(subscription, 2)
        first.ack()
        second.nack(requeue=True)
        assert first.settled and second.settled
        assert subscription.receive(timeout=0.2) is None, "a nack must not redeliver"
        with pytest.raises(Unsupported, match="ACK"):
            first.extend(5)
    with pytest.raises(Unsupported, match="COMPETING"):
        broker.subscribe("settle", group="workers")
    with pytest.raises(Unsupported, match="REPLAY"):
        broker.subscribe("settle", start="earliest")


def test_inspect_counts_subscribers_and_purge_has_nothing(make: Make, prefix: str) -> None:
    broker = make()
    assert broker.inspect("room").details["subscribers"] == 0
    with broker.subscribe("room"), broker.subscribe("room"):
        info = broker.inspect("room")
        assert info.length == 0 and info.in_flight == 0
        assert info.details["subscribers"] == 2
        assert info.details["channel"] == f"{prefix}:{{room}}"
    _eventually(lambda: broker.inspect("room").details["subscribers"] == 0)
    assert broker.purge("room") == 0


def test_closing_the_broker_ends_its_subscriptions(make: Make) -> None:
    observer, broker = make(), make()
    subscription = broker.subscribe("bye")
    assert observer.inspect("bye").details["subscribers"] == 1
    broker.close()
    assert subscription.closed
    _eventually(lambda: observer.inspect("bye").details["subscribers"] == 0)


def test_closing_from_another_thread_ends_a_blocked_reader(make: Make) -> None:
    broker, observer = make(), make()
    subscription = broker.subscribe("blocked")
    received: list[Any] = []
    reader = threading.Thread(target=lambda: received.extend(d.body for d in subscription))
    reader.start()
    broker.publish("blocked", "one")
    subscription.close()
    reader.join(timeout=WAIT)
    assert not reader.is_alive()
    _eventually(lambda: observer.inspect("blocked").details["subscribers"] == 0)
    assert received in ([], ["one"])


def test_subscriber_connections_are_named_for_operators(
    make: Make, redis_client: redis.Redis
) -> None:
    broker = make()
    with broker.subscribe("named", consumer="room 42/alice") as subscription:
        names = {c["name"] for c in redis_client.client_list(_type="pubsub")}
        assert "brokerkit-pubsub-room_42_alice" in names
        assert subscription.consumer == "room 42/alice"


# -- options ---------------------------------------------------------------------------


def test_options_are_checked(make: Make, redis_target: RedisTarget) -> None:
    with pytest.raises(InvalidOption, match="max_deliveries does not apply"):
        make(max_deliveries=3)
    with pytest.raises(InvalidOption, match="ping_interval"):
        make(ping_interval=-1)
    with pytest.raises(InvalidOption, match="on_gap must be a callable"):
        make(on_gap="print")
    with pytest.raises(InvalidOption, match="cannot be given in a URL"):
        brokerkit.connect(redis_target.url("redis+pubsub", on_gap="x"))
    with pytest.raises(InvalidOption, match="did you mean 'raw'"):
        brokerkit.connect(redis_target.url("redis+pubsub", rwa="1"))
    broker = brokerkit.connect(
        redis_target.url("redis+pubsub", raw="true", socket_timeout="4", ping_interval="0")
    )
    with broker:
        assert broker.options.raw is True  # type: ignore[attr-defined]
        assert broker.options.ping_interval == 0  # type: ignore[attr-defined]


def _drain(subscription: brokerkit.Subscription, count: int) -> list[brokerkit.Delivery]:
    got = []
    for _ in range(count):
        delivery = subscription.receive(timeout=WAIT)
        assert delivery is not None, f"only {len(got)} of {count} arrived"
        got.append(delivery)
    return got


def _eventually(condition: Callable[[], bool], deadline: float = WAIT) -> None:
    """Poll ``condition`` until it holds (Redis handles a closed socket asynchronously)."""
    end = time.monotonic() + deadline
    while not condition():
        assert time.monotonic() < end, "the condition never held"
        time.sleep(0.01)
