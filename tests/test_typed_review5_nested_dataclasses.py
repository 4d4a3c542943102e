"""A dataclass body is built by its field types, recursively: nested dataclasses,
``list[X]``, ``tuple[X, ...]`` and fixed tuples, ``dict[str, X]``, ``X | None``. A
dataclass brokerkit publishes comes back equal in a handler annotated with its type,
under JSON and msgpack; a body that does not fit is dead-lettered at once, not handed to
the handler (which failed on ``order.line.x``, and was retried without end).

This module imports neither pydantic nor msgspec: one test runs the conversion in a
process where neither can be imported, and compares.
"""

from __future__ import annotations

import dataclasses
import json
import pathlib
import subprocess
import sys
import threading
from collections.abc import Sequence
from typing import TYPE_CHECKING, Annotated, Any, ClassVar, Optional

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import brokerkit
from brokerkit.worker._typed import InvalidBody, bind

#: Every wait in these tests is on an event set by a handler, with this deadline.
DEADLINE = 10.0
SERIALIZERS = ("json", "msgpack")


@dataclasses.dataclass(frozen=True)
class Point:
    x: int
    y: int


@dataclasses.dataclass
class Line:
    start: Point
    end: Point | None = None
    tags: tuple[str, ...] = ()


@dataclasses.dataclass
class Order:
    order_id: int
    lines: list[Line]
    by_sku: dict[str, Point]
    pair: tuple[int, Point]
    maybe: Optional[Point]  # noqa: UP045 (the spelling under test)
    raw: tuple  # type: ignore[type-arg]
    note: Annotated[str, "free text"]
    total: float
    grid: tuple[tuple[int, int], ...]
    empty: tuple[()] = ()
    count: int = dataclasses.field(init=False)  # set by __post_init__, written by publish

    def __post_init__(self) -> None:
        self.count = len(self.lines)


@dataclasses.dataclass
class Node:
    value: int
    children: list[Node]
    next: Node | None = None


@dataclasses.dataclass
class Checked:
    n: int

    def __post_init__(self) -> None:
        if self.n < 0:
            raise ValueError("n must be 0 or more")


@dataclasses.dataclass
class Shipment:
    point: Point
    points: list[Point]
    pair: tuple[int, int]
    by_name: dict[str, Point]
    maybe: Point | None = None
    checked: Checked | None = None


int64 = st.integers(-(2**63), 2**63 - 1)
text = st.text(st.characters(blacklist_categories=("Cs",)), max_size=10)
points = st.builds(Point, x=int64, y=int64)
lines = st.builds(
    Line, start=points, end=st.none() | points, tags=st.lists(text, max_size=3).map(tuple)
)
orders = st.builds(
    Order,
    order_id=int64,
    lines=st.lists(lines, max_size=3),
    by_sku=st.dictionaries(text, points, max_size=3),
    pair=st.tuples(int64, points),
    maybe=st.none() | points,
    raw=st.lists(int64, max_size=3).map(tuple),
    note=text,
    total=st.floats(allow_nan=False, allow_infinity=False),
    grid=st.lists(st.tuples(int64, int64), max_size=3).map(tuple),
)
nodes = st.recursive(
    st.builds(Node, value=int64, children=st.just([])),
    lambda kids: st.builds(
        Node, value=int64, children=st.lists(kids, max_size=3), next=st.none() | kids
    ),
    max_leaves=12,
)


#: A type (built at random) and a strategy for its values.
Typed = tuple[Any, st.SearchStrategy[Any]]
_made = iter(range(10**9))


def _dataclass_of(members: list[Typed], frozen: bool) -> Typed:
    fields = {f"f{i}": member for i, member in enumerate(members)}
    cls = dataclasses.make_dataclass(
        f"Made{next(_made)}", [(n, t) for n, (t, _) in fields.items()], frozen=frozen
    )
    return cls, st.builds(cls, **{n: s for n, (_, s) in fields.items()})


def _list_of(c: Typed) -> Typed:
    return list[c[0]], st.lists(c[1], max_size=3)


def _tuple_of(c: Typed) -> Typed:
    return tuple[c[0], ...], st.lists(c[1], max_size=3).map(tuple)


def _dict_of(c: Typed) -> Typed:
    return dict[str, c[0]], st.dictionaries(text, c[1], max_size=3)


