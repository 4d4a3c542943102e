"""Building one value of a dataclass body's field type from decoded data, a container
at a time: the conversions :class:`~brokerkit.worker._dataclass_body.Builders` puts
together at registration (an array's, a fixed tuple's, a dict's, a msgspec Struct's,
an optional value's), each given the value and its depth, and the :class:`Misfit`
they raise, naming where a body does not fit."""

from __future__ import annotations

import sys
from collections.abc import Callable, Mapping
from typing import Any

from brokerkit.worker._error_text import msgspec_text, shortened

__all__ = ["MAX_DEPTH", "Misfit"]

#: How many containers deep a body is built: the body (an object) is the first; each
#: object (a dataclass's, a dict's) and array built inside it is one more. One nested
#: deeper does not fit. Containers taken as decoded (a ``list[int]``, an ``Any``) are
#: never looked into, and not counted. A level takes two Python frames at most, so
#: that building stays well within Python's default recursion limit (1000).
MAX_DEPTH = 200


#: A value's conversion into one type, given the value and its depth (the body's is 1;
#: see :data:`MAX_DEPTH`); raises :class:`Misfit` when it does not fit.
_Build = Callable[[Any, int], Any]

#: A dict's key in the path of a misfit, as msgspec shows it: the key is the body's,
#: and may be what it keeps secret (an e-mail address, a token), as its values may.
HIDDEN_KEY = "[...]"


class Misfit(Exception):
    """A value that does not fit its type. ``path`` is filled in on the way out, one
    step (``.field``, ``[0]``, a dict's :data:`HIDDEN_KEY`) a container, innermost
    first."""

    def __init__(self, text: str) -> None:
        super().__init__(text)
        self.text = text
        self.path: list[str] = []

    def where(self) -> str:
        """`` at $.lines[0].start``, shortened; empty for the body itself."""
        path = "".join(reversed(self.path))
        if len(path) > 200:  # a recursive type, deep
            path = f"{path[:100]}...{path[-100:]}"
        return f" at ${path}" if path else ""


def _expected(expected: str, value: Any) -> Misfit:
    return Misfit(f"expected {expected}, got {type(value).__name__}")


def _too_deep() -> Misfit:
    return Misfit(f"nested deeper than {MAX_DEPTH} levels (the most a dataclass body is built to)")


def _beyond_recursion_limit() -> Misfit:
    """The misfit of a body whose building hit Python's recursion limit: only a limit
    set lower than :data:`MAX_DEPTH` levels need (or a build called from deep down)."""
    return Misfit(
        f"nested deeper than Python's recursion limit ({sys.getrecursionlimit()}) lets a "
        f"dataclass body be built (the most is {MAX_DEPTH} levels)"
    )


def _array(item: _Build, into: type[list[Any]] | type[tuple[Any, ...]]) -> _Build:
    """``list[X]`` (``into`` list) or ``tuple[X, ...]`` (tuple): in one frame a level."""

    def build(value: Any, depth: int) -> Any:
        if depth > MAX_DEPTH:
            raise _too_deep()
        if not isinstance(value, (list, tuple)):
            raise _expected("an array", value)
        built = []
        for index, element in enumerate(value):
            try:
                built.append(item(element, depth + 1))
            except Misfit as exc:
                exc.path.append(f"[{index}]")
                raise
        return built if into is list else tuple(built)

    return build


def _as_tuple(value: Any, depth: int) -> Any:
    """A bare ``tuple``, or ``tuple[X, ...]`` of an X taken as decoded."""
    if depth > MAX_DEPTH:
        raise _too_deep()
    if not isinstance(value, (list, tuple)):
        raise _expected("an array", value)
    return tuple(value)


def _fixed(items: list[_Build | None]) -> _Build:
    def build(value: Any, depth: int) -> Any:
        if depth > MAX_DEPTH:
            raise _too_deep()
        if not isinstance(value, (list, tuple)):
            raise _expected("an array", value)
        if len(value) != len(items):
            raise Misfit(f"expected an array of {len(items)} items, got {len(value)}")
        built = []
        for index, (item, element) in enumerate(zip(items, value, strict=True)):
            try:
                built.append(element if item is None else item(element, depth + 1))
            except Misfit as exc:
                exc.path.append(f"[{index}]")
                raise
        return tuple(built)

    return build


def _dict(item: _Build) -> _Build:
    def build(value: Any, depth: int) -> Any:
        if depth > MAX_DEPTH:
            raise _too_deep()
        if not isinstance(value, Mapping):
            raise _expected("an object", value)
        built = {}
        for key, element in value.items():
            try:
                built[key] = item(element, depth + 1)
            except Misfit as exc:
                exc.path.append(HIDDEN_KEY)
                raise
        return built

    return build


def _struct(model: Any) -> _Build:
    """A msgspec Struct (``model``, or a generic one parametrized), validated from the
    decoded value by msgspec, laxly as a decoded body is (msgpack carries what JSON
    would); msgspec's reason, its path from the Struct made part of the misfit's."""
    msgspec = sys.modules["msgspec"]

    def build(value: Any, depth: int) -> Any:
        if depth > MAX_DEPTH:
            raise _too_deep()
        try:
            return msgspec.convert(value, model, strict=False)
        except msgspec.ValidationError as exc:
            full = msgspec_text(exc)
            text, at, path = full.rpartition(" - at `$")
            if not (at and path.endswith("`")):
                text, path = full, ""
            misfit = Misfit(shortened(text))
            if path:
                misfit.path.append(path[:-1])
        # Raised outside the except: msgspec's error, which may quote a value refused
        # (an enum's), is not its context.
        raise misfit

    return build


def _optional(inner: _Build) -> _Build:
    def build(value: Any, depth: int) -> Any:
        return None if value is None else inner(value, depth)

    return build
