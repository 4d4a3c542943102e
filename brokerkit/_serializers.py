"""Body encoding: bytes pass through, str is UTF-8, everything else is serialized.

Pickle is never used: a message is data another program may read, not code.

Typed objects are published as the plain data they hold: a dataclass instance, a
pydantic model or a msgspec ``Struct`` is turned into dicts and lists (pydantic and
msgspec are looked up only if the program has imported them) and then serialized.

Decoding is total in the sense that matters to a consumer: a payload that does not
decode (invalid UTF-8 under a ``text/*`` type, JSON nested deeper than Python can
read, an integer of more digits than Python converts, truncated msgpack...) raises
:class:`~brokerkit.SerializationError` naming the content type and the reason, and
nothing else; the raw bytes stay readable as :attr:`brokerkit.Message.payload`. JSON
that another program wrote with ``NaN``, ``Infinity`` or a number past a float's range
(``1e400``) decodes as Python's ``json`` reads it, to a float ``nan`` or ``inf``
(brokerkit itself never writes them: encoding refuses them).
"""

from __future__ import annotations

import codecs
import collections
import copy
import dataclasses
import json
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from brokerkit._error_text import error_text, quotes_values, shortened
from brokerkit.exceptions import InvalidMessage, SerializationError

__all__ = [
    "BINARY",
    "TEXT",
    "Serializer",
    "check_content_type",
    "decode_body",
    "encode_body",
    "is_json",
    "json_object",
    "plain_data",
    "serializer_names",
]

BINARY = "application/octet-stream"
TEXT = "text/plain; charset=utf-8"


def json_object(text: str) -> dict[str, Any] | None:
    """The JSON object ``text`` holds, or None: not JSON, nested past the parser's
    depth, or JSON of another kind (for headers another program may have written)."""
    try:
        found = json.loads(text)
    except (ValueError, RecursionError):
        return None
    return found if isinstance(found, dict) else None


@dataclass(frozen=True)
class Serializer:
    """A named codec between Python values and bytes, tagged with a content type."""

    name: str
    content_type: str
    dumps: Callable[[Any], bytes]
    loads: Callable[[bytes], Any]


