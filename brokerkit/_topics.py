"""What a valid topic, pattern and header look like."""

from __future__ import annotations

import re
from collections.abc import Mapping
from fnmatch import fnmatchcase

from brokerkit.exceptions import InvalidMessage, InvalidOption, InvalidTopic

__all__ = [
    "MAX_TOPIC_LENGTH",
    "RESERVED_HEADER_PREFIX",
    "check_consumer",
    "check_group",
    "check_headers",
    "check_pattern",
    "check_topic",
    "dead_letter_topic_of",
    "is_topic",
    "topic_matches",
]

#: Headers under this prefix are written by the broker when it dead-letters a message
#: (``x-dead-letter-reason``); a publisher may not set them.
RESERVED_HEADER_PREFIX = "x-dead-letter-"

MAX_TOPIC_LENGTH = 200
#: What :meth:`~brokerkit.Broker.dead_letter_topic` appends; up to this many of them
#: do not count in a topic's length, so that every valid topic's dead-letter topic
#: (and its dead-letter topic, and so on) is valid too. A topic that ends with this
#: many (the last level) is its own dead-letter topic (:func:`dead_letter_topic_of`).
DEAD_LETTER_SUFFIX, MAX_DEAD_LETTER_LEVELS = ".dlq", 10
_TOPIC = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.:/@=+-]*")
_PATTERN = re.compile(r"[A-Za-z0-9_.:/@=+*?\[\]!-]+")
_TOPIC_CHARACTERS = frozenset(
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.:/@=+-"
)
_PATTERN_CHARACTERS = _TOPIC_CHARACTERS | frozenset("*?[]!")
_VALID = "ASCII letters, digits and _ . : / @ = + - (starting with a letter, digit or _)"
_VALID_PATTERN = "ASCII letters, digits, _ . : / @ = + - and the wildcards * ? [ ] !"


def check_topic(topic: object) -> str:
    """Return ``topic`` if it is a valid topic name; raise InvalidTopic saying why not.

    A topic is at most :data:`MAX_TOPIC_LENGTH` characters, not counting up to
    :data:`MAX_DEAD_LETTER_LEVELS` ``.dlq`` suffixes at its end."""
    if not isinstance(topic, str):
        raise InvalidTopic(f"a topic must be a str, not {type(topic).__name__}")
    if len(topic) > MAX_TOPIC_LENGTH and len(_without_dead_letter_suffixes(topic)) > (
        MAX_TOPIC_LENGTH
    ):
        raise InvalidTopic(
            f"a topic is at most {MAX_TOPIC_LENGTH} characters (not counting up to "
            f"{MAX_DEAD_LETTER_LEVELS} {DEAD_LETTER_SUFFIX} suffixes), got {len(topic)}"
        )
    if _TOPIC.fullmatch(topic) is None:
        hint = ""
        if any(c in topic for c in "*?[") and _PATTERN.fullmatch(topic) is not None:
            hint = (
                "; only subscribe(..., pattern=True) and consume(..., pattern=True) read a pattern"
            )
        raise InvalidTopic(_invalid("topic", topic) + hint)
    return topic


def check_group(group: object) -> str:
    """Return ``group`` if it is a valid group name (made as a topic is, at most
    :data:`MAX_TOPIC_LENGTH` characters); raise InvalidTopic naming it as a group."""
    if not isinstance(group, str):
        raise InvalidTopic(f"a group must be a str, not {type(group).__name__}")
    if len(group) > MAX_TOPIC_LENGTH:
        raise InvalidTopic(f"a group is at most {MAX_TOPIC_LENGTH} characters, got {len(group)}")
    if _TOPIC.fullmatch(group) is None:
        raise InvalidTopic(_invalid("group", group))
    return group


def _invalid(kind: str, name: str) -> str:
    """Why ``name``, a topic or group (``kind``) of a valid length, is not valid: the
    first character not allowed where it stands, and what is."""
    if not name:
        return f"a {kind} cannot be empty"
    return (
        f"invalid {kind} {name!r}: {_what_is_wrong(name, _TOPIC_CHARACTERS)}; "
        f"a {kind} is made of {_VALID}"
    )


def _what_is_wrong(name: str, allowed: frozenset[str]) -> str:
    """The first character of ``name`` (not empty) that is not allowed there, and
    where (a name of 200 characters may hide it among many)."""
    for position, character in enumerate(name):
        if character not in allowed:
            return f"{character!r} at position {position} is not allowed"
    return f"it starts with {name[0]!r}"


def is_topic(name: str) -> bool:
    """Whether ``name`` is a valid topic (:func:`check_topic` would return it)."""
    try:
        check_topic(name)
    except InvalidTopic:
        return False
    return True


