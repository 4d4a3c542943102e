"""NATS: a reader that moved to a new inbox is still told of a refused pull (review 33).

A reader whose ``no_wait`` pull the group's ``MaxAckPending`` held up moves to a new
inbox (the server drops the pull nobody listens to). The move watched the new inbox
and then stopped watching the old one, with the pull subject: the watch is kept per
reader, so the reader watched its pull subject no more, and a pull the server's
permissions refused afterwards was never told to it: its receive returned None at its
timeout, every time, the refusal only logged, where it raises PermissionDenied.

The server here is one of the test's own: its permissions are changed while the
broker runs (a configuration reload), as an operator may.
"""

from __future__ import annotations

import pytest

import brokerkit
from brokerkit.exceptions import PermissionDenied
from tests.test_nats_review27_ack_wait_checks import GUARD, _Server, server
from tests.test_nats_review27_pull_refused import _refused
from tests.test_nats_review33_max_ack_pending import _make_group
from tests.waiting import wait_until

__all__ = ["server"]  # a fixture

_STREAM = "review27pulls"  # (the one _refused pulls from)


def test_a_refused_pull_after_a_move_raises(server: _Server) -> None:
    with brokerkit.connect(server.url("app"), prefix=_STREAM) as broker:
        broker.publish("other", b"makes the stream")
        _make_group(server.url("admin"), _STREAM, "jobs", "g", max_ack_pending=2)
        # A pull of 3 where the group holds at most 2: the server never ends it, and
        # the reader moves to a new inbox.
        subscription = broker.subscribe("jobs", group="g", prefetch=3)
        broker.publish_many("jobs", [b"m0", b"m1", b"m2"])
        held = [subscription.receive(timeout=GUARD) for _ in range(2)]
        assert all(delivery is not None for delivery in held)
        for delivery in held:
            delivery.ack()
        server.deny(f"$JS.API.CONSUMER.MSG.NEXT.{_STREAM}.>")
        wait_until(lambda: _refused(server), "the reload to refuse pulls", within=GUARD)
        with pytest.raises(PermissionDenied, match=r"MSG\.NEXT"):
            subscription.receive(timeout=GUARD)
