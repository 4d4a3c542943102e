"""What ``ack`` and ``nack`` are given is checked before anything is settled: a
delivery named twice is refused, whatever its class makes of ``==`` and ``hash``
(settleable tells the deliveries apart by identity, through a set of the deliveries
when their class hashes as object does, through their id()s otherwise)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

import brokerkit
from brokerkit import AlreadySettled, Delivery, DeliveryError
from brokerkit._settling import settleable


class _AllEqual(Delivery):
    """A delivery class whose instances all compare and hash equal."""

    __slots__ = ()

    def __eq__(self, other: object) -> bool:
        return True

    def __hash__(self) -> int:
        return 0


class _Unhashable(Delivery):
    """A delivery class with ``__eq__`` and so no hash."""

    __slots__ = ()

    def __eq__(self, other: object) -> bool:
        return self is other


@pytest.fixture
def broker() -> Iterator[brokerkit.Broker]:
    with brokerkit.connect("memory://") as broker:
        yield broker


def _received(broker: brokerkit.Broker, count: int, kind: type[Delivery] = Delivery) -> list[Any]:
    """``count`` deliveries of ``broker``'s, remade as ``kind``."""
    broker.publish_many("t", list(range(count)))
    subscription = broker.subscribe("t", prefetch=count)
    got = [subscription.receive(timeout=0) for _ in range(count)]
    return [
        kind(d.message, subscription=d.subscription, attempt=d.attempt, receipt=d.receipt)
        for d in got
        if d is not None
    ]


@pytest.mark.parametrize("kind", [Delivery, _AllEqual, _Unhashable])
def test_distinct_deliveries_pass_and_one_named_twice_is_refused(
    broker: brokerkit.Broker, kind: type[Delivery]
) -> None:
    got = _received(broker, 3, kind)
    assert settleable(broker, got) == got
    with pytest.raises(AlreadySettled, match="passed twice"):
        settleable(broker, [*got, got[1]])


def test_classes_mixed_in_one_batch_are_each_checked(broker: brokerkit.Broker) -> None:
    plain = _received(broker, 2)
    odd = [_AllEqual(d.message, subscription=d.subscription, receipt=d.receipt) for d in plain]
    mixed = [plain[0], odd[0], plain[1], odd[1]]
    assert settleable(broker, mixed) == mixed
    with pytest.raises(AlreadySettled, match="passed twice"):
        settleable(broker, [*mixed, odd[0]])
    with pytest.raises(DeliveryError, match="expected a Delivery"):
        settleable(broker, [plain[0], "not a delivery"])  # type: ignore[list-item]
    plain[1].ack()
    with pytest.raises(AlreadySettled, match="already acked"):
        settleable(broker, [odd[0], plain[1]])
