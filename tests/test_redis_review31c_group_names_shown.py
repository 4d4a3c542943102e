"""redis+stream shows a group's or consumer's name that another program wrote in
bytes one to one (as a raw entry's fields are since 25577f1): the byte 0xFF and the
four characters ``\\xff`` showed as the same name in inspect and the CLI. Against a
real redis-server: two groups made with raw XGROUP CREATE, told apart by inspect."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import redis


def test_two_raw_group_names_never_show_as_one(
    redis_broker: Callable[..., Any], redis_client: redis.Redis
) -> None:
    broker = redis_broker("redis+stream")
    broker.publish("orders", b"x")
    stream = broker._keys.topic("orders")
    for group in (b"\xff", b"\\xff"):
        redis_client.xgroup_create(stream, group, id="0")
    names = [group.name for group in broker.inspect("orders").groups]
    assert "\\xff" in names and "\\\\xff" in names, names
    assert len(set(names)) == len(names), names
