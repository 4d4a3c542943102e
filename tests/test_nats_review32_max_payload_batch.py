"""NATS (JetStream and core): a batch with one message over the server's max_payload
is refused whole, before anything of it is sent, naming the size and the limit
(review 32: the promise of docs/backends/nats.md had only the contract suite's
single-message check, which asks for no more than "bytes" in the error)."""

from __future__ import annotations

import asyncio

import nats as nats_py
import pytest

import brokerkit


def _max_payload(url: str) -> int:
    async def ask() -> int:
        nc = await nats_py.connect(url)
        try:
            return int(nc.max_payload)
        finally:
            await nc.close()

    return asyncio.run(ask())


@pytest.mark.parametrize("scheme", ["nats", "nats+core"])
def test_a_batch_with_one_message_over_max_payload_is_refused_whole(
    nats_url: str, nats_prefix: str, scheme: str
) -> None:
    limit = _max_payload(nats_url)
    url = nats_url.replace("nats://", f"{scheme}://", 1)
    with brokerkit.connect(url, prefix=nats_prefix) as broker:
        subscription = broker.subscribe("big")
        with pytest.raises(brokerkit.InvalidMessage) as refused:
            broker.publish_many("big", [b"small", b"x" * limit])
        text = str(refused.value)
        assert "max_payload" in text and f"{limit:,} bytes" in text, text
        assert "nothing was" in text, text
        broker.publish("big", b"after")
        delivery = subscription.receive(timeout=5)
        assert delivery is not None and delivery.body == b"after"  # (not b"small")
        if scheme == "nats":
            delivery.ack()
        subscription.close()
