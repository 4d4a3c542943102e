"""Body encoding: bytes pass through, str is UTF-8, everything else is serialized.

Pickle is never used: a message is data another program may read, not code.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from brokerkit.exceptions import SerializationError

__all__ = ["BINARY", "TEXT", "Serializer", "decode_body", "encode_body", "serializer_names"]

BINARY = "application/octet-stream"
TEXT = "text/plain; charset=utf-8"


@dataclass(frozen=True)
class Serializer:
    """A named codec between Python values and bytes, tagged with a content type."""

    name: str
    content_type: str
    dumps: Callable[[Any], bytes]
    loads: Callable[[bytes], Any]


def _json_dumps(value: Any) -> bytes:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode()


def _msgpack_dumps(value: Any) -> bytes:
    import msgpack

    data: bytes = msgpack.packb(value, use_bin_type=True)
    return data


def _msgpack_loads(data: bytes) -> Any:
    import msgpack

    return msgpack.unpackb(data, raw=False, strict_map_key=False)


_SERIALIZERS: dict[str, Serializer] = {
    "json": Serializer("json", "application/json", _json_dumps, json.loads),
    "msgpack": Serializer("msgpack", "application/msgpack", _msgpack_dumps, _msgpack_loads),
}
_BY_CONTENT_TYPE = {s.content_type: s for s in _SERIALIZERS.values()}
_BY_CONTENT_TYPE["application/x-msgpack"] = _SERIALIZERS["msgpack"]


def serializer_names() -> list[str]:
    """The names accepted by the ``serializer`` option."""
    return sorted(_SERIALIZERS)


def encode_body(body: Any, serializer: str, content_type: str | None = None) -> tuple[bytes, str]:
    """``(payload, content_type)`` for a body; raise SerializationError if it cannot be encoded.

    ``bytes`` are sent as they are and ``str`` as UTF-8 text, unless ``content_type``
    names a serializer, in which case the value is serialized with it.
    """
    if content_type is None:
        if isinstance(body, (bytes, bytearray, memoryview)):
            return bytes(body), BINARY
        if isinstance(body, str):
            try:
                return body.encode("utf-8"), TEXT
            except UnicodeEncodeError as exc:
                raise SerializationError(f"the text body is not valid Unicode: {exc}") from None
        codec = _SERIALIZERS[serializer]
    else:
        found = _BY_CONTENT_TYPE.get(_base_type(content_type))
        if found is None:
            if isinstance(body, (bytes, bytearray, memoryview)):
                return bytes(body), content_type
            raise SerializationError(
                f"no serializer for content type {content_type!r}; pass bytes for a custom "
                f"content type, or one of: {', '.join(sorted(_BY_CONTENT_TYPE))}"
            )
        codec = found
    try:
        return codec.dumps(body), codec.content_type
    except (TypeError, ValueError, OverflowError) as exc:
        raise SerializationError(
            f"cannot encode a {type(body).__name__} body with the {codec.name} serializer: {exc}; "
            "publish bytes, str, or values the serializer understands "
            "(dict, list, str, int, float, bool, None)"
        ) from None
    except Exception as exc:  # msgpack raises its own types
        raise SerializationError(
            f"cannot encode a {type(body).__name__} body with the {codec.name} serializer: {exc}"
        ) from None


def decode_body(payload: bytes, content_type: str) -> Any:
    """The value a payload stands for: bytes, str, or what its serializer decodes."""
    base = _base_type(content_type)
    if base.startswith("text/"):
        try:
            return payload.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise SerializationError(
                f"a {content_type} payload is not valid UTF-8: {exc}"
            ) from None
    codec = _BY_CONTENT_TYPE.get(base)
    if codec is None:
        return payload
    try:
        return codec.loads(payload)
    except Exception as exc:
        raise SerializationError(
            f"cannot decode a {content_type} payload of {len(payload)} bytes: {exc}"
        ) from None


def _base_type(content_type: str) -> str:
    return content_type.split(";", 1)[0].strip().lower()
