"""NATS: a group's consumer made again (deleted, then made by another broker with a
longer AckWait) while a broker holds one of its deliveries (review 27, item 1).

The renewals ask each held group's AckWait every round, and moved the deadline of each
lease by the difference: with a longer AckWait, later. But a consumer made again holds
none of what the one before it delivered: it delivers the message again, at once, to
whoever pulls. The holder went on renewing (JetStream answers a ``+WPI`` of a delivery
it does not hold, as if it did) and counted its lease as held until the new, longer,
AckWait ran out; its ack, accepted, settled the message in the new holder's hands.
The renewals now tell a consumer made again (its creation time changed) from one
edited in place (``nats consumer edit``: the server counts what it holds with the new
AckWait from its last lease or renewal, as the broker does): the leases of the one
before are lost, reported at once, and their settle raises StaleDelivery.
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Callable
from typing import Any

import nats as nats_py
import pytest

import brokerkit
from brokerkit.backends.nats._wire import consumer_name
from tests.conftest import LostLeases
from tests.nats_server import nats
from tests.waiting import wait_until

__all__ = ["nats"]  # a fixture

#: The AckWait the group has when its delivery is leased: renewed every half second.
_SHORT = 2.0
#: The AckWait it is made again (or edited) with.
_LONG = 30.0
#: Seconds a wait here may take at most: a hang guard, never a pace.
GUARD = 15.0


def _in_a_thread(work: Callable[[], None]) -> None:
    """``work()`` in a thread of its own, waited for: the caller's event loop (the
    holder's bridge loop) stays blocked meanwhile, so that no renewal of the holder
    lands between a deletion and the consumer's making again."""
    failed: list[BaseException] = []

    def run() -> None:
        try:
            work()
        except BaseException as exc:
            failed.append(exc)

    thread = threading.Thread(target=run)
    thread.start()
    thread.join(GUARD)
    assert not thread.is_alive() and not failed, failed


def _consumer_api(url: str, subject: str, body: dict[str, Any] | None) -> dict[str, Any]:
    async def call() -> dict[str, Any]:
        nc = await nats_py.connect(url)
        try:
            payload = json.dumps(body).encode() if body is not None else b""
            reply = await nc.request(f"$JS.API.{subject}", payload, timeout=5)
            answer: dict[str, Any] = json.loads(reply.data)
            return answer
        finally:
            await nc.close()

    return asyncio.run(call())


def test_a_group_made_again_with_a_longer_ack_wait_takes_the_lease_held(
    nats: Callable[..., Any], nats_url: str, nats_prefix: str, lost_leases: LostLeases
) -> None:
    holder = nats(visibility_timeout=_SHORT)
    subscription = holder.subscribe("jobs", group="g")  # (makes the group: AckWait 2 s)
    holder.publish("jobs", "held")
    held = subscription.receive(timeout=GUARD)
    assert held is not None
    rival = nats(visibility_timeout=_LONG)
    durable = consumer_name("jobs", "g")
    made_again: list[brokerkit.Subscription] = []

    async def make_again() -> None:  # on the holder's loop, which it blocks meanwhile
        _in_a_thread(
            lambda: _consumer_api(nats_url, f"CONSUMER.DELETE.{nats_prefix}.{durable}", None)
        )
        _in_a_thread(lambda: made_again.append(rival.subscribe("jobs", group="g")))

    holder._run(make_again())
    (watcher,) = made_again
    wait_until(lambda: held in lost_leases.lost, "the report of the lease lost", within=GUARD)
    with pytest.raises(brokerkit.StaleDelivery):
        held.ack()
    # The group made again delivers the message again (it never held it for the
    # holder), and its new holder's lease is its own: the old holder's ack did not
    # settle it.
    again = watcher.receive(timeout=GUARD)
    assert again is not None and again.body == "held"
    again.ack()
    assert rival.subscribe("jobs", group="g").receive(timeout=0) is None


def test_a_group_edited_in_place_keeps_the_lease_held(
    nats: Callable[..., Any], nats_url: str, nats_prefix: str, lost_leases: LostLeases
) -> None:
    holder = nats(visibility_timeout=_SHORT)
    subscription = holder.subscribe("jobs", group="g")
    holder.publish("jobs", "held")
    held = subscription.receive(timeout=GUARD)
    assert held is not None
    durable = consumer_name("jobs", "g")
    info = _consumer_api(nats_url, f"CONSUMER.INFO.{nats_prefix}.{durable}", None)
    config = {**info["config"], "ack_wait": int(_LONG * 1e9)}
    edited = _consumer_api(
        nats_url,
        f"CONSUMER.DURABLE.CREATE.{nats_prefix}.{durable}",
        {"stream_name": nats_prefix, "config": config},
    )
    assert "error" not in edited and edited["created"] == info["created"]  # (edited in place)
    lease = held.receipt.receipt  # (the asyncio delivery's)
    wait_until(lambda: lease.ack_wait == _LONG, "the renewals to see the new AckWait", GUARD)
    held.ack()  # still held: JetStream counts it with the new AckWait, as the broker does
    assert lost_leases.lost == []
    after = _consumer_api(nats_url, f"CONSUMER.INFO.{nats_prefix}.{durable}", None)
    assert (after["num_ack_pending"], after["num_pending"]) == (0, 0)
