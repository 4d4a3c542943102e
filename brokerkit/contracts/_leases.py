"""Contract tests of leases and settlement: both bounds of the visibility timeout,
``extend``, batches, and every shape of a late settlement."""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from brokerkit._broker import Broker
from brokerkit._capabilities import Capability
from brokerkit.contracts._harness import VISIBILITY_TIMEOUT, ContractEnv, requires
from brokerkit.contracts._profiles import contract_settings
from brokerkit.exceptions import AlreadySettled, InvalidOption, StaleDelivery

__all__ = ["LeaseContract"]

_VT = VISIBILITY_TIMEOUT
#: The lease of the late-settlement test: long enough for its checks to run in.
_LATE_VT = 4 * VISIBILITY_TIMEOUT


class LeaseContract:
    """Promises about how long a delivery is leased, and what settling it does."""

    #: Called with a broker to model a hung consumer (set by :class:`BrokerContract`).
    suspend_renewals: Callable[[Broker], None]

    @requires(Capability.ACK | Capability.COMPETING)
    @pytest.mark.parametrize("prefetch", [1, 3])
    def test_lease_holds_for_the_whole_visibility_timeout(
        self, contract: ContractEnv, prefetch: int
    ) -> None:
        """A lease holds for the whole visibility timeout, and no longer.

        A lease holds for the whole visibility timeout, then the delivery comes back
        within the stated tolerance (exactly, on a ManualClock)."""
        promise = "lease bounds: an unsettled delivery comes back when its lease runs out"
        hung = contract.broker(visibility_timeout=_VT)
        other = contract.broker(visibility_timeout=_VT)
        topic = contract.topic("bounds")
        mine, theirs = hung.subscribe(topic, prefetch=prefetch), other.subscribe(topic)
        ids = hung.publish_many(topic, range(prefetch))
        before = contract.timeline.now()
        held = contract.expect(mine, promise)
        after = contract.timeline.now()
        self.suspend_renewals(hung)
        back = contract.expect_lease_return(
            theirs, leased=(before, after), seconds=_VT, promise=promise
        )
        assert back.id in ids, f"{promise}: an unknown message came back"
        assert back.redelivered, f"{promise}: a delivery that came back is marked redelivered"
        assert not held.settled
        back.ack()
        rest = contract.expect_all(theirs, len(ids) - 1, f"{promise} (prefetched ones too)")
        assert {d.id for d in rest} | {back.id} == set(ids), promise

    @requires(Capability.ACK | Capability.COMPETING)
    @pytest.mark.parametrize("seconds", [_VT, 2 * _VT], ids=["timeout", "twice"])
    def test_extend_moves_the_deadline(self, contract: ContractEnv, seconds: float) -> None:
        """extend(seconds) moves the lease's deadline to seconds from the call.

        ``extend(seconds)`` renews a lease from the moment it is called, for the
        visibility timeout or for twice as long: the delivery stays with its holder
        past the old deadline and comes back at the new one. (A backend whose leases
        cannot outlast its visibility timeout declares ``extend_beyond_timeout =
        False``; the longer case is skipped on it.)"""
        if seconds > _VT and not contract.extend_beyond_timeout:
            pytest.skip(
                f"{contract.backend_name} cannot hold a lease for longer than "
                "its visibility timeout (extend_beyond_timeout = False)"
            )
        promise = "extend: the lease runs from the extend call"
        for _ in range(3):
            hung = contract.broker(visibility_timeout=_VT)
            other = contract.broker(visibility_timeout=_VT)
            topic = contract.topic("extend")
            mine, theirs = hung.subscribe(topic), other.subscribe(topic)
            # Taken before the publish: a backend whose server delivers to a consumer's
            # waiting pull (NATS) starts the lease before publish() returns.
            leased_from = contract.timeline.now()
            message_id = hung.publish(topic, "long job")
            held = contract.expect(mine, promise)
            self.suspend_renewals(hung)
            # Half the lease passes with the message still held.
            half = contract.let_leases_expire(_VT / 2)
            left = max(0.0, leased_from + half - contract.timeline.now())
            early = theirs.receive(timeout=left + contract.timeline.quiet)
            if early is not None:
                came = contract.timeline.now() - leased_from
                assert came >= _VT - contract.timeline.slack, (
                    f"{promise}: {early!r} came back {came:.3f}s after it was leased, "
                    f"before its lease of {_VT}s could run out"
                )
                continue  # this machine took a whole lease to get here: stage it again
            before = contract.timeline.now()
            try:
                held.extend(seconds=seconds)
            except StaleDelivery:
                if before - leased_from < _VT - contract.timeline.slack:
                    raise  # refused while the lease still ran: broken
                continue  # this machine took a whole lease to get here: stage it again
            after = contract.timeline.now()
            back = contract.expect_lease_return(
                theirs, leased=(before, after), seconds=seconds, promise=promise
            )
            assert back.id == message_id, promise
            # Clean-up, checked already: its new lease (of _VT) may have run out on a
            # loaded machine before this ack.
            with contextlib.suppress(StaleDelivery):
                back.ack()
            return
        pytest.fail(f"{promise}: three leases of {_VT}s ran out before extend could be called")

    @requires(Capability.ACK | Capability.COMPETING)
    def test_extend_can_shorten_the_lease(self, contract: ContractEnv) -> None:
        """extend(seconds) runs from the call even when that shortens the lease.

        ``extend(seconds)`` with fewer seconds than the lease has left moves the
        deadline in, to ``seconds`` from the call: the delivery comes back then, not
        at the old deadline. (A backend that can only renew a lease for a length of
        its own, as NATS's ``+WPI`` restarts ``AckWait``, declares ``extend_shortens =
        False``; the test is skipped on it.)"""
        if not contract.extend_shortens:
            pytest.skip(
                f"{contract.backend_name} renews a lease for a length of its "
                "own, whatever extend's seconds say (extend_shortens = False)"
            )
        promise = "extend can shorten the lease: it runs from the extend call"
        lease = _LATE_VT
        hung = contract.broker(visibility_timeout=lease)
        other = contract.broker(visibility_timeout=lease)
        topic = contract.topic("extend-shorter")
        mine, theirs = hung.subscribe(topic), other.subscribe(topic)
        message_id = hung.publish(topic, "short job")
        held = contract.expect(mine, promise)
        self.suspend_renewals(hung)
        before = contract.timeline.now()
        held.extend(seconds=_VT)  # of a lease of _LATE_VT, just begun
        after = contract.timeline.now()
        back = contract.expect_lease_return(
            theirs, leased=(before, after), seconds=_VT, promise=promise
        )
        assert back.id == message_id, f"{promise}: another message came ({back.body!r})"
        back.ack()
        contract.expect_nothing([mine, theirs], f"{promise}: it came back after its ack")

    @requires(Capability.ACK | Capability.COMPETING)
    def test_extend_after_the_lease_ran_out_raises(self, contract: ContractEnv) -> None:
        """extend() of an expired or settled delivery raises, harming nothing.

        ``extend`` of a delivery whose lease ran out raises StaleDelivery and leaves
        the new holder's delivery alone; extending a settled delivery raises
        AlreadySettled; a lease is extended by a positive number of seconds."""
        promise = "extend after expiry raises StaleDelivery"
        hung = contract.broker(visibility_timeout=_VT)
        other = contract.broker(visibility_timeout=_VT)
        topic = contract.topic("extend-late")
        mine, theirs = hung.subscribe(topic), other.subscribe(topic)
        hung.publish(topic, "work")
        stale = contract.expect(mine, promise)
        with pytest.raises(InvalidOption):
            stale.extend(seconds=0)
        self.suspend_renewals(hung)
        fresh = contract.expect(theirs, promise, wait=contract.let_leases_expire())
        try:
            stale.extend()
        except StaleDelivery:
            pass
        else:
            pytest.fail(f"{promise}: extend() renewed a lease that had run out")
        try:
            fresh.ack()
        except StaleDelivery:
            pytest.fail(f"{promise}: the late extend took the new holder's lease")
        with pytest.raises(AlreadySettled):
            fresh.extend()
        contract.expect_nothing(theirs, f"{promise}: the message came back after its ack")

    @requires(Capability.ACK | Capability.PERSISTENT)
    @contract_settings()
    @given(actions=st.lists(st.sampled_from(["ack", "requeue", "reject"]), min_size=1, max_size=8))
    @example(actions=["ack", "ack", "requeue", "requeue", "reject", "reject"])
    def test_batch_settlement_settles_each_delivery_once(
        self, contract: ContractEnv, actions: list[str]
    ) -> None:
        """ack/nack of several deliveries at once settles each of them, once.

        ``broker.ack(*deliveries)`` and ``broker.nack(*deliveries)`` settle every
        delivery passed, each once: acked ones never come back, requeued ones come back
        once with the next attempt, rejected ones reach the dead-letter topic once."""
        promise = "batch settlement"
        if not contract.has(Capability.DEAD_LETTER):
            actions = ["requeue" if a == "reject" else a for a in actions]
        with contract.scope():
            broker = contract.broker()
            topic = contract.topic("batch")
            dead_letters = broker.subscribe(broker.dead_letter_topic(topic))
            subscription = broker.subscribe(topic, prefetch=len(actions))
            ids = broker.publish_many(topic, range(len(actions)))
            got = [contract.expect(subscription, promise) for _ in ids]
            assert sorted(d.id for d in got) == sorted(ids), f"{promise}: wrong deliveries"
            by_action: dict[str, list[Any]] = {"ack": [], "requeue": [], "reject": []}
            for delivery, action in zip(got, actions, strict=True):
                by_action[action].append(delivery)
            with pytest.raises(AlreadySettled):
                broker.ack(*got, got[0])  # the same delivery twice: nothing is settled
            assert not any(d.settled for d in got), f"{promise}: a refused batch settled some"
            broker.ack(*by_action["ack"])
            broker.nack(*by_action["requeue"], requeue=True)
            broker.nack(*by_action["reject"], requeue=False)
            assert all(d.settled for d in got), f"{promise}: every delivery passed is settled"
            requeued = {d.id for d in by_action["requeue"]}
            again = contract.expect_all(subscription, len(requeued), f"{promise}: requeued ones")
            assert {d.id for d in again} == requeued, (
                f"{promise}: exactly the requeued messages come back (acked ones never)"
            )
            assert all(d.attempt == 2 for d in again), f"{promise}: requeued with attempt 2"
            if contract.has(Capability.DEAD_LETTER):
                rejected = {d.id for d in by_action["reject"]}
                dead = contract.expect_all(dead_letters, len(rejected), f"{promise}: rejected")
                assert {d.id for d in dead} == rejected, (
                    f"{promise}: exactly the rejected messages are dead-lettered"
                )
            contract.expect_nothing(
                [subscription, dead_letters],
                f"{promise}: a settled message came back, or was dead-lettered twice",
            )
            in_flight = broker.inspect(topic).in_flight
            assert in_flight == 0, f"{promise}: {in_flight} settled deliveries are still in flight"

    @requires(Capability.ACK | Capability.COMPETING)
    @pytest.mark.parametrize("batch", [False, True], ids=["each", "batch"])
    def test_late_settle_does_not_touch_the_new_holders_delivery(
        self, contract: ContractEnv, batch: bool
    ) -> None:
        """A late settlement raises StaleDelivery and leaves the new holder alone.

        Consumer A hangs past its leases; B gets the messages; each of A's late ack,
        nack with and without requeue, and extend (or, with ``batch``, a late ack and
        nack of several deliveries, some still live) raises StaleDelivery, leaves B's
        deliveries and the dead-letter topic alone, and settles the live ones.
        """
        # Longer leases than elsewhere: B must still hold its copies while A's four
        # late settlements run and the suite listens after each (a backend that does
        # not renew leases in the background would hand B's copies out again).
        lease = _LATE_VT
        hung = contract.broker(visibility_timeout=lease)
        other = contract.broker(visibility_timeout=lease)
        topic = contract.topic("lateack")
        dead_letters = other.subscribe(other.dead_letter_topic(topic))
        kinds = ["ack", "requeue", "reject", "extend"]
        first = hung.subscribe(topic, prefetch=len(kinds))
        second = other.subscribe(topic)
        hung.publish_many(topic, kinds)
        stale = {d.id: d for d in (contract.expect(first, "late ack") for _ in kinds)}
        self.suspend_renewals(hung)
        wait = contract.let_leases_expire(lease)
        fresh = []
        for _ in kinds:
            fresh.append(
                contract.expect(
                    second,
                    "late ack: the hung consumer's leases run out and the messages go to "
                    "another consumer (a backend that renews leases in the background must "
                    "implement Broker._suspend_renewals or override "
                    "BrokerContract.suspend_renewals)",
                    wait=wait,
                )
            )
        assert {(d.id, d.attempt) for d in fresh} == {
            (i, s.attempt + 1) for i, s in stale.items()
        }, (
            "the new holder's deliveries (id, attempt, receipt): "
            f"{[(d.id, d.attempt, d.receipt) for d in fresh]}; the hung consumer's: "
            f"{[(d.id, d.attempt, d.receipt) for d in stale.values()]}"
        )
        live: list[Any] = []
        # (kind, the late call, the deliveries its StaleDelivery must name)
        attempts: list[tuple[str, Callable[[], None], list[Any]]]
        if batch:
            hung.publish_many(topic, ["live 1", "live 2"])
            live = [contract.expect(first, "late ack") for _ in range(2)]
            late = list(stale.values())
            attempts = [
                ("ack", lambda: hung.ack(late[0], late[1], live[0]), late[:2]),
                ("reject", lambda: hung.nack(late[2], live[1], requeue=False), late[2:3]),
                ("requeue", lambda: hung.nack(late[3], requeue=True), late[3:]),
            ]
        else:
            late_by_kind = {s.body: s for s in stale.values()}
            attempts = [
                (kind, _late_call(late_by_kind[kind], kind), [late_by_kind[kind]]) for kind in kinds
            ]
        shape = "batch " if batch else ""
        for kind, call, expired in attempts:
            try:
                call()
            except StaleDelivery as exc:
                named = exc.deliveries
            else:
                pytest.fail(f"late ack: a late {shape}{kind} did not raise StaleDelivery")
            assert sorted(d.id for d in named) == sorted(d.id for d in expired), (
                f"late ack: a late {shape}{kind}: StaleDelivery names exactly the stale "
                f"deliveries, {sorted(str(d.body) for d in expired)}, not "
                f"{sorted(str(d.body) for d in named)}"
            )
            if contract.has(Capability.DEAD_LETTER) and not batch:
                contract.expect_nothing(
                    dead_letters, f"late ack: a late {kind} dead-lettered the message"
                )
            contract.expect_nothing(
                second, f"late ack: the message came back after a late {shape}{kind}"
            )
        for delivery in fresh:
            try:
                delivery.ack()
            except StaleDelivery:
                pytest.fail("late ack: a stale settlement took the new holder's delivery")
        if batch and contract.has(Capability.DEAD_LETTER):
            # The live delivery of the batch nack is dead-lettered, and only it.
            got = contract.expect(dead_letters, "late ack: a batch nack settles its live ones")
            assert got.id == live[1].id, "late ack: a late batch reject dead-lettered a message"
            got.ack()
        contract.expect_nothing(
            [second, first, dead_letters],
            "late ack: a message came back after its new holder's ack, or was dead-lettered",
            # The live deliveries of a batch must stay settled past their leases too.
            wait=contract.let_leases_expire() if batch else 0.0,
        )


def _late_call(delivery: Any, kind: str) -> Callable[[], None]:
    if kind == "ack":
        return delivery.ack  # type: ignore[no-any-return]
    if kind == "requeue":
        return lambda: delivery.nack(requeue=True)
    if kind == "reject":
        return lambda: delivery.nack(requeue=False)
    return delivery.extend  # type: ignore[no-any-return]
