"""redis+stream against a real redis-server: publishing, groups, settling."""

from __future__ import annotations

import functools
import json
import subprocess
from collections.abc import Callable
from typing import Any

import pytest
import redis

import brokerkit
from brokerkit.backends.redis.stream import RedisStreamBroker, StreamReceipt
from tests.conftest import RedisTarget
from tests.redis_stream_aio_support import claim_once_idle

Make = Callable[..., RedisStreamBroker]


@pytest.fixture
def make(redis_broker: Callable[..., Any]) -> Make:
    """``make(**options)``: a new redis+stream broker under this test's prefix."""
    return functools.partial(redis_broker, "redis+stream")


def test_publish_writes_one_entry_with_a_header_field_and_the_body(
    make: Make, redis_client: redis.Redis
) -> None:
    broker = make()
    message_id = broker.publish("orders", {"orderId": 1}, headers={"trace-id": "abc"})
    broker.publish_many("orders", [{"orderId": 2}, {"orderId": 3}], headers={"trace-id": "d"})
    entries = redis_client.xrange(broker.stream_key("orders"))
    assert len(entries) == 3
    fields = entries[0][1]
    assert list(fields) == [b"bk1", b"body"]
    assert fields[b"body"] == b'{"orderId":1}'
    entry_id, content_type, published_at, headers = fields[b"bk1"].decode().split("\n")
    assert (entry_id, content_type) == (message_id, "json")  # short for application/json
    assert float(published_at) > 0
    assert json.loads(headers) == {"trace-id": "abc"}
    assert [list(f) for _, f in entries[1:]] == [[b"bk1", b"body"]] * 2
    assert [f[b"body"] for _, f in entries[1:]] == [b'{"orderId":2}', b'{"orderId":3}']


@pytest.mark.parametrize("content_type", ["text/x-odd\nline", "no-slash", "text/csv", "image/png"])
def test_any_content_type_round_trips(
    make: Make, redis_client: redis.Redis, content_type: str
) -> None:
    broker = make()
    broker.publish("odd", b"x", content_type=content_type, headers={"k": "v"})
    header = redis_client.xrange(broker.stream_key("odd"))[0][1][b"bk1"]
    if "\n" in content_type or "/" not in content_type:  # written as a JSON header
        assert json.loads(header)["ct"] == content_type
    delivery = broker.subscribe("odd").receive(timeout=1)
    assert delivery is not None
    assert (delivery.content_type, delivery.payload) == (content_type, b"x")
    assert dict(delivery.headers) == {"k": "v"}
    delivery.ack()


def test_entries_in_the_one_field_per_fact_format_are_still_read(
    make: Make, redis_client: redis.Redis
) -> None:
    broker = make()
    redis_client.xadd(
        broker.stream_key("orders"),
        {"id": "m-1", "ct": "application/json", "ts": "1700000000.5", "h": '{"k":"v"}',
         "body": b'{"n":1}'},
    )  # fmt: skip
    delivery = broker.subscribe("orders").receive(timeout=1)
    assert delivery is not None
    assert (delivery.id, delivery.body, dict(delivery.headers)) == ("m-1", {"n": 1}, {"k": "v"})
    assert delivery.message.published_at == 1700000000.5
    delivery.ack()


def test_a_header_field_that_is_not_a_brokerkit_header_makes_a_raw_entry(
    make: Make, redis_client: redis.Redis
) -> None:
    broker = make()
    redis_client.xadd(broker.stream_key("orders"), {"bk1": "not json", "body": "b"})
    redis_client.xadd(broker.stream_key("orders"), {"bk1": '{"id": 5}', "body": "b"})
    redis_client.xadd(broker.stream_key("orders"), {"bk1": "id\nct\nnot-a-time", "body": "b"})
    redis_client.xadd(broker.stream_key("orders"), {"bk1": "id\nno-slash\n1.5", "body": "b"})
    got = list(broker.consume("orders", timeout=0.5, prefetch=10))
    assert [d.body for d in got] == [
        {"bk1": "not json", "body": "b"},
        {"bk1": '{"id": 5}', "body": "b"},
        {"bk1": "id\nct\nnot-a-time", "body": "b"},
        {"bk1": "id\nno-slash\n1.5", "body": "b"},
    ]
    assert all(d.id.startswith("raw-") for d in got)
    broker.ack(*got)


