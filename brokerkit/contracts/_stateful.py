"""The stateful contract: random interleavings of publish, receive, ack, nack, requeue,
consumer crashes and lease expiry, checked against a plain-Python model.

The model is deliberately loose where backends may differ and strict where they may
not. A delivery is *surely live* while less than the visibility timeout (minus a
margin on real time) has passed since the fetch that leased it; about such deliveries
everything is checked. After that a backend may have taken the lease back (memory,
which has no heartbeat) or kept renewing it (Redis, for a live consumer); both are
accepted, but a message delivered again makes every older delivery of it stale.
"""

from __future__ import annotations

import contextlib
import itertools
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar

from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from brokerkit._broker import Broker
from brokerkit._capabilities import Capability
from brokerkit._delivery import Delivery
from brokerkit._subscription import Subscription
from brokerkit.contracts._harness import (
    LEASE_TOLERANCE,
    VISIBILITY_TIMEOUT,
    ContractEnv,
    ManualTimeline,
    is_failure,
    requires,
)
from brokerkit.contracts._profiles import contract_settings, share_of
from brokerkit.exceptions import StaleDelivery

__all__ = ["DeliveryMachine", "StatefulContract"]


@dataclass(eq=False)
class _Held:
    """One delivery the model knows a consumer holds."""

    delivery: Delivery
    consumer: _Consumer
    leased_at: float  # model time just before the fetch that leased it
    lease_seq: int  # which fetch leased it: later fetches hold newer leases


@dataclass(eq=False)
class _Consumer:
    broker: Broker
    subscription: Subscription
    prefetch: int
    fetch_time: float = 0.0
    fetch_seq: int = 0
    held: list[_Held] = field(default_factory=list)


@dataclass
class _Message:
    status: str = "ready"  # ready | held | acked | dead
    holder: _Held | None = None  # the newest delivery of it
    last_attempt: int = 0


