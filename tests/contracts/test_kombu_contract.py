"""The contract suite over kombu+amqp (RabbitMQ), written as a plugin author would."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from brokerkit.contracts import BrokerContract
from tests.kombu_rabbitmq import kombu_broker, rabbitmq

__all__ = ["kombu_broker", "rabbitmq"]


class TestKombuAMQPContract(BrokerContract):
    @pytest.fixture
    def make_broker(self, kombu_broker: Callable[..., Any]):  # type: ignore[no-untyped-def]
        return kombu_broker
