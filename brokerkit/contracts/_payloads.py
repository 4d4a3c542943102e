"""Contract tests of what a message carries: every body kind and size, content
types, the publish time, and headers."""

from __future__ import annotations

import json
import random
import time
from typing import Any

import pytest

from brokerkit.contracts._harness import ContractEnv
from brokerkit.contracts._messages import canonical
from brokerkit.exceptions import InvalidMessage

__all__ = ["PayloadContract"]

_MiB = 1024 * 1024


def _random_bytes(size: int, seed: int) -> bytes:
    return random.Random(seed).randbytes(size)


#: (label, body, content_type passed to publish or None, content type delivered)
_BODIES: list[tuple[str, Any, str | None, str]] = [
    ("empty bytes", b"", None, "application/octet-stream"),
    ("empty text", "", None, "text/plain; charset=utf-8"),
    ("empty object", {}, None, "application/json"),
    ("null", None, None, "application/json"),
    (
        "non-BMP text",
        "music 𝄞, emoji 🎉, CJK 漢字, NUL \x00 end",
        None,
        "text/plain; charset=utf-8",
    ),
    ("all byte values", bytes(range(256)) * 4, None, "application/octet-stream"),
    ("bytes that look like JSON", b'{"a": 1}', None, "application/octet-stream"),
    ("text that looks like JSON", '{"a": 1}', None, "text/plain; charset=utf-8"),
    ("nested JSON", {"a": [1, 2.5, None, True, {"b": "𝄞"}], "": []}, None, "application/json"),
    ("custom content type", b"\x08\x96\x01", "application/x-protobuf", "application/x-protobuf"),
    ("JSON by content type", [1, "x"], "application/json", "application/json"),
    ("pre-encoded JSON", b'{"a": 1, "b": [2]}', "application/json", "application/json"),
    ("text of another text type", "a,b\ncafé,𝄞\n", "text/csv", "text/csv"),
    (
        "text in another charset",
        "café, naïve",
        "text/plain; charset=latin-1",
        "text/plain; charset=latin-1",
    ),
    ("1 MiB of bytes", _random_bytes(_MiB, 1), None, "application/octet-stream"),
    ("3 MiB of bytes", _random_bytes(3 * _MiB, 3), None, "application/octet-stream"),
    ("1 MiB of non-BMP text", "𝄞é漢" * (_MiB // 9), None, "text/plain; charset=utf-8"),
    (
        "a 1 MiB JSON document",
        {"rows": [{"n": i, "s": "x" * 80} for i in range(10_000)]},
        None,
        "application/json",
    ),
]


#: Bodies larger than this may be refused (with InvalidMessage) by a backend whose
#: messages have a size limit; smaller ones every backend carries.
_REFUSABLE = 512 * 1024


def _payload_of(body: Any) -> bytes:
    if isinstance(body, bytes):
        return body
    if isinstance(body, str):
        return body.encode()
    return json.dumps(body).encode()


class PayloadContract:
    """Everything a message carries survives the trip, whatever the backend."""

    @pytest.mark.parametrize(
        ("body", "content_type", "delivered_type"),
        [pytest.param(b, c, d, id=label) for label, b, c, d in _BODIES],
    )
    def test_every_body_kind_and_size_survives(
        self, contract: ContractEnv, body: Any, content_type: str | None, delivered_type: str
    ) -> None:
        """Every body kind and size arrives intact, with its metadata.

        Bodies of every kind (bytes, text, JSON, custom content types), empty,
        non-BMP and up to megabytes arrive with the same value, bytes, content type,
        headers, id and publish time, as a first delivery."""
        promise = "payloads: a message arrives exactly as it was published"
        publisher, consumer = contract.broker(), contract.broker()
        topic = contract.topic("payload")
        subscription = consumer.subscribe(topic)
        headers = {"trace-id": "t-𝄞", "empty": "", "x-original-topic": "not one"}
        before = time.time()
        refused: InvalidMessage | None = None
        try:
            message_id = publisher.publish(topic, body, headers=headers, content_type=content_type)
        except InvalidMessage as exc:
            refused = exc
        if refused is not None:
            # A backend may have a size limit below megabytes (a NATS server's
            # max_payload): it must refuse such a body at publish, saying so, and send
            # nothing; a smaller body it must carry.
            assert len(_payload_of(body)) > _REFUSABLE, f"{promise}: refused: {refused}"
            assert "bytes" in str(refused), f"{promise}: the refusal names no size: {refused}"
            contract.expect_nothing(subscription, f"{promise}: a refused body was published")
            return
        after = time.time()
        delivery = contract.expect(subscription, promise)
        assert delivery.id == message_id, f"{promise}: the id changed"
        assert delivery.content_type == delivered_type, (
            f"{promise}: content type {delivery.content_type!r}, not {delivered_type!r}"
        )
        if isinstance(body, bytes):  # as they are, whatever the content type says
            assert delivery.payload == body, f"{promise}: the bytes changed"
        else:
            assert canonical(delivery.body) == canonical(body), f"{promise}: the body changed"
        sent = contract.sent_headers(message_id, headers)
        assert dict(delivery.headers) == sent, (
            f"{promise}: the headers changed: {sent!r} arrived as {dict(delivery.headers)!r}"
        )
        assert (delivery.attempt, delivery.redelivered) == (1, False), (
            f"{promise}: a first delivery is attempt 1, not redelivered"
        )
        published_at = delivery.message.published_at
        assert before - 0.002 <= published_at <= after + 0.002, (
            f"{promise}: published_at {published_at} is not the publish time "
            f"(between {before} and {after})"
        )
        delivery.ack()
