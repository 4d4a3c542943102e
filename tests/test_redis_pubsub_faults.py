"""redis+pubsub through faults: a killed connection, a restarted, stopped or frozen
server, and a subscriber too slow for ``client-output-buffer-limit pubsub``.

Each test runs its own redis-server, so that killing it touches no other test.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
import redis

import brokerkit
from brokerkit.backends.redis.pubsub import Gap, RedisPubSubBroker
from brokerkit.exceptions import BrokerError, ConnectionFailed
from tests.redis_server import RedisServer

WAIT = 5.0


def _connect(server: RedisServer, query: str = "", **options: object) -> RedisPubSubBroker:
    broker = brokerkit.connect(server.url("redis+pubsub") + query, **options)
    assert isinstance(broker, RedisPubSubBroker)
    return broker


def _subscriber_ids(client: redis.Redis) -> list[int]:
    return [
        int(c["id"])
        for c in client.client_list(_type="pubsub")
        if c["name"].startswith("brokerkit-pubsub-")
    ]


def _receive_until_gap(
    subscription: brokerkit.Subscription, gaps: list[Gap], deadline: float = 20.0
) -> list[object]:
    """Read until a gap is reported, returning the bodies received before it."""
    bodies = []
    end = time.monotonic() + deadline
    while not gaps:
        assert time.monotonic() < end, "no gap was reported: the subscriber hangs"
        delivery = subscription.receive(timeout=0.5)
        if delivery is not None:
            bodies.append(delivery.body)
    return bodies


def _receive_until_failure(
    subscription: brokerkit.Subscription, deadline: float = 20.0
) -> ConnectionFailed:
    """Read until the subscription raises ConnectionFailed (it must, and soon)."""
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        try:
            subscription.receive(timeout=0.5)
        except ConnectionFailed as exc:
            return exc
    pytest.fail("the subscription never reported the lost connection: a silent hang")


def test_client_kill_resubscribes_reports_the_gap_and_delivers_later_messages(
    redis_server: RedisServer,
) -> None:
    gaps: list[Gap] = []
    client = redis_server.client()
    with _connect(redis_server, on_gap=gaps.append) as broker:
        channel = broker.subscribe("news")
        pattern = broker.subscribe("ne*", pattern=True)
        broker.publish("news", "before")
        for subscription in (channel, pattern):
            delivery = subscription.receive(timeout=WAIT)
            assert delivery is not None and delivery.body == "before"

        killed = _subscriber_ids(client)
        assert len(killed) == 2
        for client_id in killed:
            assert client.client_kill_filter(_id=client_id) == 1
        # Nobody listens until the subscriptions notice: this one is lost, by design.
        assert broker.publish_counted("news", "during the gap").receivers == 0

        for subscription in (channel, pattern):
            assert _receive_until_gap(subscription, gaps) == []
            gaps_of = broker.gaps(subscription)
            assert len(gaps_of) == 1 and gaps_of[0].number == 1
            assert gaps_of[0].reason
            assert gaps_of[0].resumed_at >= gaps_of[0].lost_at
            gaps.clear()
        assert sorted(_subscriber_ids(client)) != sorted(killed)

        assert broker.publish_counted("news", "after").receivers == 2
        for subscription in (channel, pattern):
            delivery = subscription.receive(timeout=WAIT)
            assert delivery is not None and delivery.body == "after"
            assert delivery.topic == "news"
            assert subscription.receive(timeout=0.1) is None  # "during the gap" is gone
    client.close()


def test_a_server_restart_is_survived_with_a_gap(redis_server: RedisServer) -> None:
    gaps: list[Gap] = []
    with _connect(redis_server, on_gap=gaps.append) as broker:
        subscription = broker.subscribe("restart")
        redis_server.restart()
        _receive_until_gap(subscription, gaps)
        assert gaps[0].topic == "restart" and not gaps[0].pattern
        broker.publish("restart", "back")
        delivery = subscription.receive(timeout=WAIT)
        assert delivery is not None and delivery.body == "back"


def test_a_server_that_stays_down_gives_connection_failed_then_recovery(
    redis_server: RedisServer,
) -> None:
    gaps: list[Gap] = []
    broker = _connect(redis_server, reconnect_timeout=0.3, on_gap=gaps.append)
    subscription = broker.subscribe("down")
    redis_server.kill()
    message = str(_receive_until_failure(subscription))
    assert "'down'" in message and "lost" in message
    assert not gaps

    redis_server.start()
    end = time.monotonic() + 20
    while not gaps:
        assert time.monotonic() < end, "no recovery after the server came back"
        subscription.receive(timeout=0.5)
    broker.publish("down", "up again")
    delivery = subscription.receive(timeout=WAIT)
    assert delivery is not None and delivery.body == "up again"
    broker.close()


def test_subscribing_to_an_unreachable_server_fails_without_the_password(
    redis_server: RedisServer,
) -> None:
    url = redis_server.url("redis+pubsub").replace("://", "://user:s3cret@")
    redis_server.kill()
    with brokerkit.connect(url, reconnect_timeout=0.2) as broker:
        with pytest.raises(ConnectionFailed) as failed:
            broker.subscribe("nowhere")
        with pytest.raises(ConnectionFailed) as failed_publish:
            broker.publish("nowhere", "x")
    for error in (failed.value, failed_publish.value):
        assert "s3cret" not in str(error) and "***" in str(error)


def test_a_frozen_server_is_noticed_by_ping_not_a_silent_hang(redis_server: RedisServer) -> None:
    gaps: list[Gap] = []
    broker = _connect(
        redis_server,
        "?socket_timeout=0.5&socket_connect_timeout=0.5",
        ping_interval=0.2,
        reconnect_timeout=0.5,
        on_gap=gaps.append,
    )
    subscription = broker.subscribe("frozen")
    redis_server.freeze()
    try:
        assert "PING" in str(_receive_until_failure(subscription))
    finally:
        redis_server.thaw()
    end = time.monotonic() + 20
    while not gaps:
        assert time.monotonic() < end, "no recovery after the server thawed"
        subscription.receive(timeout=0.5)
    assert "PING" in gaps[0].reason
    broker.publish("frozen", "thawed")
    delivery = subscription.receive(timeout=WAIT)
    assert delivery is not None and delivery.body == "thawed"
    broker.close()


@pytest.fixture
def tiny_buffer_server() -> Iterator[RedisServer]:
    """A server that disconnects a pub/sub client holding 64 KiB of unread output."""
    # One argument per word: redis-server 6.2 rejects "pubsub 64kb 32kb 1" as one.
    limit = ["--client-output-buffer-limit", "pubsub", "64kb", "32kb", "1"]
    with RedisServer(config=limit) as server:
        yield server


def test_a_subscriber_dropped_for_its_output_buffer_recovers_and_reports_the_gap(
    tiny_buffer_server: RedisServer,
) -> None:
    gaps: list[Gap] = []
    client = tiny_buffer_server.client()
    with _connect(tiny_buffer_server, on_gap=gaps.append) as broker:
        slow = broker.subscribe("firehose")
        (subscriber,) = _subscriber_ids(client)
        chunk = [b"x" * 32_768] * 32
        published = 0
        end = time.monotonic() + 30
        # Publish until Redis drops the subscriber that reads nothing; the kernel's
        # socket buffers absorb a few MB first.
        while subscriber in _subscriber_ids(client):
            assert time.monotonic() < end, "Redis never dropped the slow subscriber"
            broker.publish_many("firehose", chunk)
            published += len(chunk)

        before = _receive_until_gap(slow, gaps)
        assert len(before) < published, "the dropped subscriber cannot have received all"
        assert all(body == b"x" * 32_768 for body in before)
        assert len(gaps) == 1 and broker.gaps(slow) == (gaps[0],)

        assert broker.publish_counted("firehose", b"after the gap").receivers == 1
        delivery = slow.receive(timeout=WAIT)
        assert delivery is not None and delivery.body == b"after the gap"
    client.close()


def test_with_no_reconnect_time_a_drop_surfaces_at_once_when_the_server_is_gone(
    redis_server: RedisServer,
) -> None:
    """reconnect_timeout=0: the first failed reconnection raises, no retry loop."""
    broker = _connect(redis_server, reconnect_timeout=0)
    subscription = broker.subscribe("strict")
    redis_server.kill()
    with pytest.raises(ConnectionFailed, match="could not resubscribe within 0 s"):
        subscription.receive(timeout=1)
    broker.close()


def test_a_publish_whose_connection_was_killed_is_sent_on_a_new_one(
    redis_server: RedisServer,
) -> None:
    client = redis_server.client()

    def kill_the_publisher() -> None:
        me = int(client.client_id())
        (publisher,) = [c["id"] for c in client.client_list(_type="normal") if int(c["id"]) != me]
        assert client.client_kill_filter(_id=publisher) == 1

    with _connect(redis_server) as broker, broker.subscribe("again", prefetch=10) as sub:
        assert broker.publish_counted("again", "first").receivers == 1
        kill_the_publisher()
        assert broker.publish_counted("again", "second").receivers == 1
        kill_the_publisher()
        assert [p.receivers for p in broker.publish_many_counted("again", ["3", "4"])] == [1, 1]
        bodies = [d.body for d in (sub.receive(timeout=WAIT) for _ in range(4)) if d]
        assert bodies == ["first", "second", "3", "4"]
    client.close()


def test_an_error_reply_to_a_publish_is_a_broker_error_and_the_connection_stays_usable(
    redis_server: RedisServer,
) -> None:
    admin = redis_server.client()
    admin.acl_setuser(
        "mute",
        enabled=True,
        passwords=["+s3cret"],
        keys=["*"],
        channels=["*"],
        commands=["+@all", "-publish"],
    )
    url = redis_server.url("redis+pubsub").replace("://", "://mute:s3cret@")
    with brokerkit.connect(url) as broker:
        for _ in range(2):  # the connection that got the error is not reused dirty
            with pytest.raises(BrokerError, match=r"NOPERM|permission") as failed:
                broker.publish_many("muted", ["a", "b", "c"])
            assert "s3cret" not in str(failed.value)
            assert broker.inspect("muted").details["subscribers"] == 0
    admin.close()
