"""A dataclass body nested deeper than the converter builds (a recursive dataclass,
``child: Node | None``, hundreds of levels deep) is dead-lettered at once with
brokerkit's own reason: what is wrong (nested too deep), where (the path, shortened)
and what is valid (the limit, ``MAX_DEPTH`` levels). Before, a body deeper than
Python's recursion limit allowed the converter (about 500 levels) was dead-lettered
with a bare "RecursionError: maximum recursion depth exceeded".

A body too deep for the decoder itself (100,000 nested arrays) is dead-lettered too,
with the decoder's reason; the worker goes on handling the next message.
"""

from __future__ import annotations

import dataclasses
import json
import sys
import threading
from collections.abc import Callable
from types import FrameType
from typing import Any

import pytest

import brokerkit
from brokerkit.worker import _dataclass_body
from brokerkit.worker._typed import InvalidBody, converter
from tests.test_worker import DEADLINE
from tests.waiting import wait_until


@dataclasses.dataclass
class Node:
    child: Node | None = None


@dataclasses.dataclass
class Tree:
    children: list[Tree]


@dataclasses.dataclass
class Mixed:
    """Three containers a level: itself, a dict and a tuple."""

    more: dict[str, tuple[Mixed, ...]] | None = None


def _nodes(count: int) -> dict[str, Any]:
    """``count`` Nodes, each the child of the one before (``count`` levels deep)."""
    body: dict[str, Any] = {}
    for _ in range(count - 1):
        body = {"child": body}
    return body


def _trees(count: int) -> dict[str, Any]:
    """``count`` Trees, nested (``2 * count`` levels deep: each its list too)."""
    body: dict[str, Any] = {"children": []}
    for _ in range(count - 1):
        body = {"children": [body]}
    return body


def _mixed(count: int) -> dict[str, Any]:
    """``count`` Mixed, nested (``3 * count - 2`` levels deep)."""
    body: dict[str, Any] = {}
    for _ in range(count - 1):
        body = {"more": {"k": [body]}}
    return body


def _shortened(path: str) -> str:
    """A path as a reason shows it: its first and last 100 characters if longer than 200."""
    return f"{path[:100]}...{path[-100:]}" if len(path) > 200 else path


def _convert(body_type: Any, body: Any) -> Any:
    """``body`` built as a handler's body parameter annotated ``body_type`` is."""
    convert = converter(body_type)
    assert convert is not None
    return convert(body)


def _too_deep(body_type: Any, body: Any) -> str:
    with pytest.raises(InvalidBody) as raised:
        _convert(body_type, body)
    return str(raised.value)


def test_a_body_as_deep_as_the_limit_is_built_one_level_more_is_not() -> None:
    limit = _dataclass_body.MAX_DEPTH
    built = _convert(Node, _nodes(limit))
    depth = 1
    while built.child is not None:
        built, depth = built.child, depth + 1
    assert depth == limit
    reason = _too_deep(Node, _nodes(limit + 1))
    assert reason == (
        f"Node: nested deeper than {limit} levels (the most a dataclass body is built to) "
        f"at ${_shortened('.child' * limit)}"
    )
    assert len(reason) < 320


@pytest.mark.parametrize(
    ("body_type", "nest", "depth", "step"),
    [
        (Tree, _trees, lambda count: 2 * count, ".children[0]"),
        (Mixed, _mixed, lambda count: 3 * count - 2, ".more[...][0]"),
    ],
    ids=["list", "dict-tuple"],
)
def test_every_container_is_a_level(
    body_type: Any, nest: Any, depth: Callable[[int], int], step: str
) -> None:
    limit = _dataclass_body.MAX_DEPTH
    count = max(c for c in range(1, limit + 1) if depth(c) <= limit)
    _convert(body_type, nest(count))  # within the limit: built
    for deeper in (count + 1, 1000):  # 1000: far beyond Python's recursion limit
        reason = _too_deep(body_type, nest(deeper))
        prefix = f"{body_type.__name__}: nested deeper than {limit} levels"
        assert reason.startswith(prefix), reason
        assert f" at ${step}{step}" in reason and "RecursionError" not in reason, reason


def _current_depth() -> int:
    frame: FrameType | None = sys._getframe()
    depth = 0
    while frame is not None:
        frame, depth = frame.f_back, depth + 1
    return depth


