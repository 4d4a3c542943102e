"""The in-memory backend (``memory://``): every capability, no server.

Native on both sides: :class:`MemoryBroker` for :func:`brokerkit.connect` and
:class:`AsyncMemoryBroker` for :func:`brokerkit.aio.connect`, generated from one
source (``broker_async.py``) and sharing one :class:`~.store.Store` per name.
"""

from __future__ import annotations

from brokerkit._registry import BackendRegistry
from brokerkit.backends.memory.broker import MemoryBroker
from brokerkit.backends.memory.broker_async import AsyncMemoryBroker
from brokerkit.backends.memory.store import MemoryOptions
from brokerkit.hookspecs import hookimpl

__all__ = ["AsyncMemoryBroker", "MemoryBroker", "MemoryOptions"]


@hookimpl
def brokerkit_register_backends(registry: BackendRegistry) -> None:
    registry.add(MemoryBroker, aio=AsyncMemoryBroker)
