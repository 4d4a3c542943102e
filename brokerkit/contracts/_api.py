"""Contract tests of the rest of the public API: consume, receive, options,
capability checks and settling through the right broker."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import pytest

from brokerkit._capabilities import Capability
from brokerkit._delivery import Delivery
from brokerkit._subscription import Subscription
from brokerkit.contracts._harness import ContractEnv, requires
from brokerkit.exceptions import (
    BrokerClosed,
    DeliveryError,
    InvalidMessage,
    InvalidOption,
    Unsupported,
)

__all__ = ["ApiContract"]

#: Real seconds a receive under way is given to fetch what was just published (on a
#: ManualTimeline too: fetching takes no lease time, but it does take real time).
_FETCH_WAIT = 10.0


class ApiContract:
    """Promises of the public API that every backend keeps through the base class,
    checked so that no backend's override breaks them."""

    @requires(Capability.PERSISTENT)
    def test_consume_stops_on_limit_and_on_timeout(self, contract: ContractEnv) -> None:
        """consume() stops after limit deliveries, or when none came for timeout.

        ``consume`` yields deliveries until ``limit`` of them came, or until none
        came for ``timeout`` seconds."""
        promise = "consume stops on limit and timeout"
        broker = contract.broker()
        topic = contract.topic("consume")
        ids = broker.publish_many(topic, range(5))
        first = list(broker.consume(topic, limit=2, timeout=contract.grace))
        assert len(first) == 2, f"{promise}: limit=2 gave {len(first)} deliveries"
        for delivery in first:
            delivery.ack()
        rest = []
        # Every message is already there: a quiet period ends the loop.
        for delivery in broker.consume(topic, timeout=contract.timeline.quiet, prefetch=2):
            rest.append(delivery)
            delivery.ack()
        assert sorted(d.id for d in first + rest) == sorted(ids), (
            f"{promise}: consume until idle gave every message once"
        )

    @requires(Capability.PERSISTENT | Capability.ACK | Capability.COMPETING)
    def test_leaving_consume_hands_back_prefetched_deliveries(self, contract: ContractEnv) -> None:
        """Leaving a consume loop hands back its prefetched deliveries at once.

        Leaving a ``consume`` loop (or closing a subscription) hands back the
        deliveries it prefetched but never returned: another consumer gets them at
        once, not after the visibility timeout."""
        promise = "leaving consume hands back what it prefetched"
        broker = contract.broker(visibility_timeout=60)
        topic = contract.topic("handback")
        ids = broker.publish_many(topic, range(4))
        wait = contract.grace
        for delivery in broker.consume(topic, prefetch=4, timeout=wait):
            delivery.ack()
            break
        other = contract.broker().subscribe(topic, prefetch=4)
        got = contract.expect_all(other, 3, promise)
        assert {d.id for d in got} < set(ids), promise
        contract.expect_nothing(other, f"{promise}: the acked one came back")

    @requires(Capability.PERSISTENT | Capability.COMPETING)
    def test_closing_a_broker_hands_back_what_its_subscriptions_prefetched(
        self, contract: ContractEnv
    ) -> None:
        """Closing a broker hands back every subscription's prefetched deliveries at once.

        ``Broker.close()`` ends each of its subscriptions, and each hands back the
        deliveries it fetched but never returned: other consumers get them at once,
        not after the visibility timeout."""
        promise = "closing a broker hands back what its subscriptions prefetched"
        closing, other = contract.broker(visibility_timeout=60), contract.broker()
        topics = [contract.topic("close-prefetched") for _ in range(2)]
        waiting: dict[str, set[str]] = {}
        for topic in topics:
            ids = closing.publish_many(topic, range(4))
            subscription = closing.subscribe(topic, prefetch=4)
            delivery = contract.expect(subscription, promise)
            delivery.ack()
            waiting[topic] = set(ids) - {delivery.id}
        closing.close()
        for index, topic in enumerate(topics, 1):
            subscription = other.subscribe(topic, prefetch=4)
            got = contract.expect_all(
                subscription, len(waiting[topic]), f"{promise} (subscription {index})"
            )
            assert {d.id for d in got} == waiting[topic], f"{promise}: other messages came"
            contract.expect_nothing(subscription, f"{promise}: the acked one came back")

    @requires(Capability.PERSISTENT | Capability.COMPETING)
    @pytest.mark.parametrize("closing", ["subscription", "broker"])
    def test_closing_during_a_receive_hands_back_what_it_fetched(
        self, contract: ContractEnv, closing: str
    ) -> None:
        """Closing during a receive hands back, at once, what that receive fetched.

        Messages published while a receive waits are fetched by it; when its
        subscription (or broker) is closed before the receive returns them, every one
        the receive did not return reaches the group's other members at once, not
        after the visibility timeout (the suite does not move a ManualClock meanwhile)."""
        promise = "closing during a receive hands back what it fetched"
        topic = contract.topic("close-fetched")
        closing_broker = contract.broker(visibility_timeout=60)
        publisher = contract.broker(visibility_timeout=60)
        waiting = closing_broker.subscribe(topic, prefetch=10)
        outcome: list[Delivery | BrokerClosed | None] = []
        started = threading.Event()

        def receive() -> None:
            started.set()
            try:
                outcome.append(waiting.receive(timeout=_FETCH_WAIT))
            except BrokerClosed as exc:
                outcome.append(exc)

        thread = threading.Thread(target=receive, daemon=True)
        thread.start()
        started.wait(_FETCH_WAIT)
        ids = publisher.publish_many(topic, range(10))
        # Close once the receive's fetch has taken them: leased, or returned.
        deadline = time.monotonic() + _FETCH_WAIT
        leases = contract.has(Capability.ACK)
        while not outcome and time.monotonic() < deadline:
            if leases and closing_broker.inspect(topic).in_flight:
                break
            thread.join(0.005)
        if closing == "broker":
            closing_broker.close()
        else:
            waiting.close()
        thread.join(_FETCH_WAIT)
        assert not thread.is_alive(), f"{promise}: the receive under way did not end on close"
        ended = outcome[0] if len(outcome) == 1 else None
        assert ended is not None, (
            f"{promise}: the receive ended with {outcome!r}, not a delivery or BrokerClosed"
        )
        returned = None if isinstance(ended, BrokerClosed) else ended.id
        expected = {i for i in ids if i != returned}
        # The one the receive returned is the test's, unsettled: a closed broker's
        # unsettled deliveries may go back at once too (an AMQP connection's do).
        allowed = set(ids) if closing == "broker" else expected
        other = publisher.subscribe(topic, prefetch=10)
        got: set[str] = set()
        while not expected <= got:
            delivery = other.receive(timeout=contract.grace)
            assert delivery is not None, (
                f"{promise}: only {len(expected & got)} of {len(expected)} messages were delivered"
            )
            assert delivery.id in allowed - got, (
                f"{promise}: {delivery.body!r} came, twice or though the receive returned it"
            )
            got.add(delivery.id)
            delivery.ack()
        late = other.receive(timeout=contract.timeline.quiet)
        if late is not None:
            assert late.id in allowed - got, f"{promise}: {late.body!r} came twice"
            late.ack()
        contract.expect_nothing(other, f"{promise}: a message came twice")

    def test_prefetch_bytes_bounds_a_fetch_by_size(self, contract: ContractEnv) -> None:
        """prefetch_bytes bounds what one fetch brings by payload size.

        With ``prefetch_bytes=N`` a fetch asks for no more messages than fit in N bytes
        at the size of the largest message the subscription has seen: the first fetch
        takes one, and what was fetched and not yet settled never exceeds N bytes."""
        promise = "prefetch_bytes bounds a fetch by size"
        broker = contract.broker()
        topic = contract.topic("prefetch-bytes")
        subscription = broker.subscribe(topic, prefetch=10, prefetch_bytes=2500)
        ids = broker.publish_many(topic, [bytes([i]) * 1000 for i in range(10)])
        got: list[str] = []
        for _ in ids:
            delivery = contract.expect(subscription, promise)
            fetched = 1 + subscription.buffered  # this delivery and what is still buffered
            assert got or fetched == 1, (
                f"{promise}: the first fetch brought {fetched} messages, not 1"
            )
            assert fetched * 1000 <= 2500, (
                f"{promise}: {fetched} messages of 1000 bytes fetched at once "
                "with prefetch_bytes=2500"
            )
            got.append(delivery.id)
            delivery.ack()
        assert sorted(got) == sorted(ids), f"{promise}: other messages came"
        contract.expect_nothing(subscription, f"{promise}: a message came twice")
        with pytest.raises(InvalidOption, match="prefetch_bytes"):
            broker.subscribe(topic, prefetch_bytes=0)

    def test_receive_returns_none_when_nothing_comes(self, contract: ContractEnv) -> None:
        """receive(timeout) returns None when nothing arrives in time.

        ``receive(timeout)`` returns None when nothing arrives in time (0 means: only
        what is already there)."""
        promise = "receive returns None when nothing comes"
        broker = contract.broker()
        subscription = broker.subscribe(contract.topic("empty"))
        for timeout in (0, contract.timeline.quiet):
            got = subscription.receive(timeout=timeout)
            assert got is None, (
                f"{promise}: receive(timeout={timeout}) on an empty topic returned {got!r}"
            )

    def test_missing_capabilities_raise_unsupported(self, contract: ContractEnv) -> None:
        """A call needing an undeclared capability raises Unsupported naming it.

        A call that needs a capability the backend does not declare raises
        Unsupported naming it; one the backend declares is accepted."""
        broker = contract.broker()
        topic = contract.topic("caps")
        calls: dict[Capability, Callable[[], Subscription]] = {
            Capability.COMPETING: lambda: broker.subscribe(topic, group="g"),
            Capability.REPLAY: lambda: broker.subscribe(topic, group="r", start="earliest"),
            Capability.PATTERNS: lambda: broker.subscribe(f"{topic}.*", pattern=True),
        }
        for capability, call in calls.items():
            needed = capability | (
                Capability.COMPETING if capability is Capability.REPLAY else Capability.NONE
            )
            if needed in broker.capabilities:
                call().close()
                continue
            missing = [n for n in needed.names() if Capability[n] not in broker.capabilities]
            refused: Unsupported | None = None
            try:
                call().close()
            except Unsupported as exc:
                refused = exc
            if refused is None:
                pytest.fail(f"capabilities: a call that needs {missing} was accepted")
            assert any(name in str(refused) for name in missing), (
                f"capabilities: Unsupported does not name {missing}: {refused}"
            )
        if Capability.ACK not in broker.capabilities:
            subscription = broker.subscribe(topic)
            broker.publish(topic, "x")
            delivery = contract.expect(subscription, "capabilities")
            with pytest.raises(Unsupported):
                delivery.extend()
            delivery.ack()  # without ACK, settling only marks the delivery settled
            assert delivery.settled

    def test_bad_options_are_refused_naming_the_valid_ones(self, contract: ContractEnv) -> None:
        """A bad or unknown option raises InvalidOption listing the valid ones.

        An unknown option, or a bad value, raises InvalidOption listing what is valid."""
        with pytest.raises(InvalidOption) as raised:
            contract.broker(visibilty_timeout=1)
        assert "visibility_timeout" in str(raised.value), (
            f"options: the error does not name the valid options: {raised.value}"
        )
        for name, value in (("visibility_timeout", 0), ("max_deliveries", 0)):
            refused: InvalidOption | None = None
            try:
                contract.broker(**{name: value})
            except InvalidOption as exc:
                refused = exc
            if refused is None:
                pytest.fail(f"options: a bad value is refused: {name}={value} was accepted")
            assert name in str(refused), f"options: the error does not name {name}: {refused}"

    def test_settling_through_another_broker_is_refused(self, contract: ContractEnv) -> None:
        """Only the broker that delivered a delivery can settle it.

        A delivery is settled only through the broker that delivered it; another
        broker refuses it with DeliveryError and the delivery stays unsettled."""
        broker, stranger = contract.broker(), contract.broker()
        topic = contract.topic("foreign")
        subscription = broker.subscribe(topic)
        broker.publish(topic, "x")
        delivery = contract.expect(subscription, "settle through its own broker")
        with pytest.raises(DeliveryError):
            stranger.ack(delivery)
        assert not delivery.settled, "a refused settlement left the delivery settled"
        delivery.ack()

    def test_subscription_iterates_and_closes_with_its_block(self, contract: ContractEnv) -> None:
        """A subscription iterates its deliveries, and leaving its with-block closes it.

        Iterating yields deliveries as they come (in order, with ORDERED); the
        subscription is closed when its ``with`` block ends.
        """
        promise = "a subscription iterates and closes"
        broker = contract.broker()
        topic = contract.topic("iterate")
        with broker.subscribe(topic) as subscription:
            ids = broker.publish_many(topic, range(3))
            got = []
            # Iteration never times out: a watchdog closes the subscription, which
            # ends it, should a message never come.
            watchdog = threading.Timer(contract.grace + 1.0, subscription.close)
            watchdog.start()
            try:
                for delivery in subscription:
                    got.append(delivery.id)
                    delivery.ack()
                    if len(got) == len(ids):
                        break
            finally:
                watchdog.cancel()
            assert len(got) == len(ids), f"{promise}: only {len(got)} of {len(ids)} came"
        assert subscription.closed, f"{promise}: leaving the with-block closes it"
        expected = ids if contract.has(Capability.ORDERED) else sorted(ids)
        assert (got if contract.has(Capability.ORDERED) else sorted(got)) == expected, promise

    def test_publish_many_takes_an_iterable_of_bodies(self, contract: ContractEnv) -> None:
        """publish_many takes an iterable of bodies: one body is refused, none sends none.

        A single str, bytes or dict raises InvalidMessage rather than being split up,
        and so does what is no iterable (None, a number); an empty iterable publishes
        nothing and returns no ids.
        """
        broker = contract.broker()
        topic = contract.topic("many")
        subscription = broker.subscribe(topic)
        singles: tuple[Any, ...] = ("abc", b"abc", {"a": 1}, None, 5)
        for single in singles:
            with pytest.raises(InvalidMessage):
                broker.publish_many(topic, single)
        assert broker.publish_many(topic, []) == [], "publish_many([]) returns no ids"
        assert broker.publish_many(topic, iter(["x"])) != [], "a generator is an iterable"
        delivery = contract.expect(subscription, "publish_many")
        assert delivery.body == "x", "publish_many: a refused call sent a message"
        delivery.ack()
        contract.expect_nothing(subscription, "publish_many: a refused call sent a message")
