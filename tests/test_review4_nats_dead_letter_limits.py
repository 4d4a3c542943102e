"""NATS: a message near the server's limits (JetStream's 64 KiB of headers, the
server's max_payload) is dead-lettered all the same, its body and headers intact: the
dead-letter headers are fitted to the room left (the reason cut short, ending in
``[truncated]``), and with no room even for that the dead letter is the message as it
was stored."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

import nats as nats_py
import pytest
from hypothesis import given
from hypothesis import strategies as st

from brokerkit._message import Message
from brokerkit.backends.nats._wire import (
    MAX_HEADER_BYTES,
    META_HEADER,
    MSG_ID_HEADER,
    TRUNCATED,
    dead_letter_headers,
    encode_headers,
    header_size,
)
from tests.nats_server import nats

__all__ = ["nats"]  # a fixture

#: The id and publish time of every test message (their lengths set the header size).
ID = "0123456789abcdef0123456789abcdef"
TS = 1765000000.5
LONG_REASON = "the handler gave up on this one: " + "é𝄞x" * 300  # 933 characters


def _entry(headers: dict[str, str]) -> dict[str, str]:
    """The NATS headers brokerkit stores a message with ``headers`` under."""
    return encode_headers(Message(ID, "jobs", b"", "application/octet-stream", headers, TS))


def _padded_to(size: int) -> dict[str, str]:
    """Headers whose NATS header block, as stored, is ``size`` bytes."""
    headers = {"big": "a" * (size - header_size(_entry({"big": ""})))}
    assert header_size(_entry(headers)) == size
    return headers


async def _raw(url: str, action: Callable[[Any], Any]) -> Any:
    nc = await nats_py.connect(url)
    try:
        return await action(nc)
    finally:
        await nc.close()


def _max_payload(url: str) -> int:
    async def ask(nc: Any) -> int:
        return int(nc.max_payload)

    return int(asyncio.run(_raw(url, ask)))


def _store(url: str, prefix: str, headers: dict[str, str], payload: bytes) -> None:
    """Store a message in ``jobs`` as brokerkit's publish would, with id :data:`ID`
    and publish time :data:`TS` (so that its size is exact)."""

    async def publish(nc: Any) -> None:
        await nc.jetstream().publish(f"{prefix}.jobs", payload, headers=_entry(headers))

    asyncio.run(_raw(url, publish))


def _dead_letter(
    broker: Any, where: tuple[str, str], headers: dict[str, str], payload: bytes, reason: str | None
) -> Any:
    """Store, reject with ``reason``; the dead letter as received (acked)."""
    with broker.subscribe("jobs") as sub:  # (makes the stream and the group)
        _store(*where, headers, payload)
        held = sub.receive(timeout=10)
        assert held is not None and held.id == ID
        held.nack(requeue=False, reason=reason)
        assert sub.receive(timeout=0.5) is None, "the rejected message came again"
    with broker.subscribe("jobs.dlq") as sub:
        dead = sub.receive(timeout=10)
        assert dead is not None, "no dead letter"
        dead.ack()
    return dead


def _check_intact(dead: Any, headers: dict[str, str], payload: bytes) -> None:
    assert dead.payload == payload
    assert dead.id == ID
    own = {k: v for k, v in dead.headers.items() if not k.startswith("x-")}
    assert own == headers


@pytest.mark.parametrize("short", [0, 1, 40, 80, 120, 400, 1200])
def test_headers_near_the_header_limit_are_dead_lettered_intact(
    nats: Callable[..., Any], nats_url: str, nats_prefix: str, short: int
) -> None:
    broker = nats()
    headers = _padded_to(MAX_HEADER_BYTES - short)
    dead = _dead_letter(broker, (nats_url, nats_prefix), headers, b"p", LONG_REASON)
    _check_intact(dead, headers, b"p")
    reason = dead.headers.get("x-dead-letter-reason")
    if reason is not None:
        assert reason == LONG_REASON or (
            reason.endswith(TRUNCATED) and LONG_REASON.startswith(reason[: -len(TRUNCATED)])
        )
        assert dead.headers["x-original-topic"] == "jobs"
        assert dead.headers["x-deliveries"] == "1"
    else:  # no room even for "[truncated]": the message as it was stored
        assert short < 120, "the dead-letter headers were left out where they fit"
        assert "x-original-topic" not in dead.headers


@pytest.mark.parametrize("short", [0, 30, 200])
def test_a_payload_near_max_payload_is_dead_lettered_intact(
    nats: Callable[..., Any], nats_url: str, nats_prefix: str, short: int
) -> None:
    broker = nats()
    headers = {"k": "v"}
    payload = b"x" * (_max_payload(nats_url) - header_size(_entry(headers)) - short)
    dead = _dead_letter(broker, (nats_url, nats_prefix), headers, payload, None)
    _check_intact(dead, headers, payload)
    assert dead.headers.get("x-dead-letter-reason") in (None, "rejected", TRUNCATED)
    broker.publish("jobs", b"after")  # the connection is still up
    with broker.subscribe("jobs") as sub:
        got = sub.receive(timeout=10)
        assert got is not None and got.payload == b"after"
        got.ack()


def test_a_message_near_the_limit_past_max_deliveries_is_dead_lettered(
    nats: Callable[..., Any], nats_url: str, nats_prefix: str
) -> None:
    broker = nats(max_deliveries=1, visibility_timeout=1)
    broker._suspend_renewals()  # its one lease runs out unrenewed
    headers = _padded_to(MAX_HEADER_BYTES - 60)
    with broker.subscribe("jobs") as sub:
        _store(nats_url, nats_prefix, headers, b"p")
        held = sub.receive(timeout=10)
        assert held is not None
        # The lease runs out; the redelivery is past max_deliveries: dead-lettered.
        assert sub.receive(timeout=3) is None
    with broker.subscribe("jobs.dlq") as sub:
        dead = sub.receive(timeout=10)
        assert dead is not None, "never dead-lettered"
        dead.ack()
    _check_intact(dead, headers, b"p")


# -- the headers of a dead letter, as a function ----------------------------------------

_TEXT = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=40)


@given(
    headers=st.dictionaries(_TEXT.filter(lambda k: not k.startswith("x-")), _TEXT, max_size=4),
    pad=st.integers(0, 3000),
    reason=st.text(
        st.characters(codec="utf-8", exclude_categories=("Cs",)), min_size=1, max_size=1000
    ),
    room=st.integers(0, 5000),
)
def test_dead_letter_headers_fit_and_keep_the_message(
    headers: dict[str, str], pad: int, reason: str, room: int
) -> None:
    headers = {**headers, "pad": "a" * pad}
    message = Message(ID, "jobs", b"", "text/plain", headers, TS)
    stored = encode_headers(message)
    letter = dead_letter_headers(
        message, "jobs.dlq", reason, 3, msg_id="dlq:g_x:7", stored=stored, room=room
    )
    if header_size(stored) <= room:
        assert header_size(letter) <= room, "the dead letter does not fit where its message did"
    meta = json.loads(letter[META_HEADER])
    assert meta["id"] == ID and meta["ct"] == "text/plain" and meta["ts"] == TS
    kept = meta.get("h", {})
    assert {k: v for k, v in kept.items() if not k.startswith("x-")} == headers
    if "x-dead-letter-reason" in kept:
        got = kept["x-dead-letter-reason"]
        assert got == reason or (
            got.endswith(TRUNCATED) and reason.startswith(got[: -len(TRUNCATED)])
        )
        assert kept["x-original-topic"] == "jobs" and kept["x-deliveries"] == "3"
        assert letter[MSG_ID_HEADER] == "dlq:g_x:7"
        if got != reason:
            # cut no more than it had to: one more character would not fit
            kept_part = len(got) - len(TRUNCATED)
            longer = {**kept, "x-dead-letter-reason": reason[: kept_part + 1] + TRUNCATED}
            bigger = Message(ID, "jobs.dlq", b"", "text/plain", longer, TS)
            assert header_size(encode_headers(bigger, msg_id="dlq:g_x:7")) > room
    else:
        assert letter.get(MSG_ID_HEADER) in (None, "dlq:g_x:7"), "the original's id kept"
