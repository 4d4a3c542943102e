"""nats+core: a publish returns once the server has read its messages: the PING whose
PONG ends the publish is written after them (review 31).

nats-py's flush writes its PING straight to the socket while the publishes wait in
its buffer for its flusher task: the PING went out first, and its PONG confirmed only
the PING, so a publish could return before its PUB was written at all. A proxy
between the client and the real server records what the client sends, in order: by
the time the publish returns, a PING must have followed its messages.
"""

from __future__ import annotations

import asyncio
import uuid

import pytest

import brokerkit
import brokerkit.aio
from brokerkit.backends.nats import core
from tests.nats_server import nats_address
from tests.proxies import Recording


def _pinged_after(sent: bytes, subject: str, count: int) -> bool:
    """Whether ``sent`` holds ``count`` publishes to ``subject`` with a PING after them."""
    marks = [f"PUB {subject} ".encode(), f"HPUB {subject} ".encode()]
    found = sorted(
        at for mark in marks for at in _all(sent, mark) if sent[at - 2 : at] in (b"\r\n", b"")
    )
    if len(found) != count:
        return False
    return b"\r\nPING\r\n" in sent[found[-1] :]


def _all(data: bytes, mark: bytes) -> list[int]:
    found, at = [], data.find(mark)
    while at >= 0:
        found.append(at)
        at = data.find(mark, at + 1)
    return found


def _url(proxy: Recording, prefix: str) -> str:
    return f"nats+core://127.0.0.1:{proxy.port}?prefix={prefix}"


@pytest.mark.parametrize("count", [1, 3])
@pytest.mark.parametrize("buffer", ["written", "unreachable"])
def test_a_sync_publish_returns_after_a_ping_that_follows_its_messages(
    nats_url: str, count: int, buffer: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    if buffer == "unreachable":  # (a nats-py whose buffer brokerkit cannot write out)
        monkeypatch.setattr(core, "_write_buffered", lambda nc: False)
    proxy = Recording(nats_address(nats_url))
    prefix = f"r31f{uuid.uuid4().hex[:10]}"
    try:
        with brokerkit.connect(_url(proxy, prefix)) as broker:
            broker.publish("warm", "up")  # (the connection made)
            for run in range(5):
                topic = f"jobs{run}"
                if count == 1:
                    broker.publish(topic, {"n": run})
                else:
                    broker.publish_many(topic, [{"n": i} for i in range(count)])
                sent = proxy.sent()
                assert _pinged_after(sent, f"{prefix}.{topic}", count), sent[-400:]
    finally:
        proxy.close()


def test_an_asyncio_publish_returns_after_a_ping_that_follows_its_messages(
    nats_url: str,
) -> None:
    proxy = Recording(nats_address(nats_url))
    prefix = f"r31f{uuid.uuid4().hex[:10]}"

    async def main() -> None:
        async with brokerkit.aio.connect(_url(proxy, prefix)) as broker:
            await broker.publish("warm", "up")
            for run in range(5):
                topic = f"jobs{run}"
                await broker.publish(topic, {"n": run}, headers={"k": "v"})
                sent = proxy.sent()
                assert _pinged_after(sent, f"{prefix}.{topic}", 1), sent[-400:]

    try:
        asyncio.run(main())
    finally:
        proxy.close()
