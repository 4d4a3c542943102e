"""The example plugin (examples/brokerkit-example-plugin) is found through its entry
point, and keeps the contract. Install it first:
``pip install -e examples/brokerkit-example-plugin``."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

import brokerkit
import brokerkit.aio
from brokerkit.contracts import BrokerContract


def test_list_backends_names_the_example_plugin() -> None:
    found = {info.plugin: info for info in brokerkit.list_backends()}
    assert "sqlite" in found, (
        "the example plugin is not installed: pip install -e examples/brokerkit-example-plugin"
    )
    assert found["sqlite"].schemes == ("sqlite",)
    assert found["sqlite"].capabilities == (
        brokerkit.Capability.PERSISTENT
        | brokerkit.Capability.ACK
        | brokerkit.Capability.COMPETING
        | brokerkit.Capability.ORDERED
        | brokerkit.Capability.DEAD_LETTER
    )


def test_connect_finds_the_backend_through_the_entry_point(tmp_path: Path) -> None:
    with brokerkit.connect(f"sqlite:///{tmp_path}/q.db") as broker:
        assert type(broker).__module__ == "brokerkit_example.backend"
        broker.publish("jobs", {"n": 1})
    with brokerkit.connect(f"sqlite:///{tmp_path}/q.db") as broker:  # it persisted
        delivery = broker.subscribe("jobs").receive(timeout=1)
        assert delivery is not None and delivery.body == {"n": 1}
        delivery.ack()


def test_a_url_without_a_file_is_refused() -> None:
    with pytest.raises(brokerkit.InvalidURL, match="names no file"):
        brokerkit.connect("sqlite://")


class TestExamplePluginContract(BrokerContract):
    """The contract suite over the plugin, as the plugin's own test file runs it."""

    @pytest.fixture
    def make_broker(self, tmp_path: Path) -> Any:
        url = f"sqlite:///{tmp_path}/queue.db"
        return lambda **options: brokerkit.connect(url, **options)


class TestExamplePluginAsyncContract(BrokerContract):
    """The same suite over ``brokerkit.aio``: the plugin has only sync primitives, so the
    asyncio API runs them through the thread adapter."""

    #: The sync class checks the plugin in full; this one the thread adapter over it.
    example_share = 0.5

    @pytest.fixture
    def make_broker(self, tmp_path: Path) -> Any:
        url = f"sqlite:///{tmp_path}/queue.db"
        return lambda **options: brokerkit.aio.connect(url, **options)


def test_a_sync_only_plugin_runs_under_asyncio_through_the_thread_adapter(
    tmp_path: Path,
) -> None:
    async def main() -> None:
        async with brokerkit.aio.connect(f"sqlite:///{tmp_path}/q.db") as broker:
            assert isinstance(broker, brokerkit.aio.ThreadedAsyncBroker)
            assert type(broker.sync).__module__ == "brokerkit_example.backend"
            await broker.publish("jobs", {"n": 1})
            async for delivery in broker.consume("jobs", timeout=1):
                assert delivery.body == {"n": 1}
                await delivery.ack()
            assert (await broker.inspect("jobs")).in_flight == 0

    asyncio.run(main())
