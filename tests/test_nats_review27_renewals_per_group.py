"""NATS: the renewals renew each group's leases on their own (review 27).

Every round renewed every lease the broker held in one batch: one group's renewals
refused (the server's permissions no longer let this user ack that group's consumer)
failed the whole batch, round after round, and every other group's leases ran out
with them: their messages went to other consumers while their holders still had
them, and their acks raised StaleDelivery. The groups are now renewed each on its own
(at once, so that one group whose renewals the server is slow to answer does not
hold up the others past their leases either).

The server here is one of the test's own: its permissions are changed while the
broker runs (a configuration reload), as an operator may.
"""

from __future__ import annotations

import brokerkit
from brokerkit.backends.nats._wire import consumer_name
from tests.test_nats_review27_ack_wait_checks import GUARD, _Server, server
from tests.waiting import wait_until

__all__ = ["server"]  # a fixture

_STREAM = "review27renewals"
#: The groups' AckWait: renewed every half second.
_ACK_WAIT = 2.0


def test_a_group_whose_renewals_are_refused_does_not_lose_the_others_leases(
    server: _Server,
) -> None:
    url = server.url("app")
    with (
        brokerkit.connect(url, prefix=_STREAM, visibility_timeout=_ACK_WAIT) as broker,
        brokerkit.connect(url, prefix=_STREAM, visibility_timeout=_ACK_WAIT) as rival,
    ):
        refused = broker.subscribe("refused", group="g")
        kept = broker.subscribe("kept", group="g")
        watcher = rival.subscribe("kept", group="g")
        broker.publish("refused", "its renewals refused")
        broker.publish("kept", "held")
        first = refused.receive(timeout=GUARD)
        second = kept.receive(timeout=GUARD)
        assert first is not None and second is not None
        lease = first.receipt.receipt  # (the asyncio delivery's)
        server.deny(f"$JS.ACK.{_STREAM}.{consumer_name('refused', 'g')}.>")
        # The refused group's lease runs out (its renewals are refused) and is
        # reported: the renewals have been refused over a whole AckWait by then.
        wait_until(lambda: lease.reply not in broker.inner._leases, "the refused lease", GUARD)
        # ... while the other group's lease was renewed all along: the group did not
        # give its message to another consumer, and its holder still holds it.
        assert watcher.receive(timeout=_ACK_WAIT) is None, "a lease of another group ran out"
        second.ack()
