"""redis+stream entries another producer wrote (raw XADD) with field names and values
that are not UTF-8: each is delivered, never jamming its group, as a raw message whose
payload is a JSON object of its fields with each byte that is not UTF-8 as a ``\\xff``
escape. They were decoded with U+FFFD replacements, so ``\\xff`` and ``\\xfe`` became
one field (one value lost, in the delivery and in the dead letter) and no byte could
be told from another. A poison one is dead-lettered after ``max_deliveries``."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import redis

#: Each entry, the JSON object its payload must be.
ENTRIES: list[tuple[dict[bytes, bytes], dict[str, str]]] = [
    ({b"\xff": b"1", b"\xfe": b"2"}, {"\\xff": "1", "\\xfe": "2"}),
    ({b"name": b"\x00\x80caf\xc3\xa9"}, {"name": "\x00\\x80café"}),
    ({b"bk1": b"\xff\xfe\n", b"body": b"\xff"}, {"bk1": "\\xff\\xfe\n", "body": "\\xff"}),
    ({b"id": b"\xff", b"ct": b"a/b", b"body": b"x"}, {"id": "\\xff", "ct": "a/b", "body": "x"}),
]


def test_fields_that_are_not_utf8_are_delivered_each_byte_escaped(
    redis_broker: Callable[..., Any], redis_client: redis.Redis
) -> None:
    broker = redis_broker("redis+stream")
    subscription = broker.subscribe("t", group="g", prefetch=len(ENTRIES) + 1)
    for fields, _ in ENTRIES:
        redis_client.xadd(broker.stream_key("t"), fields)  # type: ignore[arg-type]
    broker.publish("t", b"after them")
    for _, expected in ENTRIES:
        delivery = subscription.receive(timeout=5)
        assert delivery is not None
        assert delivery.content_type == "application/json"
        assert json.loads(delivery.payload) == expected
        delivery.ack()
    after = subscription.receive(timeout=5)
    assert after is not None and after.payload == b"after them"
    after.ack()


def test_a_poison_entry_that_is_not_utf8_is_dead_lettered_whole(
    redis_broker: Callable[..., Any], redis_client: redis.Redis
) -> None:
    broker = redis_broker("redis+stream", max_deliveries=2)
    subscription = broker.subscribe("t", group="g")
    redis_client.xadd(broker.stream_key("t"), {b"\xff": b"1", b"\xfe": b"2"})
    for _ in range(2):
        delivery = subscription.receive(timeout=5)
        assert delivery is not None
        delivery.nack()
    assert subscription.receive(timeout=0) is None
    dead = broker.subscribe("t.dlq", group="g").receive(timeout=5)
    assert dead is not None
    assert json.loads(dead.payload) == {"\\xff": "1", "\\xfe": "2"}
    assert dead.headers["x-dead-letter-reason"] == "max_deliveries"
    dead.ack()
