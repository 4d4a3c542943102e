"""What the redis+list scripts run per call: each carries only the preamble functions
it calls (Redis runs a script's whole text on every call), and a consumer's wake-up
call leaves held messages to the consumer's own release."""

from __future__ import annotations

import re

import pytest

import brokerkit
from brokerkit.backends.redis.list import schedule, scripts, settle_scripts, upkeep
from brokerkit.backends.redis.list.plan import new_nonces
from brokerkit.backends.redis.list.preamble import PREAMBLE, with_preamble
from tests.redis_server import RedisServer

SCRIPTS = {
    "FETCH": scripts.FETCH,
    "SETTLE": settle_scripts.SETTLE,
    "EXTEND": settle_scripts.EXTEND,
    "RESCUE": upkeep.RESCUE,
    "INSPECT": upkeep.INSPECT,
    "HOLD": schedule.HOLD,
    "RELEASE": schedule.RELEASE,
}
#: The preamble's functions (those above now_ms, such as proc_of, come with every script).
FUNCTIONS = re.findall(
    r"^local function (\w+)", PREAMBLE[PREAMBLE.index("local function now_ms") :], re.MULTILINE
)


def _defined(script: str) -> list[str]:
    return [f for f in re.findall(r"^local function (\w+)", script, re.MULTILINE) if f in FUNCTIONS]


@pytest.mark.parametrize("name", SCRIPTS)
def test_a_script_defines_only_the_preamble_functions_it_calls(name: str) -> None:
    script = SCRIPTS[name]
    defined = _defined(script)
    for function in defined:
        # named once where it is defined, at least once more where it is called
        assert len(re.findall(rf"\b{function}\b", script)) >= 2, function
    for function in FUNCTIONS:
        if function not in defined:
            assert not re.search(rf"\b{function}\(", script), function


def test_the_fetch_leaves_out_what_only_a_hand_back_needs() -> None:
    defined = _defined(scripts.FETCH)
    assert "release_due" in defined and "call_chunked" in defined
    # (envelope comes along, and the UTF-8 check it makes of a header: is_raw tells an
    # element that only starts like one; its JSON readers are made inside it, when called)
    assert "envelope" in defined and "is_utf8" in defined
    for unused in ("dead_letter", "hand_back", "group_receipts"):
        assert unused not in defined


def test_the_functions_a_function_calls_come_along_in_the_preamble_order() -> None:
    script = with_preamble("return hand_back('x', true, 'why')\n")
    defined = _defined(script)
    assert {"hand_back", "dead_letter", "envelope", "is_utf8", "unwrap", "is_raw"} <= set(defined)
    assert defined == [f for f in FUNCTIONS if f in defined]


def test_a_wake_up_fetch_leaves_due_held_messages_to_the_next_release(
    redis_server: RedisServer,
) -> None:
    admin = redis_server.client()
    with brokerkit.connect(redis_server.url("redis+list")) as broker:
        plan = broker._topic("jobs")  # type: ignore[attr-defined]
        fetch = broker._scripts["FETCH"]  # type: ignore[attr-defined]
        keys = plan.keys_for(["c1"], ["n-0:c1", "m-0:c1"])
        admin.zadd(plan.keys.scheduled, {b"Pm1\nheld": 0})  # due long ago
        admin.lpush(plan.keys.queue, b"waiting")
        admin.lmove(plan.keys.queue, plan.keys.processing("c1"), "RIGHT", "RIGHT")
        assert fetch(keys=keys, args=[*plan.common, "c1", 1, 30000, "n-", 0, "1"]) == [1, None, 0]
        assert admin.lrange(plan.keys.batch("n-", "c1"), 0, -1) == [b"waiting"]
        assert admin.zcard(plan.keys.scheduled) == 1
        assert admin.llen(plan.keys.queue) == 0
        # a fetch that did not wait moves it, as the consumer's next release would
        assert fetch(keys=keys, args=[*plan.common, "c1", 1, 30000, "m-", 0]) == [1, None, 0]
        assert admin.lrange(plan.keys.batch("m-", "c1"), 0, -1) == [b"held"]
        assert admin.zcard(plan.keys.scheduled) == 0


def test_a_receipt_nonce_is_8_characters_the_scripts_never_split_on() -> None:
    fetches = [new_nonces(36) for _ in range(1000)]
    assert len({nonce for nonces in fetches for nonce in nonces}) == 36_000
    for nonces in fetches:
        assert nonces == sorted(nonces)  # a fetch's batches sort in its order
        for nonce in nonces:
            assert len(nonce) == 9 and nonce.endswith("-")
            assert re.fullmatch(r"[A-Za-z0-9_~]{8}-", nonce), nonce
    with pytest.raises(ValueError, match="1 to 36 batches"):
        new_nonces(37)
