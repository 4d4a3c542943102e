"""The contract suite over the memory backend, written as a plugin author would."""

from __future__ import annotations

import uuid

import pytest

import brokerkit
import brokerkit.aio
from brokerkit import ManualClock
from brokerkit.contracts import BrokerContract, ManualTimeline


class TestMemoryContract(BrokerContract):
    @pytest.fixture
    def clock(self) -> ManualClock:
        return ManualClock()

    @pytest.fixture
    def make_broker(self, clock: ManualClock):  # type: ignore[no-untyped-def]
        url = f"memory://contract-{uuid.uuid4().hex}"

        def make(**options: object) -> brokerkit.Broker:
            return brokerkit.connect(url, clock=clock, **options)

        return make

    @pytest.fixture
    def timeline(self, clock: ManualClock) -> ManualTimeline:
        return ManualTimeline(clock)


class TestMemoryAsyncContract(TestMemoryContract):
    """The same suite over the asyncio API (``brokerkit.aio``), native on asyncio."""

    @pytest.fixture
    def make_broker(self, clock: ManualClock):  # type: ignore[no-untyped-def]
        url = f"memory://contract-{uuid.uuid4().hex}"
        return lambda **options: brokerkit.aio.connect(url, clock=clock, **options)