class DeliveryMachine(RuleBasedStateMachine):
    """Drives one topic of a backend with PERSISTENT | ACK | COMPETING."""

    def __init__(self, env: ContractEnv, suspend_renewals: Callable[[Broker], None]) -> None:
        super().__init__()
        self.env = env
        self.scope = env.scope()
        self.scope.__enter__()
        self.exact = isinstance(env.timeline, ManualTimeline)
        self.vt = VISIBILITY_TIMEOUT
        self.margin = 0.0 if self.exact else 0.3 * self.vt
        self.poll = 0.0 if self.exact else 0.05
        self.dead_letter = env.has(Capability.DEAD_LETTER)
        self.topic = env.topic("machine")
        self.publisher = env.broker()
        self.dead_letters: Subscription | None = None
        if self.dead_letter:
            self.dead_letters = self.publisher.subscribe(
                self.publisher.dead_letter_topic(self.topic)
            )
        self.consumers: list[_Consumer] = []
        self.messages: dict[str, _Message] = {}
        self.seq = itertools.count(1)
        del suspend_renewals  # crashes, not hangs, are what this machine models

    # -- helpers ------------------------------------------------------------------

    def _consumer(self, prefetch: int) -> _Consumer:
        broker = self.env.broker(visibility_timeout=self.vt)
        return _Consumer(broker, broker.subscribe(self.topic, prefetch=prefetch), prefetch)

    def _surely_live(self, held: _Held) -> bool:
        return self.env.timeline.now() - held.leased_at < self.vt - self.margin

    def _pick(self, index: int, which: int) -> tuple[_Consumer, _Held]:
        consumer = self._holding()[index % len(self._holding())]
        return consumer, consumer.held[which % len(consumer.held)]

    def _holding(self) -> list[_Consumer]:
        return [c for c in self.consumers if c.held]

    # -- rules --------------------------------------------------------------------

    @initialize(prefetches=st.lists(st.integers(1, 3), min_size=1, max_size=3))
    def start_consumers(self, prefetches: list[int]) -> None:
        self.consumers = [self._consumer(p) for p in prefetches]

    @rule(bodies=st.lists(st.integers(0, 999), min_size=1, max_size=3))
    def publish(self, bodies: list[int]) -> None:
        for message_id in self.publisher.publish_many(self.topic, bodies):
            self.messages[message_id] = _Message()

    @rule(index=st.integers(0, 2))
    def receive(self, index: int) -> None:
        consumer = self.consumers[index % len(self.consumers)]
        if consumer.subscription.buffered == 0:
            consumer.fetch_time = self.env.timeline.now()
            consumer.fetch_seq = next(self.seq)
        delivery = consumer.subscription.receive(timeout=self.poll)
        if delivery is None:
            return
        message = self.messages.get(delivery.id)
        assert message is not None, f"a message nobody published was delivered: {delivery!r}"
        held = _Held(delivery, consumer, consumer.fetch_time, consumer.fetch_seq)
        if self._surely_live(held):
            assert message.status not in ("acked", "dead"), (
                f"ack is final: a {message.status} message was delivered again ({delivery!r})"
            )
            previous = message.holder
            assert (
                previous is None
                or previous.delivery.settled
                or not self._surely_live(previous)
                or previous.consumer not in self.consumers
            ), f"no duplicates: {delivery!r} is also leased to another live consumer"
            assert delivery.attempt > message.last_attempt, (
                f"attempts count up: attempt {delivery.attempt} after {message.last_attempt}"
            )
        consumer.held.append(held)
        if message.holder is None or held.lease_seq > message.holder.lease_seq:
            message.holder = held
            if message.status == "ready":
                message.status = "held"
        message.last_attempt = max(message.last_attempt, delivery.attempt)

    @precondition(lambda self: bool(self._holding()))
    @rule(
        index=st.integers(0, 2),
        which=st.integers(0, 5),
        action=st.sampled_from(["ack", "requeue", "nack"]),
    )
    def settle(self, index: int, which: int, action: str) -> None:
        if action == "nack" and not self.dead_letter:
            action = "requeue"
        consumer, held = self._pick(index, which)
        consumer.held.remove(held)
        message = self.messages[held.delivery.id]
        newest = message.holder is held
        live = newest and self._surely_live(held)
        try:
            if action == "ack":
                held.delivery.ack()
            else:
                held.delivery.nack(requeue=action == "requeue")
        except StaleDelivery:
            assert not live, f"a {action} within the lease failed as stale: {held.delivery!r}"
            if newest and message.status == "held":
                message.status = "ready"  # the lease ran out: it comes back
            return
        assert newest, (
            f"late ack: a {action} of a superseded delivery succeeded and may have settled "
            f"the new holder's ({held.delivery!r})"
        )
        message.status = {"ack": "acked", "requeue": "ready", "nack": "dead"}[action]

    @rule(index=st.integers(0, 2))
    def crash(self, index: int) -> None:
        """A consumer dies holding its deliveries; a fresh one takes its place."""
        position = index % len(self.consumers)
        consumer = self.consumers[position]
        consumer.broker.close()
        for held in consumer.held:
            message = self.messages[held.delivery.id]
            if message.holder is held and message.status == "held":
                message.status = "ready"
        self.consumers[position] = self._consumer(consumer.prefetch)

    @rule()
    def expire_leases(self) -> None:
        """The visibility timeout passes (on a real clock it passes by itself)."""
        if self.exact:
            self.env.let_leases_expire(self.vt)

    # -- invariants ---------------------------------------------------------------

    @invariant()
    def prefetch_bounds_the_buffer(self) -> None:
        for consumer in self.consumers:
            assert consumer.subscription.buffered < consumer.prefetch, (
                f"prefetch: {consumer.subscription.buffered} deliveries buffered "
                f"with prefetch={consumer.prefetch}"
            )

    @invariant()
    def inspect_counts_what_is_in_flight(self) -> None:
        """The backend's ``in_flight`` counts at least the deliveries the model knows
        were leased while it counted (surely live and unsettled, held or prefetched)
        and at most one per message neither acked nor dead-lettered.

        Asked through the broker of the consumer holding the most leases, so that a
        backend that counts only what its own connection holds (kombu+amqp) is held to
        that consumer's leases."""
        if not self.consumers:
            return
        before = self.env.timeline.now()
        consumer = max(self.consumers, key=lambda c: len(self._leased(c, before)))
        in_flight = consumer.broker.inspect(self.topic).in_flight
        # Judged after the count: a lease surely live now was live while it counted.
        leased = self._leased(consumer, self.env.timeline.now())
        unsettled = sum(1 for m in self.messages.values() if m.status in ("ready", "held"))
        assert len(leased) <= in_flight <= unsettled, (
            f"inspect counts what is in flight: in_flight is {in_flight}, but {len(leased)} "
            f"deliveries are surely leased to one consumer and {unsettled} messages are "
            "neither acked nor dead-lettered"
        )

    def _leased(self, consumer: _Consumer, now: float) -> set[str]:
        """The messages the model knows ``consumer`` holds a surely live lease of at
        ``now``: unsettled newest deliveries it received, and what it prefetched."""
        live = self.vt - self.margin
        leased = {
            held.delivery.id
            for held in consumer.held
            if self.messages[held.delivery.id].holder is held
            and not held.delivery.settled
            and now - held.leased_at < live
        }
        if now - consumer.fetch_time < live:
            leased.update(d.id for d in consumer.subscription.buffered_deliveries())
        return leased

    # -- the end: nothing lost ----------------------------------------------------

    def teardown(self) -> None:
        # Hypothesis tears down in a ``finally``: when a step failed, that failure is
        # the report, so only clean up.
        ending = sys.exc_info()[1]
        try:
            if ending is None:
                self._drain()
        except BaseException as exc:
            ending = exc
            raise
        finally:
            self.env.failed = self.env.failed or is_failure(ending)
            self.scope.__exit__(None, None, None)

    def _drain(self) -> None:
        # Live consumers hand back what they hold (crashes were the crash rule's job),
        # so that the drain waits only for the leases of crashed consumers.
        for consumer in self.consumers:
            for held in consumer.held:
                message = self.messages[held.delivery.id]
                if message.holder is not held or message.status != "held":
                    continue
                with contextlib.suppress(StaleDelivery):
                    held.delivery.nack(requeue=True)
                message.status = "ready"
            consumer.held.clear()
            consumer.broker.close()
        pending = {i for i, m in self.messages.items() if m.status in ("ready", "held")}
        drainer = self.env.broker(visibility_timeout=self.vt).subscribe(self.topic, prefetch=3)
        wait = self.env.let_leases_expire(self.vt)
        while pending:
            delivery = drainer.receive(timeout=wait + self.env.grace)
            assert delivery is not None, (
                f"no loss: {len(pending)} unacked message(s) never came back: {sorted(pending)}"
            )
            status = self.messages[delivery.id].status
            assert status not in ("acked", "dead"), f"ack is final: a {status} message came back"
            assert delivery.id in pending, (
                f"ack is final: {delivery!r} came back after it was acked while draining"
            )
            pending.discard(delivery.id)
            try:
                delivery.ack()
            except StaleDelivery:
                if self.exact:  # a manual clock lets no lease run out unasked
                    raise
                # On real time a stalled machine can let the drainer's own lease run
                # out between receive and ack: the message must come back, and is
                # waited for again.
                pending.add(delivery.id)
        self.env.expect_nothing(
            drainer,
            "ack is final: a message came back after the drain acked everything",
            # On real time, that ack stays final past the lease (and the tolerance a
            # redelivery may lag by) is what test_acked_messages_never_come_back waits
            # for; here only a manual clock checks it, for free.
            wait=self.env.let_leases_expire(self.vt + LEASE_TOLERANCE) if self.exact else 0.0,
        )
        dead = {i for i, m in self.messages.items() if m.status == "dead"}
        while dead and self.dead_letters is not None:
            delivery = self.dead_letters.receive(timeout=self.env.grace)
            assert delivery is not None, f"dead-letter: {len(dead)} rejected messages are missing"
            assert delivery.id in dead, f"dead-letter: unexpected {delivery!r}"
            dead.discard(delivery.id)
            delivery.ack()


class StatefulContract:
    """Runs :class:`DeliveryMachine` against the backend."""

    suspend_renewals: Callable[[Broker], None]
    example_share: ClassVar[float]

    @requires(Capability.PERSISTENT | Capability.ACK | Capability.COMPETING)
    def test_delivery_state_machine(self, contract: ContractEnv) -> None:
        """Random interleavings of every operation keep at-least-once delivery."""

        def machine() -> DeliveryMachine:
            return DeliveryMachine(contract, self.suspend_renewals)

        # hypothesis types the factory as the class; any callable returning one works.
        factory: Any = machine
        run_state_machine_as_test(
            factory, settings=share_of(contract_settings("stateful"), self.example_share)
        )
