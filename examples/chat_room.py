"""The chat room from the Redis message-queue article, on brokerkit's redis+pubsub.

The article's version::

    redis.subscribe(f'chat:room:{room_id}')    # user joins chat room
    redis.publish(f'chat:room:{room_id}', msg)  # user sends message
                                                # all room participants receive instantly

Here each user joins rooms (one subscription per room, read by a thread of its
own), says things, and collects what reaches them; a moderator watches every
room with one pattern subscription. ``plain_channels=true`` keeps the article's
channel names, so ``redis-cli SUBSCRIBE chat:room:42`` listens in, and
``redis-cli PUBLISH chat:room:42 hello`` speaks in the room.

Pub/Sub is at most once: a user who is not connected when a message is sent
never gets it (use ``redis+stream`` for chat history). A reconnect is reported
through ``on_gap``, and this example tells the user that they may have missed
messages.

Run it against a Redis server::

    python examples/chat_room.py redis+pubsub://localhost:6379/0
"""

from __future__ import annotations

import argparse
import queue
import threading
from dataclasses import dataclass

import brokerkit
from brokerkit.backends.redis.pubsub import Gap, RedisPubSubBroker


def room_topic(room_id: str) -> str:
    """The topic (and, with plain channels, the Redis channel) of a room."""
    return f"chat:room:{room_id}"


@dataclass(frozen=True)
class ChatMessage:
    """One line of chat as a participant saw it."""

    room: str
    sender: str
    text: str


class ChatUser:
    """A participant: joins rooms, says things, and collects what reaches them.

    :ivar inbox: every message heard, in the order heard (a thread-safe queue).
    :ivar notices: what the client told its user (such as a reconnect gap).
    """

    def __init__(self, url: str, name: str) -> None:
        self.name = name
        self.inbox: queue.Queue[ChatMessage] = queue.Queue()
        self.notices: queue.Queue[str] = queue.Queue()
        broker = brokerkit.connect(url, plain_channels=True, on_gap=self._on_gap)
        if not isinstance(broker, RedisPubSubBroker):
            broker.close()
            raise ValueError(f"the chat room needs a redis+pubsub:// URL, got {broker.url}")
        self._broker = broker
        self._rooms: dict[str, tuple[brokerkit.Subscription, threading.Thread]] = {}

    def join(self, room_id: str) -> None:
        """Enter a room; from when this returns, the user hears everything said there."""
        subscription = self._broker.subscribe(
            room_topic(room_id), consumer=f"{self.name}-{room_id}"
        )
        thread = threading.Thread(
            target=self._listen, args=(subscription,), name=f"{self.name}@{room_id}", daemon=True
        )
        thread.start()
        self._rooms[room_id] = (subscription, thread)

    def watch_all_rooms(self) -> None:
        """Hear every room, present and future, with one pattern subscription."""
        subscription = self._broker.subscribe(room_topic("*"), pattern=True, consumer=self.name)
        thread = threading.Thread(target=self._listen, args=(subscription,), daemon=True)
        thread.start()
        self._rooms["*"] = (subscription, thread)

    def say(self, room_id: str, text: str) -> int:
        """Send ``text`` to a room; return how many listeners (the sender included,
        if in the room) heard it."""
        body = {"from": self.name, "text": text}
        return self._broker.publish_counted(room_topic(room_id), body).receivers

    def leave(self, room_id: str) -> None:
        """Leave a room; nothing said there afterwards reaches the user."""
        subscription, thread = self._rooms.pop(room_id)
        subscription.close()
        thread.join(timeout=5)

    def close(self) -> None:
        """Leave every room and disconnect."""
        rooms, self._rooms = self._rooms, {}
        for subscription, _ in rooms.values():
            subscription.close()
        for _, thread in rooms.values():
            thread.join(timeout=5)
        self._broker.close()

    def _listen(self, subscription: brokerkit.Subscription) -> None:
        for delivery in subscription:
            body = delivery.body
            room = delivery.topic.removeprefix("chat:room:")
            if isinstance(body, dict):
                sender, text = str(body.get("from", "?")), str(body.get("text", ""))
            else:  # a plain `redis-cli PUBLISH chat:room:42 hello`
                sender, text = "redis-cli", str(body)
            self.inbox.put(ChatMessage(room, sender, text))

    def _on_gap(self, gap: Gap) -> None:
        self.notices.put(
            f"reconnected to {gap.topic} after {gap.duration:.1f}s: "
            "messages sent meanwhile were missed"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("url", nargs="?", default="redis+pubsub://localhost:6379/0")
    url = parser.parse_args().url

    alice, bob, carol, mod = (ChatUser(url, n) for n in ("alice", "bob", "carol", "moderator"))
    users = (alice, bob, carol, mod)
    try:
        alice.join("42")
        bob.join("42")
        carol.join("7")
        mod.watch_all_rooms()
        print("alice says hi in room 42, heard by", alice.say("42", "hi everyone"))
        print("carol says hello in room 7, heard by", carol.say("7", "anyone here?"))
        print("bob says hi in room 42, heard by", bob.say("42", "hi alice"))
        for user, expected in ((alice, 2), (bob, 2), (carol, 1), (mod, 3)):
            heard = [user.inbox.get(timeout=5) for _ in range(expected)]
            lines = ", ".join(f"[{m.room}] {m.sender}: {m.text}" for m in heard)
            print(f"{user.name:>9} heard {lines}")
    finally:
        for user in users:
            user.close()


if __name__ == "__main__":
    main()