def test_publish_many_keeps_order_and_round_trips_bodies(make: Make) -> None:
    broker = make()
    bodies = [b"\x00raw", "text", {"n": 1}, [1, 2], 3]
    ids = broker.publish_many("orders", bodies)
    got = list(broker.consume("orders", timeout=0.5, prefetch=10))
    assert [d.id for d in got] == ids
    assert [d.body for d in got] == bodies
    assert all(d.attempt == 1 for d in got)
    broker.ack(*got)
    assert broker.inspect("orders").in_flight == 0


def test_receipt_names_the_entry_group_and_consumer(make: Make) -> None:
    broker = make()
    broker.publish("orders", "x")
    with broker.subscribe("orders", group="billing", consumer="c1") as subscription:
        delivery = subscription.receive(timeout=1)
        assert delivery is not None
        receipt = delivery.receipt
        assert isinstance(receipt, StreamReceipt)
        assert (receipt.key, receipt.group, receipt.consumer) == (
            broker.stream_key("orders"),
            "billing",
            "c1",
        )
        delivery.ack()


def test_two_groups_each_receive_every_message(make: Make) -> None:
    broker = make()
    email = broker.subscribe("orders", group="email")
    billing = broker.subscribe("orders", group="billing")
    ids = broker.publish_many("orders", range(20))
    for subscription in (email, billing):
        got = []
        while (delivery := subscription.receive(timeout=0.5)) is not None:
            got.append(delivery.id)
            delivery.ack()
        assert got == ids


def test_competing_consumers_of_one_group_split_the_messages(make: Make) -> None:
    first, second = make(), make()
    a = first.subscribe("jobs", group="workers", prefetch=3)
    b = second.subscribe("jobs", group="workers", prefetch=3)
    ids = first.publish_many("jobs", range(30))
    seen: dict[str, list[str]] = {"a": [], "b": []}
    idle = 0
    while idle < 2:
        idle += 1
        for name, subscription in (("a", a), ("b", b)):
            delivery = subscription.receive(timeout=0.2)
            if delivery is not None:
                idle = 0
                seen[name].append(delivery.id)
                delivery.ack()
    assert seen["a"] and seen["b"]
    assert not set(seen["a"]) & set(seen["b"])
    assert sorted(seen["a"] + seen["b"]) == sorted(ids)


def test_nack_requeue_redelivers_at_once_to_another_consumer(make: Make) -> None:
    first, second = make(visibility_timeout=60), make(visibility_timeout=60)
    first.publish("jobs", "retry me")
    a = first.subscribe("jobs")
    delivery = a.receive(timeout=1)
    assert delivery is not None
    delivery.nack()
    again = second.subscribe("jobs").receive(timeout=5)  # far below the 60 s lease
    assert again is not None
    assert again.id == delivery.id
    assert again.attempt == 2 and again.redelivered
    again.ack()


def test_nack_requeue_does_not_redeliver_to_other_groups(make: Make) -> None:
    broker = make()
    work = broker.subscribe("orders", group="work")
    audit = broker.subscribe("orders", group="audit")
    broker.publish("orders", "once")
    delivery = work.receive(timeout=1)
    assert delivery is not None
    delivery.nack()
    seen = audit.receive(timeout=1)
    assert seen is not None
    seen.ack()
    assert audit.receive(timeout=0.3) is None
    redelivered = work.receive(timeout=1)
    assert redelivered is not None and redelivered.attempt == 2
    redelivered.ack()


