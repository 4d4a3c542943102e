"""Contract tests of consumer groups: independence under fan-out, and where a new
group starts reading."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from brokerkit._capabilities import Capability
from brokerkit.contracts._harness import ContractEnv, requires
from brokerkit.contracts._profiles import contract_settings
from brokerkit.exceptions import InvalidOption

__all__ = ["GroupContract"]


class GroupContract:
    """Promises about consumer groups."""

    @requires(Capability.FANOUT | Capability.COMPETING | Capability.ACK)
    @contract_settings()
    @given(actions=st.lists(st.sampled_from(["ack", "requeue", "reject", "hold"]), max_size=6))
    @example(actions=["ack", "requeue", "reject", "hold"])
    def test_groups_do_not_affect_each_other(
        self, contract: ContractEnv, actions: list[str]
    ) -> None:
        """One group's acks, nacks and dead letters never change another's view.

        What one group does (ack, nack, requeue, dead-letter, hold) never changes
        what another group of the same topic sees: every message once, first attempt."""
        promise = "group independence"
        if not contract.has(Capability.DEAD_LETTER):
            actions = ["requeue" if a == "reject" else a for a in actions]
        with contract.scope():
            broker = contract.broker()
            topic = contract.topic("groups")
            busy = broker.subscribe(topic, group="busy", prefetch=max(len(actions), 1))
            calm = contract.broker().subscribe(topic, group="calm")
            ids = broker.publish_many(topic, range(len(actions) + 1))
            held: list[Any] = []
            for action in actions:
                delivery = contract.expect(busy, promise)
                if action == "ack":
                    delivery.ack()
                elif action == "hold":
                    held.append(delivery)
                else:
                    delivery.nack(requeue=action == "requeue")
            got = contract.expect_all(calm, len(ids), f"{promise}: a group lost messages")
            assert sorted(d.id for d in got) == sorted(ids), (
                f"{promise}: another group's settlements changed what this group received"
            )
            assert all((d.attempt, d.redelivered) == (1, False) for d in got), (
                f"{promise}: another group's nacks counted as this group's redeliveries"
            )
            contract.expect_nothing(calm, f"{promise}: another group's nack redelivered here")
            for delivery in held:
                delivery.ack()

    @requires(Capability.REPLAY | Capability.COMPETING | Capability.PERSISTENT)
    @pytest.mark.parametrize(
        "start", [None, "earliest", "latest"], ids=["default", "earliest", "latest"]
    )
    def test_new_group_start_position(self, contract: ContractEnv, start: str | None) -> None:
        """A new group's start (earliest, the default, or latest) means what it says.

        A new group with ``start="earliest"``, or no start, reads the topic's history
        from its first kept message; with ``start="latest"`` only what is published
        after it subscribed."""
        promise = f"start={start or 'None (earliest)'}: a new group starts where it says"
        publisher, consumer = contract.broker(), contract.broker()
        topic = contract.topic("start")
        history = publisher.publish_many(topic, ["a", "b"])
        subscription = consumer.subscribe(topic, group=f"new-{start}", start=start)
        later = publisher.publish_many(topic, ["c"])
        expected = later if start == "latest" else history + later
        got = contract.expect_all(subscription, len(expected), promise)
        assert sorted(d.id for d in got) == sorted(expected), promise
        contract.expect_nothing(subscription, f"{promise}: it read before its start")

    @requires(Capability.REPLAY | Capability.COMPETING | Capability.PERSISTENT)
    def test_start_applies_to_a_new_group_only(self, contract: ContractEnv) -> None:
        """start places a new group only; an existing group is never moved.

        ``start`` places a *new* group; joining an existing group with a start does
        not move it (no rewind, no skip); an unknown start raises InvalidOption."""
        promise = "start only places a new group"
        publisher, consumer = contract.broker(), contract.broker()
        topic = contract.topic("rejoin")
        first = publisher.publish_many(topic, ["a", "b"])
        contract.expect_all(consumer.subscribe(topic, group="g"), 2, promise)
        waiting = publisher.publish_many(topic, ["c"])
        rejoined = consumer.subscribe(topic, group="g", start="earliest")
        got = contract.expect_all(rejoined, 1, f"{promise}: the waiting message was skipped")
        assert [d.id for d in got] == waiting, f"{promise}: the group was rewound to {first}"
        contract.expect_nothing(rejoined, f"{promise}: the group was rewound")
        late = consumer.subscribe(topic, group="g", start="latest")
        more = publisher.publish_many(topic, ["d"])
        assert [d.id for d in contract.expect_all(late, 1, promise)] == more, promise
        with pytest.raises(InvalidOption):
            consumer.subscribe(topic, group="other", start="not a position")

    @requires(Capability.PATTERNS | Capability.REPLAY)
    @pytest.mark.parametrize(
        "start", [None, "latest", "earliest"], ids=["default", "latest", "earliest"]
    )
    def test_pattern_subscription_start(self, contract: ContractEnv, start: str | None) -> None:
        """A pattern subscription's start (latest by default, earliest) means what it says.

        A pattern subscription with ``start="latest"``, the default, gets what is
        published after it subscribed, in topics that existed then and in topics made
        later; with ``start="earliest"`` it also reads every matching topic's history."""
        label = start or "default"
        promise = f"a pattern subscription starts where it says ({label})"
        publisher, consumer = contract.broker(), contract.broker()
        base = contract.topic("glob-start")
        history = publisher.publish_many(f"{base}:room:a", ["a1"])
        history += publisher.publish_many(f"{base}:room:b", ["b1"])
        publisher.publish(f"{base}:lobby", "not a room")
        subscription = consumer.subscribe(f"{base}:room:*", pattern=True, start=start)
        later = publisher.publish_many(f"{base}:room:a", ["a2"])
        later += publisher.publish_many(f"{base}:room:c", ["c1"])  # a topic made later
        expected = history + later if start == "earliest" else later
        got = contract.expect_all(subscription, len(expected), promise)
        early = sorted(d.body for d in got if d.id in history and d.id not in expected)
        assert not early, f"{promise}: it read before its start: {early}"
        assert sorted(d.id for d in got) == sorted(expected), (
            f"{promise}: got {sorted(d.body for d in got)}"
        )
        contract.expect_nothing(subscription, f"{promise}: it read before its start")