def test_a_recursion_limit_too_low_for_the_limit_still_gives_the_reason() -> None:
    """A program that lowered Python's recursion limit below what ``MAX_DEPTH`` levels
    need: the body is refused with the reason, never a RecursionError."""
    body = _nodes(_dataclass_body.MAX_DEPTH)
    before = sys.getrecursionlimit()
    sys.setrecursionlimit(_current_depth() + 100)
    try:
        with pytest.raises(InvalidBody) as raised:
            _convert(Node, body)
    finally:
        sys.setrecursionlimit(before)
    reason = str(raised.value)
    assert reason.startswith("Node: nested deeper than Python's recursion limit"), reason
    assert f"the most is {_dataclass_body.MAX_DEPTH} levels" in reason, reason
    assert " at $.child.child" in reason, reason


# -- on a worker ------------------------------------------------------------------------


def _payload(body: Any, serializer: str) -> tuple[bytes, str]:
    """``body`` pre-encoded (neither encoder writes one nested this deep)."""
    if serializer == "json":
        return json.dumps(body).encode(), "application/json"
    return _msgpack(body), "application/msgpack"


def _msgpack(body: Any) -> bytes:
    """Nested dicts with one str key or none, and lists of one item or none, as msgpack
    (written by hand, in a loop: msgpack's packer refuses them this deep)."""
    head, tail = b"", b""
    while True:
        if isinstance(body, dict) and body:
            ((key, body),) = body.items()
            encoded = key.encode()
            head += b"\x81" + bytes([0xA0 | len(encoded)]) + encoded
        elif isinstance(body, list) and body:
            (body,) = body
            head += b"\x91"
        else:
            tail = b"\x80" if isinstance(body, dict) else b"\x90"
            return head + tail


def _dead_letter_reason(broker: brokerkit.Broker, payload: bytes, content_type: str) -> str:
    """Publish ``payload`` to a worker whose handler takes a Node; the dead-letter reason.
    The worker then handles a good body."""
    worker = brokerkit.Worker(broker)  # the default policy retries without end
    handled: list[Any] = []
    good = threading.Event()

    @worker.handler("nodes")
    def take(node: Node) -> None:
        handled.append(node)
        if node == Node(Node()):
            good.set()

    with worker.running():
        broker.publish("nodes", payload, content_type=content_type)
        wait_until(
            lambda: broker.inspect("nodes").dead_lettered == 1,
            "the dead letter of the deep message",
            within=DEADLINE,
        )
        broker.publish("nodes", {"child": {}})
        assert good.wait(DEADLINE), "the worker handles no message after the deep one"
    assert handled == [Node(Node())]
    assert broker.inspect("nodes").dead_lettered == 1
    (letter,) = broker.consume(broker.dead_letter_topic("nodes"), timeout=0)
    letter.ack()
    assert broker.inspect("nodes").dead_lettered == 0  # read and acked: dealt with
    return str(letter.headers["x-dead-letter-reason"])


@pytest.mark.parametrize("serializer", ["json", "msgpack"])
def test_a_body_nested_too_deep_is_dead_lettered_with_the_reason(serializer: str) -> None:
    levels = 600  # deeper than Python's recursion limit let the converter go
    with brokerkit.connect("memory://", serializer=serializer) as broker:
        reason = _dead_letter_reason(broker, *_payload(_nodes(levels), serializer))
    assert "RecursionError" not in reason, reason
    limit = _dataclass_body.MAX_DEPTH
    assert reason == (
        f"invalid body: Node: nested deeper than {limit} levels (the most a dataclass body "
        f"is built to) at ${_shortened('.child' * limit)}"
    )


@pytest.mark.parametrize("serializer", ["json", "msgpack"])
def test_a_body_too_deep_to_decode_is_dead_lettered(serializer: str) -> None:
    """100,000 nested arrays: the decoder refuses them (JSON's with a RecursionError it
    raises itself, reported as nesting; msgpack's past 1,023 levels), and the worker
    dead-letters the message with its reason, once, and goes on."""
    levels = 100_000
    if serializer == "json":
        payload, content_type = b"[" * levels + b"]" * levels, "application/json"
    else:
        payload, content_type = b"\x91" * levels + b"\x90", "application/msgpack"
    with brokerkit.connect("memory://", serializer=serializer) as broker:
        reason = _dead_letter_reason(broker, payload, content_type)
    assert reason.startswith(f"invalid body: cannot decode a {content_type} payload"), reason
    if serializer == "json":  # Python's decoder: the reason says what went wrong
        assert "nested deeper than the decoder can go" in reason, reason
        assert "RecursionError" not in reason, reason
