"""Limits a server would enforce only after sending are refused at publish, with
InvalidMessage and nothing sent: an AMQP content type past 255 UTF-8 bytes (kombu), a
NATS JetStream header block past 64 KiB."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from brokerkit import InvalidMessage
from tests.kombu_rabbitmq import kombu_broker, rabbitmq
from tests.nats_server import nats

__all__ = ["kombu_broker", "nats", "rabbitmq"]  # fixtures


def _content_type(utf8_bytes: int) -> str:
    """A content type of exactly ``utf8_bytes`` bytes in UTF-8, most of them two-byte."""
    base = "application/x-"
    rest = utf8_bytes - len(base)
    return base + "é" * (rest // 2) + "a" * (rest % 2)


# -- kombu+amqp: content_type is an AMQP short string -----------------------------------


@pytest.mark.parametrize("size", [255, 254])
def test_kombu_a_content_type_of_255_utf8_bytes_travels(
    kombu_broker: Callable[..., Any], size: int
) -> None:
    broker = kombu_broker()
    subscription = broker.subscribe("ct")
    content_type = _content_type(size)
    broker.publish("ct", b"x", content_type=content_type)
    delivery = subscription.receive(timeout=10)
    assert delivery is not None
    assert delivery.content_type == content_type
    delivery.ack()


@pytest.mark.parametrize("size", [256, 257, 600])
def test_kombu_a_longer_content_type_is_refused_and_nothing_is_sent(
    kombu_broker: Callable[..., Any], size: int
) -> None:
    broker = kombu_broker()
    subscription = broker.subscribe("ct")
    with pytest.raises(InvalidMessage, match="255 bytes") as raised:
        broker.publish_many("ct", [b"first", b"second"], content_type=_content_type(size))
    assert f"{size} bytes" in str(raised.value)
    # nothing was sent, and the broker still works
    broker.publish("ct", b"after")
    delivery = subscription.receive(timeout=10)
    assert delivery is not None and delivery.payload == b"after"
    delivery.ack()
    assert subscription.receive(timeout=0.5) is None


# -- nats: JetStream refuses a header block over 64 KiB ---------------------------------

#: nats-server refuses to store a message whose header block is over this many bytes.
JETSTREAM_MAX_HEADER = 65535


def _first_over(stamp: float) -> int:
    """The shortest header value whose header block, as brokerkit writes it for a
    message published at ``stamp`` (its JSON metadata holds the time as a float, whose
    length varies: ``1765069830.1`` is shorter than ``1765069830.1234567``), is over
    the server's limit."""
    from brokerkit._message import Message, new_message_id
    from brokerkit.backends.nats._wire import encode_headers

    sample = Message(new_message_id(), "t", b"", "application/octet-stream", {"big": ""}, stamp)
    overhead = 12 + sum(len(k) + len(v) + 4 for k, v in encode_headers(sample).items())
    return JETSTREAM_MAX_HEADER - overhead + 1


#: Where the boundary lies for the longest and the shortest time stamps (until 2286).
FIRST_OVER_LONGEST_STAMP = _first_over(1796607071.5604324)
FIRST_OVER_SHORTEST_STAMP = _first_over(1796607071.0)


def test_nats_a_header_block_is_stored_up_to_the_servers_limit_and_refused_past_it(
    nats: Callable[..., Any],
) -> None:
    broker = nats()
    subscription = broker.subscribe("headers")
    outcomes: dict[int, str] = {}
    refusals = []
    for length in range(FIRST_OVER_LONGEST_STAMP - 12, FIRST_OVER_SHORTEST_STAMP + 12):
        headers = {"big": "v" * length}
        try:
            broker.publish("headers", b"p", headers=headers)
        except InvalidMessage as exc:
            refusals.append(str(exc))
            outcomes[length] = "refused"
            continue
        delivery = subscription.receive(timeout=10)
        assert delivery is not None and dict(delivery.headers) == headers
        delivery.ack()
        outcomes[length] = "stored"
    # stored below the boundary, refused above it; between the boundaries of the
    # longest and the shortest time stamp, each message's own stamp decides
    below = {n: o for n, o in outcomes.items() if n < FIRST_OVER_LONGEST_STAMP}
    above = {n: o for n, o in outcomes.items() if n >= FIRST_OVER_SHORTEST_STAMP}
    assert set(below.values()) == {"stored"}, outcomes
    assert set(above.values()) == {"refused"}, outcomes
    assert all("65,535" in text and "nothing was published" in text for text in refusals)
    assert all(
        int(text.split(" has ")[1].split(" bytes")[0].replace(",", "")) > 65535 for text in refusals
    ), refusals
    assert subscription.receive(timeout=0.5) is None


def test_nats_publish_many_sends_nothing_when_one_message_has_too_many_header_bytes(
    nats: Callable[..., Any],
) -> None:
    broker = nats()
    subscription = broker.subscribe("headers")
    with pytest.raises(InvalidMessage, match="header"):
        broker.publish_many("headers", [b"a", b"b"], headers={"big": "v" * 65536})
    assert broker.inspect("headers").length == 0
    broker.publish("headers", b"after")
    delivery = subscription.receive(timeout=10)
    assert delivery is not None and delivery.payload == b"after"
    delivery.ack()
