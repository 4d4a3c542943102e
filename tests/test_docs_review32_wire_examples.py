"""The examples of docs/wire-format.md do what the page says, on a real redis-server:
the envelope example, pushed on a list as it is printed, is the message it describes;
the ``redis-cli`` line, sent as it is printed (the server splits an inline command as
redis-cli does, quotes and ``\\n`` included), is a stream entry brokerkit reads with its
id, content type, time and header; and the raw id the page quotes is the one a raw
element gets."""

from __future__ import annotations

import json
import re
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

import brokerkit
from tests.redis_server import RedisServer

PAGE = (Path(__file__).resolve().parent.parent / "docs" / "wire-format.md").read_text()


def _block_after(intro: str) -> str:
    match = re.search(re.escape(intro) + r"\n\n```\n(.*?)\n```", PAGE, re.DOTALL)
    assert match, f"docs/wire-format.md has no example after {intro!r}"
    return match[1]


@pytest.fixture(scope="module")
def server() -> Iterator[RedisServer]:
    with RedisServer() as redis_server:
        yield redis_server


@pytest.fixture
def url(server: RedisServer) -> Iterator[str]:
    yield f"redis://127.0.0.1:{server.port}/0"
    client = server.client()
    client.flushdb()
    client.close()


def _inline(server: RedisServer, line: str) -> bytes:
    """Send ``line`` as an inline command, as a program or redis-cli types it."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as connection:
        connection.sendall(line.encode() + b"\r\n")
        return connection.recv(4096)


def test_the_envelope_example_is_the_message_it_describes(server: RedisServer, url: str) -> None:
    example = _block_after("Example (a JSON body with one header):")
    client = server.client()
    client.lpush("brokerkit:{orders}", example.encode())
    client.close()
    header = json.loads(example.split("\n", 1)[0].removeprefix("BK1"))
    with brokerkit.connect(url.replace("redis://", "redis+list://")) as broker:
        delivery = broker.subscribe("orders").receive(timeout=5)
        assert delivery is not None
        assert delivery.id == header["id"]
        assert delivery.headers == header["h"] == {"trace-id": "abc"}
        assert delivery.message.content_type == header["ct"] == "application/json"
        assert delivery.message.published_at == header["ts"]
        assert delivery.body == json.loads(example.split("\n", 1)[1])
        delivery.ack()


def test_the_redis_cli_example_is_a_stream_entry_brokerkit_reads(
    server: RedisServer, url: str
) -> None:
    line = _block_after("Example (`redis-cli`):")
    assert line.startswith("XADD brokerkit:{orders} * bk1 ")
    reply = _inline(server, line)
    assert reply.startswith(b"$"), reply  # the new entry's id
    with brokerkit.connect(url.replace("redis://", "redis+stream://")) as broker:
        delivery = broker.subscribe("orders", group="docs", start="earliest").receive(timeout=5)
        assert delivery is not None
        assert not delivery.id.startswith("raw-"), "the example's entry was read as raw"
        assert delivery.id.startswith("01a2")
        assert delivery.headers == {"trace-id": "abc"}
        assert delivery.message.content_type == "application/json"
        assert delivery.message.published_at == 1700000000.5
        assert delivery.body == {"orderId": 123}
        delivery.ack()


def test_the_raw_id_the_page_quotes(server: RedisServer, url: str) -> None:
    match = re.search(r"\(`(raw-[0-9a-f]+)…` for\s+`([^`]+)`\)", PAGE)
    assert match, "docs/wire-format.md no longer quotes a raw id"
    client = server.client()
    client.lpush("brokerkit:{orders}", match[2].encode())
    client.close()
    with brokerkit.connect(url.replace("redis://", "redis+list://")) as broker:
        delivery = broker.subscribe("orders").receive(timeout=5)
        assert delivery is not None
        assert delivery.id.startswith(match[1])
        assert len(delivery.id) == len("raw-") + 24
        delivery.ack()
