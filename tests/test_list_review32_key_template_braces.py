"""The cluster check of a key template (a ``}`` outside a hash tag is refused) is
written once, in ``brokerkit.backends.redis._keys``, for redis+list's ``queue_key``
and redis+stream's ``stream_key``, and says what it said before in each.

Before, each backend's ``keys`` module held a copy of it (the same test, the same
message but for the names): a fix to one could miss the other."""

from __future__ import annotations

import inspect

import pytest

from brokerkit.backends.redis.list import keys as list_keys
from brokerkit.backends.redis.stream import keys as stream_keys
from brokerkit.exceptions import InvalidOption

QUEUE_TEXT = (
    "queue_key 'a}b:*' holds a '}' outside a hash tag: on a Redis Cluster its queues are "
    "hashed whole, and brokerkit's keys named after them ('{<queue>}:deadlines', ...) "
    "cannot share their slot; use a template without braces ('queue:*') or with a hash "
    "tag ('{queue}:*')"
)
STREAM_TEXT = (
    "stream_key 'a}b:*' holds a '}' outside a hash tag: on a Redis Cluster its streams "
    "are hashed whole, and brokerkit's keys named after them ('{<stream>}:vt', "
    "'{<stream>}.dlq') cannot share their slot; use a template without braces "
    "('events:*') or with a hash tag ('{events}:*')"
)


def test_the_check_is_written_once() -> None:
    from brokerkit.backends.redis._keys import check_cluster_template

    for module in (list_keys, stream_keys):
        source = inspect.getsource(module)
        assert "outside a hash tag: on a Redis Cluster" not in source, module.__name__
        assert module.check_cluster_template is check_cluster_template


@pytest.mark.parametrize(
    ("check", "text"),
    [(list_keys.check_queue_key, QUEUE_TEXT), (stream_keys.check_stream_key, STREAM_TEXT)],
)
def test_each_backend_says_what_it_said(check: object, text: str) -> None:
    assert callable(check)
    with pytest.raises(InvalidOption) as raised:
        check("a}b:*", cluster=True)
    assert str(raised.value) == text
    for refused in ("{}:*", "*{}", "}:*"):
        with pytest.raises(InvalidOption, match="outside a hash tag"):
            check(refused, cluster=True)
    for kept in ("q:*", "{app}:q:*", "{q}*", "a}b:*"):
        cluster = kept != "a}b:*"
        assert check(kept, cluster=cluster) == kept
