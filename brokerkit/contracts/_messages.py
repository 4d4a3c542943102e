"""Contract tests of what a message is: round trips, bad input, isolation, pub/sub, close."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from brokerkit._capabilities import Capability
from brokerkit._topics import MAX_TOPIC_LENGTH
from brokerkit.contracts._harness import ContractEnv, requires
from brokerkit.contracts._profiles import contract_settings
from brokerkit.contracts._strategies import (
    bad_headers,
    bodies,
    headers,
    invalid_topics,
    topic_tails,
    unserializable_bodies,
)
from brokerkit.exceptions import (
    AlreadySettled,
    BrokerClosed,
    InvalidMessage,
    InvalidTopic,
    SerializationError,
)

__all__ = ["MessageContract", "canonical"]


def canonical(value: Any) -> Any:
    """``value`` with every scalar tagged by its type, so that ``1 == True`` and
    ``b"x" == "x"`` confusions fail a comparison."""
    if isinstance(value, dict):
        return ("dict", sorted((k, canonical(v)) for k, v in value.items()))
    if isinstance(value, (list, tuple)):
        return ("list", [canonical(v) for v in value])
    if isinstance(value, float):
        return ("float", repr(value))
    return (type(value).__name__, value)


class MessageContract:
    """Promises every backend keeps, whatever its capabilities."""

    @contract_settings()
    @given(body=bodies, message_headers=headers)
    @example(
        body="x",
        message_headers={"Trace-Id": "A", "trace-id": "b", "X-Empty": "", "ünï": "𝄞"},
    )
    def test_round_trip_keeps_body_headers_and_id(
        self, contract: ContractEnv, body: Any, message_headers: dict[str, str]
    ) -> None:
        """A message arrives with the body, headers and id it was published with.

        Headers are str to str, kept as given: names keep their case (``Trace-Id``
        and ``trace-id`` are two headers), and empty values and any Unicode survive.
        (Those an installed ``brokerkit_publish_start`` hook adds are published too.)"""
        with contract.scope():
            publisher, consumer = contract.broker(), contract.broker()
            topic = contract.topic("roundtrip")
            subscription = consumer.subscribe(topic)
            message_id = publisher.publish(topic, body, headers=message_headers)
            delivery = contract.expect(subscription, "round trip")
            promise = "round trip: a message arrives exactly as it was published"
            assert delivery.id == message_id, promise
            assert delivery.topic == topic, promise
            assert canonical(delivery.body) == canonical(body), promise
            sent = contract.sent_headers(message_id, message_headers)
            assert dict(delivery.headers) == sent, (
                f"{promise}: headers {sent!r} arrived as {dict(delivery.headers)!r}"
            )
            assert (delivery.attempt, delivery.redelivered) == (1, False), promise
            if isinstance(body, bytes):
                assert delivery.payload == body, promise
            delivery.ack()

    @contract_settings()
    @given(bad=unserializable_bodies, good=bodies)
    def test_unserializable_body_raises_and_publishes_nothing(
        self, contract: ContractEnv, bad: Any, good: Any
    ) -> None:
        """An unserializable body raises SerializationError; nothing is sent."""
        with contract.scope():
            broker = contract.broker()
            topic = contract.topic("badbody")
            subscription = broker.subscribe(topic)
            with pytest.raises(SerializationError):
                broker.publish(topic, bad)
            with pytest.raises(SerializationError):
                broker.publish_many(topic, [good, bad, good])
            sentinel = broker.publish(topic, "sentinel")
            delivery = contract.expect(subscription, "bad input")
            assert delivery.id == sentinel, "bad input: a refused publish still sent a message"
            delivery.ack()

    @contract_settings()
    @given(topic=invalid_topics)
    def test_invalid_topic_raises(self, contract: ContractEnv, topic: Any) -> None:
        """An invalid topic name raises InvalidTopic."""
        with contract.scope():
            broker = contract.broker()
            with pytest.raises(InvalidTopic):
                broker.publish(topic, "x")
            with pytest.raises(InvalidTopic):
                broker.subscribe(topic)

    @contract_settings()
    @given(bad=bad_headers)
    def test_bad_headers_raise_and_publish_nothing(self, contract: ContractEnv, bad: Any) -> None:
        """Bad headers raise InvalidMessage; nothing is sent."""
        with contract.scope():
            broker = contract.broker()
            topic = contract.topic("badheaders")
            subscription = broker.subscribe(topic)
            with pytest.raises(InvalidMessage):
                broker.publish(topic, "x", headers=bad)
            sentinel = broker.publish(topic, "sentinel")
            delivery = contract.expect(subscription, "bad input")
            assert delivery.id == sentinel, "bad input: a refused publish still sent a message"
            delivery.ack()

    @contract_settings()
    @given(counts=st.lists(st.integers(0, 4), min_size=2, max_size=3))
    def test_topics_are_isolated(self, contract: ContractEnv, counts: list[int]) -> None:
        """Topics are isolated, even when one name starts with another."""
        with contract.scope():
            publisher, consumer = contract.broker(), contract.broker()
            base = contract.topic("iso")
            # Names that share prefixes, so prefix-matching bugs leak too.
            topics = [base, *(f"{base}.{i}" for i in range(1, len(counts)))]
            subscriptions = [consumer.subscribe(t) for t in topics]
            published = {
                t: publisher.publish_many(t, [f"{t}#{i}" for i in range(n)])
                for t, n in zip(topics, counts, strict=True)
            }
            for topic, subscription in zip(topics, subscriptions, strict=True):
                got = contract.expect_all(subscription, len(published[topic]), "topic isolation")
                assert {d.id for d in got} == set(published[topic]), (
                    f"topic isolation: {topic} delivered messages of another topic"
                )
                assert all(d.topic == topic for d in got), "topic isolation: wrong topic"
            contract.expect_nothing(
                subscriptions, "topic isolation: a topic received another topic's message"
            )

    @contract_settings()
    @given(tails=st.lists(topic_tails, min_size=2, max_size=3, unique=True), group=topic_tails)
    @example(tails=["a/b", "a.b", "a:b"], group="a.b")
    @example(tails=["a", "a.", "a..b"], group="-")
    def test_every_valid_name_is_a_topic_of_its_own(
        self, contract: ContractEnv, tails: list[str], group: str
    ) -> None:
        """Every valid topic and group name works, and names never merge.

        A topic may hold letters, digits and ``_ . : / @ = + -`` (after its first
        character), and so may a group: a message published to any such topic reaches
        that topic's subscribers (in any such group) and no other topic's, however
        little their names differ; with DEAD_LETTER, so does its dead letter."""
        promise = "every valid name is a topic of its own"
        with contract.scope():
            publisher, consumer = contract.broker(), contract.broker()
            base = contract.topic("names")
            topics = [f"{base}.{tail}" for tail in tails]
            named = f"g{group}" if contract.has(Capability.COMPETING) else None
            subscriptions = [consumer.subscribe(t, group=named) for t in topics]
            dead_letters, deads = _each_topic_apart(
                contract, publisher, consumer, subscriptions, topics, promise, shown=repr
            )
            for dead in deads:
                dead.ack()
            contract.expect_nothing(
                [*subscriptions, *dead_letters], f"{promise}: a message reached two topics"
            )

    def test_the_longest_names_are_topics_of_their_own(self, contract: ContractEnv) -> None:
        """The longest valid topic and group names work, and never merge.

        A topic name may have 200 characters, not counting ``.dlq`` suffixes, so that
        every topic's dead-letter topic is valid too: two topics of 200 characters that
        differ only in their last one are two topics, and so are their dead-letter
        topics (and a dead letter's own, with DEAD_LETTER); with COMPETING and
        FANOUT, two groups of 200 characters that differ only in their last one are
        two groups, each getting every message."""
        promise = "the longest names are topics of their own"
        publisher, consumer = contract.broker(), contract.broker()
        base = contract.topic("longest")
        stem = f"{base}.".ljust(MAX_TOPIC_LENGTH - 1, "n")
        topics = [stem + last for last in "ab"]
        subscriptions = [consumer.subscribe(t) for t in topics]
        dead_letters, deads = _each_topic_apart(
            contract, publisher, consumer, subscriptions, topics, promise, shown=_ending
        )
        first_dead_letters = consumer.dead_letter_topic(topics[0])
        for dead in deads:
            if dead.headers.get("x-original-topic") == topics[0]:
                dead.nack(requeue=False)  # to the dead-letter topic's own, 208 characters
            else:
                dead.ack()
        if deads:
            last = consumer.subscribe(consumer.dead_letter_topic(first_dead_letters))
            twice = contract.expect(last, f"{promise}: a dead letter's own dead-letter topic")
            assert twice.headers.get("x-original-topic") == first_dead_letters, promise
            twice.ack()
        contract.expect_nothing(
            [*subscriptions, *dead_letters], f"{promise}: a message reached two topics"
        )
        if contract.has(Capability.COMPETING | Capability.FANOUT):
            topic = contract.topic("longest-groups")
            groups = [f"g{last}".rjust(MAX_TOPIC_LENGTH, "g") for last in "ab"]
            members = [consumer.subscribe(topic, group=g) for g in groups]
            sent = publisher.publish(topic, "to every group")
            for group, member in zip(groups, members, strict=True):
                got = contract.expect(
                    member, f"{promise}: the group of 200 characters ending {group[-8:]!r}"
                )
                assert got.id == sent, promise
                got.ack()
            contract.expect_nothing(members, f"{promise}: a group got the message twice")

    def test_new_subscriber_sees_what_its_backend_promises(self, contract: ContractEnv) -> None:
        """A new subscriber sees what its capabilities promise, in order.

        Pub/sub semantics: a subscriber gets every message published after it
        subscribed; with PERSISTENT it also gets the ones that waited for it."""
        publisher, consumer = contract.broker(), contract.broker()
        topic = contract.topic("late")
        before = publisher.publish(topic, "before")
        subscription = consumer.subscribe(topic)
        after = publisher.publish(topic, "after")
        expected = [before, after] if contract.has(Capability.PERSISTENT) else [after]
        got = contract.expect_all(subscription, len(expected), "pub/sub: a subscriber")
        assert [d.id for d in got] == expected, (
            "pub/sub: a new subscriber sees the messages published after it subscribed "
            "(and, with PERSISTENT, those that waited for it), in order"
        )
        contract.expect_nothing(subscription, "pub/sub: a message published once came twice")

    @requires(Capability.PATTERNS)
    @contract_settings()
    @given(rooms=st.lists(st.sampled_from("abc"), min_size=1, max_size=6))
    def test_pattern_subscription_gets_matching_topics_only(
        self, contract: ContractEnv, rooms: list[str]
    ) -> None:
        """A pattern subscription gets matching topics only, named concretely."""
        with contract.scope():
            publisher, consumer = contract.broker(), contract.broker()
            base = contract.topic("chat")
            subscription = consumer.subscribe(f"{base}:room:*", pattern=True)
            publisher.publish(f"{base}:lobby", "not a room")
            publisher.publish(f"{base}x:room:a", "another namespace")
            wanted = {publisher.publish(f"{base}:room:{r}", r): r for r in rooms}
            got = contract.expect_all(subscription, len(wanted), "patterns")
            assert {d.id for d in got} == set(wanted), "patterns: wrong messages matched"
            for delivery in got:
                assert delivery.topic == f"{base}:room:{wanted[delivery.id]}", (
                    "patterns: a delivery names the concrete topic it was published to"
                )
            contract.expect_nothing(subscription, "patterns: a topic that does not match leaked")

    @requires(Capability.PATTERNS | Capability.FANOUT)
    def test_pattern_subscriptions_without_a_group_each_get_every_message(
        self, contract: ContractEnv
    ) -> None:
        """Without a group, each pattern subscription gets every message it matches.

        Pattern subscriptions that name no group do not compete: each gets every
        message of the topics it matches, once, whether they share a pattern, a broker,
        or neither."""
        promise = "pattern subscriptions without a group each get every message"
        publisher, first, second = contract.broker(), contract.broker(), contract.broker()
        base = contract.topic("fanout-glob")
        rooms, everything = f"{base}:room:*", f"{base}:*"
        subscriptions = [
            ("the first", first.subscribe(rooms, pattern=True), False),
            ("another broker's", second.subscribe(rooms, pattern=True), False),
            ("the same broker's second", first.subscribe(rooms, pattern=True), False),
            ("a wider pattern's", second.subscribe(everything, pattern=True), True),
        ]
        in_rooms = publisher.publish_many(f"{base}:room:a", ["a1", "a2"])
        in_rooms += publisher.publish_many(f"{base}:room:b", ["b1"])
        in_lobby = publisher.publish_many(f"{base}:lobby", ["l1"])
        for which, subscription, wide in subscriptions:
            wanted = in_rooms + in_lobby if wide else in_rooms
            got = contract.expect_all(subscription, len(wanted), f"{promise} ({which})")
            assert sorted(d.id for d in got) == sorted(wanted), (
                f"{promise}: {which} got {sorted(d.body for d in got)}"
            )
        contract.expect_nothing([s for _, s, _ in subscriptions], f"{promise}, once")

    @contract_settings()
    @given(
        first=st.sampled_from(["ack", "nack"]),
        second=st.sampled_from(["ack", "nack", "reject"]),
    )
    def test_settling_twice_raises(self, contract: ContractEnv, first: str, second: str) -> None:
        """Settling a delivery twice raises AlreadySettled."""
        with contract.scope():
            broker = contract.broker()
            topic = contract.topic("twice")
            subscription = broker.subscribe(topic)
            broker.publish(topic, "x")
            delivery = contract.expect(subscription, "settling twice")
            _settle(delivery, first)
            assert delivery.settled
            with pytest.raises(AlreadySettled):
                _settle(delivery, second)
            if first == "nack" and contract.has(Capability.ACK):
                again = contract.expect(subscription, "settling twice")
                with pytest.raises(AlreadySettled):
                    broker.ack(again, again)
                again.ack()

    def test_close_refuses_further_use(self, contract: ContractEnv) -> None:
        """A closed broker refuses further use; close is idempotent."""
        broker = contract.broker()
        topic = contract.topic("close")
        subscription = broker.subscribe(topic)
        broker.publish(topic, "x")
        delivery = contract.expect(subscription, "close")
        broker.close()
        broker.close()  # a second close does nothing
        assert broker.closed, "close: the broker says it is closed"
        assert subscription.closed, "close ends every subscription"
        with pytest.raises(BrokerClosed):
            broker.publish(topic, "y")
        with pytest.raises(BrokerClosed):
            broker.subscribe(topic)
        with pytest.raises(BrokerClosed):
            subscription.receive(timeout=0)
        with pytest.raises(BrokerClosed):
            delivery.ack()
        with contract.broker() as other:
            assert not other.closed
        assert other.closed, "leaving a with-block closes the broker"

    @requires(Capability.PERSISTENT | Capability.COMPETING)
    @pytest.mark.parametrize("closing", ["subscription", "broker"])
    def test_closing_during_a_receive_strands_nothing(
        self, contract: ContractEnv, closing: str
    ) -> None:
        """Closing during a receive ends it and strands no message.

        A receive under way in another thread when its subscription (or broker) is
        closed ends with BrokerClosed, and nothing is left leased to the closed consumer:
        the group's other members get every message at once, not after a timeout."""
        topic = contract.topic("closing")
        closing_broker = contract.broker(visibility_timeout=60)
        waiting = closing_broker.subscribe(topic, prefetch=10)
        outcome: list[object] = []
        started = threading.Event()

        def receive() -> None:
            started.set()
            try:
                outcome.append(waiting.receive(timeout=10))
            except Exception as exc:  # reported below: only BrokerClosed keeps the promise
                outcome.append(exc)

        thread = threading.Thread(target=receive)
        thread.start()
        started.wait(10)
        if closing == "broker":
            closing_broker.close()
        else:
            waiting.close()
        publisher = contract.broker()
        ids = publisher.publish_many(topic, range(10))
        thread.join(15)
        assert not thread.is_alive(), "closing: a receive under way must end on close"
        assert len(outcome) == 1, f"closing: one outcome expected, got {outcome!r}"
        assert isinstance(outcome[0], BrokerClosed), (
            f"closing: the receive under way should end with BrokerClosed, got {outcome!r}"
        )
        other = publisher.subscribe(topic, prefetch=10)
        got = contract.expect_all(other, len(ids), "closing strands nothing")
        assert sorted(d.id for d in got) == sorted(ids), "closing strands nothing"


def _settle(delivery: Any, how: str) -> None:
    if how == "ack":
        delivery.ack()
    else:
        delivery.nack(requeue=how == "nack")


def _ending(topic: str) -> str:
    """How a message names a topic too long to show whole."""
    return f"the topic ending {topic[-8:]!r}"


def _each_topic_apart(
    contract: ContractEnv,
    publisher: Any,
    consumer: Any,
    subscriptions: list[Any],
    topics: list[str],
    promise: str,
    shown: Callable[[str], str],
) -> tuple[list[Any], list[Any]]:
    """Publish one message to each of ``topics`` (each with its subscription of
    ``consumer``), and check that each topic's subscriber gets its own; with ACK and
    DEAD_LETTER, reject each and check that each dead letter reaches its own topic's
    dead-letter topic. Published, and dead-lettered, in the reverse of the order they
    are read in: where two names were one topic, the first reader gets the other's.

    :returns: the dead-letter topics' subscriptions and the dead letters, unsettled
        (none without DEAD_LETTER).
    """
    rejects = contract.has(Capability.ACK | Capability.DEAD_LETTER)
    dead_letters = [consumer.subscribe(consumer.dead_letter_topic(t)) for t in topics if rejects]
    published = {publisher.publish(t, t): t for t in reversed(topics)}
    for topic, subscription in zip(topics, subscriptions, strict=True):
        delivery = contract.expect(subscription, f"{promise}: {shown(topic)}")
        source = published.get(delivery.id)
        assert (source, delivery.topic) == (topic, topic), (
            f"{promise}: a subscriber of {shown(topic)} got the message of "
            f"{shown(source or '')}, as from {shown(delivery.topic)}"
        )
        if rejects:
            delivery.nack(requeue=False)
        else:
            delivery.ack()
    deads = []
    for topic, subscription in reversed(list(zip(topics, dead_letters, strict=False))):
        dead = contract.expect(subscription, f"{promise}: the dead letter of {shown(topic)}")
        original = dead.headers.get("x-original-topic", "")
        assert original == topic, (
            f"{promise}: the dead-letter topic of {shown(topic)} got the dead letter of "
            f"{shown(original)}"
        )
        deads.append(dead)
    return dead_letters, deads
