"""The NATS backends, through nats-py: JetStream (``nats://host:4222``) and plain core
NATS subjects, at most once (``nats+core://host:4222``).

Registered lazily, so that ``import brokerkit`` never imports nats-py. The backend
is written once, as the asyncio class :class:`~.broker.AsyncNatsBroker`; the sync
class :class:`~.sync.NatsBroker` runs it on a private event loop. See
``docs/backends/nats.md`` for what maps to what.
"""

from __future__ import annotations

from brokerkit._registry import BackendRegistry
from brokerkit.hookspecs import hookimpl

_HINT = 'install the NATS driver: pip install "pybrokerkit[nats]"'


@hookimpl
def brokerkit_register_backends(registry: BackendRegistry) -> None:
    registry.add(
        "brokerkit.backends.nats.sync:NatsBroker",
        schemes=("nats",),
        install_hint=_HINT,
        aio="brokerkit.backends.nats.broker:AsyncNatsBroker",
    )
    registry.add(
        "brokerkit.backends.nats.core:NatsCoreBroker",
        schemes=("nats+core",),
        install_hint=_HINT,
        aio="brokerkit.backends.nats.core:AsyncNatsCoreBroker",
    )
