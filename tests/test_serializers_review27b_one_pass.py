"""A dataclass body is made plain data in one pass, its msgspec Structs included
(review 27b, item 4): ``plain_data`` walked what ``dataclasses.asdict`` gave a second
time to turn Structs into plain data (whenever msgspec was imported, Structs or not),
and that walk only looked into exact dicts, lists and tuples, so a Struct in an
``OrderedDict``, a ``defaultdict``, another dict subclass or a named tuple field was
left as it was and the publish failed (``Object of type Line is not JSON
serializable``). Containers are now read as ``asdict`` reads them, subclasses
included; what a Struct-free dataclass gives is what ``asdict`` gives."""

from __future__ import annotations

import collections
import dataclasses
import datetime
from typing import Any, NamedTuple

import msgspec
import pytest

import brokerkit
from brokerkit._serializers import plain_data


class Line(msgspec.Struct):
    sku: str


class Named(NamedTuple):
    first: Any
    second: Any


class Tags(dict):  # type: ignore[type-arg]
    """A dict subclass of its own."""


class Items(list):  # type: ignore[type-arg]
    """A list subclass of its own."""


@dataclasses.dataclass
class Order:
    ordered: collections.OrderedDict[str, Line]
    by_default: collections.defaultdict[str, Any]
    tags: Tags
    pair: Named
    items: Items


def _order() -> Order:
    by_default: collections.defaultdict[str, Any] = collections.defaultdict(list)
    by_default["b"] = Line("b")
    return Order(
        ordered=collections.OrderedDict(a=Line("a")),
        by_default=by_default,
        tags=Tags(c=Line("c")),
        pair=Named(Line("d"), [Line("e")]),
        items=Items([Line("f")]),
    )


@pytest.mark.parametrize("serializer", ["json", "msgpack"])
def test_structs_in_dict_subclasses_and_named_tuples_are_published(serializer: str) -> None:
    with brokerkit.connect("memory://", serializer=serializer) as broker:
        subscription = broker.subscribe("orders")
        broker.publish("orders", _order())
        delivery = subscription.receive(timeout=5)
        assert delivery is not None
        assert delivery.body == {
            "ordered": {"a": {"sku": "a"}},
            "by_default": {"b": {"sku": "b"}},
            "tags": {"c": {"sku": "c"}},
            "pair": [{"sku": "d"}, [{"sku": "e"}]],
            "items": [{"sku": "f"}],
        }
        delivery.ack()


def test_the_containers_keep_their_types() -> None:
    plain = plain_data(_order())
    assert type(plain["ordered"]) is collections.OrderedDict
    assert type(plain["by_default"]) is collections.defaultdict
    assert plain["by_default"].default_factory is list
    assert type(plain["tags"]) is Tags
    assert type(plain["pair"]) is Named and plain["pair"].second == [{"sku": "e"}]
    assert type(plain["items"]) is Items


@dataclasses.dataclass
class Inner:
    when: datetime.date
    values: set[int]


@dataclasses.dataclass
class Plain:
    """No Struct: what plain_data gives is what dataclasses.asdict gives."""

    number: int
    text: str
    inner: Inner
    inners: list[Inner]
    keyed: dict[tuple[int, int], Inner]
    pair: Named
    ordered: collections.OrderedDict[str, list[int]]
    tags: Tags
    items: Items
    nothing: None = None


def test_a_dataclass_without_structs_is_what_asdict_gives() -> None:
    inner = Inner(datetime.date(2026, 12, 6), {1, 2})
    body = Plain(
        1,
        "x",
        inner,
        [inner, inner],
        {(1, 2): inner},
        Named(inner, (1, [2])),
        collections.OrderedDict(a=[1]),
        Tags(k=[inner]),
        Items([inner]),
    )
    plain = plain_data(body)
    assert plain == dataclasses.asdict(body)
    assert type(plain["pair"]) is Named and type(plain["keyed"]) is dict
    assert type(plain["ordered"]) is collections.OrderedDict
    assert type(plain["tags"]) is Tags and type(plain["items"]) is Items
    assert plain["inner"]["values"] is not inner.values  # deep-copied, as asdict does


class Key(msgspec.Struct, frozen=True):
    """A hashable Struct, which a dict may be keyed by."""

    a: int


@dataclasses.dataclass
class Keyed:
    by_key: dict[Any, Any]
    ordered: collections.OrderedDict[Any, Any]


def test_a_struct_key_stays_a_struct_as_asdict_leaves_it() -> None:
    # a key made a dict keyed nothing: TypeError unhashable type 'dict'
    body = Keyed({Key(1): Line("a")}, collections.OrderedDict({(Key(2),): 1}))
    assert plain_data(body) == {
        "by_key": {Key(1): {"sku": "a"}},
        "ordered": collections.OrderedDict({(Key(2),): 1}),
    }
