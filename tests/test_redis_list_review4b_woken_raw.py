"""redis+list: a woken consumer (its BLMOVE took the element) tells a raw element as the
scripts and the decoder do, an element that starts like an envelope but is none
included: it waits for the lease call's reply, which carries the element's count of
deliveries, and reports the right attempt. Against a private redis-server."""

from __future__ import annotations

import pytest

from brokerkit.backends.redis import _envelope as envelope
from brokerkit.backends.redis.list.replies import raw_element
from tests.redis_server import RedisServer
from tests.test_redis_list_wakeup import producer_and_waiter, waiting_in_blmove

#: Elements that start with the envelope's magic but that the decoder (and the scripts'
#: is_raw) reads as raw.
LOOK_ALIKES = [
    b"BK1",
    b"BK1 no header line",
    b"BK1{}\npayload",
    b'BK1{"id":""}\nan empty id',
    b'BK1{"id":"x","ts":"soon"}\na time that is no number',
    b'BK1{"id":"x"} trailing\nnot JSON to the end',
]


@pytest.mark.parametrize("element", LOOK_ALIKES)
def test_a_look_alike_is_raw_to_the_decoder_and_to_raw_element(element: bytes) -> None:
    message = envelope.decode("orders", element)
    assert message.payload == element  # the decoder's raw message
    assert raw_element(element, message)
    published = envelope.encode(envelope.raw_message("orders", b"body"))
    assert not raw_element(published, envelope.decode("orders", published))


@pytest.mark.parametrize("element", LOOK_ALIKES)
def test_a_woken_consumer_reports_the_attempt_of_a_look_alike_that_came_back(
    redis_server: RedisServer, element: bytes
) -> None:
    admin = redis_server.client()
    with producer_and_waiter(redis_server) as (holder, _consumer, subscription):
        admin.lpush(holder.inspect("orders").details["queue_key"], element)
        held = holder.subscribe("orders").receive(timeout=5)
        assert held is not None and held.payload == element and held.attempt == 1
        waiting = waiting_in_blmove(subscription, admin)
        held.nack()  # back to the queue as it was, its count kept in the server
        delivery = waiting.result()
        assert delivery is not None and delivery.payload == element
        assert delivery.attempt == 2
        delivery.ack()
