"""A gap in a redis+pubsub subscription, made as an operator would: its connection
(named after its consumer) dropped with ``CLIENT KILL``."""

from __future__ import annotations

import redis

__all__ = ["kill_subscriber", "subscribers"]


def subscribers(client: redis.Redis, consumer: str) -> list[int]:
    """The ids of the pub/sub connections of ``consumer``'s subscription."""
    return [
        int(c["id"])
        for c in client.client_list(_type="pubsub")
        if c["name"] == f"brokerkit-pubsub-{consumer}"
    ]


def kill_subscriber(client: redis.Redis, consumer: str) -> None:
    """Drop the subscription's one connection, as an operator's ``CLIENT KILL`` does."""
    ids = subscribers(client, consumer)
    assert len(ids) == 1
    assert client.client_kill_filter(_id=ids[0]) == 1
