"""nats+core: a pattern subscription's buffer keeps the messages of the topics it
matches, not of every topic under the prefix (review 32).

A subscription keeps at most BUFFER (10,000) messages for a reader that falls
behind, then drops the oldest. A pattern subscription listens to every subject under
the prefix (brokerkit's globs are not NATS's token wildcards) and matched them only
as it was read: every other topic's messages took room in its buffer, and a quiet
pattern on a busy prefix lost its own messages to them, though it had far fewer
than 10,000. Now what it does not match is dropped as it comes.
"""

from __future__ import annotations

import brokerkit
from brokerkit.backends.nats.core import BUFFER

#: Seconds a wait here may take at most: a hang guard, never a pace.
GUARD = 15.0


def test_a_pattern_keeps_its_own_messages_while_other_topics_are_busy(
    nats_url: str, nats_prefix: str
) -> None:
    url = nats_url.replace("nats://", "nats+core://", 1)
    with brokerkit.connect(url, prefix=nats_prefix) as broker:
        rooms = broker.subscribe("chat:room:*", pattern=True)
        broker.publish("chat:room:1", b"mine")
        for start in range(0, BUFFER, 1000):  # (a busy topic it does not match)
            broker.publish_many("chat:other", [b"x"] * min(1000, BUFFER - start))
        broker.publish("chat:room:2", b"also mine")
        got = []
        while (delivery := rooms.receive(timeout=1)) is not None:
            got.append(delivery.body)
        assert got == [b"mine", b"also mine"]
        rooms.close()
