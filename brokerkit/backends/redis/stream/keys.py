"""Where a redis+stream topic lives (no I/O): under the prefix, or in a stream key
that another program names and fills (the ``stream_key`` option)."""

from __future__ import annotations

from dataclasses import dataclass

from brokerkit.backends.redis._keys import (
    Keyspace,
    check_cluster_template,
    hash_tagged,
    split_dead_letter,
)
from brokerkit.exceptions import InvalidOption

__all__ = ["StreamKeyspace", "check_stream_key"]


def check_stream_key(template: str, *, cluster: bool = False) -> str:
    """Check a ``stream_key`` template: the stream of a topic, with one ``*``
    standing for the topic, as in ``events:*``.

    :param cluster: the template is for a Redis Cluster, where every key of a topic
        must share the stream's slot.
    :raises InvalidOption: no ``*``, more than one, or white space; or, on a cluster, a
        ``}`` outside a hash tag (``a}b:*``, ``{}:*``): a key with one is hashed whole,
        and the keys named after it (``{a}b:orders}:vt``) are not, so no script of the
        topic could run (Redis: "all keys must map to the same key slot").
    """
    if (
        not isinstance(template, str)
        or template.count("*") != 1
        or any(c.isspace() for c in template)
    ):
        raise InvalidOption(
            "stream_key must contain exactly one '*' standing for the topic and no spaces, "
            f"as in 'events:*' (topic 'orders' -> stream 'events:orders'); got {template!r}"
        )
    if cluster:
        check_cluster_template(
            template,
            option="stream_key",
            keys="streams",
            named="'{<stream>}:vt', '{<stream>}.dlq'",
            plain="events",
        )
    return template


@dataclass(frozen=True)
class StreamKeyspace:
    """The keys of each topic; all of one topic's keys share one cluster slot.

    Without a template, a topic is ``<prefix>:{<topic>}`` and its parts
    ``<prefix>:{<topic>}:<part>`` (see :class:`~brokerkit.backends.redis._keys.Keyspace`).
    With ``stream_key="events:*"``, topic ``orders`` is the stream ``events:orders``
    itself (another program's key, taken over as it is); brokerkit's own keys for it
    carry the stream's name as their hash tag, so they share its slot:
    ``{events:orders}:vt``, ``{events:orders}:lost``, and the dead-letter topic
    ``orders.dlq`` is ``{events:orders}.dlq``. A template that holds a hash tag
    already (``{app}:events:*``) keeps it.
    """

    prefix: str
    template: str | None = None

    def topic(self, topic: str, *parts: str) -> str:
        """The key of ``topic``, or of one of its parts (``vt``, ``lost``)."""
        if self.template is None:
            return Keyspace(self.prefix).topic(topic, *parts)
        stem, dead = split_dead_letter(topic)
        base = self.template.replace("*", stem)
        tagged = hash_tagged(base)
        key = tagged + dead if dead or parts else base
        return ":".join((key, *parts)) if parts else key
