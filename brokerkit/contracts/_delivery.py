"""Contract tests of delivery: no loss, no duplicates, order, acks, leases, dead letters,
competing consumers and fan-out."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from brokerkit._broker import Broker
from brokerkit._capabilities import Capability
from brokerkit._topics import DEAD_LETTER_SUFFIX, MAX_DEAD_LETTER_LEVELS
from brokerkit.contracts._harness import (
    LEASE_TOLERANCE,
    VISIBILITY_TIMEOUT,
    ContractEnv,
    requires,
)
from brokerkit.contracts._messages import canonical
from brokerkit.contracts._profiles import contract_settings
from brokerkit.contracts._strategies import bodies

__all__ = ["DeliveryContract"]

_VT = VISIBILITY_TIMEOUT
_prefetches = st.integers(1, 4)


class DeliveryContract:
    """Promises about who gets which message, how often and in what order."""

    #: Called with a broker to model a hung consumer: its leases must stop being
    #: renewed, while the broker stays open (set by :class:`BrokerContract`).
    suspend_renewals: Callable[[Broker], None]

    @requires(Capability.PERSISTENT)
    @contract_settings()
    @given(payloads=st.lists(bodies, min_size=1, max_size=12), prefetch=_prefetches)
    def test_no_loss(self, contract: ContractEnv, payloads: list[Any], prefetch: int) -> None:
        """No loss: every published message is delivered."""
        with contract.scope():
            publisher, consumer = contract.broker(), contract.broker()
            topic = contract.topic("noloss")
            half = len(payloads) // 2
            ids = [publisher.publish(topic, body) for body in payloads[:half]]
            ids += publisher.publish_many(topic, payloads[half:])
            subscription = consumer.subscribe(topic, prefetch=prefetch)
            got = contract.expect_all(subscription, len(ids), "no loss")
            assert sorted(d.id for d in got) == sorted(ids), "no loss: other messages came"

    @requires(Capability.ACK)
    @contract_settings("timed")
    @given(count=st.integers(1, 10), prefetch=_prefetches)
    def test_acked_messages_never_come_back(
        self, contract: ContractEnv, count: int, prefetch: int
    ) -> None:
        """No duplicates, and ack is final: an acked message never comes back.

        No duplicates when every delivery is acked in time, and ack is final: not
        even the visibility timeout brings an acked message back, however late a
        redelivery may come (the lease tolerance past the timeout)."""
        with contract.scope():
            publisher = contract.broker()
            consumer = contract.broker(visibility_timeout=_VT)
            topic = contract.topic("final")
            subscription = consumer.subscribe(topic, prefetch=prefetch)
            ids = publisher.publish_many(topic, range(count))
            got = contract.expect_all(subscription, count, "no duplicates")
            assert len({d.id for d in got}) == count, "no duplicates: a message came twice"
            assert {d.id for d in got} == set(ids)
            # Every lease began before now: listen as long as a redelivery of any of them
            # may lag on real time (a manual clock jumps as far, for free).
            timeline = contract.timeline
            lag = LEASE_TOLERANCE if timeline.manual else timeline.tolerance
            wait = contract.let_leases_expire(_VT + lag)
            contract.expect_nothing(
                subscription, "ack is final: an acked message was delivered again", wait=wait
            )

    @requires(Capability.ORDERED)
    @contract_settings()
    @given(count=st.integers(2, 15), prefetch=_prefetches, batch=st.booleans())
    def test_fifo_for_one_consumer(
        self, contract: ContractEnv, count: int, prefetch: int, batch: bool
    ) -> None:
        """One consumer with no redeliveries sees publish order (FIFO)."""
        with contract.scope():
            publisher, consumer = contract.broker(), contract.broker()
            topic = contract.topic("fifo")
            subscription = consumer.subscribe(topic, prefetch=prefetch)
            if batch:
                ids = publisher.publish_many(topic, range(count))
            else:
                ids = [publisher.publish(topic, i) for i in range(count)]
            got = contract.expect_all(subscription, count, "FIFO")
            assert [d.id for d in got] == ids, (
                "FIFO: one consumer sees messages in publish order; got bodies "
                f"{[d.body for d in got]}"
            )

    @requires(Capability.ACK)
    @contract_settings()
    @given(nacks=st.integers(1, 4))
    def test_nack_requeue_redelivers_with_the_next_attempt(
        self, contract: ContractEnv, nacks: int
    ) -> None:
        """nack(requeue=True) redelivers the message with attempt + 1."""
        with contract.scope():
            broker = contract.broker()
            topic = contract.topic("nack")
            subscription = broker.subscribe(topic)
            message_id = broker.publish(topic, {"n": nacks})
            for attempt in range(1, nacks + 2):
                delivery = contract.expect(subscription, "nack requeue: the message comes back")
                assert (delivery.id, delivery.attempt, delivery.redelivered) == (
                    message_id,
                    attempt,
                    attempt > 1,
                ), "nack requeue: redelivered with attempt + 1"
                assert delivery.body == {"n": nacks}
                if attempt <= nacks:
                    delivery.nack(requeue=True)
                else:
                    delivery.ack()
            contract.expect_nothing(subscription, "ack is final: an acked message came back")

    @requires(Capability.ACK | Capability.PERSISTENT)
    @contract_settings("timed")
    @given(prefetch=_prefetches, extra=st.integers(0, 3))
    def test_unsettled_delivery_comes_back_after_the_visibility_timeout(
        self, contract: ContractEnv, prefetch: int, extra: int
    ) -> None:
        """A crashed consumer's deliveries come back after the visibility timeout.

        A consumer that crashed (closed its broker without settling) loses its
        deliveries to the next consumer once the visibility timeout passes."""
        promise = "an unsettled delivery comes back after the visibility timeout"
        with contract.scope():
            crashed = contract.broker(visibility_timeout=_VT)
            survivor = contract.broker(visibility_timeout=_VT)
            topic = contract.topic("lease")
            ids = crashed.publish_many(topic, range(1 + extra))
            held = contract.expect(crashed.subscribe(topic, prefetch=prefetch), promise)
            crashed.close()
            subscription = survivor.subscribe(topic)
            wait = contract.let_leases_expire()
            got = contract.expect_all(subscription, len(ids), promise, wait=wait)
            assert sorted(d.id for d in got) == sorted(ids), promise
            again = next(d for d in got if d.id == held.id)
            assert again.attempt == held.attempt + 1, f"{promise}, with attempt + 1"
            assert again.redelivered, f"{promise}, marked redelivered"

    @requires(Capability.ACK | Capability.DEAD_LETTER)
    @contract_settings()
    @given(max_deliveries=st.integers(1, 4), body=bodies)
    def test_max_deliveries_then_dead_letter(
        self, contract: ContractEnv, max_deliveries: int, body: Any
    ) -> None:
        """After max_deliveries nacks a message is dead-lettered, headers intact."""
        promise = "max_deliveries then dead-letter"
        with contract.scope():
            broker = contract.broker(max_deliveries=max_deliveries)
            topic = contract.topic("poison")
            dead_letters = broker.subscribe(broker.dead_letter_topic(topic))
            subscription = broker.subscribe(topic)
            message_id = broker.publish(topic, body, headers={"trace-id": "t1"})
            for attempt in range(1, max_deliveries + 1):
                delivery = contract.expect(subscription, promise)
                assert (delivery.id, delivery.attempt) == (message_id, attempt), promise
                delivery.nack(requeue=True)
            contract.expect_nothing(subscription, f"{promise}: redelivered past max_deliveries")
            dead = contract.expect(dead_letters, f"{promise}: nothing in the dead-letter topic")
            _check_dead_letter(
                dead, delivery, body, broker, topic, max_deliveries, "max_deliveries"
            )
            dead.ack()

    @requires(Capability.ACK | Capability.DEAD_LETTER)
    @pytest.mark.parametrize("max_deliveries", [None, 3])
    def test_nack_without_requeue_dead_letters_at_once(
        self, contract: ContractEnv, max_deliveries: int | None
    ) -> None:
        """nack(requeue=False) dead-letters at once, with or without max_deliveries.

        ``nack(requeue=False)`` dead-letters on the first delivery, whether or not
        ``max_deliveries`` is set, with the reason ``rejected``."""
        broker = contract.broker(max_deliveries=max_deliveries)
        topic = contract.topic("reject")
        dead_letters = broker.subscribe(broker.dead_letter_topic(topic))
        subscription = broker.subscribe(topic)
        broker.publish(topic, [1, "two"], headers={"trace-id": "t1"})
        rejected = contract.expect(subscription, "reject")
        rejected.nack(requeue=False)
        contract.expect_nothing(subscription, "nack(requeue=False): the message came back")
        dead = contract.expect(dead_letters, "nack(requeue=False) dead-letters")
        _check_dead_letter(dead, rejected, [1, "two"], broker, topic, 1, "rejected")
        dead.ack()
        contract.expect_nothing(dead_letters, "nack(requeue=False): dead-lettered twice")

    @requires(Capability.ACK | Capability.DEAD_LETTER)
    def test_the_last_dead_letter_level_is_its_own_dead_letter_topic(
        self, contract: ContractEnv
    ) -> None:
        """A topic of the last dead-letter level dead-letters into itself.

        The dead-letter topic of a topic that already ends with
        :data:`~brokerkit._topics.MAX_DEAD_LETTER_LEVELS` ``.dlq`` suffixes is that topic
        (:meth:`~brokerkit.Broker.dead_letter_topic`), so that no name grows past what
        a subscribe accepts: a message rejected there, or past its ``max_deliveries``
        there, comes back to its subscribers as a new dead letter, with its id, body,
        headers, reason, ``x-original-topic`` naming that topic and ``x-deliveries``
        (neither is dropped to break the loop)."""
        promise = "the last dead-letter level is its own dead-letter topic"
        broker = contract.broker(max_deliveries=2)
        topic = contract.topic("last") + DEAD_LETTER_SUFFIX * MAX_DEAD_LETTER_LEVELS
        assert broker.dead_letter_topic(topic) == topic, promise
        subscription = broker.subscribe(topic)
        broker.publish(topic, "job", headers={"trace-id": "t1"})
        rejected = contract.expect(subscription, promise)
        rejected.nack(requeue=False, reason="bad input")
        dead = contract.expect(subscription, f"{promise}: the dead letter did not come back")
        _check_dead_letter(dead, rejected, "job", broker, topic, 1, "bad input")
        dead.ack()
        # Past max_deliveries there too: the requeues use it up, and it comes back.
        broker.publish(topic, "poison", headers={"trace-id": "t1"})
        first = contract.expect(subscription, promise)
        first.nack(requeue=True)
        last = contract.expect(subscription, f"{promise}: a requeued message did not come back")
        assert (last.id, last.attempt) == (first.id, 2), f"{promise}: requeued as attempt 2"
        last.nack(requeue=True)
        dead = contract.expect(
            subscription,
            f"{promise}: the dead letter of a message past max_deliveries did not come back",
        )
        _check_dead_letter(dead, last, "poison", broker, topic, 2, "max_deliveries")
        dead.ack()

    @requires(Capability.ACK | Capability.DEAD_LETTER)
    def test_a_reject_reason_is_recorded_on_the_dead_letter(self, contract: ContractEnv) -> None:
        """A rejecting nack's reason is the dead letter's x-dead-letter-reason.

        ``nack(requeue=False, reason=...)`` dead-letters the message with that reason
        as ``x-dead-letter-reason``, in place of ``rejected``, and the rest of the
        dead letter as any rejection's."""
        promise = "a rejecting nack's reason is recorded on the dead letter"
        broker = contract.broker()
        topic = contract.topic("reject-reason")
        dead_letters = broker.subscribe(broker.dead_letter_topic(topic))
        subscription = broker.subscribe(topic)
        broker.publish(topic, "job", headers={"trace-id": "t1"})
        rejected = contract.expect(subscription, promise)
        rejected.nack(requeue=False, reason="ValueError: bad input")
        dead = contract.expect(dead_letters, f"{promise}: nothing was dead-lettered")
        _check_dead_letter(dead, rejected, "job", broker, topic, 1, "ValueError: bad input")
        dead.ack()
        contract.expect_nothing(
            [subscription, dead_letters], f"{promise}: it came back, or was dead-lettered twice"
        )

    @requires(Capability.ACK | Capability.DEAD_LETTER)
    @contract_settings()
    @given(max_deliveries=st.integers(1, 3))
    def test_a_requeue_reason_is_recorded_at_max_deliveries(
        self, contract: ContractEnv, max_deliveries: int
    ) -> None:
        """A requeuing nack's reason is the dead letter's reason at max_deliveries.

        ``nack(requeue=True, reason=...)`` (no delay) that uses up ``max_deliveries``
        dead-letters the message with that nack's reason as ``x-dead-letter-reason``,
        in place of ``max_deliveries``, on a backend with DELAY or without."""
        promise = "a requeuing nack's reason is recorded at max_deliveries"
        with contract.scope():
            broker = contract.broker(max_deliveries=max_deliveries)
            topic = contract.topic("requeue-reason")
            dead_letters = broker.subscribe(broker.dead_letter_topic(topic))
            subscription = broker.subscribe(topic)
            message_id = broker.publish(topic, "job", headers={"trace-id": "t1"})
            for attempt in range(1, max_deliveries + 1):
                delivery = contract.expect(subscription, promise)
                assert (delivery.id, delivery.attempt) == (message_id, attempt), (
                    f"{promise}: delivered as attempt {delivery.attempt}, not {attempt}"
                )
                delivery.nack(requeue=True, reason=f"TimeoutError: try {attempt}")
            dead = contract.expect(dead_letters, f"{promise}: nothing was dead-lettered")
            contract.expect_nothing(subscription, f"{promise}: redelivered past max_deliveries")
            reason = f"TimeoutError: try {max_deliveries}"
            _check_dead_letter(dead, delivery, "job", broker, topic, max_deliveries, reason)
            dead.ack()

    @requires(Capability.ACK | Capability.DEAD_LETTER)
    @contract_settings()
    @given(requeues=st.integers(0, 3))
    @example(requeues=2)
    def test_a_rejected_dead_letter_counts_every_delivery(
        self, contract: ContractEnv, requeues: int
    ) -> None:
        """A message rejected after redeliveries is dead-lettered with all of them counted.

        ``x-deliveries`` on a dead letter is the number of times the message was
        delivered: a message requeued n times and then rejected
        (``nack(requeue=False)``) says n + 1, with the reason ``rejected``."""
        promise = "a rejected dead letter counts every delivery"
        with contract.scope():
            broker = contract.broker()
            topic = contract.topic("reject-count")
            dead_letters = broker.subscribe(broker.dead_letter_topic(topic))
            subscription = broker.subscribe(topic)
            message_id = broker.publish(topic, "job", headers={"trace-id": "t1"})
            for attempt in range(1, requeues + 2):
                delivery = contract.expect(subscription, promise)
                assert (delivery.id, delivery.attempt) == (message_id, attempt), (
                    f"{promise}: delivered as attempt {delivery.attempt}, not {attempt}"
                )
                delivery.nack(requeue=attempt <= requeues)
            dead = contract.expect(dead_letters, f"{promise}: nothing was dead-lettered")
            contract.expect_nothing(subscription, f"{promise}: the rejected message came back")
            assert dead.headers.get("x-deliveries") == str(requeues + 1), (
                f"{promise}: delivered {requeues + 1} times, rejected, and the dead letter "
                f"says x-deliveries {dead.headers.get('x-deliveries')!r}"
            )
            _check_dead_letter(dead, delivery, "job", broker, topic, requeues + 1, "rejected")
            dead.ack()

    @requires(Capability.ACK | Capability.DEAD_LETTER)
    @pytest.mark.parametrize("reason", ["rejected", "max_deliveries"])
    def test_a_dead_letter_keeps_a_custom_content_type(
        self, contract: ContractEnv, reason: str
    ) -> None:
        """A dead letter keeps a custom content type, and its bytes.

        A message published with a content type of its own (``application/x-protobuf``)
        is dead-lettered, rejected or past ``max_deliveries``, with that content type
        and the same bytes."""
        promise = f"a dead letter keeps a custom content type ({reason})"
        broker = contract.broker(max_deliveries=1 if reason == "max_deliveries" else None)
        topic = contract.topic("dlq-type")
        dead_letters = broker.subscribe(broker.dead_letter_topic(topic))
        subscription = broker.subscribe(topic)
        payload = b"\x08\x96\x01"
        broker.publish(
            topic, payload, headers={"trace-id": "t1"}, content_type="application/x-protobuf"
        )
        delivery = contract.expect(subscription, promise)
        assert delivery.content_type == "application/x-protobuf", (
            f"{promise}: delivered as {delivery.content_type!r} before any dead-lettering"
        )
        delivery.nack(requeue=reason == "max_deliveries")
        dead = contract.expect(dead_letters, f"{promise}: nothing was dead-lettered")
        _check_dead_letter(dead, delivery, payload, broker, topic, 1, reason)
        assert dead.payload == payload, f"{promise}: the bytes changed"
        dead.ack()

    @requires(Capability.ACK | Capability.DEAD_LETTER | Capability.PERSISTENT)
    def test_expiry_past_max_deliveries_dead_letters(self, contract: ContractEnv) -> None:
        """A lease that runs out on the last allowed delivery dead-letters."""
        promise = "a lease that runs out on the last allowed delivery dead-letters"
        crashed = contract.broker(visibility_timeout=_VT, max_deliveries=1)
        survivor = contract.broker(visibility_timeout=_VT, max_deliveries=1)
        topic = contract.topic("expire-dlq")
        dead_letters = survivor.subscribe(survivor.dead_letter_topic(topic))
        crashed.publish(topic, "poison", headers={"trace-id": "t1"})
        held = contract.expect(crashed.subscribe(topic), promise)
        crashed.close()
        subscription = survivor.subscribe(topic)
        deadline = time.monotonic() + contract.let_leases_expire() + contract.grace
        poll = min(0.05, contract.grace)
        # Backends may recover expired leases only when someone reads the topic.
        while True:
            redelivered = subscription.receive(timeout=poll)
            assert redelivered is None, f"{promise}: it was redelivered ({redelivered!r})"
            dead = dead_letters.receive(timeout=poll)
            if dead is not None or time.monotonic() >= deadline:
                break
        assert dead is not None, f"{promise}: nothing reached the dead-letter topic"
        _check_dead_letter(dead, held, "poison", survivor, topic, 1, "max_deliveries")
        contract.expect_nothing(subscription, f"{promise}: it was redelivered")

    @requires(Capability.COMPETING)
    @contract_settings()
    @given(
        count=st.integers(2, 12),
        turns=st.lists(st.booleans(), min_size=1, max_size=30),
        group=st.sampled_from([None, "workers"]),
    )
    @example(count=2, turns=[True], group=None)
    def test_competing_consumers_split_without_overlap(
        self, contract: ContractEnv, count: int, turns: list[bool], group: str | None
    ) -> None:
        """Competing consumers of a group each get different messages.

        Consumers of one group compete: each message goes to one of them, and all of
        them go to some member. Consumers that name no group share the topic's default
        group (``consume("jobs")`` on several workers shares the jobs)."""
        label = "the default group" if group is None else "the group"
        promise = f"competing consumers: each message goes to one consumer of {label}"
        with contract.scope():
            publisher = contract.broker()
            topic = contract.topic("compete")
            consumers = [contract.broker().subscribe(topic, group=group) for _ in range(2)]
            ids = publisher.publish_many(topic, range(count))
            grace = contract.grace
            poll = min(0.05, grace)
            # While the first consumer holds a message, the second must get another one.
            held = contract.expect(consumers[0], promise)
            other = contract.expect(consumers[1], promise)
            assert other.id != held.id, f"{promise}: both got {held.body!r}"
            seen = [held.id, other.id]
            held.ack()
            other.ack()
            for turn in turns * count:
                if len(seen) == count:
                    break
                delivery = consumers[turn].receive(timeout=poll)
                if delivery is not None:
                    assert delivery.id not in seen, f"{promise}: {delivery.body!r} came twice"
                    seen.append(delivery.id)
                    delivery.ack()
            for index, subscription in enumerate(consumers):
                while len(seen) < count:
                    delivery = subscription.receive(timeout=poll if index == 0 else grace)
                    if delivery is None:
                        break
                    assert delivery.id not in seen, f"{promise}: {delivery.body!r} came twice"
                    seen.append(delivery.id)
                    delivery.ack()
            assert sorted(seen) == sorted(ids), f"{promise}: some messages never came"
            contract.expect_nothing(consumers, f"{promise}: a message came twice")

    @requires(Capability.FANOUT)
    @contract_settings()
    @given(groups=st.integers(2, 3), count=st.integers(1, 6))
    def test_fanout_every_group_gets_every_message(
        self, contract: ContractEnv, groups: int, count: int
    ) -> None:
        """Fan-out: every group gets every message, once."""
        promise = "fan-out: every group gets every message"
        with contract.scope():
            publisher = contract.broker()
            topic = contract.topic("fanout")
            grouped = contract.has(Capability.COMPETING)
            subscriptions = [
                contract.broker().subscribe(topic, group=f"g{i}" if grouped else None)
                for i in range(groups)
            ]
            ids = publisher.publish_many(topic, range(count))
            for subscription in subscriptions:
                got = contract.expect_all(subscription, count, promise)
                assert sorted(d.id for d in got) == sorted(ids), promise
            contract.expect_nothing(subscriptions, f"{promise} once")

    @requires(Capability.REPLAY | Capability.COMPETING | Capability.PERSISTENT)
    def test_new_group_replays_history(self, contract: ContractEnv) -> None:
        """Replay: a new group can read the topic's history from the start."""
        promise = "replay: a new group can read the topic's history from the start"
        publisher, consumer = contract.broker(), contract.broker()
        topic = contract.topic("replay")
        ids = publisher.publish_many(topic, ["a", "b", "c"])
        contract.expect_all(consumer.subscribe(topic, group="first"), 3, promise)
        late = consumer.subscribe(topic, group="late", start="earliest")
        got = contract.expect_all(late, 3, promise)
        assert sorted(d.id for d in got) == sorted(ids), promise


def _check_dead_letter(
    dead: Any, original: Any, body: Any, broker: Broker, topic: str, deliveries: int, reason: str
) -> None:
    """``dead`` is ``original`` (a delivery of the message), dead-lettered for ``reason``."""
    promise = "a dead letter keeps the message and says where it came from"
    assert dead.id == original.id, f"{promise}: the id changed"
    assert canonical(dead.body) == canonical(body), f"{promise}: the body changed"
    assert dead.content_type == original.content_type, (
        f"{promise}: the content type changed from {original.content_type!r} "
        f"to {dead.content_type!r}"
    )
    assert dead.topic == broker.dead_letter_topic(topic), f"{promise}: wrong topic"
    assert dead.headers.get("trace-id") == "t1", f"{promise}: the headers were lost"
    assert dead.headers.get("x-original-topic") == topic, f"{promise}: x-original-topic"
    assert dead.headers.get("x-dead-letter-reason") == reason, (
        f"{promise}: x-dead-letter-reason is {dead.headers.get('x-dead-letter-reason')!r}, "
        f"not {reason!r}"
    )
    assert dead.headers.get("x-deliveries") == str(deliveries), f"{promise}: x-deliveries"
