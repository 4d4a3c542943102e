"""The brokerkit contract suite: the promises every backend is checked against.

A plugin author subclasses :class:`BrokerContract` in a test file and overrides one
fixture, ``make_broker``::

    import pytest, brokerkit
    from brokerkit.contracts import BrokerContract

    class TestMyBackend(BrokerContract):
        @pytest.fixture
        def make_broker(self, tmp_path):
            def make(**options):
                return brokerkit.connect(f"mybackend:///{tmp_path}/db", **options)
            return make

or runs the suite against a URL with no code at all::

    pytest --brokerkit-url "mybackend://..." --pyargs brokerkit.contracts

This package imports pytest and hypothesis only when :class:`BrokerContract` and
friends are first used, so the pytest plugin that lives in it stays light.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from brokerkit.contracts._harness import (
        GRACE,
        LEASE_TOLERANCE,
        VISIBILITY_TIMEOUT,
        ContractEnv,
        ManualTimeline,
        RealTimeline,
        Timeline,
        requires,
    )
    from brokerkit.contracts._profiles import contract_settings, profile_name
    from brokerkit.contracts._suite import BrokerContract

__all__ = [
    "GRACE",
    "LEASE_TOLERANCE",
    "VISIBILITY_TIMEOUT",
    "BrokerContract",
    "ContractEnv",
    "ManualTimeline",
    "RealTimeline",
    "Timeline",
    "contract_settings",
    "profile_name",
    "requires",
]

_LAZY = {
    "GRACE": "_harness",
    "LEASE_TOLERANCE": "_harness",
    "VISIBILITY_TIMEOUT": "_harness",
    "ContractEnv": "_harness",
    "ManualTimeline": "_harness",
    "RealTimeline": "_harness",
    "Timeline": "_harness",
    "requires": "_harness",
    "contract_settings": "_profiles",
    "profile_name": "_profiles",
    "BrokerContract": "_suite",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'brokerkit.contracts' has no attribute {name!r}")
    return getattr(importlib.import_module(f"brokerkit.contracts.{module}"), name)
