"""kombu+amqp: headers whose AMQP content header does not fit in one frame are refused
with InvalidMessage before anything is sent, by the sync and the asyncio API, to the
byte: the largest content header RabbitMQ takes (its frame_max less 8 bytes of framing,
less the room kept for the headers a dead letter adds, since review 28: see
``largest``) is published and delivered intact, one byte more is refused, naming the
size and the limit, and RabbitMQ is never sent it (it would close the connection:
FRAME_ERROR).

The sizes are computed here as py-amqp encodes the content header (the envelope's
properties, the headers as JSON in the ``brokerkit`` application header), with the
publish time fixed so that its JSON is known; ``test_rabbitmq_draws_the_line_there``
checks that oracle against RabbitMQ itself, with a plain py-amqp connection (RabbitMQ
tolerates 8 bytes more than the protocol's limit, which brokerkit keeps to).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import types
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import amqp
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

import brokerkit
import brokerkit.aio
from brokerkit._message import Message
from brokerkit._serializers import BINARY
from brokerkit.backends.kombu._envelope import encode
from brokerkit.backends.kombu._publish import dead_letter_headers
from brokerkit.exceptions import InvalidMessage
from tests.kombu_rabbitmq import close_and_delete, rabbitmq, raw_connection

__all__ = ["rabbitmq"]

#: The publish time of every message here (its JSON, ``1700000000.25``, is known).
PUBLISHED_AT = 1_700_000_000.25
#: A brokerkit message id's length (``new_message_ids``).
ID_LENGTH = 28
#: What a frame adds around its payload (type, channel, size; the end octet).
FRAMING = 8


def content_header_size(headers: dict[str, str], content_type: str = BINARY) -> int:
    """The size of the content header frame's payload of a message with ``headers``,
    as py-amqp encodes it: class id, weight, body size (12 bytes), then the
    properties the envelope gives."""
    message = Message("0" * ID_LENGTH, "t", b"", content_type, headers, PUBLISHED_AT)
    body, properties, table = encode(message)
    raw = amqp.Message(
        body,
        content_type=content_type,
        content_encoding="binary",
        application_headers=table,
        **properties,
    )
    return 12 + len(raw._serialize_properties())


def headers_of_size(size: int, **others: str) -> dict[str, str]:
    """``others`` and a ``pad`` header, whose content header takes exactly ``size``."""
    headers = {**others, "pad": ""}
    missing = size - content_header_size(headers)
    assert missing >= 0, f"{others!r} alone take more than {size} bytes"
    headers["pad"] = "p" * missing
    assert content_header_size(headers) == size
    return headers


def largest(room: int, topic: str) -> int:
    """The largest content header a publish to ``topic`` takes: the one of its dead
    letter (:func:`dead_letter_headers` added) must fit in ``room`` (review 28)."""
    headers = {"trace": "abc", "pad": "p"}
    dead = content_header_size({**headers, **dead_letter_headers(topic)})
    return room - (dead - content_header_size(headers))


def frame_max() -> int:
    """The frame_max RabbitMQ sets for a connection (as it does for the broker's)."""
    with raw_connection() as connection:
        connection.connect()
        return int(connection.connection.frame_max)


@contextlib.contextmanager
def fixed_publish_time() -> Iterator[None]:
    """Stamp every message :data:`PUBLISHED_AT` (the clock of ``build_messages``)."""
    clock = types.SimpleNamespace(time=lambda: PUBLISHED_AT)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr("brokerkit._publishing.time", clock)
        yield


class Brokers:
    """Brokers under one prefix of this module's own, all closed and what they declared
    deleted at the end."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.prefix = f"bkk-r26-{uuid.uuid4().hex[:10]}"
        self.made: list[Any] = []

    def sync(self, **options: Any) -> Any:
        broker = brokerkit.connect(self.url, prefix=self.prefix, **options)
        self.made.append(broker)
        return broker

    async def aio(self, **options: Any) -> Any:
        broker = await brokerkit.aio.connect(self.url, prefix=self.prefix, **options)
        self.made.append(broker.sync)
        return broker


@pytest.fixture
def brokers(rabbitmq: str) -> Iterator[Brokers]:
    made = Brokers(rabbitmq)
    try:
        yield made
    finally:
        close_and_delete(made.made)


@pytest.fixture(scope="module")
def room(rabbitmq: str) -> int:
    """The largest content header RabbitMQ takes in one frame."""
    return frame_max() - FRAMING


def refused_in_time(publish: Callable[[], object]) -> InvalidMessage:
    """The InvalidMessage ``publish`` raises, at once (no reconnect, no resend)."""
    started = time.monotonic()
    try:
        publish()
    except InvalidMessage as exc:
        error = exc
    else:
        raise AssertionError("published: headers over the frame's limit were not refused")
    took = time.monotonic() - started
    assert took < 1.0, f"the refusal took {took:.2f} s (a reconnect?)"
    return error


def assert_names_size_and_limit(error: BaseException, size: int, room: int) -> None:
    text = str(error)
    assert f"{size:,} bytes" in text, text
    assert f"at most {room:,}" in text, text
    assert f"frame_max of {room + FRAMING:,}" in text, text
    assert "nothing was published" in text, text
    assert "fewer or smaller headers" in text, text


def only(subscription: Any, payload: bytes) -> Any:
    """The one message waiting, which must be ``payload`` (and nothing after it)."""
    delivery = subscription.receive(timeout=5)
    assert delivery is not None, f"{payload!r} was not delivered"
    assert delivery.payload == payload
    delivery.ack()
    assert subscription.receive(timeout=0.3) is None, "something else was stored"
    return delivery


# -- the boundary, sync -----------------------------------------------------------------


def test_headers_that_just_fit_are_published_and_delivered_intact(
    brokers: Brokers, room: int
) -> None:
    broker = brokers.sync()
    subscription = broker.subscribe("fits")
    headers = headers_of_size(largest(room, "fits"), trace="abc")
    with fixed_publish_time():
        broker.publish("fits", b"x", headers=headers)
    delivery = only(subscription, b"x")
    assert delivery.headers == headers


def test_headers_one_byte_over_are_refused_before_anything_is_sent(
    brokers: Brokers, room: int
) -> None:
    broker = brokers.sync()
    subscription = broker.subscribe("over")
    size = largest(room, "over") + 1
    headers = headers_of_size(size, trace="abc")
    with fixed_publish_time():
        error = refused_in_time(lambda: broker.publish("over", b"x", headers=headers))
        assert_names_size_and_limit(error, size, room)
        # A topic not declared yet is not declared for a refused publish either.
        refused_in_time(lambda: broker.publish("never", b"x", headers=headers))
    assert not any(name.endswith("|never") for name in broker.declared.exchanges)
    # The broker still publishes, on the same connection; nothing refused was stored.
    broker.publish("over", b"after")
    only(subscription, b"after")


def test_a_single_header_of_200_kb_is_refused(brokers: Brokers, room: int) -> None:
    broker = brokers.sync()
    subscription = broker.subscribe("big")
    error = refused_in_time(lambda: broker.publish("big", b"x", headers={"big": "v" * 200_000}))
    assert f"at most {room:,}" in str(error)
    broker.publish("big", b"after")
    only(subscription, b"after")


def test_publish_many_over_the_frame_sends_none_of_the_batch(brokers: Brokers, room: int) -> None:
    broker = brokers.sync()
    subscription = broker.subscribe("batch")
    # 1,400 small headers, each fine on its own (as a report had them).
    many = {f"h{i:04d}": "v" * 100 for i in range(1400)}
    assert content_header_size(many) > room
    refused_in_time(lambda: broker.publish_many("batch", [b"a", b"b", b"c"], headers=many))
    with fixed_publish_time():
        refused_in_time(
            lambda: broker.publish_many(
                "batch", [b"a", b"b", b"c"], headers=headers_of_size(largest(room, "batch") + 1)
            )
        )
        fitting = headers_of_size(largest(room, "batch"))
        broker.publish_many("batch", [b"a", b"b", b"c"], headers=fitting)
    got = []
    while (delivery := subscription.receive(timeout=1)) is not None:
        got.append((delivery.payload, delivery.headers == fitting))
        delivery.ack()
    assert got == [(b"a", True), (b"b", True), (b"c", True)]


# -- the boundary, asyncio --------------------------------------------------------------


def test_asyncio_refuses_headers_one_byte_over_and_publishes_those_that_fit(
    brokers: Brokers, room: int
) -> None:
    consumer = brokers.sync()
    subscription = consumer.subscribe("aio")
    size = largest(room, "aio") + 1
    over, fits = headers_of_size(size), headers_of_size(size - 1)

    async def main() -> list[BaseException]:
        broker = await brokers.aio()
        errors: list[BaseException] = []
        with fixed_publish_time():
            for publish in (
                lambda: broker.publish("aio", b"x", headers=over),
                lambda: broker.publish_many("aio", [b"y", b"z"], headers=over),
            ):
                started = time.monotonic()
                try:
                    await publish()
                except Exception as exc:
                    errors.append(exc)
                assert time.monotonic() - started < 1.0
            await broker.publish("aio", b"fits", headers=fits)
            await broker.publish_many("aio", [b"fits-1", b"fits-2"], headers=fits)
        await broker.close()
        return errors

    errors = asyncio.run(main())
    assert [type(e) for e in errors] == [InvalidMessage, InvalidMessage], errors
    assert_names_size_and_limit(errors[0], size, room)
    got = []
    while (delivery := subscription.receive(timeout=1)) is not None:
        got.append((delivery.payload, delivery.headers == fits))
        delivery.ack()
    assert got == [(b"fits", True), (b"fits-1", True), (b"fits-2", True)]


# -- exact for any headers --------------------------------------------------------------

_text = st.text(st.characters(exclude_categories=("Cs",)), max_size=40)
_headers = st.dictionaries(
    st.text(st.characters(exclude_categories=("Cs",)), min_size=1, max_size=12).filter(
        lambda k: not k.lower().startswith("x-dead-letter-") and k != "pad"
    ),
    _text,
    max_size=8,
)


@pytest.fixture(scope="module")
def shared(rabbitmq: str) -> Iterator[tuple[Any, Any]]:
    """One broker and subscription for every example (few quorum queues made)."""
    made = Brokers(rabbitmq)
    try:
        broker = made.sync()
        yield broker, broker.subscribe("any")
    finally:
        close_and_delete(made.made)


@settings(max_examples=30, suppress_health_check=[HealthCheck.too_slow])
@given(headers=_headers, over=st.integers(-3, 3))
def test_the_limit_is_exact_for_any_headers(
    shared: tuple[Any, Any], room: int, headers: dict[str, str], over: int
) -> None:
    broker, subscription = shared
    size = largest(room, "any") + over
    assume(content_header_size({**headers, "pad": ""}) <= size)
    sized = headers_of_size(size, **headers)
    broker.purge("any")  # (what a failed example left)
    with fixed_publish_time():
        if over <= 0:
            broker.publish("any", b"fits", headers=sized)
            delivery = only(subscription, b"fits")
            assert delivery.headers == sized
            return
        error = refused_in_time(lambda: broker.publish("any", b"over", headers=sized))
    assert_names_size_and_limit(error, size, room)
    broker.publish("any", b"after")
    only(subscription, b"after")


@given(headers=_headers, content_type=_text.filter(bool), id_length=st.integers(0, 40))
def test_the_cheap_bound_is_never_below_the_size(
    headers: dict[str, str], content_type: str, id_length: int
) -> None:
    """Where the bound shows a message fits, it is not measured: the bound must hold."""
    from brokerkit.backends.kombu._publish import _prepare, content_header_size

    message = Message("i" * id_length, "t", b"", content_type, headers, PUBLISHED_AT)
    (prepared,) = _prepare([message])
    assert prepared.at_most >= content_header_size(prepared.raw)


# -- the oracle against RabbitMQ itself (passes before the fix too) ---------------------


def test_rabbitmq_draws_the_line_there(rabbitmq: str, room: int) -> None:
    """A content header of ``room`` bytes is taken when sent by py-amqp alone (to the
    default exchange and a queue that does not exist: nothing is stored), and RabbitMQ
    names ``room`` as its limit when it closes the connection over a larger one
    (FRAME_ERROR). It tolerates up to 8 bytes more (its ``FRAME_SIZE_FUDGE``, for
    clients that count the framing wrong); brokerkit keeps to the protocol's limit."""

    def publish(size: int) -> None:
        message = Message("0" * ID_LENGTH, "t", b"", BINARY, headers_of_size(size), PUBLISHED_AT)
        publish_envelope(message, exchange="", routing_key=f"bkk-r26-nowhere-{uuid.uuid4().hex}")

    publish(room)
    publish(room + FRAMING)  # (the tolerance)
    with pytest.raises(Exception, match=f"frame_too_large,{room + FRAMING + 1},{room}"):
        publish(room + FRAMING + 1)


# -- kombu's virtual transports have no AMQP frames -------------------------------------


def test_kombu_memory_still_carries_headers_larger_than_an_amqp_frame() -> None:
    broker = brokerkit.connect(f"kombu+memory://?prefix=bkk-r26-{uuid.uuid4().hex[:10]}")
    try:
        subscription = broker.subscribe("big")
        broker.publish("big", b"x", headers={"big": "v" * 200_000})
        delivery = subscription.receive(timeout=5)
        assert delivery is not None and delivery.headers == {"big": "v" * 200_000}
        delivery.ack()
    finally:
        broker.close()


def publish_envelope(message: Message, *, exchange: str, routing_key: str) -> None:
    """Publish brokerkit's envelope of ``message`` by py-amqp alone (none of
    brokerkit's checks), confirmed, on a connection of its own."""
    body, properties, table = encode(message)
    with raw_connection() as connection:
        connection.connect()
        channel = connection.connection.channel()
        channel.basic_publish_confirm(
            amqp.Message(
                body,
                content_type=BINARY,
                content_encoding="binary",
                application_headers=table,
                **properties,
            ),
            exchange=exchange,
            routing_key=routing_key,
            confirm_timeout=10,
        )
