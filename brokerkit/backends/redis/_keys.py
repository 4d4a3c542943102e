"""Where a topic lives in Redis: every key of one topic shares a cluster slot."""

from __future__ import annotations

from dataclasses import dataclass

from brokerkit._error_text import value_text
from brokerkit.exceptions import InvalidOption

__all__ = [
    "DEAD_LETTER_SUFFIX",
    "KeyTemplate",
    "Keyspace",
    "check_cluster_template",
    "hash_tagged",
    "split_dead_letter",
]

DEAD_LETTER_SUFFIX = ".dlq"


def split_dead_letter(topic: str) -> tuple[str, str]:
    """``topic`` as (the topic it dead-letters for, its ``.dlq`` suffixes):
    ``orders.dlq.dlq`` -> (``orders``, ``.dlq.dlq``), ``orders`` -> (``orders``, ``""``).

    Every trailing ``.dlq`` goes, so that a topic, its dead-letter topic and that
    one's dead-letter topic share one hash tag, hence one cluster slot. A topic that is
    nothing but ``.dlq`` suffixes keeps the first as its stem.
    """
    stem = topic
    while stem.endswith(DEAD_LETTER_SUFFIX) and len(stem) > len(DEAD_LETTER_SUFFIX):
        stem = stem[: -len(DEAD_LETTER_SUFFIX)]
    return stem, topic[len(stem) :]


@dataclass(frozen=True)
class Keyspace:
    """Key names under one prefix.

    A topic's keys are ``<prefix>:{<topic>}`` and ``<prefix>:{<topic>}:<part>...``;
    a dead-letter topic ``orders.dlq`` is ``<prefix>:{orders}.dlq`` and its own
    dead-letter topic ``orders.dlq.dlq`` is ``<prefix>:{orders}.dlq.dlq``, all in the
    slot of ``orders``, so that dead-lettering is one atomic script even on a cluster.
    """

    prefix: str

    def topic(self, topic: str, *parts: str) -> str:
        """The key of ``topic``, or of one of its parts (``processing``, ``dlq``...)."""
        tag, suffix = split_dead_letter(topic)
        key = f"{self.prefix}:{{{tag}}}{suffix}"
        return ":".join((key, *parts)) if parts else key

    def scan_pattern(self) -> str:
        """A SCAN MATCH pattern for every key of every topic under the prefix."""
        return f"{_glob_escape(self.prefix)}:{{*"

    def split(self, key: str) -> tuple[str, str] | None:
        """The topic a key belongs to and what follows the topic's own key in it
        (``("orders.dlq.dlq", ":processing:c1")`` for
        ``<prefix>:{orders}.dlq.dlq:processing:c1``, ``""`` for the topic's key), or
        None for a key under no topic's hash tag. The topic may be no valid one (a key
        another program wrote): ask :func:`~brokerkit._topics.is_topic`."""
        head = f"{self.prefix}:{{"
        close = key.find("}", len(head))
        if not key.startswith(head) or close < 0:
            return None
        topic, at = key[len(head) : close], close + 1
        while key.startswith(DEAD_LETTER_SUFFIX, at):  # orders.dlq.dlq's keys
            topic, at = topic + DEAD_LETTER_SUFFIX, at + len(DEAD_LETTER_SUFFIX)
        return topic, key[at:]


