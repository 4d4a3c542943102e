"""Publishing on kombu+amqp: ``basic.publish`` on the publishing link's channel under
publisher confirms, which returns once RabbitMQ has taken every message (a batch is
sent at once and its confirms awaited together)."""

from __future__ import annotations

from collections.abc import Sequence

from amqp import spec  # type: ignore[import-untyped]

from brokerkit._message import Message
from brokerkit.backends.kombu._envelope import check_content_type_size, encode
from brokerkit.backends.kombu._link import Link
from brokerkit.exceptions import ConnectionFailed, InvalidMessage

__all__ = ["publish", "send_confirmed"]


def publish(link: Link, topic: str, messages: Sequence[Message]) -> None:
    """Publish ``messages`` to ``topic``'s exchange (declared, with its default group's
    queue, if this link has not yet), confirmed.

    :raises InvalidMessage: a content type AMQP cannot carry, or a message larger than
        RabbitMQ's ``max_message_size`` (once a refusal told it): nothing was published.
    """
    for content_type in {m.content_type for m in messages}:
        check_content_type_size(content_type)
    limit = link.max_message_size  # (known once RabbitMQ refused a message)
    too_large = [m for m in messages if limit is not None and len(m.payload) > limit]
    if too_large:
        message = too_large[0]
        raise InvalidMessage(
            f"message {message.id} is {len(message.payload):,} bytes, more than the "
            f"max_message_size of RabbitMQ on {link.url} ({limit:,} bytes); nothing "
            "was published. Store large payloads elsewhere and publish a reference, "
            "or raise max_message_size in RabbitMQ's configuration"
        )

    def send() -> None:
        link.ensure_topic(topic)
        send_confirmed(link, link.names.exchange(topic), messages)

    link.call(send)


def send_confirmed(link: Link, exchange: str, messages: Sequence[Message]) -> None:
    """Publish ``messages`` and wait for RabbitMQ to confirm every one."""
    channel = link.publisher()
    # Counted before sending: py-amqp may read a confirm during the next publish.
    tags = link.confirms.published(len(messages))
    try:
        for message in messages:
            body, properties, headers = encode(message)
            raw = channel.prepare_message(
                body,
                content_type=message.content_type,
                content_encoding="binary",
                headers=headers,
                properties=properties,
            )
            channel.basic_publish(raw, exchange=exchange, routing_key="")
        while link.confirms.waiting(tags):
            channel.wait([spec.Basic.Ack, spec.Basic.Nack])
    except BaseException as exc:
        link.drop_publisher(exc)  # its confirms no longer add up
        raise
    refused = link.confirms.refused(tags)
    if refused:
        raise ConnectionFailed(
            f"RabbitMQ refused {len(refused)} of {len(messages)} message(s) published "
            f"to {exchange!r} (basic.nack: an internal error in a queue); publish them again"
        )
