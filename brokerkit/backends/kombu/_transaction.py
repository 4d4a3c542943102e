"""Publishing dead letters on kombu+amqp: in a transaction (``tx.select``), committed
only once RabbitMQ has read them, so that one whose publish runs out of
``publish_timeout`` during a memory or disk alarm is not stored when RabbitMQ reads
the dropped connection's rest after it (see :func:`_send_transacted`).
"""

from __future__ import annotations

import functools
import time
from collections.abc import Sequence

import amqp.exceptions  # type: ignore[import-untyped]

from brokerkit._message import Message
from brokerkit.backends.kombu._blocked import Expired, PublishTimeout
from brokerkit.backends.kombu._link import Link
from brokerkit.backends.kombu._publish import (
    ExchangeGone,
    Prepared,
    Refused,
    publish_each,
    send_prepared,
)

__all__ = ["CommitUnknown", "send_transacted"]


def send_transacted(link: Link, topic: str, exchange: str, messages: Sequence[Message]) -> None:
    """Publish ``messages`` (dead letters) to ``exchange``, one of those declaring
    ``topic`` declares (its own, or its dead-letter topic's), in a transaction
    committed only once RabbitMQ has read them (:func:`_send_transacted`; call within
    :meth:`Link.call`): one that runs out of ``publish_timeout`` during an alarm
    stores nothing (the message is then rejected for RabbitMQ to dead-letter, or
    nacked again), never a second copy next to that. One whose commit went out and
    was not answered (:class:`CommitUnknown`) may be stored: it is not sent again.

    :raises InvalidMessage: the headers of one do not fit in one frame of the
        connection: nothing was sent.
    :raises PublishTimeout: see :func:`_send_transacted`.
    :raises CommitUnknown: see :func:`_send_transacted`.
    :raises Refused: see :func:`_send_transacted`.
    """
    send_prepared(link, topic, exchange, messages, _send_transacted)


#: How RabbitMQ fails a commit of which a queue rejected a message (reject-publish).
_PARTIAL = "partial tx completion"


def _send_transacted(link: Link, exchange: str, prepared: Sequence[Prepared]) -> list[Prepared]:
    """Send ``prepared``, ``mandatory``, on the link's transacted channel, and commit
    them once RabbitMQ answers a ``basic.qos`` sent after them; return those it
    returned, routed to no queue (not stored).

    During a memory or disk alarm RabbitMQ stops reading a connection as it reads a
    publish, and reads the rest once the alarm clears, of a connection the client
    dropped too: a confirmed publish that ran out of ``publish_timeout`` was stored
    then. Here what it read after the alarm is a publish without its commit, which
    the connection's end rolls back: nothing is stored unless the commit went out,
    and it goes out only once RabbitMQ has read the messages (it answered). The
    commit's answer then gets a ``publish_timeout`` of its own: the commit is not a
    publish, which an alarm holds, but it waits for the queues to store the messages.

    :raises PublishTimeout: ``publish_timeout`` ran out before the commit went out
        (the connection dropped): nothing was stored.
    :raises CommitUnknown: the commit went out and its answer did not come (in
        ``publish_timeout``, or the connection was lost): they may be stored.
    :raises Refused: a queue rejected a message (``reject-publish``): RabbitMQ failed
        the commit (the other queues took it).
    """
    channel, returns = link.transacted()
    returns.take_returned()
    deadline = link.deadline()
    committing = False
    try:
        publish_each(channel, deadline, exchange, prepared)
        deadline.run(functools.partial(channel.basic_qos, 0, 0, False))
        committing = True
        deadline = link.deadline()
        deadline.run(channel.tx_commit)
    except Expired:
        blocked = link.blocked.reason
        link.abandon()  # (a frame may be half written; a channel close would wait)
        link.timed_out = time.monotonic()
        said = (
            f"RabbitMQ on {link.url} did not take {len(prepared)} message(s) published "
            f"to {exchange!r} within publish_timeout={deadline.seconds:g}s: "
        )
        if committing:
            raise CommitUnknown(
                said + "it read them, and did not answer their commit (a slow disk?)"
            ) from None
        raise PublishTimeout(
            said
            + (
                f"it blocked the connection ({blocked}): a memory or disk alarm stops "
                "it reading from publishers until the alarm clears (see its log)"
                if blocked is not None
                else "it did not answer (overloaded?)"
            )
            + "; none was stored (their transaction was not committed). The connection "
            "was dropped: the next call connects anew"
        ) from None
    except amqp.exceptions.NotFound as exc:
        link.drop_publisher(exc)
        raise ExchangeGone(exc, list(prepared)) from exc  # (nothing committed)
    except amqp.exceptions.PreconditionFailed as exc:
        link.drop_publisher(exc)
        if _PARTIAL not in str(exc):
            raise  # (over max_message_size: Link.call says so)
        raise Refused(
            f"RabbitMQ refused {len(prepared)} message(s) published to {exchange!r} "
            f"({_PARTIAL}: a queue bound to it is full and rejects publishes, as its "
            "overflow setting reject-publish says); the others of its queues took "
            "them: publish them again once it has room"
        ) from None
    except Exception as exc:
        if committing and link.lost(exc):
            # Not for Link.call to publish them again on a new connection.
            link.abandon()
            raise CommitUnknown(
                f"lost the connection to RabbitMQ on {link.url} after the commit of "
                f"{len(prepared)} message(s) published to {exchange!r} went out, before "
                f"its answer ({type(exc).__name__})"
            ) from None
        link.drop_publisher(exc)
        raise
    except BaseException:
        link.abandon()  # (interrupted: as _send)
        raise
    link.timed_out = None
    returned = returns.take_returned()
    return [item for item in prepared if item.message.id in returned]


class CommitUnknown(PublishTimeout):
    """A dead letter's commit went out and its answer did not come (see
    :func:`_send_transacted`): it may or may not be stored (stored, unless RabbitMQ
    failed the commit or never read it). The connection was dropped."""

    def __init__(self, what: str) -> None:
        super().__init__(
            f"{what}: the messages may have been stored (their commit went out, its "
            "answer did not come); the connection was dropped, the next call connects anew"
        )