def _optional(c: Typed) -> Typed:
    return Optional[c[0]], st.none() | c[1]  # noqa: UP045


def _fixed_tuple(cs: list[Typed]) -> Typed:
    return tuple[tuple(t for t, _ in cs)], st.tuples(*(s for _, s in cs))


def _extended(inner: st.SearchStrategy[Typed]) -> st.SearchStrategy[Typed]:
    return st.one_of(
        inner.map(_list_of),
        inner.map(_tuple_of),
        inner.map(_dict_of),
        inner.map(_optional),
        st.lists(inner, min_size=1, max_size=3).map(_fixed_tuple),
        st.builds(_dataclass_of, st.lists(inner, max_size=4), st.booleans()),
    )


#: Any type these conversions build, nested: dataclasses made at random among them.
typed = st.recursive(
    st.sampled_from(
        [
            (int, int64),
            (str, text),
            (bool, st.booleans()),
            (float, st.floats(allow_nan=False, allow_infinity=False)),
            (Any, st.none() | int64 | text),
            (tuple, st.lists(int64, max_size=3).map(tuple)),
        ]
    ),
    _extended,
    max_leaves=8,
)


def _handler_of(body_type: Any, action: Any = None) -> Any:
    """A handler whose body parameter is annotated with ``body_type``."""

    def handle(body: Any) -> None:
        if action is not None:
            action(body)

    handle.__annotations__["body"] = body_type
    return handle


def _received(body: Any, body_type: type, serializer: str = "json") -> Any:
    """``body`` published, received and bound as a handler annotated ``body_type``
    would get it."""
    binding = bind(_handler_of(body_type))
    with brokerkit.connect("memory://", serializer=serializer) as broker:
        subscription = broker.subscribe("typed")
        broker.publish("typed", body)
        delivery = subscription.receive(timeout=DEADLINE)
        assert delivery is not None
        try:
            (got,) = binding.arguments(delivery)
        finally:
            delivery.ack()
    return got


# -- round trips ----------------------------------------------------------------------


@pytest.mark.parametrize("serializer", SERIALIZERS)
@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=st.data())
def test_any_nested_dataclass_value_survives_publish_to_a_typed_handler_equal(
    serializer: str, data: st.DataObject
) -> None:
    sent = data.draw(st.one_of(orders, nodes))
    got = _received(sent, type(sent), serializer)
    assert got == sent  # a dataclass equals only one of its own class: so are the nested


@pytest.mark.parametrize("serializer", SERIALIZERS)
@settings(
    max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=st.data())
def test_a_value_of_any_dataclass_made_of_these_types_survives_publish_equal(
    serializer: str, data: st.DataObject
) -> None:
    cls, values = data.draw(st.builds(_dataclass_of, st.lists(typed, max_size=4), st.booleans()))
    sent = data.draw(values)
    got = _received(sent, cls, serializer)
    assert got == sent


def test_nested_values_are_built_into_their_declared_types() -> None:
    sent = Order(
        1, [Line(Point(1, 2), Point(3, 4), ("a",))], {"k": Point(5, 6)}, (7, Point(8, 9)),
        None, (1, 2), "n", 1.5, ((1, 2),),
    )  # fmt: skip
    got = _received(sent, Order)
    assert type(got.lines[0].start) is Point and type(got.lines[0].end) is Point
    assert type(got.lines[0].tags) is tuple and type(got.by_sku["k"]) is Point
    assert got.pair == (7, Point(8, 9)) and type(got.raw) is tuple and got.grid == ((1, 2),)
    assert got.count == 1


@pytest.mark.parametrize("serializer", SERIALIZERS)
def test_the_worker_hands_nested_dataclasses_to_its_handler(serializer: str) -> None:
    sent = Shipment(Point(1, 2), [Point(3, 4)], (5, 6), {"a": Point(7, 8)}, Point(9, 10))
    with brokerkit.connect("memory://", serializer=serializer) as broker:
        worker = brokerkit.Worker(broker)
        got: list[Any] = []
        done = threading.Event()

        @worker.handler("shipments")
        def ship(shipment: Shipment) -> None:
            got.append((shipment.point.x, shipment.points[0].y, shipment.by_name["a"].x))
            got.append(shipment)
            done.set()

        with worker.running():
            broker.publish("shipments", sent)
            assert done.wait(DEADLINE)
        assert got == [(1, 4, 7), sent]
        assert broker.inspect("shipments").dead_lettered == 0


