"""A child forked after a delivery of a backend without ACK was received, that lets
it go unsettled, ends its hooks there (its next start, settlement or close makes the
end). Before, the collector's callback queued the end on the queue of the parent,
whose thread does not run in the child: the end was never made, and the relay's flags
stayed up for good (found by review)."""

from __future__ import annotations

import gc
import os
import uuid

import pytest

import brokerkit
from brokerkit._delivery_drops import drain
from brokerkit._hooks import RELAY
from tests.conftest import RedisTarget, registered
from tests.test_core_review33_receive_hooks import Ends

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")


def test_a_delivery_a_forked_child_lets_go_ends_there(redis_target: RedisTarget) -> None:
    topic = f"core33f-{uuid.uuid4().hex[:10]}"
    ends = Ends()
    with brokerkit.connect(redis_target.url("redis+pubsub"), prefix=topic) as broker:
        for _ in registered(ends):
            subscription = broker.subscribe(topic)
            assert subscription.receive(timeout=0) is None  # subscribed on the server
            broker.publish(topic, "one")
            delivery = subscription.receive(timeout=10)
            assert delivery is not None
            read, write = os.pipe()
            child = os.fork()
            if child == 0:  # the child: let it go, then make what was queued
                code = 1
                try:
                    del delivery
                    gc.collect()
                    drain()
                    code = 0 if ends.ended == [("one", "unsettled")] and not RELAY._open else 3
                finally:
                    os.write(write, repr(ends.ended).encode())
                    os._exit(code)
            os.close(write)
            with os.fdopen(read) as told:
                said = told.read()
            _, status = os.waitpid(child, 0)
            assert os.waitstatus_to_exitcode(status) == 0, f"the child's ends: {said}"
            assert ends.ended == []  # the parent still holds it
            delivery.ack()
            assert ends.ended == [("one", "ack")]
            subscription.close()
