"""nats+core: subscribe returns once the server has read its SUB: the PING whose PONG
ends the subscribe is written after it, in one round trip (review 31b).

nats-py's flush writes its PING straight to the socket while the SUB waits in its
buffer for its flusher task: a lone flush's PONG could come before the server read the
SUB. subscribe flushed twice for it; it now writes nats-py's buffer out first, as
publish does, and flushes once (twice still with a nats-py whose buffer it cannot
reach). A proxy between the client and the real server records what the client sends,
in order: by the time subscribe returns, a PING must have followed its SUB.
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


def _pings_after_sub(sent: bytes, subject: str) -> int:
    """How many PINGs ``sent`` holds after its one SUB of ``subject`` (-1: no such SUB,
    or several)."""
    mark = f"SUB {subject} ".encode()
    at = sent.find(b"\r\n" + mark)
    if at < 0 or sent.find(b"\r\n" + mark, at + 1) >= 0:
        return -1
    return sent[at:].count(b"\r\nPING\r\n")


def _url(proxy: Recording, prefix: str) -> str:
    return f"nats+core://127.0.0.1:{proxy.port}?prefix={prefix}"


@pytest.mark.parametrize("buffer", ["written", "unreachable"])
def test_a_sync_subscribe_returns_after_a_ping_that_follows_its_sub(
    nats_url: str, buffer: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    if buffer == "unreachable":  # (a nats-py whose buffer brokerkit cannot write out)
        monkeypatch.setattr(core, "_write_buffered", lambda nc: False)
    proxy = Recording(nats_address(nats_url))
    prefix = f"r31s{uuid.uuid4().hex[:10]}"
    try:
        with brokerkit.connect(_url(proxy, prefix)) as broker:
            broker.publish("warm", "up")  # (the connection made)
            for run in range(5):
                broker.subscribe(f"jobs{run}")
                pings = _pings_after_sub(proxy.sent(), f"{prefix}.jobs{run}")
                # (unreachable: the first flush's PING may precede the SUB, the second not)
                assert pings == 1 if buffer == "written" else pings >= 1, proxy.sent()[-400:]
    finally:
        proxy.close()


def test_an_asyncio_subscribe_returns_after_a_ping_that_follows_its_sub(
    nats_url: str,
) -> None:
    proxy = Recording(nats_address(nats_url))
    prefix = f"r31s{uuid.uuid4().hex[:10]}"

    async def main() -> None:
        async with brokerkit.aio.connect(_url(proxy, prefix)) as broker:
            await broker.subscribe("first")  # (as the first call: the connection made)
            assert _pings_after_sub(proxy.sent(), f"{prefix}.first") >= 1
            for run in range(5):
                await broker.subscribe(f"jobs{run}")
                assert _pings_after_sub(proxy.sent(), f"{prefix}.jobs{run}") == 1
            await broker.subscribe("*", pattern=True)
            assert _pings_after_sub(proxy.sent(), f"{prefix}.>") == 1

    try:
        asyncio.run(main())
    finally:
        proxy.close()