# -- bodies that do not fit -------------------------------------------------------------

FITS = {"point": {"x": 1, "y": 2}, "points": [], "pair": [1, 2], "by_name": {}}
MISFITS = [
    ({"point": {"x": 1}}, "missing field(s) y at $.point"),
    ({"point": {"x": 1, "y": 2, "z": 3}}, "unknown field(s) z at $.point"),
    ({"point": [1, 2]}, "expected an object, got list at $.point"),
    ({"points": [{"x": 1, "y": 2}, "p"]}, "expected an object, got str at $.points[1]"),
    ({"points": {"x": 1, "y": 2}}, "expected an array, got dict at $.points"),
    ({"pair": [1, 2, 3]}, "expected an array of 2 items, got 3 at $.pair"),
    ({"pair": "12"}, "expected an array, got str at $.pair"),
    ({"by_name": [1]}, "expected an object, got list at $.by_name"),
    ({"by_name": {"a": {"y": 1}}}, "missing field(s) x at $.by_name[...]"),
    ({"maybe": "p"}, "expected an object, got str at $.maybe"),
    ({"checked": {"n": -1}}, "n must be 0 or more at $.checked"),
    ({"point": None}, "expected an object, got NoneType at $.point"),
]


@pytest.mark.parametrize(("change", "reason"), MISFITS, ids=[r for _, r in MISFITS])
def test_a_nested_value_that_does_not_fit_is_invalid(change: dict[str, Any], reason: str) -> None:
    with pytest.raises(InvalidBody) as raised:
        _received({**FITS, **change}, Shipment)
    assert str(raised.value) == f"Shipment: {reason}"


@pytest.mark.parametrize("serializer", SERIALIZERS)
def test_a_body_that_does_not_fit_is_dead_lettered_at_once_never_retried(
    serializer: str,
) -> None:
    with brokerkit.connect("memory://", serializer=serializer) as broker:
        worker = brokerkit.Worker(broker)  # the default policy retries without end
        called = threading.Event()
        buried = threading.Event()
        dead: list[brokerkit.Delivery] = []

        @worker.handler("shipments")
        def ship(shipment: Shipment) -> None:
            called.set()
            shipment.point.x  # noqa: B018 (what failed, and was retried, before)

        @worker.handler(broker.dead_letter_topic("shipments"))
        def bury(body: Any, delivery: brokerkit.Delivery) -> None:
            dead.append(delivery)
            buried.set()

        with worker.running():
            broker.publish("shipments", {**FITS, "point": {"x": 1}})
            assert buried.wait(DEADLINE), "never dead-lettered"
        assert not called.is_set()
        (letter,) = dead
        assert letter.headers["x-dead-letter-reason"] == (
            "invalid body: Shipment: missing field(s) y at $.point"
        )


def test_the_top_level_reasons_are_unchanged() -> None:
    for body, reason in [
        ([1], "Shipment: expected an object, got list"),
        ({"point": {"x": 1, "y": 2}}, "Shipment: missing field(s) by_name, pair, points"),
        ({**FITS, "extra": 1}, "Shipment: unknown field(s) extra"),
    ]:
        with pytest.raises(InvalidBody) as raised:
            _received(body, Shipment)
        assert str(raised.value) == reason


# -- what is left as decoded ---------------------------------------------------------------


@dataclasses.dataclass
class Loose:
    n: int
    by_id: dict[int, Point]
    items: tuple  # type: ignore[type-arg]
    anything: Any = None


def test_other_types_are_left_as_decoded_and_not_checked() -> None:
    body = {"n": "1", "by_id": {"1": {"x": 1, "y": 2}}, "items": [[1, 2]], "anything": [1]}
    got = _received(body, Loose)
    # no coercion, no type check; dict keys as JSON carries them; a bare tuple's items
    assert got == Loose("1", {"1": Point(1, 2)}, ([1, 2],), [1])  # type: ignore[arg-type]


# -- registration ----------------------------------------------------------------------------


