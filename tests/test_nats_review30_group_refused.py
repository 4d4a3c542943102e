"""NATS: a group whose consumer JetStream refuses to create raises BrokerError with
JetStream's reason (review 30).

The create's error was put aside to ask whether another broker had made the consumer
meanwhile, and when none had, the error raised was that question's answer: "consumer
not found", whatever the server had said (here: the stream's ``max_consumers``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import nats as nats_py
import pytest
from nats.js.api import StreamConfig

from brokerkit.exceptions import BrokerError
from tests.nats_server import nats

__all__ = ["nats"]  # a fixture


def _make_stream(url: str, name: str, **limits: Any) -> None:
    async def make() -> None:
        nc = await nats_py.connect(url)
        try:
            await nc.jetstream().add_stream(
                StreamConfig(name=name, subjects=[f"{name}.>"], **limits)
            )
        finally:
            await nc.close()

    asyncio.run(make())


def test_a_refused_create_says_why(
    nats: Callable[..., Any], nats_url: str, nats_prefix: str
) -> None:
    _make_stream(nats_url, nats_prefix, max_consumers=1)
    broker = nats()
    broker.subscribe("jobs", group="first").close()
    with pytest.raises(BrokerError, match=r"'second'.*maximum consumers limit") as caught:
        broker.subscribe("jobs", group="second")
    assert "not found" not in str(caught.value)
