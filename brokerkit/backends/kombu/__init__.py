"""The kombu bridge: RabbitMQ (``kombu+amqp://``) through kombu and py-amqp, and
kombu's virtual transports (``kombu+memory://``, ``kombu+redis://``).

This plugin registers the backend lazily, so that ``import brokerkit`` never imports
kombu; it is imported only when a ``kombu+...`` URL is used.
"""

from __future__ import annotations

from brokerkit._registry import BackendRegistry
from brokerkit.hookspecs import hookimpl

_HINT = 'install kombu: pip install "pybrokerkit[kombu]"'


@hookimpl
def brokerkit_register_backends(registry: BackendRegistry) -> None:
    registry.add(
        "brokerkit.backends.kombu.amqp:KombuAMQPBroker",
        schemes=("kombu+amqp", "kombu+amqps", "kombu+pyamqp"),
        install_hint=_HINT,
    )
    registry.add(
        "brokerkit.backends.kombu.virtual:KombuVirtualBroker",
        schemes=("kombu+memory", "kombu+redis"),
        install_hint=_HINT,
    )
