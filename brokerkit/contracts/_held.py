"""Contract tests of what a message held for a due time keeps: a delayed publish or
a delayed retry arrives exactly as it was published (:attr:`Capability.DELAY`)."""

from __future__ import annotations

from typing import Any

from hypothesis import example, given

from brokerkit._capabilities import Capability
from brokerkit._delivery import Delivery
from brokerkit.contracts._harness import ContractEnv, requires
from brokerkit.contracts._messages import canonical
from brokerkit.contracts._profiles import contract_settings
from brokerkit.contracts._strategies import bodies, headers

__all__ = ["HeldMessageContract"]

#: Seconds a message is held: long enough to tell held from not over a round trip.
_DELAY = 0.3
#: A content type no serializer knows, labelling bytes as they are.
_CUSTOM_TYPE = "application/x-protobuf"


class HeldMessageContract:
    """Promises about the messages a backend holds for a due time."""

    @requires(Capability.PERSISTENT | Capability.ACK | Capability.DELAY)
    @contract_settings("timed")
    @given(body=bodies, message_headers=headers)
    @example(
        body={"n": [1, "two"]},
        message_headers={"Trace-Id": "A", "trace-id": "b", "X-Empty": "", "ünï": "𝄞"},
    )
    def test_a_held_message_arrives_as_it_was_published(
        self, contract: ContractEnv, body: Any, message_headers: dict[str, str]
    ) -> None:
        """A delayed publish, and then a delayed retry of it, arrive exactly as published.

        Held by the broker, a message keeps its id, body, content type (a custom one
        too) and headers (names in their case, empty values, any Unicode): as
        ``publish(delay=s)`` delivers it when due, as attempt 1, and as
        ``nack(delay=s)`` hands it back, as attempt 2."""
        with contract.scope():
            publisher, consumer = contract.broker(), contract.broker()
            topic = contract.topic("held")
            subscription = consumer.subscribe(topic)
            sent = {
                publisher.publish(topic, body, headers=message_headers, delay=_DELAY): (
                    body,
                    None,
                ),
                publisher.publish(
                    topic,
                    b"\x08\x96\x01",
                    headers=message_headers,
                    content_type=_CUSTOM_TYPE,
                    delay=_DELAY,
                ): (b"\x08\x96\x01", _CUSTOM_TYPE),
            }
            types: dict[str, str] = {}
            for attempt, how in ((1, "a delayed publish"), (2, "a delayed retry")):
                promise = f"{how} arrives exactly as it was published"
                wait = contract.let_leases_expire(_DELAY)
                got = [contract.expect(subscription, promise, wait=wait) for _ in sent]
                # The one of a custom content type first: it names what a change is.
                for delivery in sorted(got, key=lambda d: sent.get(d.id, (0, None))[1] is None):
                    headers = contract.sent_headers(delivery.id, message_headers)
                    _check_held(delivery, sent, headers, attempt, promise)
                    types.setdefault(delivery.id, delivery.content_type)
                    assert delivery.content_type == types[delivery.id], (
                        f"{promise}: content type {delivery.content_type!r}, not "
                        f"{types[delivery.id]!r} as when it was first delivered"
                    )
                if attempt == 1:
                    consumer.nack(*got, delay=_DELAY)
                else:
                    consumer.ack(*got)
            contract.expect_nothing(subscription, "a held message was delivered twice")


def _check_held(
    delivery: Delivery,
    sent: dict[str, tuple[Any, str | None]],
    message_headers: dict[str, str],
    attempt: int,
    promise: str,
) -> None:
    """``delivery`` is one of the messages ``sent`` (id: body, content type or None
    for the default), with ``message_headers`` (those it was published with), as
    ``attempt``."""
    assert delivery.id in sent, f"{promise}: another message came ({delivery!r})"
    body, content_type = sent[delivery.id]
    if content_type is not None:
        assert delivery.content_type == content_type, (
            f"{promise}: content type {delivery.content_type!r}, not {content_type!r}"
        )
        assert delivery.payload == body, f"{promise}: the bytes changed"
    assert canonical(delivery.body) == canonical(body), f"{promise}: the body changed"
    assert dict(delivery.headers) == message_headers, (
        f"{promise}: headers {message_headers!r} arrived as {dict(delivery.headers)!r}"
    )
    assert delivery.attempt == attempt, (
        f"{promise}: delivered as attempt {delivery.attempt}, not {attempt}"
    )
