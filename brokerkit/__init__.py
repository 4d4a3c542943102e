"""brokerkit: one small interface in front of several message brokers.

>>> import brokerkit
>>> with brokerkit.connect("memory://") as broker:
...     _ = broker.publish("order.created", {"orderId": 123})
...     for delivery in broker.consume("order.created", timeout=0):
...         print(delivery.body)
...         delivery.ack()
{'orderId': 123}
"""

from __future__ import annotations

from brokerkit._broker import DEFAULT_GROUP, Broker
from brokerkit._capabilities import Capability
from brokerkit._clock import Clock, ManualClock, SystemClock
from brokerkit._delivery import Delivery
from brokerkit._hooks import get_plugin_manager
from brokerkit._inspect import ConsumerInfo, GroupInfo, TopicInfo
from brokerkit._message import Message
from brokerkit._options import BrokerOptions
from brokerkit._plugins import connect, list_backends
from brokerkit._registry import BackendInfo, BackendRegistry
from brokerkit._schedule import MAX_REASON_LENGTH
from brokerkit._subscription import Subscription
from brokerkit._url import BrokerURL
from brokerkit.exceptions import (
    AlreadySettled,
    BackendUnavailable,
    BrokerClosed,
    BrokerError,
    ConfigurationError,
    ConnectionFailed,
    DeliveryError,
    IncompatibleTopic,
    InvalidMessage,
    InvalidOption,
    InvalidTopic,
    InvalidURL,
    PermissionDenied,
    PluginError,
    ReplicationTimeout,
    SchemeConflict,
    SerializationError,
    StaleDelivery,
    UnknownScheme,
    Unsupported,
)
from brokerkit.hookspecs import hookimpl
from brokerkit.worker import Worker

__version__ = "0.1.0"

__all__ = [
    "DEFAULT_GROUP",
    "MAX_REASON_LENGTH",
    "AlreadySettled",
    "BackendInfo",
    "BackendRegistry",
    "BackendUnavailable",
    "Broker",
    "BrokerClosed",
    "BrokerError",
    "BrokerOptions",
    "BrokerURL",
    "Capability",
    "Clock",
    "ConfigurationError",
    "ConnectionFailed",
    "ConsumerInfo",
    "Delivery",
    "DeliveryError",
    "GroupInfo",
    "IncompatibleTopic",
    "InvalidMessage",
    "InvalidOption",
    "InvalidTopic",
    "InvalidURL",
    "ManualClock",
    "Message",
    "PermissionDenied",
    "PluginError",
    "ReplicationTimeout",
    "SchemeConflict",
    "SerializationError",
    "StaleDelivery",
    "Subscription",
    "SystemClock",
    "TopicInfo",
    "UnknownScheme",
    "Unsupported",
    "Worker",
    "__version__",
    "connect",
    "get_plugin_manager",
    "hookimpl",
    "list_backends",
]
