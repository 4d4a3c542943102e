"""redis+pubsub pattern subscriptions hear exactly the topics fnmatch's glob matches.

Redis's PSUBSCRIBE reads globs in a dialect of its own (``[^a]`` negates, a reversed
range is swapped, a ``-`` last in a set makes a range, an unclosed ``[`` runs to the
end); brokerkit promises the same globs on every backend. Each check here subscribes
for real, on a private redis-server, and takes ``PUBLISH``'s count of receivers as
the server's own answer to "does this channel match".
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from fnmatch import fnmatchcase

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

import brokerkit
from brokerkit.backends.redis.pubsub import RedisPubSubBroker
from brokerkit.backends.redis.pubsub.globs import redis_glob
from brokerkit.contracts._scoped import GLOB_CASES
from tests.redis_server import RedisServer

WAIT = 5.0

#: (glob, topics): the reviewer's cases, where Redis read the glob unchanged
#: differently from fnmatch, and the rules of fnmatch's sets one by one.
CASES: list[tuple[str, list[str]]] = [
    ("order[.-]*", ["order.created", "order-created", "order1", "orderZ"]),
    ("x[a-]", ["xa", "x-", "x_", "xZ"]),
    ("v[9-0]", ["v5", "v0", "v9"]),
    ("a[!]", ["ab", "ac", "a"]),
    ("a[!]b]", ["ab", "aa", "a-"]),
    ("v[!9-0]", ["v5", "vx"]),
    ("v[0-09-0]", ["v0", "v5", "v9"]),
    ("c[a-c-e]", ["ca", "cb", "cc", "cd", "ce", "c-"]),
    ("d[--0]", ["d-", "d.", "d/", "d0", "d1"]),
    ("e[-a]", ["e-", "ea", "eb"]),
    ("room:[!a-c]", ["room:a", "room:d", "room:-"]),
    ("room:[b", ["room:b", "room:c"]),
    ("*.[!.]*", ["a.b", "a..b", "a.", "x.y.z"]),
]


@pytest.fixture
def broker(redis_server: RedisServer) -> Iterator[RedisPubSubBroker]:
    """A redis+pubsub broker on a redis-server of this test's own: nothing else
    subscribes there, so a PUBLISH's receiver count says whether our glob matched."""
    with brokerkit.connect(redis_server.url("redis+pubsub")) as made:
        assert isinstance(made, RedisPubSubBroker)
        yield made


def _hears(broker: RedisPubSubBroker, glob: str, topics: list[str]) -> list[str]:
    """The topics a pattern subscription to ``glob`` hears, by the server's count of
    receivers, after checking that the deliveries are the ones counted."""
    heard = []
    with broker.subscribe(glob, pattern=True, prefetch=len(topics)) as subscription:
        for topic in topics:
            receivers = broker.publish_counted(topic, topic).receivers
            assert receivers in (0, 1), f"{topic!r}: {receivers} receivers on a private server"
            if receivers:
                heard.append(topic)
        for topic in heard:
            delivery = subscription.receive(timeout=WAIT)
            assert delivery is not None, f"{topic!r} counted as received but never arrived"
            assert (delivery.topic, delivery.body) == (topic, topic)
    return heard


@pytest.mark.parametrize(("glob", "topics"), CASES)
def test_a_pattern_hears_the_topics_fnmatch_matches(
    broker: RedisPubSubBroker, glob: str, topics: list[str]
) -> None:
    assert _hears(broker, glob, topics) == [t for t in topics if fnmatchcase(t, glob)]


@pytest.mark.parametrize(("glob", "topics"), CASES[:4])
def test_plain_channels_patterns_hear_the_topics_fnmatch_matches(
    redis_server: RedisServer, glob: str, topics: list[str]
) -> None:
    with brokerkit.connect(redis_server.url("redis+pubsub"), plain_channels=True) as plain:
        assert isinstance(plain, RedisPubSubBroker)
        assert _hears(plain, glob, topics) == [t for t in topics if fnmatchcase(t, glob)]


def test_the_channel_pattern_is_the_redis_spelling_of_the_glob(
    broker: RedisPubSubBroker,
) -> None:
    assert broker.channel_pattern("chat:*") == "brokerkit:{chat:*}"
    assert broker.channel_pattern("room:[!a]") == r"brokerkit:{room:[^\a]}"
    assert broker.channel_pattern("order[.-]*") == r"brokerkit:{order[\.\-]*}"
    assert broker.channel_pattern("a[b") == r"brokerkit:{a\[b}"
    assert broker.channel_pattern("v[9-0]") == "brokerkit:{v[]}"  # a set of nothing
    assert redis_glob("[!9-0]") == "?"  # the complement of nothing: any character


#: Globs and topics over a few characters, so that matches and near misses are common;
#: the glob alphabet holds every piece of set syntax.
_TOPIC_CHARS = "ab9_-.:"
_globs = st.text(alphabet="ab9_-.:*?[]!", min_size=1, max_size=8)


@st.composite
def _near(draw: st.DrawFn, glob: str) -> str:
    """A topic spelled after ``glob``: its topic characters kept, each wildcard or
    piece of set syntax replaced by a few characters (so it often matches, or nearly)."""
    spelled = []
    for c in glob:
        if c in _TOPIC_CHARS and draw(st.integers(0, 9)):
            spelled.append(c)
        else:
            spelled.append(draw(st.text(alphabet=_TOPIC_CHARS, max_size=2)))
    return "".join(spelled)


@st.composite
def _globs_and_topics(draw: st.DrawFn) -> tuple[str, list[str]]:
    glob = draw(_globs)
    topic = st.one_of(_near(glob), st.text(alphabet=_TOPIC_CHARS, max_size=5))
    return glob, draw(st.lists(topic, min_size=1, max_size=6, unique=True))


@settings(
    max_examples=40,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(case=_globs_and_topics())
@example(case=("order[.-]*", ["created", "order.created", "order-created", "orderZ"]))
@example(case=("v[9-0]", ["v5", "v0"]))
@example(case=("a[!]", ["ab"]))
@example(case=("a[b-a-]", ["a-", "aa", "ab"]))
def test_patterns_match_as_fnmatch_on_a_real_server(
    broker: RedisPubSubBroker, case: tuple[str, list[str]]
) -> None:
    # Topics and glob under a prefix of this example's own (valid whatever they start
    # with), so that nothing an earlier example published or subscribed to can be
    # counted: the broker and server are shared by the examples.
    glob, topics = case
    scope = f"g{uuid.uuid4().hex[:8]}."
    scoped = [scope + topic for topic in topics]
    expected = [t for t in scoped if fnmatchcase(t, scope + glob)]
    assert _hears(broker, scope + glob, scoped) == expected


def test_the_contract_glob_cases_say_what_fnmatch_says() -> None:
    """The shipped contract's table of glob cases is fnmatch's reading, case by case."""
    for pattern, topic, matches in GLOB_CASES:
        assert fnmatchcase(topic, pattern) is matches, (pattern, topic)