@dataclass(frozen=True)
class KeyTemplate:
    """A template naming each topic's key after another program's keys: ``queue:*``
    (one ``*`` standing for the topic). The topic ``orders`` is ``queue:orders``; its
    dead-letter topic ``orders.dlq`` is ``{queue:orders}.dlq`` (or, when the template
    holds a hash tag already, ``{app}:queue:orders.dlq``).
    """

    template: str

    @property
    def tagged(self) -> bool:
        """Whether the template holds a hash tag (its keys are their own tags if not)."""
        return _has_hash_tag(self.template)

    def scan_patterns(self) -> list[str]:
        """SCAN MATCH patterns for the keys of every topic and dead-letter topic."""
        keys = self._glob()
        if not self.tagged:
            return [keys, "\\{" + keys + "\\}" + DEAD_LETTER_SUFFIX + "*"]
        if self.template.endswith("*"):
            return [keys]  # a dead-letter topic's key (the topic's + .dlq) matches too
        return [keys, keys + DEAD_LETTER_SUFFIX + "*"]

    def part_pattern(self, part: str) -> str:
        """A SCAN MATCH pattern for the key of ``part`` (brokerkit's own key, such as
        ``expiry``) of every topic and dead-letter topic: ``{queue:orders}:expiry``."""
        keys = self._glob()
        if self.tagged:
            return f"{keys}*:{_glob_escape(part)}"
        return "\\{" + keys + "\\}*:" + _glob_escape(part)

    def own_key(self, part_key: str, part: str) -> str:
        """The topic's own key, from the key of its ``part``: ``queue:orders`` from
        ``{queue:orders}:scheduled``, ``{queue:orders}.dlq`` from
        ``{queue:orders}.dlq:scheduled``, ``{app}:q:orders`` from
        ``{app}:q:orders:scheduled``."""
        key = part_key[: -len(part) - 1]
        if not self.tagged and key.startswith("{") and key.endswith("}"):
            return key[1:-1]
        return key

    def topic_of(self, key: str, part: str = "") -> str | None:
        """The topic whose key (or whose ``part``'s key) ``key`` is, or None when the
        template does not name it."""
        if part:
            if not key.endswith(":" + part):
                return None
            key = key[: -len(part) - 1]
        if self.tagged:
            base, suffix = split_dead_letter(key)
        elif key.startswith("{"):
            close = key.find("}")
            base, suffix = key[1:close], key[close + 1 :]
            if close < 0 or suffix.replace(DEAD_LETTER_SUFFIX, "") or not (suffix or part):
                return None
        else:
            base, suffix = key, ""
        head, _, tail = self.template.partition("*")
        if len(base) <= len(head) + len(tail) or not base.startswith(head):
            return None
        if not base.endswith(tail):
            return None
        return base[len(head) : len(base) - len(tail)] + suffix

    def _glob(self) -> str:
        head, _, tail = self.template.partition("*")
        return f"{_glob_escape(head)}*{_glob_escape(tail)}"


def _glob_escape(text: str) -> str:
    return "".join(f"\\{c}" if c in "*?[]\\" else c for c in text)


def hash_tagged(key: str) -> str:
    """``key`` as the hash tag of the keys named after it: itself when Redis Cluster
    hashes it by a ``{...}`` part already, else ``{key}``."""
    return key if _has_hash_tag(key) else "{" + key + "}"


def check_cluster_template(
    template: str, *, option: str, keys: str, named: str, plain: str
) -> None:
    """Refuse a key template (one ``*`` standing for the topic) that holds a ``}``
    outside a hash tag (``a}b:*``, ``{}:*``), for a Redis Cluster: a key with one is
    hashed whole, and the keys brokerkit names after it (``{a}b:orders}:deadlines``)
    are not, so no script of the topic could run (Redis: "all keys must map to the
    same key slot").

    :param option: the option's name (``queue_key``), ``keys`` what its keys are
        (``queues``), ``named`` brokerkit's keys named after one, as the message shows
        them, and ``plain`` the name of the example templates (``queue``: ``queue:*``
        and ``{queue}:*``).
    :raises InvalidOption: naming the template, the problem and both ways out.
    """
    key = template.replace("*", "t")  # a topic holds no brace: any one will do
    if "}" in key and hash_tagged(key) != key:
        raise InvalidOption(
            f"{option} {value_text(template)} holds a '}}' outside a hash tag: on a Redis Cluster "
            f"its {keys} are hashed whole, and brokerkit's keys named after them "
            f"({named}) cannot share their slot; use a template without braces "
            f"('{plain}:*') or with a hash tag ('{{{plain}}}:*')"
        )


def _has_hash_tag(key: str) -> bool:
    """Whether Redis Cluster hashes ``key`` by a ``{...}`` part rather than whole (the
    first ``{`` and the first ``}`` after it, with something between)."""
    start = key.find("{")
    return start != -1 and key.find("}", start + 1) > start + 1
