"""redis+stream taking over a stream that another program fills, against a real
redis-server: ``stream_key`` maps a topic to that program's key, ``body_field``
names the field its producers (Node, Go...) put the payload in."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import redis
from redis.crc import key_slot

import brokerkit
import brokerkit.aio
from brokerkit.backends.redis.stream import RedisStreamBroker
from brokerkit.exceptions import InvalidOption
from tests.conftest import RedisTarget
from tests.redis_stream_aio_support import PROMPT, run


@pytest.fixture
def stream_template(redis_client: redis.Redis) -> Iterator[str]:
    """A ``stream_key`` template no other test uses; every key under it is deleted
    after the test."""
    base = f"bkt-foreign-{uuid.uuid4().hex[:12]}"
    yield base + ":*"
    keys = list(redis_client.scan_iter(match=f"*{base}*"))
    if keys:
        redis_client.delete(*keys)


@pytest.fixture
def make(
    redis_broker: Callable[..., Any], stream_template: str
) -> Callable[..., RedisStreamBroker]:
    def factory(**options: Any) -> RedisStreamBroker:
        broker: RedisStreamBroker = redis_broker(
            "redis+stream", stream_key=stream_template, **options
        )
        return broker

    return factory


@pytest.mark.parametrize("field", ["data", "payload"])
def test_entries_another_program_adds_arrive_unwrapped_from_its_own_key(
    make: Callable[..., RedisStreamBroker],
    redis_client: redis.Redis,
    stream_template: str,
    field: str,
) -> None:
    key = stream_template.replace("*", "orders")
    order = {"orderId": 123, "items": ["a", "b"]}
    redis_client.xadd(key, {field: json.dumps(order)})  # as ioredis or go-redis would
    broker = make(body_field=field)
    assert broker.stream_key("orders") == key
    delivery = broker.subscribe("orders", group="email").receive(timeout=PROMPT)
    assert delivery is not None
    assert delivery.body == order
    assert delivery.content_type == "application/json"
    delivery.ack()
    assert broker.inspect("orders").in_flight == 0
    [entry] = broker.read("orders")
    assert entry.message.body == order


def test_what_brokerkit_publishes_there_carries_the_payload_in_the_body_field(
    make: Callable[..., RedisStreamBroker], redis_client: redis.Redis, stream_template: str
) -> None:
    broker = make(body_field="data")
    one = broker.publish("orders", {"n": 1}, headers={"trace-id": "abc"})
    many = broker.publish_many("orders", [{"n": 2}, {"n": 3}])
    entries = redis_client.xrange(stream_template.replace("*", "orders"))
    # Another program that reads the `data` field gets the payload as it is.
    assert [json.loads(fields[b"data"]) for _, fields in entries] == [{"n": i} for i in (1, 2, 3)]
    assert all(set(fields) == {b"bk1", b"data"} for _, fields in entries)
    subscription = broker.subscribe("orders", prefetch=3)
    got = [subscription.receive(timeout=PROMPT) for _ in range(3)]
    assert [(d.id, d.body) for d in got if d is not None] == [
        (one, {"n": 1}),
        (many[0], {"n": 2}),
        (many[1], {"n": 3}),
    ]
    assert got[0] is not None and got[0].headers == {"trace-id": "abc"}
    broker.ack(*[d for d in got if d is not None])


def test_a_taken_over_stream_dead_letters_beside_it_in_one_cluster_slot(
    make: Callable[..., RedisStreamBroker], redis_client: redis.Redis, stream_template: str
) -> None:
    key = stream_template.replace("*", "orders")
    redis_client.xadd(key, {"payload": "not wanted"})
    broker = make(body_field="payload", max_deliveries=2)
    delivery = broker.subscribe("orders").receive(timeout=PROMPT)
    assert delivery is not None
    delivery.nack(requeue=False)
    dead_topic = broker.dead_letter_topic("orders")
    dead = broker.subscribe(dead_topic).receive(timeout=PROMPT)
    assert dead is not None
    assert (dead.id, dead.payload) == (delivery.id, b"not wanted")
    assert dead.headers["x-dead-letter-reason"] == "rejected"
    dead.ack()
    base = stream_template.removesuffix(":*")
    made = {k.decode() for k in redis_client.scan_iter(match=f"*{base}*")}
    assert made == {
        key,
        "{" + key + "}:vt",
        "{" + key + "}.dlq",
        "{" + key + "}.dlq:vt",
        # each group's wake stream (scripts.NACK): the topic's and the dead letters'
        "{" + key + "}:wake:default",
        "{" + key + "}.dlq:wake:default",
    }
    assert {key_slot(k.encode()) for k in made} == {key_slot(key.encode())}
    assert broker.stream_key(dead_topic) == "{" + key + "}.dlq"


def test_entries_written_with_the_default_body_field_are_still_read(
    make: Callable[..., RedisStreamBroker], redis_broker: Callable[..., Any], stream_template: str
) -> None:
    before = make()  # writes bk1 + body
    message_id = before.publish("orders", "written before the switch")
    after = make(body_field="data")
    delivery = after.subscribe("orders").receive(timeout=PROMPT)
    assert delivery is not None
    assert (delivery.id, delivery.body) == (message_id, "written before the switch")
    delivery.ack()


def test_an_async_consumer_takes_over_a_stream_too(
    redis_target: RedisTarget, redis_client: redis.Redis, stream_template: str, prefix: str
) -> None:
    key = stream_template.replace("*", "orders")
    redis_client.xadd(key, {"data": '{"orderId": 7}'})
    url = redis_target.url("redis+stream", prefix=prefix)

    async def main() -> None:
        options = {"stream_key": stream_template, "body_field": "data"}
        async with brokerkit.aio.connect(url, **options) as broker:
            subscription = await broker.subscribe("orders")
            delivery = await subscription.receive(timeout=PROMPT)
            assert delivery is not None
            assert delivery.body == {"orderId": 7}
            await delivery.ack()
            await broker.publish("orders", {"orderId": 8})
        assert json.loads(redis_client.xrange(key)[-1][1][b"data"]) == {"orderId": 8}

    run(main())


@pytest.mark.parametrize(
    ("options", "match"),
    [
        ({"stream_key": "events"}, "exactly one '\\*'"),
        ({"stream_key": "events:*:*"}, "exactly one '\\*'"),
        ({"stream_key": "my events:*"}, "no spaces"),
        ({"body_field": "bk1"}, "other than the header field"),
        ({"body_field": ""}, "body_field must be"),
        ({"body_field": "my data"}, "body_field must be"),
    ],
)
def test_a_bad_stream_key_or_body_field_is_refused_at_connect(
    redis_target: RedisTarget, options: dict[str, str], match: str
) -> None:
    with pytest.raises(InvalidOption, match=match):
        brokerkit.connect(redis_target.url("redis+stream"), **options)


def test_the_options_can_be_given_in_the_url(
    redis_target: RedisTarget, redis_client: redis.Redis, stream_template: str
) -> None:
    url = redis_target.url("redis+stream", stream_key=stream_template, body_field="payload")
    with brokerkit.connect(url) as broker:
        broker.publish("orders", b"raw bytes")
    [(_, fields)] = redis_client.xrange(stream_template.replace("*", "orders"))
    assert fields[b"payload"] == b"raw bytes"