def test_nack_without_requeue_dead_letters_with_the_original_id(
    make: Make, redis_client: redis.Redis
) -> None:
    broker = make()
    message_id = broker.publish("orders", {"bad": True}, headers={"trace-id": "t"})
    delivery = broker.subscribe("orders").receive(timeout=1)
    assert delivery is not None
    entry_id = delivery.receipt.entry_id
    delivery.nack(requeue=False)
    dead = broker.subscribe(broker.dead_letter_topic("orders")).receive(timeout=1)
    assert dead is not None
    assert dead.id == message_id
    assert dead.body == {"bad": True}
    assert dead.headers == {
        "trace-id": "t",
        "x-dead-letter-reason": "rejected",
        "x-original-topic": "orders",
        "x-deliveries": "1",
    }
    raw = redis_client.xrange(broker.stream_key("orders.dlq"))
    assert raw[0][1][b"x-original-entry"] == entry_id.encode()
    info = broker.inspect("orders")
    assert info.dead_lettered == 1 and info.in_flight == 0


def test_poison_message_ends_in_the_dead_letter_stream_after_max_deliveries(make: Make) -> None:
    broker = make(max_deliveries=3)
    message_id = broker.publish("orders", "poison")
    subscription = broker.subscribe("orders")
    attempts = []
    while (delivery := subscription.receive(timeout=1)) is not None:
        attempts.append(delivery.attempt)
        delivery.nack()
    assert attempts == [1, 2, 3]
    dead = broker.subscribe("orders.dlq").receive(timeout=1)
    assert dead is not None and dead.id == message_id
    assert dead.headers["x-dead-letter-reason"] == "max_deliveries"
    assert dead.headers["x-deliveries"] == "3"
    dead.ack()


def test_late_ack_after_another_consumer_claimed_is_stale(
    make: Make, redis_client: redis.Redis
) -> None:
    vt = 0.3
    broker = make(visibility_timeout=vt)
    broker.publish("jobs", "x")
    delivery = broker.subscribe("jobs", group="g").receive(timeout=1)
    assert delivery is not None
    broker._suspend_renewals()  # the consumer hangs: its lease runs out
    key, entry = broker.stream_key("jobs"), delivery.receipt.entry_id
    claim_once_idle(redis_client, key, entry, int(vt * 1000))  # as XAUTOCLAIM does
    with pytest.raises(brokerkit.StaleDelivery):
        delivery.ack()
    pending = redis_client.xpending_range(key, "g", "-", "+", 10)
    assert [(p["message_id"], p["consumer"]) for p in pending] == [(entry.encode(), b"other")]


def test_stale_nack_and_extend_leave_the_other_consumers_entry_alone(
    make: Make, redis_client: redis.Redis
) -> None:
    broker = make()
    broker.publish_many("jobs", ["a", "b"])
    subscription = broker.subscribe("jobs", group="g", prefetch=2)
    first, second = subscription.receive(timeout=1), subscription.receive(timeout=1)
    assert first is not None and second is not None
    key = broker.stream_key("jobs")
    redis_client.xclaim(key, "g", "other", 0, [first.receipt.entry_id], justid=True)
    with pytest.raises(brokerkit.StaleDelivery) as caught:
        broker.extend(first, second)
    assert caught.value.deliveries == (first,)
    with pytest.raises(brokerkit.StaleDelivery):
        first.nack(requeue=False)
    assert redis_client.xlen(broker.stream_key("jobs.dlq")) == 0
    second.ack()
    pending = redis_client.xpending_range(key, "g", "-", "+", 10)
    assert [p["consumer"] for p in pending] == [b"other"]


