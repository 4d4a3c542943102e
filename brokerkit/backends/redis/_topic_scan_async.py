"""The topics a Redis backend's keyspace holds: its keys found by ``SCAN`` under the
broker's prefix (or key template), each checked for its type, and for the signs a topic
leaves where its own key may be missing."""

from __future__ import annotations

from collections.abc import Callable, Mapping

import redis.asyncio as aioredis
from redis.exceptions import ResponseError

from brokerkit._topics import is_topic
from brokerkit._url import BrokerURL
from brokerkit.backends.redis._connection import translate_errors
from brokerkit.backends.redis._keys import Keyspace, KeyTemplate

__all__ = ["TYPE_CHUNK", "scan_topics"]


async def scan_topics(
    client: aioredis.Redis,
    url: BrokerURL,
    prefix: str,
    template: str | None = None,
    key_type: str | None = None,
    signs: tuple[str, ...] = (),
    own_parts: tuple[str, ...] = (),
    checks: Mapping[str, Callable[[bytes], bool]] | None = None,
    signed_only: set[str] | None = None,
) -> list[str]:
    """The topics whose key (``<prefix>:{topic}``, or with a key ``template``,
    ``queue_key`` or ``stream_key``, the key the template names) holds a ``key_type``,
    or that have the key of one of ``signs`` (brokerkit's own keys that exist while a
    topic holds something its key does not: ``expiry`` while deliveries are out of an
    emptied list). Under the prefix, a topic whose key holds another type (another
    backend's topic, sharing the prefix) is left out, signs or not; its other keys
    (consumers', leases) never list a topic. SCAN, so the server is not blocked; a
    topic created or removed during the scan may or may not be listed.

    ``checks`` (sign -> check) are signs that two backends write alike: ``scheduled``,
    the sorted set of a topic's delayed messages, is ``<key>:scheduled`` on redis+list
    and redis+stream both, so under a shared prefix (or template) a topic of either that
    holds nothing but delayed messages has that key alone. A checked sign lists a topic
    whose key was not found only if its first member (the first due: ``ZRANGE 0 0``)
    passes the check (redis+list's and redis+stream's, in :mod:`.stream.scheduling`,
    share every member out between the two by its form: one in redis+stream's form is
    redis+stream's, any other (another program's included) redis+list's, whose release
    would push it as it is where redis+stream's drops it). So a foreign member never
    raises and lists its topic on exactly one backend. A name both backends held delayed
    messages under goes by its first due member, the one to come out first; once its key
    exists, by the key's type. A checked sign's key that is no sorted set lists nothing;
    one emptied since the scan (released, purged) lists its topic. The members are read
    in the pipelines that ask the keys' types (:data:`TYPE_CHUNK` asks each): one round
    trip for them all, and one whole member (the size of its message) per topic found
    only by a checked sign.

    A name that is not a valid topic (a key another program wrote) is left out. Under
    a template that holds a hash tag, brokerkit's own keys of a topic look like topics'
    keys (``{app}:q:orders:processing:c1``): a name with a segment that is one of
    ``own_parts`` after a ``:`` is taken for one of them (so a topic named like that,
    ``orders:processing:x``, is not listed there).

    ``signed_only``, if given, is filled with the topics listed whose own key the scan
    did not find (found by their signs alone), for a caller to look at them further.
    """
    checked = dict(checks or {})
    with translate_errors(url):
        if template is None:
            return await _scan_prefix(
                client, Keyspace(prefix), key_type, signs, checked, signed_only
            )
        found: set[str] = set()
        named = KeyTemplate(template)
        for pattern in named.scan_patterns():
            async for key in client.scan_iter(match=pattern, count=1000, _type=key_type):
                name = named.topic_of(_str(key))
                if not (named.tagged and name and _names_a_part(name, own_parts)):
                    _add(found, name)
        candidates: dict[str, tuple[str, Callable[[bytes], bool]]] = {}
        own: dict[str, str] = {}  # a candidate's own key
        keyed_found = set(found)
        for part in signs:
            async for raw in client.scan_iter(match=named.part_pattern(part), count=1000):
                key = _str(raw)
                name = named.topic_of(key, part)
                if part not in checked:
                    _add(found, name)
                elif name is not None and is_topic(name) and name not in candidates:
                    candidates[name] = (key, checked[part])
                    own[name] = named.own_key(key, part)
        signed = {topic: sign for topic, sign in candidates.items() if topic not in found}
        # Their own keys' types too: the SCAN above saw only keys of ``key_type``.
        keyed = {topic: own[topic] for topic in signed}
        found.update(await _check_signs(client, keyed, key_type, signed))
        if signed_only is not None:
            signed_only.update(found - keyed_found)
    return sorted(found)