def _json_dumps(value: Any) -> bytes:
    """JSON; a non-str map key is written as JSON names it (``1`` as ``"1"``, ``True``
    as ``"true"``), and a map whose keys would collide there is refused."""
    text = json.dumps(value, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    _check_json_keys(value)  # after dumps: the value is acyclic and every key writable
    return text.encode()


_JSON_SCALARS = frozenset({str, int, float, bool, type(None)})


def _check_json_keys(value: Any) -> None:
    """Raise ValueError naming two keys of one map that JSON would write alike.

    Only a map with a key that is not a str can hold two such keys: the walk descends
    into containers only and looks at the names of the keys of those maps alone."""
    deeper: list[Any] = []
    _walk_json(value, 0, deeper)
    while deeper:
        _walk_json(deeper.pop(), 0, deeper)


#: How deep :func:`_walk_json` recurses before it leaves a container to its caller's
#: loop (a body may nest deeper than Python's recursion limit allows a walk to).
_WALK_DEPTH = 64


def _walk_json(item: Any, depth: int, deeper: list[Any]) -> None:
    # Recursive: a third cheaper than a loop over a stack, for the usual shallow body.
    if isinstance(item, dict):
        for key in item:
            if type(key) is not str:
                _check_key_names(item)
                break
        item = item.values()
    elif not isinstance(item, (list, tuple)):
        return
    scalars = _JSON_SCALARS
    for child in item:
        if type(child) not in scalars:
            if depth < _WALK_DEPTH:
                _walk_json(child, depth + 1, deeper)
            else:
                deeper.append(child)


def _check_key_names(mapping: dict[Any, Any]) -> None:
    seen: dict[str, Any] = {}
    for key in mapping:
        name = _json_name(key)
        if name in seen:
            raise ValueError(
                f"the map keys {seen[name]!r} and {key!r} both become the JSON key "
                f"{name!r}, which would keep one value and lose the other; use str keys, "
                "or keys that differ once written as text"
            )
        seen[name] = key


def _json_name(key: Any) -> str:
    """The name ``json.dumps`` writes for a map key it accepted (so one of str, int,
    float, bool or None, or a subclass of one), as it writes it."""
    if isinstance(key, str):
        return key
    if key is True:
        return "true"
    if key is False:
        return "false"
    if key is None:
        return "null"
    if isinstance(key, int):
        return int.__repr__(key)
    return float.__repr__(key)  # finite: dumps refused NaN and infinities


def _msgpack_dumps(value: Any) -> bytes:
    import msgpack

    data: bytes = msgpack.packb(value, use_bin_type=True)
    # What publish accepts, consume must return: a map key msgpack writes but cannot
    # read back (a tuple key is written as an array, which cannot key a dict) is
    # refused here, before anything is sent, rather than on every consumer.
    try:
        _msgpack_loads(data)
    except Exception as exc:
        raise ValueError(
            f"it would not decode back ({exc}); map keys must be str, bytes, int, "
            "float, bool or None"
        ) from None
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

    ``bytes`` (and ``bytearray``, ``memoryview``) are sent as they are, labelled with
    ``content_type`` when given (pre-encoded JSON under ``application/json``). ``str``
    is UTF-8 text, unless ``content_type`` names a serializer, in which case it is
    serialized with it, as any other value is. A ``str`` body with a ``text/*``
    content type (``text/plain; charset=utf-8``, ``text/csv``...) is encoded in the
    type's ``charset`` (UTF-8 when it names none) and the content type is kept as
    given, so that it decodes back to the same ``str``.

    :raises InvalidMessage: ``content_type`` is not a non-empty str of Unicode text.
    :raises SerializationError: the body cannot be encoded, or would not decode back.
    """
    if content_type is None:
        if isinstance(body, (bytes, bytearray, memoryview)):
            return bytes(body), BINARY
        if isinstance(body, str):
            return _encode_text(body, TEXT, "utf-8"), TEXT
        codec = _SERIALIZERS[serializer]
    else:
        check_content_type(content_type)
        if isinstance(body, (bytes, bytearray, memoryview)):
            return bytes(body), content_type
        base = _base_type(content_type)
        found = _BY_CONTENT_TYPE.get(base)
        if found is None:
            if isinstance(body, str) and base.startswith("text/"):
                return _encode_text(body, content_type, _charset(content_type)), content_type
            raise SerializationError(
                f"no serializer for content type {content_type!r}; pass bytes for a custom "
                f"content type, str for a text/* type, or one of: "
                f"{', '.join(sorted(_BY_CONTENT_TYPE))}"
            )
        codec = found
    try:
        return codec.dumps(plain_data(body)), codec.content_type
    except (TypeError, ValueError, OverflowError) as exc:
        raise SerializationError(
            f"cannot encode a {type(body).__name__} body with the {codec.name} serializer: "
            f"{_error_text(exc)}; "
            "publish bytes, str, or values the serializer understands "
            "(dict, list, str, int, float, bool, None)"
        ) from None
    except Exception as exc:  # msgpack raises its own types; json a RecursionError
        raise SerializationError(
            f"cannot encode a {type(body).__name__} body with the {codec.name} serializer: "
            f"{_error_text(exc)}"
        ) from None


def _error_text(exc: BaseException) -> str:
    """``exc``'s text for a :class:`SerializationError`, without the values a
    validation error of pydantic's or msgspec's quotes: a model's serializer may
    validate, and pydantic's ``PydanticSerializationError`` then repeats the
    ``ValidationError`` it was raised from, ``input_value`` and all."""
    text = error_text(exc)
    inner = exc.__cause__ or exc.__context__
    if inner is not None and quotes_values(inner) and not quotes_values(exc):
        told = error_text(inner)
        try:
            quoted = str(inner)
        except Exception:
            quoted = ""
        if quoted and quoted in text:
            text = text.replace(quoted, told)
        else:  # where the repeated text is cannot be told: only what the inner error says
            text = f"{type(exc).__name__} from {type(inner).__name__}: {told}"
    return shortened(text)


def plain_data(body: Any) -> Any:
    """``body`` as plain data when it is a typed object: a dataclass instance as its
    fields (as ``dataclasses.asdict`` gives them: see :func:`_as_plain`), a pydantic
    model as the data that validates back into it (``model_dump(mode="json",
    by_alias=True, round_trip=True)``: its aliases, no computed fields), a msgspec
    Struct as ``msgspec.to_builtins``; any other value as it is. A dataclass's Structs,
    at any depth ``asdict`` reaches, are turned into plain data as a Struct body is
    (``asdict`` leaves them as they are), in the same pass."""
    if dataclasses.is_dataclass(body) and not isinstance(body, type):
        msgspec = sys.modules.get("msgspec")
        if msgspec is None:
            return _as_plain(body, _NO_STRUCT, _NO_STRUCT)
        return _as_plain(body, msgspec.Struct, msgspec.to_builtins)
    pydantic = sys.modules.get("pydantic")
    if pydantic is not None and isinstance(body, pydantic.BaseModel):
        return body.model_dump(mode="json", by_alias=True, round_trip=True)
    msgspec = sys.modules.get("msgspec")
    if msgspec is not None and isinstance(body, msgspec.Struct):
        return msgspec.to_builtins(body)
    return body


class _NoStruct:
    """Stands for msgspec's Struct (and ``to_builtins``) where msgspec is not imported,
    and where a dict's keys are converted (a Struct key stays a Struct, deep-copied as
    ``asdict`` leaves it, not a dict that no dict can be keyed by): nothing is an
    instance of it."""


_NO_STRUCT: Any = _NoStruct

#: Values ``copy.deepcopy`` returns as they are: :func:`_as_plain` passes them on at once.
_ATOMIC = frozenset({type(None), bool, int, float, str, bytes, complex})


def _as_plain(value: Any, struct: type, to_builtins: Any) -> Any:
    """``value`` as ``dataclasses.asdict`` makes a dataclass's field of it (dataclass
    instances as dicts of their fields, lists, tuples, named tuples and dicts, their
    subclasses included, rebuilt as their type with their items, keys too (but a Struct
    key, kept as one), converted;
    anything else deep-copied), with each msgspec Struct (an instance of ``struct``) as
    ``to_builtins`` gives it, in one pass. A ``defaultdict`` is rebuilt with its
    ``default_factory`` (as Python 3.12's ``asdict`` does; 3.11's cannot make one).
    Recursive, as ``asdict`` is: a body nested past the recursion limit raises
    ``RecursionError``."""
    kind = type(value)
    if kind in _ATOMIC:
        return value
    if hasattr(kind, "__dataclass_fields__"):  # an instance (a class's type has none)
        return {
            f.name: _as_plain(getattr(value, f.name), struct, to_builtins)
            for f in dataclasses.fields(value)
        }
    if kind is list:
        return [_as_plain(item, struct, to_builtins) for item in value]
    if kind is dict:
        return {
            _as_plain(key, _NO_STRUCT, to_builtins): _as_plain(item, struct, to_builtins)
            for key, item in value.items()
        }
    if kind is tuple:
        return tuple([_as_plain(item, struct, to_builtins) for item in value])
    if isinstance(value, struct):
        return to_builtins(value)
    if isinstance(value, tuple):
        items = [_as_plain(item, struct, to_builtins) for item in value]
        return kind(*items) if hasattr(value, "_fields") else kind(items)
    if isinstance(value, dict):
        pairs = [
            (_as_plain(key, _NO_STRUCT, to_builtins), _as_plain(item, struct, to_builtins))
            for key, item in value.items()
        ]
        if isinstance(value, collections.defaultdict):
            made: Any = kind(value.default_factory)
            made.update(pairs)
            return made
        return kind(pairs)
    if isinstance(value, list):
        return kind(_as_plain(item, struct, to_builtins) for item in value)
    return copy.deepcopy(value)


def check_content_type(content_type: object) -> str:
    """Return ``content_type`` if it can be stored: a non-empty str of Unicode text
    (no lone surrogates); raise :class:`~brokerkit.InvalidMessage` otherwise."""
    if not isinstance(content_type, str):
        raise InvalidMessage(
            f"a content type must be a str such as 'application/json', "
            f"not {type(content_type).__name__}"
        )
    if not content_type.strip():
        raise InvalidMessage("a content type cannot be empty; leave it out to have one chosen")
    try:
        content_type.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidMessage(
            f"the content type {content_type!r} is not valid Unicode (it holds a lone surrogate)"
        ) from None
    return content_type


def _encode_text(body: str, content_type: str, charset: str) -> bytes:
    try:
        return body.encode(charset)
    except ValueError as exc:  # UnicodeEncodeError, or a codec's own UnicodeError
        raise SerializationError(
            f"the text body cannot be encoded as {content_type!r} ({_short(exc)}); publish "
            "valid Unicode text (no lone surrogates) in a charset that holds it, or bytes"
        ) from None


def decode_body(payload: bytes, content_type: str) -> Any:
    """The value a payload stands for: bytes, str, or what its serializer decodes.

    ``text/*`` payloads decode in their ``charset`` (UTF-8 when none is named);
    serialized payloads with their serializer; any other type gives the bytes.

    :raises SerializationError: the payload does not decode as its content type says
        (the message names the type and why); this is the only error it raises.
    """
    base = _base_type(content_type)
    if base.startswith("text/"):
        try:
            return payload.decode(_charset(content_type))
        except ValueError as exc:  # UnicodeDecodeError, or a codec's own UnicodeError
            raise SerializationError(
                f"a {content_type} payload of {len(payload)} bytes does not decode as text "
                f"({_short(exc)}); read Message.payload for the raw bytes"
            ) from None
    codec = _BY_CONTENT_TYPE.get(base)
    if codec is None:
        return payload
    try:
        return codec.loads(payload)
    except RecursionError:  # a decoder's own depth limit (json's, by Python version)
        raise SerializationError(
            f"cannot decode a {content_type} payload of {len(payload)} bytes (nested "
            "deeper than the decoder can go); read Message.payload for the raw bytes"
        ) from None
    except Exception as exc:  # ValueError, msgpack's own types...
        raise SerializationError(
            f"cannot decode a {content_type} payload of {len(payload)} bytes "
            f"({type(exc).__name__}: {_short(exc)}); read Message.payload for the raw bytes"
        ) from None


def _short(exc: BaseException) -> str:
    text = str(exc)
    return text if len(text) <= 200 else text[:200] + "..."


def _charset(content_type: str) -> str:
    """The codec named by a text type's ``charset`` parameter (UTF-8 when none is);
    raise SerializationError when Python has no such codec."""
    for parameter in content_type.split(";")[1:]:
        name, _, value = parameter.partition("=")
        if name.strip().lower() == "charset":
            charset = value.strip().strip('"').strip()
            try:
                # a text codec, not one of Python's bytes-to-bytes ones (base64, rot13)
                "".encode(charset)
                return codecs.lookup(charset).name
            except (LookupError, ValueError):  # ("undefined" is a codec that refuses all)
                raise SerializationError(
                    f"the content type {content_type!r} names the unknown charset "
                    f"{charset!r}; use utf-8"
                ) from None
    return "utf-8"


def is_json(content_type: str) -> bool:
    """Whether ``content_type`` is the JSON serializer's (parameters aside)."""
    return _base_type(content_type) == _SERIALIZERS["json"].content_type


def _base_type(content_type: str) -> str:
    return content_type.split(";", 1)[0].strip().lower()
