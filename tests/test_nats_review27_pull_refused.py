"""NATS: a pull the server's permissions refuse raises PermissionDenied in every
subscription of the group, however many a broker opened (review 27).

A refused pull is told to the reader watching its subject (the group's pull subject),
which raises PermissionDenied at once. The readers were kept one per subject: a
second subscription of the same group in the same broker took the first's place, and
its close left none. The first subscription's refused pull then went unanswered and
its receive returned None at its timeout, every time, the refusal only logged.

The server here is one of the test's own: its permissions are changed while the
broker runs (a configuration reload), as an operator may.
"""

from __future__ import annotations

import nats as nats_py
import pytest

import brokerkit
from brokerkit.exceptions import PermissionDenied
from tests.test_nats_review27_ack_wait_checks import GUARD, _api, _Server, server
from tests.waiting import wait_until

__all__ = ["server"]  # a fixture

_STREAM = "review27pulls"


@pytest.mark.parametrize("second", ["none", "open", "closed"])
def test_a_refused_pull_is_told_to_each_subscription_of_the_group(
    server: _Server, second: str
) -> None:
    with brokerkit.connect(server.url("app"), prefix=_STREAM) as broker:
        first = broker.subscribe("jobs", group="g")
        if second != "none":
            other = broker.subscribe("jobs", group="g")
            if second == "closed":
                other.close()
        pulls = f"$JS.API.CONSUMER.MSG.NEXT.{_STREAM}.>"
        server.deny(pulls)
        wait_until(lambda: _refused(server), "the reload to refuse pulls", within=GUARD)
        with pytest.raises(PermissionDenied, match=r"MSG\.NEXT"):
            first.receive(timeout=GUARD)


def _refused(server: _Server) -> bool:
    """Whether the server refuses ``app`` a pull now (one from a group nobody has)."""
    try:
        return "denied" in _api(server.url("app"), f"CONSUMER.MSG.NEXT.{_STREAM}.nobody", None)
    except nats_py.errors.NoRespondersError:  # (allowed: nobody answers it)
        return False
