"""The plugin module named by the ``brokerkit.plugins`` entry point."""

from __future__ import annotations

import brokerkit


@brokerkit.hookimpl
def brokerkit_register_backends(registry: brokerkit.BackendRegistry) -> None:
    # Lazy: the backend module is imported only when a sqlite:// URL is used.
    registry.add("brokerkit_example.backend:SQLiteBroker", schemes=("sqlite",))
