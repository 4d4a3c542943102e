"""``brokerkit dlq --move`` on a topic of the last dead-letter level: that topic is its
own dead-letter topic (459981d), so a dead letter's original topic is the topic it is
read from. Moving it would republish it into the topic being read, read it again, and
never end; it is listed as not moved instead, and left where it is, once."""

from __future__ import annotations

import threading

import pytest

import brokerkit
from brokerkit._topics import DEAD_LETTER_SUFFIX, MAX_DEAD_LETTER_LEVELS
from brokerkit.cli._dlq import move_dead_letters

LAST_LEVEL = "orders" + DEAD_LETTER_SUFFIX * MAX_DEAD_LETTER_LEVELS


@pytest.mark.parametrize("dry_run", [False, True])
def test_moving_the_last_levels_dead_letters_ends_and_keeps_them(dry_run: bool) -> None:
    with brokerkit.connect("memory://") as broker:
        assert broker.dead_letter_topic(LAST_LEVEL) == LAST_LEVEL
        broker.publish(LAST_LEVEL, b"poison")
        with broker.subscribe(LAST_LEVEL) as subscription:
            subscription.receive(timeout=5).nack(requeue=False)
        stored = broker.inspect(LAST_LEVEL).length
        listed: list[object] = []
        mover = threading.Thread(
            target=lambda: listed.extend(
                move_dead_letters(broker, LAST_LEVEL, every=True, dry_run=dry_run, wait=0.2)
            ),
            daemon=True,
        )
        mover.start()
        mover.join(30)
        assert not mover.is_alive(), "moving the last level's dead letters never ended"
        assert listed  # the dead letter, and (where a new group reads from the start) the rest
        for dead_letter in listed:
            assert dead_letter.moved_to is None  # type: ignore[attr-defined]
            assert "original topic already" in (dead_letter.error or "")  # type: ignore[attr-defined]
        assert broker.inspect(LAST_LEVEL).length == stored
