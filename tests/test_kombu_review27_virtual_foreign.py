"""kombu+redis: an element another program pushed onto a group's list that is not
kombu's message (not JSON, or JSON of another shape) comes out as a raw delivery of its
bytes, and the messages behind it keep flowing, as the reliability page promises
("Decoding is total"). A receive raised the JSON decoder's own error (not a
BrokerError), the element lost. Runs on the test suite's own redis-server."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from brokerkit._serializers import BINARY
from tests.conftest import RedisTarget
from tests.test_kombu_virtual import kombu_virtual, virtual_url

__all__ = ["kombu_virtual", "virtual_url"]

Factory = Callable[..., Any]

FOREIGN = [
    b"\xff not json",
    json.dumps([1, 2]).encode(),
    json.dumps({"body": 5}).encode(),
    json.dumps({"body": "!!", "properties": {"body_encoding": "base64"}}).encode(),
]


def test_what_another_program_pushed_comes_out_raw_and_the_rest_flows(
    kombu_virtual: Factory, redis_target: RedisTarget
) -> None:
    broker = kombu_virtual("redis")
    with broker.subscribe("jobs", group="workers") as workers:
        broker.publish("jobs", "first")
        queue = f"{broker.options.prefix}|jobs|workers"
        client = redis_target.client()
        for element in FOREIGN:
            client.lpush(queue, element)  # (kombu pushes with LPUSH, pops with RPOP)
        broker.publish("jobs", "last")
        got = []
        for _ in range(len(FOREIGN) + 2):
            delivery = workers.receive(timeout=2)
            assert delivery is not None
            got.append(delivery)
    assert got[0].body == "first" and got[-1].body == "last"
    raw = got[1:-1]
    assert [d.payload for d in raw] == FOREIGN
    assert all(d.content_type == BINARY and d.headers == {} for d in raw)
