"""memory://: the order in which held messages come out when several come due in one
look, as docs/delays.md describes it: delayed publishes in due order at the end of
the topic, a due retry first in its group's line, as an immediate requeue would be
(redis+list does the same), so due order is a promise among delayed publishes only."""

from __future__ import annotations

from pathlib import Path

import brokerkit
from brokerkit import ManualClock

DELAYS_PAGE = Path(__file__).resolve().parent.parent / "docs" / "delays.md"


def _bodies(subscription: brokerkit.Subscription) -> list[object]:
    bodies = []
    while (delivery := subscription.receive(timeout=0)) is not None:
        bodies.append(delivery.body)
        delivery.ack()
    return bodies


def test_a_due_retry_comes_out_first_in_line_as_an_immediate_requeue_does() -> None:
    clock = ManualClock()
    with brokerkit.connect("memory://", clock=clock) as broker:
        broker.publish("t", "retried")
        subscription = broker.subscribe("t", group="g")
        delivery = subscription.receive(timeout=0)
        assert delivery is not None
        broker.publish("t", "published, due at +3", delay=3)
        delivery.nack(delay=5)  # due at +5
        broker.publish("t", "published, due at +4", delay=4)
        clock.advance(6)  # all three come due in one look
        assert _bodies(subscription) == [
            "retried",
            "published, due at +3",
            "published, due at +4",
        ]


def test_delayed_retries_of_a_group_come_due_together_in_due_order() -> None:
    clock = ManualClock()
    with brokerkit.connect("memory://", clock=clock) as broker:
        broker.publish_many("t", ["later", "sooner", "waiting"])
        subscription = broker.subscribe("t", group="g", prefetch=2)
        later, sooner = subscription.receive(timeout=0), subscription.receive(timeout=0)
        assert later is not None and sooner is not None
        later.nack(delay=5)
        sooner.nack(delay=2)
        clock.advance(5)
        assert _bodies(subscription) == ["sooner", "later", "waiting"]


def test_the_delays_page_promises_due_order_among_delayed_publishes_only() -> None:
    """The page promised that every held message comes out in due order, which no
    backend that puts a due retry first in line keeps."""
    text = " ".join(DELAYS_PAGE.read_text().split())
    assert "Messages come out in the order they are due" not in text
    assert "Delayed publishes come out in the order they are due" in text
    assert "A delayed retry is not ordered with them" in text
