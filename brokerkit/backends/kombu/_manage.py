"""inspect and purge on kombu+amqp: the counts of a topic's queues, read with passive
declares, beside the deliveries its broker holds; the purge of its groups' queues; and
deleting the queues and exchanges a broker declared."""

from __future__ import annotations

import functools
import time

import amqp.exceptions  # type: ignore[import-untyped]

from brokerkit._broker import DEFAULT_GROUP
from brokerkit._inspect import GroupInfo, TopicInfo
from brokerkit.backends.kombu._link import Link
from brokerkit.backends.kombu._names import SEPARATOR
from brokerkit.backends.kombu._reader import Reader
from brokerkit.exceptions import BrokerError, ConnectionFailed, InvalidOption

__all__ = [
    "dead_letter_queue",
    "delete_declared",
    "inspect_topic",
    "purge_topic",
    "queue_counts",
]


def inspect_topic(
    link: Link, topic: str, dead_topic: str, groups: list[str], readers: list[Reader]
) -> TopicInfo:
    """``topic``'s :class:`TopicInfo`: the queues of ``groups`` (the groups of it the
    broker knows of) and of its dead-letter topic ``dead_topic`` as RabbitMQ counts
    them, and the deliveries of it that ``readers`` hold.

    Read-only (passive declares): a group is reported where its queue exists, or
    where ``readers`` hold a delivery of it; a topic with neither (never published to
    nor subscribed to, a mistyped name) is reported empty, with no group, as on the
    other backends, and nothing is declared."""
    dead_queue = link.names.queue(dead_topic, DEFAULT_GROUP)
    queues = [link.names.queue(topic, g) for g in groups]
    link.names.check([*queues, dead_queue])  # queue.declare refuses longer names

    def look() -> dict[str, tuple[int, int] | None]:
        return {q: queue_counts(link, q) for q in [*queues, dead_queue]}

    counts = link.call(look)
    now = time.monotonic()
    leases = [
        lease for r in readers if r.subscription.topic == topic for lease in list(r.leases.values())
    ]
    infos = []
    for group in groups:
        found = counts.get(link.names.queue(topic, group))
        held = sum(1 for lease in leases if lease.reader.subscription.group == group)
        if found is not None or held:
            infos.append(GroupInfo(group, held, None if found is None else found[0]))
    default = counts.get(link.names.queue(topic, DEFAULT_GROUP))
    dead = counts.get(dead_queue)
    oldest = min((lease.delivered_at for lease in leases), default=None)
    return TopicInfo(
        topic=topic,
        length=default[0] if default else 0,
        in_flight=len(leases),
        dead_lettered=dead[0] if dead else 0,
        oldest_in_flight_age=None if oldest is None else now - oldest,
        groups=tuple(infos),
        details={
            "exchange": link.names.exchange(topic),
            "queues": {q: {"ready": c[0], "consumers": c[1]} for q, c in counts.items() if c},
            "in_flight_counts": "deliveries held through this broker's connection",
        },
    )


def queue_counts(link: Link, queue: str) -> tuple[int, int] | None:
    """``(ready messages, consumers)`` of ``queue``, or None if it does not exist."""
    channel = link.channel()
    try:
        ok = channel.queue_declare(queue, passive=True)
    except amqp.exceptions.NotFound:
        return None
    finally:
        if channel.is_open:
            channel.close()
    return int(ok.message_count), int(ok.consumer_count)


def dead_letter_queue(link: Link, topic: str, group: str) -> str | None:
    """The queue of ``group`` of ``topic`` if ``topic`` is a dead-letter topic
    (``<t>.dlq``) and ``group`` its default one; None for any other (call within
    :meth:`Link.call`). That queue is declared with its topic ``<t>`` (by a publish or
    subscribe of it): one that exists is only looked at (a passive declare), so that
    reading dead letters (``brokerkit dlq``) declares nothing, neither it nor the
    dead-letter topic of its own (``<t>.dlq.dlq``, declared when a dead letter of a
    dead letter is first sent there). A missing one is declared as ``<t>``'s
    declaration would (subscribing to a topic declares it), and nothing more.
    """
    if group != DEFAULT_GROUP or not topic.endswith(DLQ) or topic == DLQ:
        return None
    queue = link.names.queue(topic, group)
    if queue_counts(link, queue) is None:
        link.forget_group(topic, group)  # (gone, or never declared: declared now)
        link.ensure_queue(topic, group)
    return queue


def purge_topic(link: Link, topic: str, groups: list[str]) -> int:
    """Empty the queues of ``groups`` of ``topic``; how many messages that removed.

    Nothing is declared: a queue that does not exist (a topic never published to, a
    group's queue someone deleted) counts 0, and is declared anew at its next use
    (a publish, a subscribe), not here, where it would outlive the purge.
    """
    queues = [link.names.queue(topic, group) for group in groups]
    link.names.check(queues)  # queue.purge refuses longer names

    def purge() -> int:
        removed = 0
        for group, queue in zip(groups, queues, strict=True):
            count = _purge_queue(link, queue)
            if count is None:
                link.forget(topic, group)  # (gone: its next use declares it)
            else:
                removed += count
        return removed

    return link.call(purge)


