"""A refused topic, group or pattern's error names what was wrong (the character and
where it stands, or the length) and what is valid. Before, a topic error gave the
name and the list of characters only ("letters", which refused 'é' all the same), a
stray escape byte ('\\x1b[31m') was told to pass pattern=True, a too-long pattern's
error held the whole pattern (100,000 characters of it) without saying its length was
the fault, and a group's error rewrote every "a topic" of the message, the name's own
text included."""

from __future__ import annotations

import pytest

import brokerkit
from brokerkit import InvalidTopic


@pytest.fixture
def broker() -> brokerkit.Broker:
    return brokerkit.connect("memory://")


@pytest.mark.parametrize(
    ("topic", "wrong"),
    [
        ("caf\u00e9", "'\u00e9' at position 3 is not allowed"),
        ("orders created", "' ' at position 6 is not allowed"),
        ("a\x00b", "'\\x00' at position 1 is not allowed"),
        (".hidden", "it starts with '.'"),
    ],
)
def test_a_topic_error_names_the_character_and_says_ascii(
    broker: brokerkit.Broker, topic: str, wrong: str
) -> None:
    with pytest.raises(InvalidTopic) as raised:
        broker.publish(topic, "x")
    message = str(raised.value)
    assert wrong in message
    assert "ASCII letters, digits and _ . : / @ = + -" in message
    assert "pattern=True" not in message


def test_an_escape_sequence_is_not_taken_for_a_pattern(broker: brokerkit.Broker) -> None:
    with pytest.raises(InvalidTopic) as raised:
        broker.publish("\x1b[31mred", "x")
    assert "'\\x1b' at position 0" in str(raised.value)
    assert "pattern=True" not in str(raised.value)
    with pytest.raises(InvalidTopic, match=r"only subscribe\(..., pattern=True\)"):
        broker.subscribe("chat:*")


def test_a_too_long_pattern_says_so_without_echoing_it(broker: brokerkit.Broker) -> None:
    with pytest.raises(InvalidTopic) as raised:
        broker.subscribe("a" * 100_000, pattern=True)
    assert str(raised.value) == "a pattern is at most 200 characters, got 100000"


def test_a_pattern_error_names_the_character(broker: brokerkit.Broker) -> None:
    with pytest.raises(InvalidTopic) as raised:
        broker.subscribe("chat room:*", pattern=True)
    message = str(raised.value)
    assert "' ' at position 4 is not allowed" in message
    assert "the wildcards * ? [ ] !" in message
    assert "not starting with" not in message  # '*.x' and '.x' are valid patterns


def test_a_group_error_keeps_the_groups_own_name(broker: brokerkit.Broker) -> None:
    with pytest.raises(InvalidTopic) as raised:
        broker.subscribe("t", group="a topic")
    message = str(raised.value)
    assert message.startswith("invalid group 'a topic': ' ' at position 1 is not allowed")
    assert "a group is made of ASCII letters" in message
