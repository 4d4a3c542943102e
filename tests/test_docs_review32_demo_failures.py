"""docs/demo.md says how many orders in ten the demo's SMS gateway errors on, and how
many of those fail every time; the gateway (``brokerkit.demo._retry.flaky_sms``) does so.

The page said "errors on one order in ten", then named two kinds (ids ending in 0, every
time; ids ending in 5, on the first attempt): the demo's own table shows eight of its
40 orders failing at least once.
"""

from __future__ import annotations

import re
from pathlib import Path

from brokerkit.demo import make_orders
from brokerkit.demo._retry import flaky_sms
from brokerkit.demo._services import Order, ServiceFailure

PAGE = Path(__file__).resolve().parent.parent / "docs" / "demo.md"
_NUMBERS = {"one": 1, "two": 2, "three": 3}


def _fails(order: Order, attempt: int) -> bool:
    try:
        flaky_sms(order, attempt)
    except ServiceFailure:
        return True
    return False


def test_the_page_counts_the_orders_the_gateway_errors_on() -> None:
    text = " ".join(PAGE.read_text().split())
    claim = re.search(r"The SMS gateway errors on (\w+) orders? in ten", text)
    assert claim, "docs/demo.md no longer says how often the SMS gateway errors"
    orders = make_orders(100, first_id=1)
    erring = [order for order in orders if _fails(order, 1)]
    assert len(erring) == 10 * _NUMBERS[claim[1]]
    always = [order for order in erring if all(_fails(order, n) for n in (1, 2, 3))]
    assert all(order.order_id % 10 == 0 for order in always) and len(always) == 10
    assert "orders whose id ends in 0 carry an invalid phone number and fail every time" in text
