"""Contract tests of delays held by the broker: ``nack(delay=...)`` and
``publish(delay=...)`` (:attr:`Capability.DELAY`)."""

from __future__ import annotations

import itertools
import time

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from brokerkit._capabilities import Capability
from brokerkit._delivery import Delivery
from brokerkit._subscription import Subscription
from brokerkit.contracts._harness import JUST_BEFORE, ContractEnv, Timeline, requires
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

    @requires(Capability.ACK | Capability.DELAY)
    def test_a_delayed_retry_is_scheduled_not_in_flight(self, contract: ContractEnv) -> None:
        """A delayed retry counts as scheduled, not in flight nor in its group's pending.

        While a ``nack(delay=s)`` waits, ``inspect`` counts it in ``scheduled``, and
        neither in ``in_flight`` nor in any group's ``pending``: those count the
        deliveries handed out and not yet settled."""
        promise = "a delayed retry is scheduled, not in flight"
        broker = contract.broker(visibility_timeout=60)
        topic = contract.topic("delay-not-in-flight")
        subscription = broker.subscribe(topic, prefetch=2)
        broker.publish_many(topic, ["retry", "held"])
        got = {d.body: d for d in (contract.expect(subscription, promise) for _ in range(2))}
        got["retry"].nack(delay=3600)

        def counts(when: str, expected: tuple[int, int, int]) -> None:
            info = broker.inspect(topic)
            found = (info.scheduled, info.in_flight, sum(g.pending for g in info.groups))
            assert found == expected, (
                f"{promise}: {when}, inspect says scheduled={found[0]}, in_flight={found[1]}, "
                f"the groups' pending={found[2]}, not {expected[0]}, {expected[1]}, {expected[2]}"
            )

        try:
            counts("one held for later, one handed out", (1, 1, 1))
            got["held"].ack()
            counts("one held for later, none handed out", (1, 0, 0))
        finally:
            broker.purge(topic)

    @requires(
        Capability.FANOUT
        | Capability.COMPETING
        | Capability.ACK
        | Capability.DELAY
        | Capability.PERSISTENT
    )
    def test_delays_keep_to_their_groups(self, contract: ContractEnv) -> None:
        """A due delayed publish reaches every group; a delayed retry only its own.

        ``publish(delay=s)`` is delivered, once due, to every group of the topic, as
        attempt 1 in each; a ``nack(delay=s)`` in one group comes back, once due, to
        that group only, as its next attempt: no other group gets the message again."""
        delay = _DELAYS[0]
        promise = "delays keep to their groups"
        broker, other = contract.broker(), contract.broker()
        topic = contract.topic("delay-groups")
        retrying = broker.subscribe(topic, group="retrying")
        calm = other.subscribe(topic, group="calm")
        now_id = broker.publish(topic, "now")
        first = contract.expect(calm, promise)
        assert first.id == now_id, f"{promise}: another message came ({first.body!r})"
        first.ack()
        contract.expect(retrying, promise).nack(delay=delay)
        broker.publish(topic, "later", delay=delay)
        wait = contract.let_leases_expire(delay)
        mine = contract.expect_all(
            retrying, 2, f"{promise}: the retry and the delayed publish reach the group", wait=wait
        )
        theirs = contract.expect_all(
            calm, 1, f"{promise}: a due delayed publish reaches every group", wait=wait
        )
        # Sorted by repr: a body that came back as another type fails, not the sort.
        got = sorted(((d.body, d.attempt) for d in mine), key=repr)
        assert got == [("later", 1), ("now", 2)], (
            f"{promise}: the group that nacked got {got} "
            "(body, attempt), not the delayed publish as attempt 1 and its retry as 2"
        )
        assert [(d.body, d.attempt) for d in theirs] == [("later", 1)], (
            f"{promise}: a delayed retry stays in its own group, but the other group got "
            f"{[(d.body, d.attempt) for d in theirs]} (body, attempt)"
        )
        contract.expect_nothing(
            [retrying, calm], f"{promise}: a delayed message came twice, or to another group"
        )

    @requires(Capability.ACK | Capability.DEAD_LETTER | Capability.DELAY)
    def test_a_nack_reason_is_recorded_on_the_dead_letter(self, contract: ContractEnv) -> None:
        """A delayed nack's reason is the dead letter's x-dead-letter-reason at
        max_deliveries.

        When delayed retries (``nack(delay=..., reason=...)``) reach ``max_deliveries``,
        the last nack dead-letters the message at once (nothing is held for later) and
        its reason is the dead letter's ``x-dead-letter-reason``. (A
        rejecting nack's reason is checked without DELAY, by
        ``test_a_reject_reason_is_recorded_on_the_dead_letter``.)"""
        promise = "the nack's reason is recorded on the dead letter (max_deliveries)"
        broker = contract.broker(max_deliveries=2)
        topic = contract.topic("delay-dlq")
        dead_letters = broker.subscribe(broker.dead_letter_topic(topic))
        subscription = broker.subscribe(topic)
        message_id = broker.publish(topic, "job", headers={"trace-id": "t1"})
        delivery = contract.expect(subscription, promise)
        before = contract.timeline.now()
        delivery.nack(delay=0.2, reason="TimeoutError: first try")
        after = contract.timeline.now()
        delivery = contract.expect_lease_return(
            subscription, leased=(before, after), seconds=0.2, promise=promise
        )
        assert delivery.attempt == 2, f"{promise}: attempt {delivery.attempt}, not 2"
        delivery.nack(delay=0.2, reason="ValueError: bad input")
        held = broker.inspect(topic).scheduled
        assert held == 0, (
            f"{promise}: a delayed nack at max_deliveries dead-letters at once, but "
            f"inspect counts {held} held for later"
        )
        dead = contract.expect(dead_letters, f"{promise}: nothing was dead-lettered")
        contract.expect_nothing(subscription, f"{promise}: redelivered past max_deliveries")
        assert dead.id == message_id, f"{promise}: another message was dead-lettered"
        assert dead.headers.get("x-dead-letter-reason") == "ValueError: bad input", (
            f"{promise}: x-dead-letter-reason is {dead.headers.get('x-dead-letter-reason')!r}"
        )
        assert dead.headers.get("x-deliveries") == "2", (
            f"{promise}: x-deliveries is {dead.headers.get('x-deliveries')!r}, not 2"
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
    def test_a_delayed_publish_keeps_its_publish_time(self, contract: ContractEnv) -> None:
        """A delayed publish keeps the published_at of the publish call.

        A message held for a due time is delivered with the ``published_at`` (and the
        id) of the ``publish`` call that sent it, not of the moment it came due."""
        delay = _DELAYS[0]
        promise = "a delayed publish keeps its publish time"
        publisher, consumer = contract.broker(), contract.broker()
        topic = contract.topic("delay-published-at")
        subscription = consumer.subscribe(topic)
        before, wall_before = contract.timeline.now(), time.time()
        message_id = publisher.publish(topic, "later", delay=delay)
        after, wall_after = contract.timeline.now(), time.time()
        got = contract.expect_lease_return(
            subscription, leased=(before, after), seconds=delay, promise=promise
        )
        assert got.id == message_id, f"{promise}: another message came ({got.body!r})"
        published_at = got.message.published_at
        # The same allowance as for an immediate publish (the payload contract test).
        assert wall_before - 0.002 <= published_at <= wall_after + 0.002, (
            f"{promise}: published_at is {published_at - wall_before:+.3f} s from the "
            f"publish call, which took {wall_after - wall_before:.3f} s"
        )
        got.ack()

    @requires(Capability.ACK | Capability.DELAY)
    def test_a_delayed_nack_survives_its_consumer_closing(self, contract: ContractEnv) -> None:
        """A delayed retry survives its consumer closing: it comes back when due.

        The broker, not the consumer, holds a ``nack(delay=s)``: when the consumer that
        nacked closes its broker before the retry is due, the message still comes back
        s seconds after the nack, to another consumer, as attempt 2."""
        delay = _DELAYS[0]
        promise = "a delayed retry survives its consumer closing"
        consumer, other = contract.broker(), contract.broker()
        topic = contract.topic("delay-nack-close")
        subscription = consumer.subscribe(topic)
        message_id = other.publish(topic, "retry me")
        first = contract.expect(subscription, promise)
        competitor = other.subscribe(topic)
        before = contract.timeline.now()
        first.nack(delay=delay)
        after = contract.timeline.now()
        consumer.close()
        again = contract.expect_lease_return(
            competitor, leased=(before, after), seconds=delay, promise=promise
        )
        assert (again.id, again.attempt) == (message_id, 2), (
            f"{promise}: came back as attempt {again.attempt} of {again.body!r}, not 2"
        )
        again.ack()
        contract.expect_nothing(competitor, f"{promise}: it came back twice")

    @requires(Capability.PERSISTENT | Capability.DELAY)
    def test_a_delayed_publish_survives_its_publisher_closing(self, contract: ContractEnv) -> None:
        """A delayed publish survives its publisher closing: it is delivered when due.

        The broker, not the publisher, holds a ``publish(delay=s)``: when the publisher
        closes its broker before the message is due, it is still delivered s seconds
        after the publish, as attempt 1."""
        delay = _DELAYS[0]
        promise = "a delayed publish survives its publisher closing"
        publisher, consumer = contract.broker(), contract.broker()
        topic = contract.topic("delay-pub-close")
        subscription = consumer.subscribe(topic)
        before = contract.timeline.now()
        message_id = publisher.publish(topic, "later", delay=delay)
        after = contract.timeline.now()
        publisher.close()
        got = contract.expect_lease_return(
            subscription, leased=(before, after), seconds=delay, promise=promise
        )
        assert (got.id, got.body, got.attempt) == (message_id, "later", 1), (
            f"{promise}: delivered {got.body!r} as attempt {got.attempt}"
        )
        got.ack()
        contract.expect_nothing(subscription, f"{promise}: delivered twice")

    @requires(Capability.PERSISTENT | Capability.DELAY | Capability.ORDERED)
    def test_a_delayed_batch_comes_out_in_the_order_given(self, contract: ContractEnv) -> None:
        """A delayed publish_many comes out in the order given.

        Messages of one ``publish_many(..., delay=s)`` are due at the same time; one
        consumer gets them, when due, in the order they were given."""
        delay = _DELAYS[0]
        promise = "a delayed batch comes out in the order given"
        publisher, consumer = contract.broker(), contract.broker()
        topic = contract.topic("delay-batch")
        subscription = consumer.subscribe(topic, prefetch=2)
        before = contract.timeline.now()
        ids = publisher.publish_many(topic, range(5), delay=delay)
        after = contract.timeline.now()
        first = contract.expect_lease_return(
            subscription, leased=(before, after), seconds=delay, promise=promise
        )
        first.ack()
        got = [first, *contract.expect_all(subscription, len(ids) - 1, promise)]
        assert [d.id for d in got] == ids, (
            f"{promise}: published 0 to 4, came out as {[d.body for d in got]}"
        )
        contract.expect_nothing(subscription, f"{promise}: one came twice")

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
    # Two due at once, one before them: each profile tries distinct due times.
    @example(steps=[2, 1, 2])
    def test_random_delays_come_out_in_due_order(
        self, contract: ContractEnv, steps: list[int]
    ) -> None:
        """Messages published with different delays come out in due order, none early.

        On a ManualTimeline the clock stops just short of each due time in turn
        (nothing may come) and then on it (exactly the messages due by then come)."""
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
            if contract.timeline.manual:
                got = _each_when_due(contract, subscription, due, promise)
            else:
                got = _all_when_due(contract, subscription, due, promise)
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
            pytest.skip(f"{contract.backend_name} declares DELAY")
        promise = "a backend without DELAY refuses a delay"
        broker = contract.broker()
        topic = contract.topic("no-delay")
        subscription = broker.subscribe(topic)
        try:
            broker.publish(topic, "held?", delay=5)
        except Unsupported:
            pass
        else:
            pytest.fail(f"{promise}: publish(delay=5) was accepted")
        if contract.has(Capability.ACK):
            broker.publish(topic, "now")
            delivery = contract.expect(subscription, promise)
            assert delivery.body == "now", f"{promise}: the refused message was sent"
            try:
                delivery.nack(delay=5)
            except Unsupported:
                pass
            else:
                pytest.fail(f"{promise}: nack(delay=5) was accepted")
            assert not delivery.settled, f"{promise}: the refused nack settled the delivery"
            delivery.ack()
        contract.expect_nothing(subscription, f"{promise}: something was sent")


def _each_when_due(
    contract: ContractEnv,
    subscription: Subscription,
    due: dict[str, tuple[float, float]],
    promise: str,
) -> list[Delivery]:
    """On a ManualTimeline: move the clock just short of each distinct due time, where
    nothing may come, then onto it, where exactly the messages due by then must come."""
    timeline = contract.timeline
    got: list[Delivery] = []
    start = timeline.now()
    for moment in sorted({low for low, _ in due.values()}):
        _advance_to(timeline, moment - JUST_BEFORE)
        contract.expect_nothing(
            subscription, f"{promise}: one came before it was due ({moment - start:.2f}s)"
        )
        _advance_to(timeline, moment)
        wanted = {i for i, (low, _) in due.items() if low <= moment} - {d.id for d in got}
        for count in range(len(wanted)):
            delivery = subscription.receive(timeout=0)
            assert delivery is not None, (
                f"{promise}: only {count} of the {len(wanted)} due at {moment - start:.2f}s came"
            )
            assert delivery.id in wanted, (
                f"{promise}: message {delivery.body} came at {moment - start:.2f}s, "
                f"{due[delivery.id][0] - moment:.2f}s before it was due"
            )
            got.append(delivery)
            delivery.ack()
    contract.expect_nothing(subscription, f"{promise}: one came twice")
    return got


def _all_when_due(
    contract: ContractEnv,
    subscription: Subscription,
    due: dict[str, tuple[float, float]],
    promise: str,
) -> list[Delivery]:
    """On real time: wait past the last due time, checking each arrival is not early."""
    timeline = contract.timeline
    latest = max(high for _, high in due.values())
    wait = timeline.advance(max(latest - timeline.now(), 0.0))
    got: list[Delivery] = []
    while len(got) < len(due):
        delivery = subscription.receive(timeout=wait + contract.grace)
        assert delivery is not None, f"{promise}: only {len(got)} of {len(due)} came"
        arrived = timeline.now()
        assert arrived >= due[delivery.id][0] - timeline.slack, (
            f"{promise}: message {delivery.body} came {due[delivery.id][0] - arrived:.3f}s early"
        )
        got.append(delivery)
        delivery.ack()
    return got


def _advance_to(timeline: Timeline, moment: float) -> None:
    """Move a ManualTimeline onto ``moment`` (one advance of a float difference can
    fall a rounding error short of it; a second closes that gap)."""
    for _ in range(3):
        gap = moment - timeline.now()
        if gap <= 0:
            return
        timeline.advance(gap)
