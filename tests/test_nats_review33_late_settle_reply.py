"""NATS: a settle's reply that comes while the consumer is asked about it is taken
(review 33).

A settle (an ack, a dead-lettering's ``+TERM``) whose first try goes unanswered has
the broker ask the group's consumer whether it still holds the lease
(``NatsClient.settle_all``'s ``unanswered``). The first try stopped awaiting its reply
before that question: a reply that came while it was asked was thrown away, and the
settle was sent again once the consumer had answered, a second request for one the
server had already answered.

Here the request goes to a responder of the test's own on the suite's server, which
holds the first request and answers it only while ``unanswered`` runs.
"""

from __future__ import annotations

import asyncio
import time
import uuid

import nats as nats_py
from nats.aio.msg import Msg

from brokerkit._url import BrokerURL
from brokerkit.backends.nats._client import NatsClient

#: Seconds a wait here may take at most: a hang guard, never a pace.
GUARD = 15.0


def test_a_reply_that_comes_while_the_consumer_is_asked_is_taken(nats_url: str) -> None:
    async def run() -> tuple[list[Msg | None], int, list[list[int]]]:
        subject = f"review33.settle.{uuid.uuid4().hex}"
        responder = await nats_py.connect(nats_url)
        held: list[Msg] = []
        requests = 0

        async def on_request(msg: Msg) -> None:
            nonlocal requests
            requests += 1
            if requests == 1:
                held.append(msg)  # (answered while the consumer is asked)
            else:
                await msg.respond(b"again")

        await responder.subscribe(subject, cb=on_request)
        await responder.flush()
        client = NatsClient(BrokerURL.parse(nats_url), connect_timeout=5, reconnect_timeout=GUARD)
        told: list[list[int]] = []

        async def unanswered(left: list[int], by: float) -> list[int]:
            told.append(left)
            assert client.silent  # (the first try went unanswered)
            await held[0].respond(b"first")
            await responder.flush()
            deadline = time.monotonic() + GUARD
            while client.silent and time.monotonic() < deadline:
                await asyncio.sleep(0.01)  # polling with a deadline, not synchronisation
            assert not client.silent, "the reply never reached the client"
            return []  # (the consumer could not say: as it would be, sent again)

        try:
            far = time.monotonic() + 3600
            replies = await client.settle_all(
                [(subject, b"+ACK", None)], "ack", [lambda: far], unanswered=unanswered
            )
        finally:
            await client.close()
            await responder.close()
        return replies, requests, told

    replies, requests, told = asyncio.run(run())
    assert told == [[0]]
    assert requests == 1, "the settle was sent again though its reply had come"
    assert replies[0] is not None and replies[0].data == b"first"
