"""How a message is written into a Redis value, and read back.

A framed envelope is ``BK1`` + a JSON header line + the payload bytes, so that
``redis-cli`` shows readable metadata and the body is never re-encoded::

    BK1{"id":"...","ct":"application/json","ts":1700000000.0,"h":{...}}\n<payload>

Streams store the same facts as fields (``id``, ``ct``, ``ts``, ``h``, ``body``).
A value that is not an envelope is a *raw* payload that another program wrote.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any

from brokerkit._message import Message

__all__ = ["MAGIC", "decode", "decode_fields", "encode", "encode_fields", "raw_message"]

MAGIC = b"BK1"
_HEADER_DECODER = json.JSONDecoder()


_ESCAPED_CONTENT_TYPES: dict[str, str] = {}


def _json_text(text: str) -> str:
    escaped = _ESCAPED_CONTENT_TYPES.get(text)
    if escaped is None:
        escaped = json.dumps(text, ensure_ascii=False)
        if len(_ESCAPED_CONTENT_TYPES) < 256:
            _ESCAPED_CONTENT_TYPES[text] = escaped
    return escaped


def encode(message: Message) -> bytes:
    """One bytes value holding the whole message."""
    # Built by hand: this runs once per published message, and json.dumps of a dict
    # costs several times as much. Ids are hex, so only the content type and headers
    # need escaping.
    headers = (
        ',"h":' + json.dumps(dict(message.headers), ensure_ascii=False, separators=(",", ":"))
        if message.headers
        else ""
    )
    header = (
        f'{{"id":"{message.id}","ct":{_json_text(message.content_type)},'
        f'"ts":{message.published_at!r}{headers}}}'
    )
    return MAGIC + header.encode() + b"\n" + message.payload


def decode(topic: str, data: bytes, raw_content_type: str | None = None) -> Message:
    """The message in ``data``; a value without the envelope is a raw payload."""
    if data.startswith(MAGIC):
        end = data.find(b"\n", len(MAGIC))
        if end != -1:
            try:
                header, _ = _HEADER_DECODER.raw_decode(data[len(MAGIC) : end].decode())
            except ValueError:
                header = None
            if isinstance(header, dict) and "id" in header:
                return Message(
                    id=str(header["id"]),
                    topic=topic,
                    payload=data[end + 1 :],
                    content_type=str(header.get("ct", "application/octet-stream")),
                    headers=dict(header.get("h") or {}),
                    published_at=float(header.get("ts", 0.0)),
                )
    return raw_message(topic, data, raw_content_type)


def raw_message(topic: str, data: bytes, content_type: str | None = None) -> Message:
    """A message for a plain value another program wrote; its id is the value's digest
    (the first 24 hex digits of its SHA-1, which Redis's Lua can compute too)."""
    return Message(
        id="raw-" + hashlib.sha1(data).hexdigest()[:24],
        topic=topic,
        payload=data,
        content_type=content_type or _guess(data),
        headers={},
        published_at=0.0,
    )


def encode_fields(message: Message) -> dict[str, Any]:
    """The message as stream fields."""
    fields: dict[str, Any] = {
        "id": message.id,
        "ct": message.content_type,
        "ts": repr(message.published_at),
        "body": message.payload,
    }
    if message.headers:
        fields["h"] = json.dumps(dict(message.headers), separators=(",", ":"))
    return fields


def decode_fields(
    topic: str, fields: Mapping[bytes, bytes], raw_content_type: str | None = None
) -> Message:
    """The message in stream fields; plain fields (``XADD s * k v``) become a raw
    JSON object of those fields unless ``raw_content_type`` says otherwise."""
    if b"id" in fields and b"body" in fields and b"ct" in fields:
        headers = fields.get(b"h")
        return Message(
            id=fields[b"id"].decode(),
            topic=topic,
            payload=fields[b"body"],
            content_type=fields[b"ct"].decode(),
            headers=json.loads(headers) if headers else {},
            published_at=float(fields.get(b"ts", b"0")),
        )
    if b"body" in fields and len(fields) == 1:
        return raw_message(topic, fields[b"body"], raw_content_type)
    plain = {k.decode(errors="replace"): v.decode(errors="replace") for k, v in fields.items()}
    return raw_message(topic, json.dumps(plain).encode(), raw_content_type or "application/json")


def _guess(data: bytes) -> str:
    """JSON if it parses as JSON, text if it is UTF-8, bytes otherwise."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return "application/octet-stream"
    try:
        json.loads(text)
    except ValueError:
        return "text/plain; charset=utf-8"
    return "application/json"
