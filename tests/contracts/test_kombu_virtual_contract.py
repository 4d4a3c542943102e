"""The contract suite over kombu's virtual transports (kombu+memory, kombu+redis),
through the sync API and through the asyncio API (``brokerkit.aio``'s thread adapter).

Each test gets a prefix of its own; what it declared is deleted afterwards."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from brokerkit.contracts import BrokerContract
from tests.test_kombu_virtual import kombu_virtual, virtual_url

__all__ = ["kombu_virtual", "virtual_url"]


@pytest.fixture(params=["memory", "redis"])
def transport(request: pytest.FixtureRequest) -> str:
    return str(request.param)


class TestKombuVirtualContract(BrokerContract):
    @pytest.fixture
    def make_broker(self, kombu_virtual: Callable[..., Any], transport: str):  # type: ignore[no-untyped-def]
        return lambda **options: kombu_virtual(transport, **options)


class TestKombuVirtualAsyncContract(BrokerContract):
    """The same suite over the asyncio API."""

    #: The sync class checks this backend's rules in full; this one checks the
    #: asyncio API over them.
    example_share = 0.5

    @pytest.fixture
    def make_broker(self, kombu_virtual: Callable[..., Any], transport: str):  # type: ignore[no-untyped-def]
        return lambda **options: kombu_virtual(transport, aio=True, **options)
