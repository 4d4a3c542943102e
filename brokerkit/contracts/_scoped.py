"""Contract tests of topic-scoped operations: purge, inspect and maxlen; and, from its
base :class:`~brokerkit.contracts._patterns.PatternContract`, the glob syntax of
pattern subscriptions."""

from __future__ import annotations

import time

import pytest

from brokerkit._capabilities import Capability
from brokerkit._inspect import DLQ_GROUP, GroupInfo
from brokerkit.contracts._dead_counts import settled_dead_lettered
from brokerkit.contracts._harness import ContractEnv, requires
from brokerkit.contracts._patterns import GLOB_CASES as GLOB_CASES  # (imported from here too)
from brokerkit.contracts._patterns import PatternContract
from brokerkit.exceptions import StaleDelivery, Unsupported

#: Seconds a reported age may exceed the time since publishing: the server's clock
#: (Redis, NATS) against this process's, on another host.
CLOCK_SKEW = 5.0
#: On a ManualTimeline, what a reported age may differ from the time the clock was
#: moved by (the rounding of a float subtraction).
_EXACT = 1e-6

__all__ = ["ScopeContract"]


class ScopeContract(PatternContract):
    """Operations on one topic touch that topic only, and do what they say; pattern
    subscriptions match what their glob says (:class:`PatternContract`)."""

    @requires(Capability.PERSISTENT)
    def test_purge_removes_only_this_topics_waiting_messages(self, contract: ContractEnv) -> None:
        """purge(topic) removes that topic's waiting messages only.

        ``purge(topic)`` removes the messages waiting in that topic, returns how many
        (counting, on a backend that keeps history, the delivered ones it drops too),
        and touches neither deliveries already handed out nor any other topic (not even
        one whose name starts with it)."""
        promise = "purge is scoped"
        broker = contract.broker()
        topic = contract.topic("purge")
        sibling = f"{topic}.x"
        subscription = broker.subscribe(topic)
        other = broker.subscribe(sibling)
        broker.publish_many(topic, range(5))
        kept = broker.publish_many(sibling, range(3))
        held = contract.expect(subscription, promise)
        removed = broker.purge(topic)
        # A backend that keeps a log for replay also counts the delivered ones it drops.
        assert 4 <= removed <= 5, (
            f"{promise}: purge returned {removed}; 4 messages were waiting, 5 stored"
        )
        contract.expect_nothing(subscription, f"{promise}: a purged message was delivered")
        if contract.has(Capability.ACK):
            try:
                held.ack()  # a delivery already handed out is still the holder's to settle
            except StaleDelivery:
                pytest.fail(f"{promise}: purge took a delivery that was already handed out")
        got = contract.expect_all(other, len(kept), f"{promise}: another topic lost messages")
        assert sorted(d.id for d in got) == sorted(kept), promise
        after = broker.publish(topic, "after")
        assert contract.expect(subscription, f"{promise}: a purged topic works on").id == after
        assert broker.purge(contract.topic("never-used")) == 0, f"{promise}: an unused topic"

    @requires(Capability.PERSISTENT | Capability.ACK | Capability.COMPETING)
    def test_inspect_counts_are_per_topic(self, contract: ContractEnv) -> None:
        """inspect(topic) counts that topic's messages, in-flight and dead letters.

        ``inspect(topic)`` reports that topic's length before anyone reads it, its
        in-flight deliveries overall and per group (by name where groups are separate,
        with FANOUT), and its dead letters; another
        topic's traffic (even one whose name starts with it) never shows up in it."""
        promise = "inspect is scoped"
        broker = contract.broker()
        topic = contract.topic("inspect")
        sibling = f"{topic}.x"
        fresh = broker.inspect(topic)
        assert (fresh.length, fresh.in_flight, fresh.dead_lettered) == (0, 0, 0), (
            f"{promise}: a new topic is empty, got {fresh!r}"
        )
        # The group exists before the messages: without REPLAY a new group may start
        # at the end of the topic (a new queue bound to an AMQP exchange does).
        subscription = broker.subscribe(topic, group="workers", prefetch=3)
        broker.publish_many(topic, range(6))
        broker.publish_many(sibling, range(4))
        info = broker.inspect(topic)
        assert info.length == 6, f"{promise}: length {info.length}, not the 6 published"
        held = [contract.expect(subscription, promise) for _ in range(3)]
        rejected = 0
        if contract.has(Capability.DEAD_LETTER):
            held.pop().nack(requeue=False)
            rejected = 1
        info = broker.inspect(topic)
        assert info.in_flight == len(held), (
            f"{promise}: in_flight {info.in_flight}, but {len(held)} deliveries are out"
        )
        pending = sum(g.pending for g in info.groups)
        assert pending == len(held), (
            f"{promise}: the groups' pending deliveries add up to {pending}, not {len(held)}: "
            f"{info.groups!r}"
        )
        if contract.has(Capability.FANOUT):  # groups are separate: each has its name
            groups = {g.name: g for g in info.groups}
            assert "workers" in groups, f"{promise}: the group is missing from {info.groups!r}"
            assert groups["workers"].pending == len(held), f"{promise}: per-group pending"
        assert info.dead_lettered == rejected, f"{promise}: dead_lettered {info.dead_lettered}"
        waiting = 6 - len(held) - rejected
        assert waiting <= info.length <= 6, f"{promise}: length {info.length} after reading"
        other = broker.inspect(sibling)
        assert (other.length, other.in_flight, other.dead_lettered) == (4, 0, 0), (
            f"{promise}: another topic's counts changed: {other!r}"
        )
        broker.ack(*held)
        settled = broker.inspect(topic)
        assert settled.in_flight == 0, f"{promise}: acked deliveries still count as in flight"

    @requires(Capability.PERSISTENT | Capability.ACK | Capability.COMPETING)
    def test_topics_and_the_oldest_waiting_age(self, contract: ContractEnv) -> None:
        """topics() lists what holds messages; the oldest waiting age is honest.

        ``topics()`` lists every topic that holds a waiting message, and never a topic
        nobody used (a backend that cannot list its topics raises
        :class:`~brokerkit.Unsupported`). ``inspect(topic).oldest_waiting_age`` is None
        once the group has been handed everything, settled or not; while messages wait it is None
        (the backend cannot tell) or a number of seconds, no more than the time since
        they were published (give or take the server's clock)."""
        promise = "topics and the oldest waiting age"
        broker = contract.broker()
        topic = contract.topic("listed")
        # The group exists before the messages: a new AMQP queue starts at the end.
        subscription = broker.subscribe(topic, group="workers")
        before = time.time()
        broker.publish_many(topic, ["a", "b"])
        try:
            listed: list[str] | None = broker.topics()
        except Unsupported:
            listed = None
        if listed is not None:
            assert topic in listed, f"{promise}: {topic!r} holds messages but was not listed"
            unused = contract.topic("never-used")
            assert unused not in listed, f"{promise}: an unused topic was listed"
        age = broker.inspect(topic).oldest_waiting_age
        if age is not None:
            assert 0 <= age <= time.time() - before + CLOCK_SKEW, (
                f"{promise}: the oldest message waits {age} s, published "
                f"{time.time() - before:.3f} s ago"
            )
        held = [contract.expect(subscription, promise) for _ in range(2)]
        handed_out = broker.inspect(topic).oldest_waiting_age
        assert handed_out is None, (
            f"{promise}: nothing waits, but the oldest waits {handed_out} s (while "
            f"{len(held)} deliveries are handed out, unsettled)"
        )
        broker.ack(*held)
        drained = broker.inspect(topic).oldest_waiting_age
        assert drained is None, f"{promise}: nothing waits, but the oldest waits {drained} s"

    @requires(Capability.PERSISTENT | Capability.ACK | Capability.COMPETING)
    def test_the_oldest_in_flight_age(self, contract: ContractEnv) -> None:
        """inspect's oldest_in_flight_age is None with nothing out, else an honest age.

        ``inspect(topic).oldest_in_flight_age`` is None while no delivery is out and
        again once all are settled; while one is out it is None (the backend cannot
        tell) or the seconds since it was handed out (or its lease last renewed): no
        more than the time since then, give or take the server's clock, and on a
        ManualTimeline exactly the time the clock was moved."""
        promise = "the oldest in-flight age"
        broker = contract.broker(visibility_timeout=60)
        topic = contract.topic("in-flight-age")
        # Two members of one group, one message each (the group exists before the
        # messages: a new AMQP queue starts at the end).
        early, late = (broker.subscribe(topic, group="workers", prefetch=1) for _ in "ab")
        broker.publish_many(topic, ["a", "b"])
        waiting = broker.inspect(topic).oldest_in_flight_age
        assert waiting is None, f"{promise}: nothing is out, but the oldest is out {waiting} s"
        before = contract.timeline.now()
        first = contract.expect(early, promise)
        after = contract.timeline.now()
        if contract.timeline.manual:
            contract.timeline.advance(1.0)
        second = contract.expect(late, promise)
        now = contract.timeline.now()
        age = broker.inspect(topic).oldest_in_flight_age
        if age is not None and contract.timeline.manual:
            assert now - after - _EXACT <= age <= now - before + _EXACT, (
                f"{promise}: the oldest delivery has been out {now - after} s, "
                f"but inspect says {age} s"
            )
        elif age is not None:
            assert 0 <= age <= contract.timeline.now() - before + CLOCK_SKEW, (
                f"{promise}: the oldest delivery has been out "
                f"{contract.timeline.now() - before:.3f} s, but inspect says {age} s"
            )
        first.ack()
        if age is not None and contract.timeline.manual:
            # The one left out was handed out after the clock moved.
            younger = broker.inspect(topic).oldest_in_flight_age
            assert younger is not None, f"{promise}: a delivery is out, and the age is gone"
            assert abs(younger - (contract.timeline.now() - now)) <= _EXACT, (
                f"{promise}: the oldest delivery out was handed out just now, "
                f"but inspect says {younger} s"
            )
        second.ack()
        settled = broker.inspect(topic).oldest_in_flight_age
        assert settled is None, f"{promise}: nothing is out, but the oldest is out {settled} s"

    @requires(Capability.PERSISTENT | Capability.ACK)
    def test_topics_lists_a_topic_whose_messages_are_all_handed_out(
        self, contract: ContractEnv
    ) -> None:
        """topics() lists a topic whose only messages are handed out, unsettled.

        A delivery out is something the topic holds: ``topics()`` lists a topic whose
        every message has been handed out and not yet settled (a backend that cannot
        list its topics raises :class:`~brokerkit.Unsupported`)."""
        promise = "topics() lists a topic whose messages are all handed out"
        broker = contract.broker(visibility_timeout=60)
        topic = contract.topic("listed-out")
        subscription = broker.subscribe(topic)
        message_id = broker.publish(topic, "held")
        held = contract.expect(subscription, promise)
        assert held.id == message_id, f"{promise}: another message came"
        try:
            listed = broker.topics()
        except Unsupported:
            pytest.skip("the backend cannot list its topics (topics() raises Unsupported)")
        finally:
            held.ack()
        assert topic in listed, (
            f"{promise}: {topic!r} has a delivery out, unsettled, but was not listed"
        )

    @requires(Capability.PERSISTENT | Capability.COMPETING)
    def test_a_groups_lag_and_its_consumers_pending(self, contract: ContractEnv) -> None:
        """A group's lag counts what it has not been handed; its consumers' pending add up.

        ``GroupInfo.lag`` is None (the backend cannot tell) or the number of messages
        the group has not been handed yet; where a group lists its consumers, their
        ``pending`` add up to the group's, and the consumer holding a delivery is
        listed by the name it subscribed with (``consumer=``), holding it. A backend
        whose ``inspect`` lists no group at all (``groups=()``) has nothing here to
        check."""
        promise = "a group's lag and its consumers' pending"
        broker = contract.broker(visibility_timeout=60)
        topic = contract.topic("lag")
        holder = "lag-holder"
        subscription = broker.subscribe(topic, group="workers", prefetch=1, consumer=holder)
        broker.publish_many(topic, range(3))

        if not broker.inspect(topic).groups:
            return  # groups not listed: no lag or pending said

        def group() -> GroupInfo:
            groups = broker.inspect(topic).groups
            if contract.has(Capability.FANOUT):  # groups are separate: each has its name
                found = [g for g in groups if g.name == "workers"]
            else:  # one group of consumers, whatever its name
                found = list(groups)
            assert len(found) == 1, f"{promise}: the group is not one of {groups!r}"
            return found[0]

        def check(lag: int, pending: int, when: str, *, pushed: int = 0) -> None:
            """The group's counts, where up to ``pushed`` more messages may have gone
            from its lag to its pending meanwhile."""
            info = group()
            handed = 0 if info.lag is None else lag - info.lag
            assert info.lag is None or 0 <= handed <= pushed, (
                f"{promise}: {when}, the group has not been handed {lag}, but its lag is "
                f"{info.lag}: {info!r}"
            )
            acked = contract.has(Capability.ACK)
            assert not acked or info.pending - pending in (0, handed), (
                f"{promise}: {when}, {pending} deliveries are out, but the group's pending "
                f"is {info.pending}"
            )
            held = sum(c.pending for c in info.consumers)
            assert not info.consumers or held == info.pending, (
                f"{promise}: {when}, the consumers' pending add up to {held}, the group's "
                f"is {info.pending}: {info.consumers!r}"
            )

        check(3, 0, "before any receive")
        delivery = contract.expect(subscription, promise)
        check(2, 1, "with one delivery out")
        consumers = {c.name: c.pending for c in group().consumers}
        holding = 1 if contract.has(Capability.ACK) else 0
        assert not consumers or consumers.get(holder) == holding, (
            f"{promise}: the consumer {holder!r} holds one delivery, but the group lists "
            f"its consumers as {consumers!r}"
        )
        delivery.ack()
        # A backend that pushes to a consumer (AMQP's basic.qos) may hand it the next one.
        check(2, 0, "after its ack", pushed=1)

    @requires(Capability.ACK | Capability.DEAD_LETTER)
    def test_topics_lists_dead_letter_topics(self, contract: ContractEnv) -> None:
        """topics() lists a dead-letter topic that holds a dead letter.

        A dead-letter topic is a topic: once it holds a dead letter, ``topics()``
        lists it, whether or not anyone reads it (a backend that cannot list its topics
        raises :class:`~brokerkit.Unsupported`)."""
        promise = "topics() lists dead-letter topics"
        broker = contract.broker()
        topic = contract.topic("listed-dlq")
        subscription = broker.subscribe(topic)
        broker.publish(topic, "poison")
        contract.expect(subscription, promise).nack(requeue=False)
        # A server may dead-letter on its own time (RabbitMQ's dead-letter exchange).
        deadline = time.monotonic() + contract.grace
        while broker.inspect(topic).dead_lettered < 1 and time.monotonic() < deadline:
            contract.expect_nothing(subscription, f"{promise}: the rejected message came back")
        try:
            listed = broker.topics()
        except Unsupported:
            pytest.skip("the backend cannot list its topics (topics() raises Unsupported)")
        dead_letter_topic = broker.dead_letter_topic(topic)
        assert dead_letter_topic in listed, (
            f"{promise}: {dead_letter_topic!r} holds a dead letter but was not listed"
        )

    @requires(Capability.ACK | Capability.DEAD_LETTER)
    def test_dead_lettered_counts_the_dead_letters_not_yet_dealt_with(
        self, contract: ContractEnv
    ) -> None:
        """inspect's dead_lettered drops as the dead letters are read and acked.

        ``dead_lettered`` counts the dead letters still waiting to be dealt with: N
        once N messages are dead-lettered, 0 once the dead-letter topic's default
        group (a plain ``subscribe(broker.dead_letter_topic(topic))``) has received
        and acked them all, on a backend that keeps settled messages for replay too
        (an alert on dead letters > 0 clears once they are handled). Where the
        backend says it cannot tell that group's lag (``entries_read`` None: Redis
        6.2; not a ``lag`` of None), no more than every one stored, its upper bound."""
        promise = "dead_lettered counts the dead letters not yet dealt with"
        count = 3
        broker = contract.broker()
        topic = contract.topic("dead-count")
        subscription = broker.subscribe(topic)
        broker.publish_many(topic, range(count))
        for _ in range(count):
            contract.expect(subscription, promise).nack(requeue=False)
        stray = f"{promise}: a rejected message came back"
        dead, _ = settled_dead_lettered(contract, broker, topic, count, subscription, stray)
        assert dead == count, f"{promise}: {count} dead-lettered, dead_lettered is {dead}"
        dead_letters = broker.subscribe(broker.dead_letter_topic(topic))
        for _ in range(count):
            contract.expect(dead_letters, promise).ack()
        stray = f"{promise}: an acked dead letter came back"
        dead, bound = settled_dead_lettered(contract, broker, topic, 0, dead_letters, stray)
        assert dead == 0 or (bound is not None and dead <= bound), (
            f"{promise}: every dead letter was received and acked from "
            f"{broker.dead_letter_topic(topic)!r}, dead_lettered is still {dead}"
            + ("" if bound is None else f", more than the {bound} stored (its upper bound)")
        )

    @requires(Capability.ACK | Capability.DEAD_LETTER | Capability.FANOUT | Capability.REPLAY)
    def test_dead_lettered_counts_by_the_groups_that_deal_with_them(
        self, contract: ContractEnv
    ) -> None:
        """dead_lettered counts by the default and brokerkit-dlq groups, the fewer.

        Of the dead-letter topic's groups, only those that deal with dead letters
        count (:data:`~brokerkit._inspect.DEAD_LETTER_GROUPS`): its default group and
        ``brokerkit-dlq``, the one ``brokerkit dlq`` reads with; ``dead_lettered`` is
        the fewer either has not settled. Another group, a tail from ``"latest"``
        that read and acked every dead letter, clears nothing. Where the backend says
        it cannot tell those groups' lag cheaply (as above: redis+stream on Redis 6.2, or
        a lag whose count stopped at its limit),
        the count is an upper bound: no fewer than they have not settled, and no more
        than every one stored."""
        promise = "dead_lettered counts by the groups that deal with dead letters"
        count = 3
        broker = contract.broker()
        topic = contract.topic("dead-groups")
        dead_letter_topic = broker.dead_letter_topic(topic)
        subscription = broker.subscribe(topic)
        tail = broker.subscribe(dead_letter_topic, group="tail", start="latest")
        broker.publish_many(topic, range(count))
        for _ in range(count):
            contract.expect(subscription, promise).nack(requeue=False)
        for _ in range(count):
            contract.expect(tail, f"{promise}: the tail got no dead letter").ack()
        stray = f"{promise}: an acked dead letter came back"
        dead, _ = settled_dead_lettered(contract, broker, topic, count, tail, stray)
        assert dead == count, (
            f"{promise}: a group 'tail' read and acked all {count} dead letters, and "
            f"dead_lettered is {dead}, not {count}: that group does not count"
        )
        # The default group, which has read nothing, and brokerkit-dlq, which deals with
        # all but one: the fewer is one.
        broker.subscribe(dead_letter_topic)
        reader = broker.subscribe(dead_letter_topic, group=DLQ_GROUP, start="earliest")
        for _ in range(count - 1):
            contract.expect(reader, f"{promise}: {DLQ_GROUP} got no dead letter").ack()
        dead, bound = settled_dead_lettered(contract, broker, topic, 1, tail, stray)
        assert dead == 1 or (bound is not None and 1 <= dead <= bound), (
            f"{promise}: {DLQ_GROUP} read and acked {count - 1} of {count} dead letters "
            f"(the default group none), and dead_lettered is {dead}, not 1"
            + ("" if bound is None else f" (nor between 1 and the {bound} stored)")
        )

    @requires(Capability.BOUNDED | Capability.PERSISTENT)
    def test_maxlen_caps_the_topic_dropping_the_oldest(self, contract: ContractEnv) -> None:
        """maxlen caps a topic, dropping the oldest messages first.

        With ``maxlen=N`` a topic keeps about N messages (at most N + 100, for
        approximate trimming) and drops the oldest first: the newest N always survive."""
        promise = "maxlen caps the topic"
        maxlen, published = 5, 300
        broker = contract.broker(maxlen=maxlen)
        topic = contract.topic("bounded")
        ids = broker.publish_many(topic, range(published))
        length = broker.inspect(topic).length
        assert maxlen <= length <= maxlen + 100, (
            f"{promise}: {length} messages kept with maxlen={maxlen}"
        )
        subscription = broker.subscribe(topic, prefetch=10)
        got = contract.expect_all(subscription, length, f"{promise}: kept messages are readable")
        contract.expect_nothing(subscription, f"{promise}: more than the kept messages came")
        assert sorted(d.id for d in got) == sorted(ids[-length:]), (
            f"{promise}: the oldest messages are dropped first, the newest {maxlen} kept"
        )
