"""The contract suite over NATS JetStream, written as a plugin author would: once
through the sync class (the loop bridge) and once over the asyncio API."""

from __future__ import annotations

import pytest

import brokerkit
import brokerkit.aio
from brokerkit.contracts import BrokerContract


class TestNatsContract(BrokerContract):
    #: The asyncio class checks the (native) backend in full; this one the sync API
    #: over it, through the loop bridge.
    example_share = 0.5

    @pytest.fixture
    def make_broker(self, nats_url: str, nats_prefix: str):  # type: ignore[no-untyped-def]
        def make(**options: object) -> brokerkit.Broker:
            return brokerkit.connect(nats_url, prefix=nats_prefix, **options)

        return make


class TestNatsAsyncContract(BrokerContract):
    """The same suite over ``brokerkit.aio``, where the backend is native."""

    @pytest.fixture
    def make_broker(self, nats_url: str, nats_prefix: str):  # type: ignore[no-untyped-def]
        return lambda **options: brokerkit.aio.connect(nats_url, prefix=nats_prefix, **options)


def _core(url: str) -> str:
    return url.replace("nats://", "nats+core://", 1)


class TestNatsCoreContract(BrokerContract):
    """Plain core NATS subjects: what pub/sub promises (fan-out, order, patterns)."""

    @pytest.fixture
    def make_broker(self, nats_url: str, nats_prefix: str):  # type: ignore[no-untyped-def]
        return lambda **options: brokerkit.connect(_core(nats_url), prefix=nats_prefix, **options)


class TestNatsCoreAsyncContract(BrokerContract):
    @pytest.fixture
    def make_broker(self, nats_url: str, nats_prefix: str):  # type: ignore[no-untyped-def]
        return lambda **options: brokerkit.aio.connect(
            _core(nats_url), prefix=nats_prefix, **options
        )
