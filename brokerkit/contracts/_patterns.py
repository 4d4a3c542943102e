"""Contract tests of pattern subscriptions: the glob syntax they follow, and the
dead-letter topics a pattern matches.

:class:`PatternContract` is a base of :class:`~brokerkit.contracts._scoped.ScopeContract`,
which the suite's :class:`~brokerkit.contracts.BrokerContract` takes these tests from.
"""

from __future__ import annotations

import pytest

from brokerkit._capabilities import Capability
from brokerkit.contracts._harness import ContractEnv, requires

__all__ = ["GLOB_CASES", "PatternContract"]

#: (pattern, topic, matches) after the test's own prefix: the glob syntax the docs
#: state. ``*`` is any run of characters (``:`` and ``.`` included, or none), ``?``
#: one character, ``[abc]`` one of a set, ``[a-c]`` one of a range, ``[!a]`` any
#: character but these; the whole topic must match. Sets read as
#: :func:`fnmatch.fnmatchcase` reads them: a ``-`` first or last and a ``]`` first are
#: literal, a reversed range matches nothing, a ``[`` with no ``]`` is a literal ``[``.
GLOB_CASES: list[tuple[str, str, bool]] = [
    ("room:*", "room:a", True),
    ("room:*", "room:", True),
    ("room:*", "room:a:b.c", True),
    ("room:*", "rooms:a", False),
    ("room:*", "lobby:room:a", False),
    ("*:a", "room:a", True),
    ("*:a", "room:ab", False),
    ("room:?", "room:a", True),
    ("room:?", "room:ab", False),
    ("room:?", "room:", False),
    ("room:[ab]", "room:b", True),
    ("room:[ab]", "room:c", False),
    ("room:[a-c]", "room:c", True),
    ("room:[a-c]", "room:d", False),
    ("room:[!a]", "room:b", True),
    ("room:[!a]", "room:a", False),
    ("room", "room", True),
    ("room", "room:a", False),
    ("order[.-]*", "order-created", True),
    ("order[.-]*", "order.created", True),
    ("x[a-]", "x-", True),
    ("d[--0]", "d.", True),
    ("room:[]a]", "room:a", True),
    ("room:[!]a]", "room:b", True),
    ("v[9-0]", "v5", False),
    ("v[!9-0]", "v5", True),
    ("room:[b", "room:b", False),
    ("a[!]", "ab", False),
]


class PatternContract:
    """Pattern subscriptions match the topics, and dead-letter topics, the glob says."""

    @requires(Capability.PATTERNS)
    @pytest.mark.parametrize(("pattern", "topic", "matches"), GLOB_CASES)
    def test_pattern_glob_syntax(
        self, contract: ContractEnv, pattern: str, topic: str, matches: bool
    ) -> None:
        """Pattern subscriptions follow the stated glob syntax in full.

        Pattern subscriptions follow the stated glob syntax: ``*``, ``?``, ``[abc]``,
        ``[a-c]`` and ``[!a]``, matched against the whole topic name."""
        promise = f"glob syntax: {pattern!r} {'matches' if matches else 'does not match'} {topic!r}"
        publisher, consumer = contract.broker(), contract.broker()
        base = contract.topic("glob")
        subscription = consumer.subscribe(f"{base}.{pattern}", pattern=True)
        sent = publisher.publish(f"{base}.{topic}", "x")
        if matches:
            assert contract.expect(subscription, promise).id == sent, promise
        else:
            contract.expect_nothing(subscription, promise)

    @requires(Capability.PATTERNS | Capability.ACK | Capability.DEAD_LETTER)
    def test_a_pattern_matches_the_dead_letter_topics_of_its_topics(
        self, contract: ContractEnv
    ) -> None:
        """A pattern matches the dead-letter topics of the topics it matches.

        A dead-letter topic, ``broker.dead_letter_topic(topic)``, is a topic like any
        other: a pattern that matches its name gets its dead letters (``orders.*``
        matches ``orders.x.dlq``), each naming the dead-letter topic, and a pattern
        that does not (``orders.?``) gets none."""
        promise = "a pattern matches the dead-letter topics of its topics"
        publisher, consumer = contract.broker(), contract.broker()
        base = contract.topic("glob-dlq")
        topic = f"{base}.x"
        wide = consumer.subscribe(f"{base}.*", pattern=True)
        narrow = consumer.subscribe(f"{base}.?", pattern=True)
        worker = publisher.subscribe(topic)
        sent = publisher.publish(topic, "poison")
        for subscription in (wide, narrow):
            got = contract.expect(subscription, f"{promise}: the message itself")
            assert (got.id, got.topic) == (sent, topic), f"{promise}: another message came"
            got.ack()
        contract.expect(worker, promise).nack(requeue=False)
        dead_letter_topic = publisher.dead_letter_topic(topic)
        dead = contract.expect(wide, f"{promise}: {base}.* got nothing from {dead_letter_topic}")
        assert (dead.id, dead.topic) == (sent, dead_letter_topic), (
            f"{promise}: {dead.body!r} came from {dead.topic!r}, not {dead_letter_topic!r}"
        )
        dead.ack()
        contract.expect_nothing([wide, narrow], f"{promise}: once, and only where it matches")
