"""nats+core: a subscribe whose flush the server leaves unanswered ends with
ConnectionFailed after SUBSCRIBE_WAIT (docs/backends/nats.md: "or the server does not
answer the flush within 10 s"), not nats-py's own FlushTimeoutError nor a wait without
end; and the connection goes on once the server answers again. A proxy between the
client and the real server holds the server's PONGs back (SUBSCRIBE_WAIT made short)."""

from __future__ import annotations

import uuid

import pytest

import brokerkit
from brokerkit.backends.nats import core
from brokerkit.exceptions import ConnectionFailed
from tests.nats_server import nats_address, nats_url
from tests.test_nats_review31b_core_late_pong import GUARD, _HoldsPongs, _url

__all__ = ["nats_url"]  # a fixture


def test_an_unanswered_subscribe_fails_after_its_wait_and_the_broker_goes_on(
    nats_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(core, "SUBSCRIBE_WAIT", 0.5)
    proxy = _HoldsPongs(nats_address(nats_url))
    prefix = f"r31s{uuid.uuid4().hex[:10]}"
    try:
        with brokerkit.connect(_url(proxy, prefix)) as broker:
            broker.publish("warm-up", "connects")  # (the connection's own PONG is not held)
            proxy.hold.set()
            with pytest.raises(ConnectionFailed, match="did not confirm the subscription"):
                broker.subscribe("jobs")
            assert proxy.held.is_set()
            proxy.let_go()
            with broker.subscribe("jobs") as subscription:
                broker.publish("jobs", "after")
                delivery = subscription.receive(timeout=GUARD)
                assert delivery is not None and delivery.body == "after"
    finally:
        proxy.close()
