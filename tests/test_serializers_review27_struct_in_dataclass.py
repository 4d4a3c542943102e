"""A dataclass body holding msgspec Structs (a field, a list of them, a dict of them)
is published as plain data, each Struct as ``msgspec.to_builtins`` gives it, as a
Struct body is: ``dataclasses.asdict`` leaves a Struct as it is, which no serializer
encodes, so the publish failed. A worker handler annotated with the dataclass gets an
equal instance back (the consuming side builds a Struct field with msgspec)."""

from __future__ import annotations

import dataclasses

import msgspec
import pytest

import brokerkit
from tests.waiting import wait_until


class Line(msgspec.Struct):
    sku: str
    quantity: int = 1


@dataclasses.dataclass
class Order:
    line: Line
    more: list[Line] = dataclasses.field(default_factory=list)
    by_name: dict[str, Line] = dataclasses.field(default_factory=dict)
    note: str | None = None


ORDER = Order(Line("a", 2), [Line("b"), Line("c", 3)], {"x": Line("d")}, "hi")


@pytest.mark.parametrize("serializer", ["json", "msgpack"])
def test_a_dataclass_holding_structs_is_published_as_plain_data(serializer: str) -> None:
    with brokerkit.connect("memory://", serializer=serializer) as broker:
        subscription = broker.subscribe("orders")
        broker.publish("orders", ORDER)
        delivery = subscription.receive(timeout=5)
        assert delivery is not None
        assert delivery.body == {
            "line": {"sku": "a", "quantity": 2},
            "more": [{"sku": "b", "quantity": 1}, {"sku": "c", "quantity": 3}],
            "by_name": {"x": {"sku": "d", "quantity": 1}},
            "note": "hi",
        }
        delivery.ack()


def test_a_handler_annotated_with_the_dataclass_gets_an_equal_instance() -> None:
    got: list[Order] = []
    with brokerkit.connect("memory://") as broker:
        worker = brokerkit.Worker(broker)

        @worker.handler("orders")
        def take(order: Order) -> None:
            got.append(order)

        broker.publish("orders", ORDER)
        with worker.running():
            wait_until(lambda: worker.stats()[0].processed == 1, "the order handled", within=20)
    assert got == [ORDER]
