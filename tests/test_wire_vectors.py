"""The test vectors of docs/wire-format.md hold for the Python encoder and decoder:
another language's implementation checks itself against the same file."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest

from brokerkit._message import Message
from brokerkit.backends.redis import _envelope, _stream_fields
from brokerkit.backends.redis.list.schedule import hold_member
from brokerkit.backends.redis.stream.scheduling import held_member

VECTORS = json.loads(
    (Path(__file__).parent / "vectors" / "redis-wire.json").read_text(encoding="utf-8")
)
TOPIC = VECTORS["topic"]


def _bytes(text: str) -> bytes:
    return base64.b64decode(text)


def _message(spec: dict[str, Any]) -> Message:
    return Message(
        spec["id"],
        TOPIC,
        _bytes(spec["payload_b64"]),
        spec["content_type"],
        spec["headers"],
        spec["published_at"],
    )


def _ids(cases: list[dict[str, Any]]) -> list[str]:
    return [case["name"] for case in cases]


@pytest.mark.parametrize("case", VECTORS["messages"], ids=_ids(VECTORS["messages"]))
def test_encoding_a_message_gives_the_vector_bytes(case: dict[str, Any]) -> None:
    message = _message(case["message"])
    assert _envelope.encode(message) == _bytes(case["envelope_b64"])
    fields = _stream_fields.encode_fields(message)
    assert {"bk1": fields["bk1"].encode(), "body": fields["body"]} == {
        name: _bytes(value) for name, value in case["stream_fields_b64"].items()
    }


@pytest.mark.parametrize("case", VECTORS["messages"], ids=_ids(VECTORS["messages"]))
def test_decoding_the_vector_bytes_gives_the_message(case: dict[str, Any]) -> None:
    message = _message(case["message"])
    assert _envelope.decode(TOPIC, _bytes(case["envelope_b64"])) == message
    fields = {k.encode(): _bytes(v) for k, v in case["stream_fields_b64"].items()}
    assert _stream_fields.decode_fields(TOPIC, fields) == message


@pytest.mark.parametrize("case", VECTORS["raw_elements"], ids=_ids(VECTORS["raw_elements"]))
def test_plain_values_decode_as_the_vectors_say(case: dict[str, Any]) -> None:
    assert _envelope.decode(TOPIC, _bytes(case["envelope_b64"])) == _message(case["message"])


@pytest.mark.parametrize(
    "case", VECTORS["raw_stream_entries"], ids=_ids(VECTORS["raw_stream_entries"])
)
def test_plain_stream_entries_decode_as_the_vectors_say(case: dict[str, Any]) -> None:
    fields = {k.encode(): _bytes(v) for k, v in case["stream_fields_b64"].items()}
    assert _stream_fields.decode_fields(TOPIC, fields) == _message(case["message"])


def test_the_vectors_cover_every_short_content_type_and_the_json_header_form() -> None:
    headers = [_bytes(c["stream_fields_b64"]["bk1"]) for c in VECTORS["messages"]]
    second_lines = {h.split(b"\n")[1] for h in headers if not h.startswith(b"{")}
    assert {b"json", b"text", b"bin", b"msgpack"} <= second_lines
    assert any(h.startswith(b"{") for h in headers)


@pytest.mark.parametrize("case", VECTORS["messages"], ids=_ids(VECTORS["messages"]))
def test_a_held_message_is_the_vector_member(case: dict[str, Any]) -> None:
    message = _message(case["message"])
    held = {name: _bytes(value) for name, value in case["held_b64"].items()}
    assert hold_member(message.id, _envelope.encode(message)) == held["list"]
    header = _stream_fields.stream_header(message)
    assert held_member(message.id, header, message.payload) == held["stream"]
    # The stream member splits back into the header and the body, as the script does.
    tag, length, rest = held["stream"].split(b"\n", 2)
    assert tag == b"S00000000" + message.id.encode()  # the first of its batch
    assert (rest[: int(length)], rest[int(length) :]) == (header.encode(), message.payload)
