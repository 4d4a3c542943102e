"""The article's chat-room scenario, end to end: examples/chat_room.py on a real Redis."""

from __future__ import annotations

import importlib.util
import queue
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from tests.conftest import RedisTarget

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "chat_room.py"
WAIT = 5.0
QUIET = 0.3


@pytest.fixture(scope="module")
def chat() -> ModuleType:
    spec = importlib.util.spec_from_file_location("chat_room_example", EXAMPLE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def users(chat: ModuleType, redis_target: RedisTarget) -> Iterator[Any]:
    made: list[Any] = []

    def user(name: str) -> Any:
        made.append(chat.ChatUser(redis_target.url("redis+pubsub"), name))
        return made[-1]

    yield user
    for one in made:
        one.close()


def _heard(user: Any, count: int, rooms: set[str] | None = None) -> list[tuple[str, str, str]]:
    got = []
    while len(got) < count:
        message = user.inbox.get(timeout=WAIT)
        if rooms is None or message.room in rooms:
            got.append((message.room, message.sender, message.text))
    return got


def _hears_nothing(user: Any, rooms: set[str] | None = None) -> None:
    try:
        while True:
            message = user.inbox.get(timeout=QUIET)
            assert rooms is not None and message.room not in rooms, (
                f"{user.name} heard {message} from a room they are not in"
            )
    except queue.Empty:
        pass


def test_messages_reach_everyone_in_the_room_and_no_one_outside(users: Any) -> None:
    lobby, kitchen = uuid.uuid4().hex[:8], uuid.uuid4().hex[:8]
    ours = {lobby, kitchen}
    alice, bob, carol, dave, mod = (users(n) for n in ("alice", "bob", "carol", "dave", "mod"))
    alice.join(lobby)
    bob.join(lobby)
    carol.join(kitchen)
    mod.watch_all_rooms()

    assert alice.say(lobby, "hi everyone") == 3  # alice, bob and the moderator
    assert carol.say(kitchen, "anyone here?") == 2  # carol and the moderator
    assert bob.say(lobby, "hi alice") == 3

    lobby_talk = [(lobby, "alice", "hi everyone"), (lobby, "bob", "hi alice")]
    assert _heard(alice, 2) == lobby_talk
    assert _heard(bob, 2) == lobby_talk
    assert _heard(carol, 1) == [(kitchen, "carol", "anyone here?")]
    assert _heard(mod, 3, ours) == [
        (lobby, "alice", "hi everyone"),
        (kitchen, "carol", "anyone here?"),
        (lobby, "bob", "hi alice"),
    ]
    for user in (alice, bob, carol, dave):
        _hears_nothing(user)
    _hears_nothing(mod, ours)

    # A late joiner gets no history; someone who left hears nothing more.
    dave.join(lobby)
    bob.leave(lobby)
    assert alice.say(lobby, "bye bob") == 3  # alice, dave and the moderator
    assert _heard(dave, 1) == [(lobby, "alice", "bye bob")]
    assert _heard(alice, 1) == [(lobby, "alice", "bye bob")]
    _hears_nothing(bob)
    _hears_nothing(carol)


def test_redis_cli_speaks_in_a_room(users: Any, redis_target: RedisTarget, redis_cli: str) -> None:
    room = uuid.uuid4().hex[:8]
    alice = users("alice")
    alice.join(room)
    channel, where = f"chat:room:{room}", ["-h", redis_target.host, "-p", str(redis_target.port)]
    subprocess.run([redis_cli, *where, "PUBLISH", channel, "hello from the shell"], check=True)
    assert _heard(alice, 1) == [(room, "redis-cli", "hello from the shell")]


def test_a_dropped_connection_tells_the_user_they_missed_messages(
    users: Any, redis_target: RedisTarget
) -> None:
    room = uuid.uuid4().hex[:8]
    alice, bob = users("alice"), users("bob")
    alice.join(room)
    client = redis_target.client()
    try:
        (victim,) = [
            c["id"]
            for c in client.client_list(_type="pubsub")
            if c["name"] == f"brokerkit-pubsub-alice-{room}"
        ]
        client.client_kill_filter(_id=victim)
        notice = alice.notices.get(timeout=WAIT)
        assert f"chat:room:{room}" in notice and "missed" in notice
        assert bob.say(room, "are you back?") == 1
        assert _heard(alice, 1) == [(room, "bob", "are you back?")]
    finally:
        client.close()


def test_the_example_runs_as_a_script(redis_server: Any) -> None:
    out = subprocess.run(
        [sys.executable, str(EXAMPLE), redis_server.url("redis+pubsub")],
        check=True,
        capture_output=True,
        text=True,
        timeout=60,
    ).stdout
    assert "alice heard [42] alice: hi everyone, [42] bob: hi alice" in out
    assert "carol heard [7] carol: anyone here?" in out
