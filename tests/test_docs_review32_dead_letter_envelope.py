"""docs/wire-format.md says in what form brokerkit writes an envelope's header, and the
envelopes brokerkit writes to a real Redis keep it: a published one in the order
``id``, ``ct``, ``ts``, ``h``; a dead letter on ``redis+list``, which a script
re-encodes with Redis's cjson, as the page says that one is written.

The page said every header brokerkit writes has the keys in the order ``id``, ``ct``,
``ts``, ``h``: a program in another language that compared headers byte for byte, or
split them by that order, met dead letters with ``ts`` first and ``\\/`` in the
content type.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

import brokerkit
from tests.redis_server import RedisServer

PAGE = Path(__file__).resolve().parent.parent / "docs" / "wire-format.md"
_RULE = re.compile(r"^- brokerkit writes the keys in the order.*?(?=^\S|^- |\Z)", re.M | re.S)


@pytest.fixture(scope="module")
def server() -> Iterator[RedisServer]:
    with RedisServer() as redis_server:
        yield redis_server


def _rule() -> str:
    match = _RULE.search(PAGE.read_text())
    assert match, "docs/wire-format.md has lost its rule on the header's key order"
    return " ".join(match[0].split())


def _header(element: bytes) -> bytes:
    assert element.startswith(b"BK1")
    return element[3:].split(b"\n", 1)[0]


def _in_publish_order(header: bytes) -> bool:
    keys = list(json.loads(header))
    return keys == [key for key in ("id", "ct", "ts", "h") if key in keys] and b" " not in header


def test_the_envelopes_brokerkit_writes_are_as_the_page_says(server: RedisServer) -> None:
    client = server.client()
    url = f"redis+list://127.0.0.1:{server.port}/0?prefix=docsreview32wire"
    try:
        with brokerkit.connect(url) as broker:
            broker.publish("orders", {"orderId": 1}, headers={"trace-id": "a/b"})
            published = client.lrange("docsreview32wire:{orders}", 0, -1)[0]
            delivery = broker.subscribe("orders").receive(timeout=5)
            assert delivery is not None
            delivery.nack(requeue=False, reason="refused")
            dead = client.lrange("docsreview32wire:{orders}.dlq", 0, -1)[0]
    finally:
        for key in client.scan_iter("docsreview32wire:*"):
            client.delete(key)
        client.close()
    assert _in_publish_order(_header(published))
    dead_header = _header(dead)
    assert json.loads(dead_header)["h"]["x-dead-letter-reason"] == "refused"
    rule = _rule()
    if not _in_publish_order(dead_header) or b"\\/" in dead_header:
        assert "dead letter on `redis+list` is the exception" in rule, rule
    if next(iter(json.loads(dead_header))) == "ts":
        assert "`ts` first" in rule, rule
    if b"\\/" in dead_header:
        assert "`/` escaped as `\\/`" in rule, rule
