"""Contract tests of delays held by the broker: ``nack(delay=...)`` and
``publish(delay=...)`` (:attr:`Capability.DELAY`)."""

from __future__ import annotations

import itertools
import time

import pytest
from hypothesis import given
from hypothesis import strategies as st

from brokerkit._capabilities import Capability
from brokerkit._delivery import Delivery
from brokerkit.contracts._harness import ContractEnv, requires
from brokerkit.contracts._profiles import contract_settings
from brokerkit.exceptions import Unsupported

__all__ = ["DelayContract"]

#: Delays short enough to keep the suite quick on real time (it runs over every
#: backend and API), long enough to tell "held" from "redelivered at once" over a
#: network round trip.
_DELAYS = (0.3,)


class DelayContract:
    """Promises of a backend that holds messages until a due time."""

    @requires(Capability.ACK | Capability.DELAY)
    @pytest.mark.parametrize("delay", _DELAYS)
    def test_a_delayed_nack_comes_back_when_due_not_before(
        self, contract: ContractEnv, delay: float
    ) -> None:
        """nack(delay=s) redelivers no earlier than s seconds later, soon after, with
        the attempt counted; while it waits, inspect counts it as scheduled."""
        promise = f"a nack with delay={delay} comes back when due"
        broker, other = contract.broker(), contract.broker()
        topic = contract.topic("delay-nack")
        subscription = broker.subscribe(topic)
        competitor = other.subscribe(topic)
        message_id = broker.publish(topic, {"job": 1})
        first = contract.expect(subscription, promise)
        before = contract.timeline.now()
        first.nack(delay=delay)
        after = contract.timeline.now()
        # Another consumer may take it only once it is due (which a loaded machine may
        # reach before this listen ends).
        early = competitor.receive(timeout=contract.timeline.quiet)
        if early is None:
            info = broker.inspect(topic)
            assert info.scheduled == 1, (
                f"{promise}: inspect says scheduled={info.scheduled} while it waits, not 1"
            )
            again = contract.expect_lease_return(
                subscription, leased=(before, after), seconds=delay, promise=promise
            )
        else:
            assert contract.timeline.now() >= before + delay - contract.timeline.slack, (
                f"{promise}: another consumer got it at once, before it was due "
                f"({early!r} with body {early.body!r})"
            )
            again = early
        assert (again.id, again.attempt) == (message_id, 2), (
            f"{promise}: redelivered as attempt {again.attempt}, not 2 (attempts are counted)"
        )
        again.ack()
        assert broker.inspect(topic).scheduled == 0, f"{promise}: still scheduled once delivered"
        contract.expect_nothing([subscription, competitor], f"{promise}: it came back twice")

    @requires(Capability.ACK | Capability.DEAD_LETTER | Capability.DELAY)
    @pytest.mark.parametrize("how", ["max_deliveries", "reject"])
    def test_a_nack_reason_is_recorded_on_the_dead_letter(
        self, contract: ContractEnv, how: str
    ) -> None:
        """A nack's reason is the dead letter's x-dead-letter-reason, whether the nack
        rejects (requeue=False) or reaches max_deliveries after delayed retries."""
        promise = f"the nack's reason is recorded on the dead letter ({how})"
        broker = contract.broker(max_deliveries=2)
        topic = contract.topic("delay-dlq")
        dead_letters = broker.subscribe(broker.dead_letter_topic(topic))
        subscription = broker.subscribe(topic)
        message_id = broker.publish(topic, "job", headers={"trace-id": "t1"})
        delivery = contract.expect(subscription, promise)
        deliveries = 1
        if how == "reject":
            delivery.nack(requeue=False, reason="ValueError: bad input")
        else:
            before = contract.timeline.now()
            delivery.nack(delay=0.2, reason="TimeoutError: first try")
            after = contract.timeline.now()
            delivery = contract.expect_lease_return(
                subscription, leased=(before, after), seconds=0.2, promise=promise
            )
            assert delivery.attempt == 2, f"{promise}: attempt {delivery.attempt}, not 2"
            delivery.nack(delay=0.2, reason="ValueError: bad input")
            deliveries = 2
        dead = contract.expect(dead_letters, f"{promise}: nothing was dead-lettered")
        contract.expect_nothing(subscription, f"{promise}: redelivered past max_deliveries")
        assert dead.id == message_id, f"{promise}: another message was dead-lettered"
        assert dead.headers.get("x-dead-letter-reason") == "ValueError: bad input", (
            f"{promise}: x-dead-letter-reason is {dead.headers.get('x-dead-letter-reason')!r}"
        )
        assert dead.headers.get("x-deliveries") == str(deliveries), (
            f"{promise}: x-deliveries is {dead.headers.get('x-deliveries')!r}, not {deliveries}"
        )
        assert dead.headers.get("trace-id") == "t1", f"{promise}: the headers were lost"
        dead.ack()

    @requires(Capability.PERSISTENT | Capability.DELAY)
    @pytest.mark.parametrize("delay", _DELAYS)
    @pytest.mark.parametrize("given_as", ["delay", "at"])
    def test_a_delayed_publish_is_delivered_when_due_not_before(
        self, contract: ContractEnv, delay: float, given_as: str
    ) -> None:
        """publish(delay=s), or at= a time s seconds ahead, is delivered no earlier than
        then and soon after; until then inspect counts it as scheduled, not waiting."""
        promise = f"a publish with {given_as} {delay}s ahead is delivered when due"
        publisher, consumer = contract.broker(), contract.broker()
        topic = contract.topic("delay-pub")
        subscription = consumer.subscribe(topic)
        before = contract.timeline.now()
        if given_as == "at":
            # Epoch seconds, read as seconds from now when published: the wall-clock
            # time the call takes comes off the hold (on a ManualTimeline too).
            asked = time.time()
            message_id = publisher.publish(topic, "later", at=asked + delay)
            before -= time.time() - asked
        else:
            message_id = publisher.publish(topic, "later", delay=delay)
        after = contract.timeline.now()
        info = publisher.inspect(topic)
        assert (info.scheduled, info.length) == (1, 0), (
            f"{promise}: inspect says scheduled={info.scheduled}, length={info.length} "
            "while it is held, not 1 and 0"
        )
        got = contract.expect_lease_return(
            subscription, leased=(before, after), seconds=delay, promise=promise
        )
        assert (got.id, got.body, got.attempt) == (message_id, "later", 1), (
            f"{promise}: delivered {got.body!r} as attempt {got.attempt}"
        )
        got.ack()
        assert publisher.inspect(topic).scheduled == 0, f"{promise}: still scheduled once due"
        contract.expect_nothing(subscription, f"{promise}: delivered twice")

    @requires(Capability.PERSISTENT | Capability.DELAY)
    def test_a_topic_holding_only_delayed_messages_is_listed(self, contract: ContractEnv) -> None:
        """topics() lists a topic whose only messages are delayed publishes.

        A message held for a due time is a message the topic holds: ``topics()`` lists
        its topic before it is due (a backend that cannot list its topics raises
        :class:`~brokerkit.Unsupported`)."""
        promise = "a topic holding only delayed messages is listed"
        broker = contract.broker()
        topic = contract.topic("delay-listed")
        broker.publish(topic, "much later", delay=3600)
        listed: list[str] | None
        try:
            listed = broker.topics()
        except Unsupported:
            listed = None
        finally:
            broker.purge(topic)
        if listed is None:
            pytest.skip("the backend cannot list its topics (topics() raises Unsupported)")
        assert topic in listed, f"{promise}: {topic!r} holds a delayed message but was not listed"

    @requires(Capability.PERSISTENT | Capability.DELAY)
    @contract_settings("timed")
    @given(steps=st.lists(st.integers(1, 10), min_size=2, max_size=8))
    def test_random_delays_come_out_in_due_order(
        self, contract: ContractEnv, steps: list[int]
    ) -> None:
        """Messages published with different delays come out in due order, none early."""
        promise = "delayed messages come out in due order, none before it is due"
        with contract.scope():
            publisher, consumer = contract.broker(), contract.broker()
            topic = contract.topic("delay-order")
            subscription = consumer.subscribe(topic, prefetch=2)
            # Steps of 50 ms: far apart enough that publish latency cannot swap two dues.
            due: dict[str, tuple[float, float]] = {}
            for index, step in enumerate(steps):
                delay = step * 0.05
                before = contract.timeline.now()
                message_id = publisher.publish(topic, index, delay=delay)
                due[message_id] = (before + delay, contract.timeline.now() + delay)
            earliest = min(low for low, _ in due.values())
            if contract.timeline.manual:
                contract.timeline.advance(earliest - contract.timeline.now() - 0.001)
                contract.expect_nothing(subscription, f"{promise}: one came before it was due")
            latest = max(high for _, high in due.values())
            # A millisecond past the last due time: on a manual clock, the sum of two
            # advances may fall a rounding error short of it.
            wait = contract.timeline.advance(latest - contract.timeline.now() + 0.001)
            got: list[Delivery] = []
            while len(got) < len(steps):
                delivery = subscription.receive(timeout=wait + contract.grace)
                assert delivery is not None, f"{promise}: only {len(got)} of {len(steps)} came"
                arrived = contract.timeline.now()
                assert arrived >= due[delivery.id][0] - contract.timeline.slack, (
                    f"{promise}: message {delivery.body} came "
                    f"{due[delivery.id][0] - arrived:.3f}s early"
                )
                got.append(delivery)
                delivery.ack()
            order = [due[d.id][0] for d in got]
            for earlier, later in itertools.pairwise(got):
                assert due[earlier.id][0] <= due[later.id][1], (
                    f"{promise}: came out in the order {[d.body for d in got]}, "
                    f"due at {[round(o - order[0], 2) for o in order]}"
                )

    def test_a_backend_without_delay_refuses_one(self, contract: ContractEnv) -> None:
        """Without DELAY, publish(delay=...) and nack(delay=...) raise Unsupported and
        change nothing."""
        if contract.has(Capability.DELAY):
            pytest.skip(f"{contract.backend_class.describe()} declares DELAY")
        promise = "a backend without DELAY refuses a delay"
        broker = contract.broker()
        topic = contract.topic("no-delay")
        subscription = broker.subscribe(topic)
        with pytest.raises(Unsupported):
            broker.publish(topic, "held?", delay=5)
        if contract.has(Capability.ACK):
            broker.publish(topic, "now")
            delivery = contract.expect(subscription, promise)
            assert delivery.body == "now", f"{promise}: the refused message was sent"
            with pytest.raises(Unsupported):
                delivery.nack(delay=5)
            assert not delivery.settled, f"{promise}: the refused nack settled the delivery"
            delivery.ack()
        contract.expect_nothing(subscription, f"{promise}: something was sent")