def _purge_queue(link: Link, queue: str) -> int | None:
    """Purge ``queue`` on a channel of its own (a missing queue closes it); how many
    messages that removed, or None if it does not exist (call within
    :meth:`Link.call`)."""
    channel = link.channel()
    try:
        return int(channel.queue_purge(queue) or 0)
    except amqp.exceptions.NotFound:
        return None
    finally:
        if channel.is_open:
            channel.close()


def delete_declared(link: Link, exchanges: frozenset[str], queues: frozenset[str]) -> None:
    """Delete these queues and exchanges, each only if unused (see :func:`_delete`):
    only ones ``link`` declared (:attr:`Link.created_queues`,
    :attr:`Link.created_exchanges`). A topic's queues go first, then its exchange, then
    its dead-letter topic's (``a``'s, then ``a.dlq``'s, then ``a.dlq.dlq``'s); a
    dead-letter topic's are kept while a queue or the exchange of a topic
    dead-lettering there is still declared (``a.dlq``'s while ``a``'s exchange is, kept
    for a queue of another process's bound to it: RabbitMQ and brokerkit dead-letter
    ``a``'s messages there). Each one deleted (or found gone already) leaves those
    sets, and is declared anew by the next use.

    :raises InvalidOption: one ``link`` did not declare (nothing was deleted).
    :raises BrokerError: some were kept, in use (they stay in those sets).
    :raises ConnectionFailed: the connection failed (what was left stays in them).
    """
    with link.lock:
        foreign = sorted((exchanges - link.created_exchanges) | (queues - link.created_queues))
    if foreign:
        raise InvalidOption(f"not declared by this broker, so not deleted: {foreign}")
    kept: list[str] = []
    for kind, name in sorted(
        [*(("queue", q) for q in queues), *(("exchange", e) for e in exchanges)],
        key=lambda what: (_topic_of(what[1]).count(DLQ), what[0] == "exchange", what[1]),
    ):
        created = link.created_queues if kind == "queue" else link.created_exchanges
        with link.lock:
            declared = {_topic_of(n) for n in (*link.created_queues, *link.created_exchanges)}
        above = next((t for t in _dead_lettering(_topic_of(name)) if t in declared), None)
        if above is not None:
            kept.append(f"{kind} {name}: kept: {above!r}, still declared, dead-letters here")
            continue
        try:
            link.call(functools.partial(_delete, link, kind, name))
        except ConnectionFailed:
            raise  # (each of the rest would wait reconnect_timeout as well)
        except BrokerError as exc:
            kept.append(f"{kind} {name}: {exc}")
            continue
        with link.lock:
            created.discard(name)
            link._declared.discard(name)  # (the next use declares it again)
    if kept:
        raise BrokerError(f"not deleted: {'; '.join(kept)}")


#: What a dead-letter topic's name ends with.
DLQ = ".dlq"


def _topic_of(name: str) -> str:
    """The topic of a queue (``<prefix>|<topic>|<group>``) or exchange name."""
    return name.split(SEPARATOR)[1]


def _dead_lettering(topic: str) -> list[str]:
    """The topics whose dead letters reach ``topic``: ``a`` and ``a.dlq`` for
    ``a.dlq.dlq``."""
    above = []
    while topic.endswith(DLQ):
        topic = topic[: -len(DLQ)]
        above.append(topic)
    return above


def _delete(link: Link, kind: str, name: str) -> None:
    """Delete the queue or exchange ``name`` on a channel of its own (call under the
    link's lock, within :meth:`Link.call`); one gone already is done. Only one nobody
    uses: a queue with no consumer and no message, an exchange no queue is bound to
    (declaring is idempotent, so a name this broker declared may be another program's
    too, a group's queue that other processes consume from). A quorum queue takes no
    condition on its delete (RabbitMQ refuses ``if-empty`` and ``if-unused`` for them,
    closing the connection): its counts are looked at first, so a consumer or message
    that comes between the look and the delete goes with it.

    :raises BrokerError: kept, in use."""
    channel = link.channel()
    try:
        if kind == "queue":
            _, messages, consumers = channel.queue_declare(name, passive=True)
            if messages or consumers:
                raise BrokerError(
                    f"kept: it still has {messages} message(s) and {consumers} consumer(s)"
                )
            channel.queue_delete(name)
        else:
            channel.exchange_delete(name, if_unused=True)
    except amqp.exceptions.NotFound:
        pass  # gone already (RabbitMQ closed the channel)
    except amqp.exceptions.PreconditionFailed:
        raise BrokerError("kept: a queue is bound to it") from None
    finally:
        if channel.is_open:
            channel.close()