@dataclasses.dataclass
class InSequence:
    points: Sequence[Point]


@dataclasses.dataclass
class EitherOne:
    shape: Point | Line


@dataclasses.dataclass
class InSet:
    points: frozenset[Point]


@pytest.mark.parametrize(
    ("body_type", "field"),
    [(InSequence, "points"), (EitherOne, "shape"), (InSet, "points")],
)
def test_a_field_holding_a_dataclass_that_cannot_be_built_is_refused_at_registration(
    body_type: type, field: str
) -> None:
    worker = brokerkit.Worker(brokerkit.connect("memory://"))
    with pytest.raises(brokerkit.InvalidOption) as raised:
        worker.handler("t")(_handler_of(body_type))
    message = str(raised.value)
    assert f"field {field!r} of dataclass {body_type.__name__}" in message, message
    assert "would reach the handler as decoded data" in message, message


def test_a_field_annotation_that_does_not_resolve_is_refused_at_registration() -> None:
    @dataclasses.dataclass
    class Local:
        n: int

    @dataclasses.dataclass
    class Holder:
        local: Local  # a string under `from __future__ import annotations`

    worker = brokerkit.Worker(brokerkit.connect("memory://"))
    with pytest.raises(brokerkit.InvalidOption) as raised:
        worker.handler("t")(_handler_of(Holder))
    message = str(raised.value)
    assert "field 'local' of dataclass Holder" in message, message
    assert "'Local'" in message and "define the type at module level" in message, message


if TYPE_CHECKING:
    from logging import Logger


@dataclasses.dataclass
class WithUnbuiltAnnotations:
    """Annotations no body builds (a ``ClassVar``, an ``init=False`` field) whose types
    are imported only for type checkers."""

    log: ClassVar[Logger]
    id: str
    cache: Logger | None = dataclasses.field(default=None, init=False)


def test_annotations_no_body_builds_need_not_resolve() -> None:
    convert = bind(_handler_of(WithUnbuiltAnnotations)).convert
    assert convert is not None
    assert convert({"id": "a"}) == WithUnbuiltAnnotations("a")
    assert convert({"id": "a", "cache": None}) == WithUnbuiltAnnotations("a")


# -- one behaviour, whichever extras are installed -----------------------------------------

#: Bodies (as JSON) and the type they are bound to, valid and not.
PROBES = [
    ("Shipment", {**FITS, "maybe": {"x": 3, "y": 4}}),
    ("Shipment", {**FITS, "pair": [1, "2"]}),
    ("Shipment", {**FITS, "point": {"x": "1", "y": 2.5}}),
    *[("Shipment", {**FITS, **change}) for change, _ in MISFITS],
    ("Loose", {"n": 1, "by_id": {"7": {"x": 1, "y": 2}}, "items": [1]}),
    ("Node", {"value": 1, "children": [{"value": 2, "children": []}], "next": None}),
    ("Node", {"value": 1, "children": [{"value": 2}]}),
]

_PROBE = """
import json, sys
sys.path.insert(0, {root!r})
if {extras!r} == "blocked":
    sys.modules["pydantic"] = None  # import pydantic raises ImportError
    sys.modules["msgspec"] = None
else:
    import msgspec, pydantic
from tests import test_typed_review5_nested_dataclasses as t
print(json.dumps(t.outcomes()))
"""


def outcomes() -> list[str]:
    """What each probe becomes: the value's repr, or the InvalidBody's text."""
    found = []
    for name, body in PROBES:
        try:
            found.append(repr(_received(body, globals()[name])))
        except InvalidBody as exc:
            found.append(f"InvalidBody: {exc}")
    return found


def _outcomes_in_a_process(extras: str) -> list[str]:
    root = str(pathlib.Path(__file__).resolve().parents[1])
    code = _PROBE.format(root=root, extras=extras)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    return list(json.loads(done.stdout))


def test_the_conversion_is_the_same_with_and_without_pydantic_and_msgspec() -> None:
    without = _outcomes_in_a_process("blocked")
    assert _outcomes_in_a_process("imported") == without
    assert outcomes() == without
    assert sum(o.startswith("InvalidBody: ") for o in without) == len(MISFITS) + 1
    assert "Shipment(point=Point(x='1', y=2.5)" in "".join(without)  # coerced nowhere
