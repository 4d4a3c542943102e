"""A dataclass body whose fields are declared in a generic base under another type
variable (review 27b, item 1), and a polymorphically recursive generic dataclass
(item 3).

- ``class Child(Box[U])``, ``Box[T]`` declaring ``item: T``: a ``Child[Line]`` body
  was accepted but its ``item`` was left a dict (only ``Child``'s own type variables
  were mapped to the type arguments); the type variables are now read through the
  bases as written, and each field's hint takes those of the class declaring it. So
  is a non-generic ``class LineBox(Box[Line])``, and a ``Child[Line]`` field of a
  dataclass. A base named bare (``class Bare(Box, Generic[U])``) maps nothing: a
  ``Bare[Line]`` body is refused at registration (its ``item`` would be a dict).
- ``Node[T]`` with ``child: Node[list[T]] | None`` names a new type at each level:
  registering ``Node[int]`` raised ``RecursionError``. It is accepted now (past
  ``GENERIC_NESTING`` levels built with its type variables as decoded), and
  ``Node[Line]`` (which would then hand over dicts) is refused with a reason.
"""

from __future__ import annotations

import dataclasses
from typing import Generic, Optional, TypeVar

import pytest

import brokerkit
from tests.typed_bodies import handled

T = TypeVar("T")
U = TypeVar("U")
V = TypeVar("V")


@dataclasses.dataclass
class Line:
    sku: str
    qty: int


@dataclasses.dataclass
class Box(Generic[T]):
    item: T


@dataclasses.dataclass
class Child(Box[U]):
    note: str = ""


@dataclasses.dataclass
class Grandchild(Child[list[V]]):
    """Two levels of bases, the type argument wrapped on the way."""


@dataclasses.dataclass
class LineBox(Box[Line]):
    """Not generic itself: its base's type variable is given in its bases."""


@dataclasses.dataclass
class Bare(Box, Generic[U]):  # type: ignore[type-arg]  # (the bare base under test)
    """Its base named bare: its ``item: T`` cannot be mapped to ``Bare``'s arguments."""

    extra: Optional[U] = None  # noqa: UP045


@dataclasses.dataclass
class Order:
    box: Child[Line]


@dataclasses.dataclass
class Node(Generic[T]):
    value: T
    child: Optional[Node[list[T]]] = None  # noqa: UP045


def test_a_field_declared_in_a_generic_base_is_built_as_the_type_argument() -> None:
    got, reasons = handled(
        Child[Line],
        [{"item": {"sku": "a", "qty": 1}}, {"item": {"sku": "a", "qty": 1, "junk": 1}}],
    )
    assert got == [Child(item=Line("a", 1))] and type(got[0].item) is Line
    assert reasons == ["invalid body: Child: unknown field(s) junk at $.item"]


def test_the_type_variables_are_read_through_every_base() -> None:
    got, reasons = handled(Grandchild[Line], [{"item": [{"sku": "a", "qty": 1}]}])
    assert reasons == []
    assert got == [Grandchild(item=[Line("a", 1)])] and type(got[0].item[0]) is Line


def test_a_non_generic_class_of_a_parametrized_base_is_built() -> None:
    got, reasons = handled(LineBox, [{"item": {"sku": "a", "qty": 1}}, {"item": {"sku": "a"}}])
    assert got == [LineBox(item=Line("a", 1))] and type(got[0].item) is Line
    assert reasons == ["invalid body: LineBox: missing field(s) qty at $.item"]


def test_a_field_of_such_a_class_is_built() -> None:
    got, reasons = handled(Order, [{"box": {"item": {"sku": "a", "qty": 1}}}])
    assert reasons == []
    assert got == [Order(Child(item=Line("a", 1)))] and type(got[0].box.item) is Line


def test_a_base_whose_type_variable_cannot_be_mapped_is_refused() -> None:
    def job(body: Bare[Line]) -> None: ...

    with pytest.raises(brokerkit.InvalidOption) as caught:
        brokerkit.Worker().handler("jobs")(job)
    text = str(caught.value)
    assert "field 'item' of dataclass Bare" in text, text
    assert "in its base Box, a type variable brokerkit cannot map" in text, text
    assert "the dataclass Line: it would reach the handler as decoded data" in text, text


def test_a_polymorphically_recursive_generic_dataclass_registers() -> None:
    body = {"value": 1, "child": {"value": [2], "child": {"value": [[3]]}}}
    got, reasons = handled(Node[int], [body])
    assert reasons == []
    assert got == [Node(1, Node([2], Node([[3]])))]


def test_one_that_would_hand_over_decoded_data_is_refused_with_a_reason() -> None:
    def job(body: Node[Line]) -> None: ...

    with pytest.raises(brokerkit.InvalidOption, match="polymorphically recursive") as caught:
        brokerkit.Worker().handler("jobs")(job)
    assert "the dataclass Line" in str(caught.value)
