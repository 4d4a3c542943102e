"""Where a redis+list topic lives: its queue, and the keys that track deliveries."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from brokerkit._topics import dead_letter_topic_of
from brokerkit.backends.redis._keys import (
    Keyspace,
    check_cluster_template,
    hash_tagged,
    split_dead_letter,
)
from brokerkit.exceptions import InvalidOption

__all__ = ["OWN_PARTS", "ListKeys", "check_queue_key", "list_keys"]


@dataclass(frozen=True)
class ListKeys:
    """The keys of one topic; all of them hash to the queue's cluster slot.

    :ivar queue: the list producers LPUSH to (``brokerkit:{orders}``).
    :ivar deadlines: ZSET of lease group -> the earliest deadline it may hold, in server
        milliseconds: the rescuers' index (see :mod:`.scripts`).
    :ivar consumers: ZSET of consumer -> heartbeat deadline, in server milliseconds.
    :ivar dead_letters: the queue of the dead-letter topic (``brokerkit:{orders}.dlq``);
        the queue itself at the last level, where a topic is its own dead-letter topic
        (:func:`~brokerkit._topics.dead_letter_topic_of`): a dead letter is pushed
        back to its tail, as a new message.
    :ivar processing_prefix: a consumer's processing list is this + its name.
    :ivar leases_prefix: a consumer's lease hash is this + its name: where versions
        before batches recorded each delivered element (``<nonce><seq>`` -> element).
    :ivar fetches_prefix: a consumer's fetches hash (the nonce of each of its fetches
        -> a flag a delivery of that batch: leased, leased under a value of its own,
        settled) is this + its name.
    :ivar batches_prefix: the list of the elements one fetch leased (a *batch*, as
        they came out of the queue, next-out first) is this + ``<nonce>:<consumer>``.
    :ivar moving_prefix: a consumer's fetch that moves its elements with ``LMOVE``
        renames the queue to this + its name for the moves, and back, within one
        transaction (see :mod:`.scripts`, *Moves*); only a server that refused its
        ``MULTI`` can leave elements there, until the consumer's next fetch or a
        rescue gives them back.
    :ivar expiry: HASH of receipt -> ``<lease deadline>.<delivered>``, in server milliseconds.
    :ivar attempts: HASH of the SHA-1 of a raw element (one another program wrote, or
        one published with ``raw=true``) -> its deliveries so far: a raw element goes
        back to the queue as it was, so its count is kept here.
    :ivar returned: STRING, how many elements at the head of the queue came back (a
        hand-back, a due retry, an orphan): each goes out alone (see :mod:`.scripts`).
    :ivar scheduled: ZSET of messages held for a due time (delayed publishes and
        delayed retries) -> the due time, in server milliseconds; a member is
        ``P<message id>\n<element>`` or ``R<receipt>\n<element>`` (see :mod:`.scripts`).
    """

    queue: str
    deadlines: str
    consumers: str
    dead_letters: str
    processing_prefix: str
    leases_prefix: str
    fetches_prefix: str
    batches_prefix: str
    moving_prefix: str
    expiry: str
    attempts: str
    scheduled: str
    returned: str

    def processing(self, consumer: str) -> str:
        """The processing list of ``consumer``."""
        return self.processing_prefix + consumer

    def leases(self, consumer: str) -> str:
        """The lease hash of ``consumer``."""
        return self.leases_prefix + consumer

    def fetches(self, consumer: str) -> str:
        """The fetches hash of ``consumer``."""
        return self.fetches_prefix + consumer

    def batch(self, nonce: str, consumer: str) -> str:
        """The batch list of the fetch of ``consumer`` that took receipts ``nonce``."""
        return f"{self.batches_prefix}{nonce}:{consumer}"

    def moving(self, consumer: str) -> str:
        """The queue's name during the moves of a fetch of ``consumer``."""
        return self.moving_prefix + consumer

    def script_keys(self) -> list[str]:
        """The keys every script of :mod:`.scripts` declares."""
        return [
            self.queue,
            self.deadlines,
            self.consumers,
            self.dead_letters,
            self.expiry,
            self.attempts,
            self.scheduled,
            self.returned,
        ]

    def expected_types(self) -> dict[str, str]:
        """The Redis type each fixed key must have, for a clear WRONGTYPE error."""
        return {
            self.queue: "list",
            self.dead_letters: "list",
            self.deadlines: "zset",
            self.consumers: "zset",
            self.expiry: "hash",
            self.attempts: "hash",
            self.scheduled: "zset",
            self.returned: "string",
        }


def check_queue_key(template: str, *, cluster: bool = False) -> str:
    """Check a ``queue_key`` template: it names the queue of a topic, with one ``*``
    standing for the topic, as in ``queue:*``.

    :param cluster: the template is for a Redis Cluster, where every key of a topic
        must share the queue's slot.
    :raises InvalidOption: no ``*``, more than one, or white space; or, on a cluster, a
        ``}`` outside a hash tag (``a}b:*``, ``{}:*``): a key with one is hashed whole,
        and the keys named after it (``{a}b:orders}:deadlines``) are not, so no script
        of the topic could run (Redis: "all keys must map to the same key slot").
    """
    if template.count("*") != 1 or any(c.isspace() for c in template):
        raise InvalidOption(
            f"queue_key must contain exactly one '*' standing for the topic and no spaces, "
            f"as in 'queue:*' (topic 'orders' -> key 'queue:orders'); got {template!r}"
        )
    if cluster:
        check_cluster_template(
            template,
            option="queue_key",
            keys="queues",
            named="'{<queue>}:deadlines', ...",
            plain="queue",
        )
    return template


def list_keys(prefix: str, topic: str, queue_key: str | None = None) -> ListKeys:
    """The keys of ``topic``: under ``prefix`` with the topic as hash tag, or, with a
    ``queue_key`` template, the queue the template names (``*`` replaced by the
    topic) and the other keys named after it (``{queue:orders}:deadlines``, in the
    queue's slot)."""
    dead_letter_topic = dead_letter_topic_of(topic)
    if queue_key is None:
        space = Keyspace(prefix)
        dead = space.topic(dead_letter_topic)
        return _layout(space.topic(topic), lambda part: space.topic(topic, part), dead)
    stem, dlq = split_dead_letter(topic)
    base = queue_key.replace("*", stem)
    tagged = hash_tagged(base)
    queue = base if not dlq else tagged + dlq
    own = tagged + dlq
    dead = tagged + split_dead_letter(dead_letter_topic)[1]
    return _layout(queue, lambda part: f"{own}:{part}", dead)


#: The parts of a topic's keys besides its queue (``{queue:orders}:<part>``).
OWN_PARTS = (
    "deadlines",
    "consumers",
    "processing",
    "leases",
    "fetches",
    "batch",
    "moving",
    "expiry",
    "attempts",
    "scheduled",
    "returned",
)


def _layout(queue: str, name: Callable[[str], str], dead_letters: str) -> ListKeys:
    return ListKeys(
        queue=queue,
        deadlines=name("deadlines"),
        consumers=name("consumers"),
        dead_letters=dead_letters,
        processing_prefix=name("processing") + ":",
        leases_prefix=name("leases") + ":",
        fetches_prefix=name("fetches") + ":",
        batches_prefix=name("batch") + ":",
        moving_prefix=name("moving") + ":",
        expiry=name("expiry"),
        attempts=name("attempts"),
        scheduled=name("scheduled"),
        returned=name("returned"),
    )