def dead_letter_topic_of(topic: str) -> str:
    """The topic where the dead letters of ``topic`` (a valid topic) go: ``topic``
    plus ``.dlq``, up to the last level: a topic that ends with
    :data:`MAX_DEAD_LETTER_LEVELS` ``.dlq`` suffixes (or more) is its own dead-letter
    topic, so that dead letters of dead letters collect there and no name grows past
    what :func:`check_topic` accepts. Every backend names dead-letter topics by this."""
    if topic.endswith(DEAD_LETTER_SUFFIX * MAX_DEAD_LETTER_LEVELS):
        return topic
    return topic + DEAD_LETTER_SUFFIX


def _without_dead_letter_suffixes(topic: str) -> str:
    for _ in range(MAX_DEAD_LETTER_LEVELS):
        if not topic.endswith(DEAD_LETTER_SUFFIX):
            break
        topic = topic[: -len(DEAD_LETTER_SUFFIX)]
    return topic


def check_pattern(pattern: object) -> str:
    """Return ``pattern`` if it is a valid glob pattern over topic names."""
    if not isinstance(pattern, str):
        raise InvalidTopic(f"a pattern must be a str, not {type(pattern).__name__}")
    if not pattern:
        raise InvalidTopic("a pattern cannot be empty")
    if len(pattern) > MAX_TOPIC_LENGTH:
        raise InvalidTopic(
            f"a pattern is at most {MAX_TOPIC_LENGTH} characters, got {len(pattern)}"
        )
    if _PATTERN.fullmatch(pattern) is None:
        raise InvalidTopic(
            f"invalid pattern {pattern!r}: {_what_is_wrong(pattern, _PATTERN_CHARACTERS)}; "
            f"a pattern is a glob over topic names, made of {_VALID_PATTERN}"
        )
    return pattern


def topic_matches(pattern: str, topic: str) -> bool:
    """Whether a glob pattern matches a topic: :func:`fnmatch.fnmatchcase`, on every
    backend (redis+pubsub rewrites the glob in Redis's dialect: see its ``globs``)."""
    return fnmatchcase(topic, pattern)


def check_headers(headers: object) -> dict[str, str]:
    """A copy of ``headers`` if it maps str to str; raise InvalidMessage otherwise.

    Names and values must be Unicode text that UTF-8 can hold (no lone surrogates,
    which no broker can store), and names must be non-empty. Names starting with
    ``x-dead-letter-`` (any case) are refused: only the broker writes them, when it
    dead-letters a message, so that a consumer of a dead-letter topic can trust
    them and a consumer of any other topic never sees them from a brokerkit
    publisher (a program that writes the broker's storage itself can write any
    header, as it can any message: who may write there is the broker's permissions'
    business). To re-publish a dead letter, drop those headers first.
    """
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
        if key.lower().startswith(RESERVED_HEADER_PREFIX):
            raise InvalidMessage(
                f"the header {key!r} is reserved: headers starting with "
                f"{RESERVED_HEADER_PREFIX!r} are set only by the broker when it dead-letters "
                "a message; remove it (to re-publish a dead letter, drop those headers)"
            )
        _check_unicode("header name", key)
        _check_unicode(f"the value of header {key!r}", value)
        checked[key] = value
    return checked


def check_consumer(consumer: object) -> str | None:
    """Return ``consumer`` if it is ``None`` or a valid consumer name (a non-empty str
    of at most :data:`MAX_TOPIC_LENGTH` UTF-8-encodable characters, no control
    characters); raise :class:`~brokerkit.InvalidOption` saying why not."""
    if consumer is None:
        return None
    if not isinstance(consumer, str):
        raise InvalidOption(f"a consumer name must be a str, not {type(consumer).__name__}")
    if not consumer or len(consumer) > MAX_TOPIC_LENGTH:
        raise InvalidOption(
            f"a consumer name is 1 to {MAX_TOPIC_LENGTH} characters, got {len(consumer)}"
        )
    if any(ord(c) < 32 or ord(c) == 127 for c in consumer):
        raise InvalidOption(f"a consumer name cannot hold control characters, got {consumer!r}")
    try:
        consumer.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidOption(
            f"the consumer name {consumer!r} is not valid Unicode (it holds a lone surrogate)"
        ) from None
    return consumer


def _check_unicode(what: str, text: str) -> None:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise InvalidMessage(
            f"{what} is not valid Unicode: it holds a lone surrogate "
            f"({text[exc.start : exc.end]!r} at position {exc.start}); "
            "headers are stored as UTF-8 text"
        ) from None
