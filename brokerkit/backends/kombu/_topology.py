"""Declaring on kombu+amqp: a topic's durable fanout exchange and its groups' quorum
queues bound to it (with the dead-letter topic's exchange as their
``x-dead-letter-exchange``), each declared once per connection and remembered; a
mixin of :class:`~brokerkit.backends.kombu._link.Link`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import amqp.exceptions  # type: ignore[import-untyped]

from brokerkit._topics import dead_letter_topic_of
from brokerkit.backends.kombu._names import SEPARATOR, Names

__all__ = ["QUEUE_ARGUMENTS", "Topology"]

#: The queue type of every queue brokerkit declares: quorum queues count deliveries
#: (``x-delivery-count``), which is how a delivery knows its attempt.
QUEUE_ARGUMENTS = {"x-queue-type": "quorum"}


class Topology:
    """The exchanges and queues a :class:`~brokerkit.backends.kombu._link.Link`
    declares (call under its lock)."""

    if TYPE_CHECKING:
        names: Names
        _declared: set[str]
        created_exchanges: set[str]
        created_queues: set[str]

        def publisher(self) -> Any: ...

        def channel(self) -> Any: ...

    def ensure_topic(self, topic: str) -> None:
        """Declare ``topic``'s exchange and default queue, and its dead-letter topic's,
        so that a message waits for its first consumer (call under the lock).

        :raises InvalidTopic: a name it would declare is too long for AMQP (nothing
            was declared).
        """
        from brokerkit._broker import DEFAULT_GROUP

        dead = dead_letter_topic_of(topic)
        declared, queue = self._declared, self.names.queue
        if queue(topic, DEFAULT_GROUP) in declared and queue(dead, DEFAULT_GROUP) in declared:
            return  # both declared (and checked) already: a publish's usual case
        self.check_names(topic)
        self.ensure_queue(topic, DEFAULT_GROUP)
        self.ensure_queue(dead, DEFAULT_GROUP)

    def forget(self, topic: str, group: str | None = None) -> None:
        """Declare ``topic``'s exchange and default queue and its dead-letter topic's
        (and ``group``'s queue, if given) anew at their next use: someone else (an
        operator, another process's ``delete``) may have deleted them since this link
        declared them (call under the lock)."""
        from brokerkit._broker import DEFAULT_GROUP

        wanted = [(topic, DEFAULT_GROUP), (dead_letter_topic_of(topic), DEFAULT_GROUP)]
        if group is not None:
            wanted.append((topic, group))
        for queue_topic, queue_group in wanted:
            self._declared.difference_update(self._names_of_queue(queue_topic, queue_group))

    def forget_group(self, topic: str, group: str) -> None:
        """Declare ``group``'s queue of ``topic`` and the topic's exchange (that the
        queue is bound to) anew at their next use (call under the lock): what a
        subscribe declares anew, as someone may have deleted them. The topic's
        default queue and its dead-letter topic's names stay remembered: a subscribe
        does not declare those again (a publish or dead letter that finds one gone
        does, see :func:`._publish._send_declared`)."""
        self._declared.difference_update(
            (self.names.queue(topic, group), self.names.exchange(topic))
        )

    def bind_groups_again(self, topic: str) -> None:
        """Bind again, to ``topic``'s exchange and its dead-letter topic's, the queues
        of their groups this link declared (call under the lock, once
        :meth:`ensure_topic` declared anew an exchange someone deleted: deleting an
        exchange deletes its bindings, and a group's queue left unbound would miss
        every message published from then on). A queue gone since stays gone: its
        group's next subscribe declares it.
        """
        from brokerkit._broker import DEFAULT_GROUP

        for each in dict.fromkeys((topic, dead_letter_topic_of(topic))):  # one at the last level
            head = self.names.queue(each, "")
            exchange = self.names.exchange(each)
            for queue in sorted(self.created_queues):
                group = queue[len(head) :]
                if not queue.startswith(head) or SEPARATOR in group or group == DEFAULT_GROUP:
                    continue  # (another topic's, or the default one: ensure_topic's)
                channel = self.channel()  # (one of its own: a missing queue closes it)
                try:
                    channel.queue_bind(queue, exchange)
                except amqp.exceptions.NotFound:
                    self._declared.discard(queue)
                finally:
                    if channel.is_open:
                        channel.close()

    def check_names(self, topic: str, group: str | None = None) -> None:
        """Check every name that declaring ``topic`` (and ``group``'s queue of it)
        builds, before anything is declared: see :meth:`Names.check`.

        :raises InvalidTopic: one is longer than AMQP allows.
        """
        from brokerkit._broker import DEFAULT_GROUP

        dead = dead_letter_topic_of(topic)
        wanted = [(topic, DEFAULT_GROUP), (dead, DEFAULT_GROUP)]
        if group is not None:
            wanted.append((topic, group))
        self.names.check(
            name
            for queue_topic, queue_group in wanted
            for name in self._names_of_queue(queue_topic, queue_group)
        )

    def _names_of_queue(self, topic: str, group: str) -> list[str]:
        """What :meth:`ensure_queue` declares: the queue, its topic's exchange and the
        dead-letter topic's (named as the queue's ``x-dead-letter-exchange``)."""
        return [
            self.names.queue(topic, group),
            self.names.exchange(topic),
            self.names.exchange(dead_letter_topic_of(topic)),
        ]

    def ensure_queue(self, topic: str, group: str) -> str:
        """Declare ``group``'s queue, bound to ``topic``'s exchange; return its name.

        :raises InvalidTopic: a name it would declare is too long for AMQP (nothing
            was declared).
        """
        queue = self.names.queue(topic, group)
        if queue in self._declared:
            return queue
        self.names.check(self._names_of_queue(topic, group))
        channel = self.publisher()
        exchange = self._exchange(channel, topic)
        dead = self._exchange(channel, dead_letter_topic_of(topic))
        arguments = {**QUEUE_ARGUMENTS, "x-dead-letter-exchange": dead}
        channel.queue_declare(queue, durable=True, auto_delete=False, arguments=arguments)
        self.created_queues.add(queue)
        channel.queue_bind(queue, exchange)
        self._declared.add(queue)
        return queue

    def _exchange(self, channel: Any, topic: str) -> str:
        name = self.names.exchange(topic)
        if name not in self._declared:
            channel.exchange_declare(name, "fanout", durable=True, auto_delete=False)
            self.created_exchanges.add(name)
            self._declared.add(name)
        return name