#: Topic keys whose type one pipeline asks (a request and a reply of bounded size).
TYPE_CHUNK = 1000


async def _scan_prefix(
    client: aioredis.Redis,
    space: Keyspace,
    key_type: str | None,
    signs: tuple[str, ...],
    checks: dict[str, Callable[[bytes], bool]],
    signed_only: set[str] | None,
) -> list[str]:
    """:func:`scan_topics` under a prefix: one SCAN of the prefix's keys, then the
    type of each topic's own key and the first member of each checked sign of a topic
    whose key was not found (pipelines of :data:`TYPE_CHUNK`)."""
    keyed: dict[str, str] = {}  # topic -> its key
    signed: dict[str, set[str]] = {}  # topic -> its signs found
    async for raw in client.scan_iter(match=space.scan_pattern(), count=1000):
        key = _str(raw)
        split = space.split(key)
        if split is None or not is_topic(split[0]):
            continue
        topic, rest = split
        if not rest:
            keyed[topic] = key
        elif rest.startswith(":") and rest[1:] in signs:
            signed.setdefault(topic, set()).add(rest[1:])
    # A topic whose key was found goes by its key's type (by its signs if the key went
    # since); one found only by checked signs, by the first member of one of them.
    to_check: dict[str, tuple[str, Callable[[bytes], bool]]] = {}
    found: set[str] = set()
    for topic, parts in signed.items():
        unchecked = parts.difference(checks)
        if topic in keyed or unchecked:
            found.add(topic)
        else:
            part = min(parts)
            to_check[topic] = (space.topic(topic, part), checks[part])
    if signed_only is not None:
        signed_only.update(topic for topic in signed if topic not in keyed)
    if key_type is None:
        found.update(keyed)
        keyed = {}
    found = await _check_signs(client, keyed, key_type, to_check, found)
    if signed_only is not None:
        signed_only.intersection_update(found)
    return sorted(found)


async def _check_signs(
    client: aioredis.Redis,
    keyed: dict[str, str],
    key_type: str | None,
    signed: dict[str, tuple[str, Callable[[bytes], bool]]],
    found: set[str] | None = None,
) -> set[str]:
    """``found`` with the topics of ``keyed`` (topic -> key) whose key holds a
    ``key_type`` and those of ``signed`` (topic -> a checked sign's key and its check)
    whose sign's first member passes its check, less the topics of ``keyed`` whose
    key holds another type (signs or not); in pipelines of :data:`TYPE_CHUNK` asks
    (one round trip for all, unless there are more)."""
    found = set() if found is None else found
    others: set[str] = set()  # (``keyed``'s are asked first, in order)
    asks: list[tuple[str, str, Callable[[bytes], bool] | None]] = [
        (topic, key, None) for topic, key in keyed.items()
    ]
    asks += [(topic, key, check) for topic, (key, check) in signed.items()]
    for start in range(0, len(asks), TYPE_CHUNK):
        chunk = asks[start : start + TYPE_CHUNK]
        pipe = client.pipeline(transaction=False)
        for _, key, check in chunk:
            if check is None:
                pipe.type(key)
            else:
                pipe.zrange(key, 0, 0)
        replies = await pipe.execute(raise_on_error=False)
        for (topic, _, check), reply in zip(chunk, replies, strict=True):
            if isinstance(reply, ResponseError):
                if check is None or "WRONGTYPE" not in str(reply):
                    raise reply
                continue  # a checked sign's key of another type: no sign of a topic
            if check is not None:
                # (empty: gone since the scan)
                if topic not in others and (not reply or check(_bytes(reply[0]))):
                    found.add(topic)
            elif _str(reply) == key_type:
                found.add(topic)
            elif _str(reply) != "none":  # another backend's topic, or another program's key
                found.discard(topic)
                others.add(topic)
    return found


def _names_a_part(name: str, parts: tuple[str, ...]) -> bool:
    """Whether ``name`` has a ``:<part>`` segment (``orders:processing:c1``)."""
    segments = name.split(":")
    return any(segment in parts for segment in segments[1:])


def _str(key: bytes | str) -> str:
    return key.decode(errors="replace") if isinstance(key, bytes) else key


def _bytes(value: bytes | str) -> bytes:
    return value.encode(errors="surrogateescape") if isinstance(value, str) else value


def _add(found: set[str], name: str | None) -> None:
    if name is not None and is_topic(name):
        found.add(name)