def test_entries_written_by_redis_cli_with_plain_fields_are_consumed(
    make: Make, redis_target: RedisTarget, redis_cli: str
) -> None:
    broker = make()
    key = broker.stream_key("sensors")
    subprocess.run(
        [redis_cli, "-h", redis_target.host, "-p", str(redis_target.port),
         "-n", str(redis_target.db), "XADD", key, "*", "temp", "21.5", "room", "kitchen"],
        check=True, capture_output=True,
    )  # fmt: skip
    delivery = broker.subscribe("sensors").receive(timeout=1)
    assert delivery is not None
    assert delivery.body == {"temp": "21.5", "room": "kitchen"}
    assert delivery.id.startswith("raw-")
    delivery.ack()


def test_raw_content_type_option_applies_to_plain_entries(
    make: Make, redis_client: redis.Redis
) -> None:
    broker = make(raw_content_type="text/plain")
    redis_client.xadd(broker.stream_key("logs"), {"body": "hello"})
    delivery = broker.subscribe("logs").receive(timeout=1)
    assert delivery is not None
    assert (delivery.content_type, delivery.body) == ("text/plain", "hello")
    delivery.ack()


def test_driver_query_arguments_pass_through_and_unknown_options_fail(
    redis_target: RedisTarget, prefix: str
) -> None:
    url = redis_target.url("redis+stream", prefix=prefix, socket_timeout="5", maxlen="10")
    with brokerkit.connect(url) as broker:
        assert isinstance(broker, RedisStreamBroker)
        assert broker.options.maxlen == 10
        broker.publish("t", "ok")
    with pytest.raises(brokerkit.InvalidOption, match="maxlen"):
        brokerkit.connect(redis_target.url("redis+stream", maxlen="0"))
    with pytest.raises(brokerkit.InvalidOption, match="did you mean 'max_age'"):
        brokerkit.connect(redis_target.url("redis+stream", max_ag="5"))


def test_a_topic_stored_as_another_type_is_an_incompatible_topic(
    make: Make, redis_client: redis.Redis
) -> None:
    broker = make()
    redis_client.set(broker.stream_key("taken"), "a string")
    with pytest.raises(brokerkit.IncompatibleTopic):
        broker.publish("taken", "x")


def test_consume_and_ack_over_resp3(redis_target: RedisTarget, prefix: str) -> None:
    url = redis_target.url("redis+stream", prefix=prefix, protocol="3")
    with brokerkit.connect(url) as broker:
        ids = broker.publish_many("orders", [{"n": i} for i in range(5)], headers={"a": "b"})
        got = list(broker.consume("orders", timeout=0.3, prefetch=10))
        assert [d.id for d in got] == ids
        assert [d.body for d in got] == [{"n": i} for i in range(5)]
        assert all(dict(d.headers) == {"a": "b"} for d in got)
        broker.ack(*got)
        assert broker.inspect("orders").in_flight == 0


def test_the_claim_script_never_carries_new_entries_which_xreadgroup_reads(
    make: Make, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Read in the script, every field of a new entry would be copied into Lua and
    # out again; its reply holds what it claimed only.
    broker = make()
    replies: list[Any] = []
    fetch = broker._scripts.fetch

    def spied(*args: Any, **kwargs: Any) -> Any:
        reply = fetch(*args, **kwargs)
        replies.append(reply)
        return reply

    monkeypatch.setattr(broker._scripts, "fetch", spied)
    bodies = [bytes([i]) * 10_000 for i in range(3)]
    broker.publish_many("jobs", bodies)
    subscription = broker.subscribe("jobs", group="g", prefetch=3)
    first = subscription.receive(timeout=0)  # not waiting: read at once all the same
    got = [first, subscription.receive(timeout=0), subscription.receive(timeout=0)]
    assert [d.payload if d is not None else None for d in got] == bodies
    assert all(d is not None and d.attempt == 1 for d in got)
    assert replies, "the first fetch looks for entries to reclaim"
    assert all(len(reply) == 3 and reply[1] == [] for reply in replies)
    broker.ack(*[d for d in got if d is not None])
    assert broker.inspect("jobs").in_flight == 0
