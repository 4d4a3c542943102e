"""The base class a backend's test file subclasses to run the whole contract suite."""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any, ClassVar

import pytest

from brokerkit._broker import Broker
from brokerkit._capabilities import Capability
from brokerkit.contracts._api import ApiContract
from brokerkit.contracts._delays import DelayContract
from brokerkit.contracts._delivery import DeliveryContract
from brokerkit.contracts._groups import GroupContract
from brokerkit.contracts._harness import (
    BrokerFactory,
    ContractEnv,
    RealTimeline,
    Timeline,
    missing_capabilities,
)
from brokerkit.contracts._held import HeldMessageContract
from brokerkit.contracts._leases import LeaseContract
from brokerkit.contracts._messages import MessageContract
from brokerkit.contracts._payloads import PayloadContract
from brokerkit.contracts._profiles import share_of
from brokerkit.contracts._scoped import ScopeContract
from brokerkit.contracts._stateful import StatefulContract

__all__ = ["BrokerContract"]


class BrokerContract(
    MessageContract,
    PayloadContract,
    DeliveryContract,
    DelayContract,
    HeldMessageContract,
    LeaseContract,
    GroupContract,
    ScopeContract,
    ApiContract,
    StatefulContract,
):
    """The contract suite. Subclass it in a file named ``test_*.py`` as ``Test...``
    and override the ``make_broker`` fixture::

        class TestMyBackend(BrokerContract):
            @pytest.fixture
            def make_broker(self, prefix):
                def make(**options):
                    return brokerkit.connect(f"mybackend://host/?prefix={prefix}", **options)
                return make

    ``make(**options)`` must return a new, open broker each call. Brokers made by one
    ``make`` share one namespace (they see each other's topics); give each test a
    fresh one (a fresh prefix, database or name). The suite passes options such as
    ``visibility_timeout=0.5`` and ``max_deliveries=3`` and closes every broker.

    Optional hooks:

    * the ``timeline`` fixture: how time passes for the backend. The default is real
      time; a backend that reads a :class:`~brokerkit.ManualClock` returns
      :class:`~brokerkit.contracts.ManualTimeline` so that leases run out at once.
    * :meth:`suspend_renewals`: make a broker stop renewing its leases, as a hung
      consumer would, for the late-ack test.
    * :attr:`example_share`: run a share of the profile's hypothesis examples.

    Each test declares the capabilities it needs; on a backend that lacks one it is
    skipped with the missing capability in the reason.
    """

    #: The share of the active profile's hypothesis examples this class runs (1.0: all
    #: of them; every test still runs at least one). A class that runs a backend the
    #: project already checks in full, over a second transport or API (TLS, the asyncio
    #: twin), can run fewer and still catch what that layer breaks.
    example_share: ClassVar[float] = 1.0

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        share = cls.example_share
        if not (isinstance(share, (int, float)) and 0 < share < math.inf):
            raise TypeError(
                f"{cls.__name__}.example_share must be a positive number "
                f"(1.0 runs every example), got {share!r}"
            )

    @pytest.fixture(autouse=True)
    def _share_of_examples(self, request: pytest.FixtureRequest) -> Iterator[None]:
        """Give a hypothesis test this class's share of examples, for its run only
        (the test function is shared by every class of the suite)."""
        test = getattr(request.function, "__func__", request.function)  # not the bound method
        base = getattr(test, "_hypothesis_internal_use_settings", None)
        if base is None or self.example_share == 1.0:
            yield
            return
        test._hypothesis_internal_use_settings = share_of(base, self.example_share)
        try:
            yield
        finally:
            test._hypothesis_internal_use_settings = base

    @pytest.fixture
    def make_broker(self) -> BrokerFactory:
        """Override: return ``make(**options) -> Broker`` for the backend under test."""
        raise NotImplementedError(
            f"{type(self).__name__} must override the make_broker fixture; "
            "see brokerkit.contracts.BrokerContract"
        )

    @pytest.fixture
    def timeline(self) -> Timeline:
        """How the suite lets time pass for the backend (default: real time)."""
        return RealTimeline()

    @pytest.fixture
    def contract(
        self, request: pytest.FixtureRequest, make_broker: BrokerFactory, timeline: Timeline
    ) -> Iterator[ContractEnv]:
        """The test's brokers, topics and time; skips when a capability is missing."""
        env = ContractEnv(make_broker, timeline)
        # (the skip inside the try: the env may hold an event loop in a thread of its
        # own, with its descriptors, which a skipped test must close as well)
        try:
            needed = Capability.NONE
            for mark in request.node.iter_markers("brokerkit_requires"):
                needed |= mark.args[0]
            missing = missing_capabilities(env.capabilities, needed)
            if missing:
                pytest.skip(
                    f"{env.backend_name} lacks the {' and '.join(missing)} "
                    f"capabilit{'ies' if len(missing) > 1 else 'y'}"
                )
            yield env
        finally:
            env.close_all()

    def suspend_renewals(self, broker: Broker) -> None:
        """Make ``broker`` stop renewing the leases of its deliveries, as a hung process
        would, while it stays open so that it can still try to ack.

        The default calls ``broker._suspend_renewals()`` where the backend has it
        (a backend that renews leases in the background must), and otherwise does
        nothing: a backend without renewals lets leases run out by themselves.
        """
        suspend = getattr(broker, "_suspend_renewals", None)
        if callable(suspend):
            suspend()
