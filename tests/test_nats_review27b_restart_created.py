"""NATS: a lease held across a graceful restart of a standalone nats-server older than
2.12.3 is acked after it (review 27b).

Such a server's file store wrote a creation time of its own for a consumer (a second
``time.Now()``), and the server reports that one once restarted: the consumer's
``created`` changes with no consumer made again (fixed upstream in 2.12.3). The check
of the leases held took the change for a consumer made again: every lease held was
let go as lost, reported to the lease-loss hook, and its ack raised StaleDelivery,
while the server still held the message for it (delivered again to nobody else only
because it was acked nowhere). A changed ``created`` now says "made again" only where
it means it: the server that confirmed the lease is 2.12.3 or newer, or the same
server process (``server_id``) answers.

These tests start a private server older than 2.12.3 (``$BROKERKIT_NATS_OLD_SERVER``,
else one on PATH or in /usr/sbin: 2.9.10 in this project's image) and are skipped
where there is none.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import nats as nats_py
import pytest

import brokerkit
from brokerkit.backends.nats._leases import KEEPS_CREATED_SINCE
from brokerkit.backends.nats._wire import consumer_name
from tests.conftest import LostLeases
from tests.nats_server import NatsServer, find_nats_server_before
from tests.waiting import wait_until

#: Seconds a wait here may take at most: a hang guard, never a pace.
GUARD = 15.0
#: Long enough that no renewal round (a quarter of it) comes within a test but the
#: first, at the renewals' start (which confirms the lease).
_ACK_WAIT = 120


@pytest.fixture
def old_server() -> Iterator[NatsServer]:
    binary = find_nats_server_before(KEEPS_CREATED_SINCE)
    if binary is None:
        pytest.skip("no nats-server older than 2.12.3 (set BROKERKIT_NATS_OLD_SERVER)")
    server = NatsServer(binary, min_version=(0,))
    try:
        server.start()
        yield server
    finally:
        server.stop()


def _hold_one(broker: Any) -> tuple[Any, Any]:
    """A delivery of group g held by ``broker``, and its lease, once the renewals'
    first check has confirmed the lease as its consumer's."""
    subscription = broker.subscribe("jobs", group="g")
    broker.publish("jobs", "held")
    held = subscription.receive(timeout=GUARD)
    assert held is not None
    lease = held.receipt.receipt  # (the asyncio delivery's)
    wait_until(lambda: lease.confirmed, "the renewals' first check", within=GUARD)
    return held, lease


def _restart(server: NatsServer, broker: Any) -> None:
    """Restart ``server`` gracefully (SIGTERM: it writes its state first) and wait until
    ``broker`` is connected to the new process."""
    server.kill(gracefully=True)
    server.start()
    broker.publish("jobs", "after")  # (retried until the broker is back)


def test_a_lease_is_acked_after_a_graceful_restart_of_an_older_server(
    old_server: NatsServer, lost_leases: LostLeases
) -> None:
    with brokerkit.connect(old_server.url, prefix="r27b", visibility_timeout=_ACK_WAIT) as broker:
        held, lease = _hold_one(broker)
        created = lease.created
        _restart(old_server, broker)
        held.ack()  # raised StaleDelivery: the restart's new created read as a new consumer
        assert lost_leases.lost == []
        group = broker.inspect("jobs").groups[0]
        assert (group.pending, group.lag) == (0, 1)  # ("held" acked; "after" waits)
    # (the restart did change created, or the test proves nothing on this server)
    assert lease.created != created


def test_the_ack_wait_check_after_a_graceful_restart_keeps_the_leases(
    old_server: NatsServer, lost_leases: LostLeases
) -> None:
    with brokerkit.connect(old_server.url, prefix="r27b", visibility_timeout=_ACK_WAIT) as broker:
        held, lease = _hold_one(broker)
        _restart(old_server, broker)
        leases = broker.inner._leases
        found = broker._run(leases.check_ack_waits())  # (what a renewal round asks first)
        assert consumer_name("jobs", "g") in found
        assert leases.get(lease.reply) is lease, "let go as if its consumer were made again"
        assert leases.take_unreported() == []
        held.ack()
        assert lost_leases.lost == []


def test_a_consumer_made_again_on_an_older_server_is_still_found(
    old_server: NatsServer,
) -> None:
    """The same server process says both: its changed created is trusted."""
    with brokerkit.connect(old_server.url, prefix="r27b", visibility_timeout=_ACK_WAIT) as broker:
        held, lease = _hold_one(broker)

        async def delete() -> None:
            nc = await nats_py.connect(old_server.url)
            try:
                await nc.jetstream().delete_consumer("r27b", consumer_name("jobs", "g"))
            finally:
                await nc.close()

        asyncio.run(delete())
        with brokerkit.connect(
            old_server.url, prefix="r27b", visibility_timeout=_ACK_WAIT
        ) as rival:
            again = rival.subscribe("jobs", group="g").receive(timeout=GUARD)  # (made again)
            assert again is not None and again.body == "held"
            leases = broker.inner._leases
            broker._run(leases.check_ack_waits())
            assert leases.get(lease.reply) is None
            assert leases.take_unreported() == [lease]
            with pytest.raises(brokerkit.StaleDelivery):
                held.ack()
            again.ack()
