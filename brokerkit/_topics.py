"""What a valid topic, pattern and header look like."""

from __future__ import annotations

import re
from collections.abc import Mapping
from fnmatch import fnmatchcase

from brokerkit.exceptions import InvalidMessage, InvalidTopic

__all__ = ["MAX_TOPIC_LENGTH", "check_headers", "check_pattern", "check_topic", "topic_matches"]

MAX_TOPIC_LENGTH = 200
_TOPIC = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.:/@=+-]*")
_PATTERN = re.compile(r"[A-Za-z0-9_.:/@=+*?\[\]!-]+")
_VALID = "letters, digits and _ . : / @ = + - (not starting with a punctuation mark)"


def check_topic(topic: object) -> str:
    """Return ``topic`` if it is a valid topic name; raise InvalidTopic saying why not."""
    if not isinstance(topic, str):
        raise InvalidTopic(f"a topic must be a str, not {type(topic).__name__}")
    if not topic:
        raise InvalidTopic("a topic cannot be empty")
    if len(topic) > MAX_TOPIC_LENGTH:
        raise InvalidTopic(f"a topic is at most {MAX_TOPIC_LENGTH} characters, got {len(topic)}")
    if _TOPIC.fullmatch(topic) is None:
        hint = ""
        if any(c in topic for c in "*?["):
            hint = "; to subscribe to a pattern pass pattern=True"
        raise InvalidTopic(f"invalid topic {topic!r}: a topic is made of {_VALID}{hint}")
    return topic


def check_pattern(pattern: object) -> str:
    """Return ``pattern`` if it is a valid glob pattern over topic names."""
    if not isinstance(pattern, str):
        raise InvalidTopic(f"a pattern must be a str, not {type(pattern).__name__}")
    if not pattern or len(pattern) > MAX_TOPIC_LENGTH or _PATTERN.fullmatch(pattern) is None:
        raise InvalidTopic(
            f"invalid pattern {pattern!r}: a glob over topic names, made of {_VALID} "
            "and the wildcards * ? [ ]"
        )
    return pattern


def topic_matches(pattern: str, topic: str) -> bool:
    """Whether a glob pattern matches a topic, as Redis PSUBSCRIBE matches a channel."""
    return fnmatchcase(topic, pattern)


def check_headers(headers: object) -> dict[str, str]:
    """A copy of ``headers`` if it maps str to str; raise InvalidMessage otherwise."""
    if headers is None:
        return {}
    if not isinstance(headers, Mapping):
        raise InvalidMessage(
            f"headers must be a mapping of str to str, not {type(headers).__name__}"
        )
    checked: dict[str, str] = {}
    for key, value in headers.items():
        if not isinstance(key, str) or not key:
            raise InvalidMessage(f"header names must be non-empty str, got {key!r}")
        if not isinstance(value, str):
            raise InvalidMessage(
                f"header {key!r} must have a str value, got {type(value).__name__}; "
                "convert it with str() or put structured data in the body"
            )
        checked[key] = value
    return checked
