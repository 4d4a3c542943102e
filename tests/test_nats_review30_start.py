"""NATS: a subscription's ``start`` is checked whether or not its group exists, and
an invalid one raises InvalidOption naming what is valid (review 30).

``start`` was read only when the group's consumer was made: a ``start`` of an int
(``start=5``) raised AttributeError ('int' object has no attribute 'isdigit'), one of
digits ``int`` cannot read (``"²"``, which ``str.isdigit`` takes) raised ValueError, a
number past JetStream's 64-bit sequences was sent and refused as "consumer not found",
and any ``start`` (``"bogus"``) was taken silently by a group that existed, where the
memory and redis+stream backends raise InvalidOption either way.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from brokerkit.exceptions import InvalidOption
from tests.nats_server import nats

__all__ = ["nats"]  # a fixture

_INVALID: list[Any] = [5, "²", "\u0661", "bogus", "0", "-1", " 1", str(2**64), "9" * 30]


@pytest.mark.parametrize("start", _INVALID, ids=repr)
@pytest.mark.parametrize("group", ["new", "existing"])
def test_an_invalid_start_raises_invalid_option(
    nats: Callable[..., Any], start: Any, group: str
) -> None:
    broker = nats()
    if group == "existing":
        broker.subscribe("jobs", group="g").close()
    with pytest.raises(InvalidOption, match=r"start=.*'earliest', 'latest'"):
        broker.subscribe("jobs", group="g", start=start)


def test_an_int_start_is_told_to_be_a_str(nats: Callable[..., Any]) -> None:
    with pytest.raises(InvalidOption, match=r"start='5'"):
        nats().subscribe("jobs", group="g", start=5)


def test_an_invalid_start_makes_nothing(nats: Callable[..., Any]) -> None:
    broker = nats()
    with pytest.raises(InvalidOption):
        broker.subscribe("jobs", group="g", start="bogus")
    assert broker.declared.consumers == frozenset()


@pytest.mark.parametrize("start", ["earliest", "latest", "1", "2", str(2**64 - 1)])
def test_a_valid_start_is_taken(nats: Callable[..., Any], start: str) -> None:
    broker = nats()
    broker.publish("jobs", "one")
    broker.publish("jobs", "two")
    subscription = broker.subscribe("jobs", group="g", start=start)
    delivery = subscription.receive(timeout=1 if start in ("earliest", "1", "2") else 0)
    expected = {"earliest": "one", "1": "one", "2": "two"}.get(start)
    assert (delivery.body if delivery else None) == expected
    if delivery is not None:
        delivery.ack()
    subscription.close()
    # and again, with the group there
    broker.subscribe("jobs", group="g", start=start).close()
