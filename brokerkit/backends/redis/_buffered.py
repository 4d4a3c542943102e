"""The replies a kept connection's parser holds already, taken without redis-py's
``read_response`` (no I/O: shared by the sync and async readers of :mod:`._held_async`).

redis-py's ``Connection.read_response`` wraps every reply it reads in a timeout, error
wrapping and bookkeeping: about 1 us a reply on a thread and 8 us under asyncio
(measured with redis-py 8.2 and hiredis 3.5), where hiredis takes a reply out of its
buffer in a fraction of that. A redis+list fetch by moves reads 104 replies for 100
messages (``MULTI``, each command's ``QUEUED``, ``EXEC``). Once one reply was read
through ``read_response`` (which waits for the socket under the connection's timeout),
the replies that came with it are whole in hiredis's buffer: they are taken from there,
as ``read_response`` would return them (an error reply as its exception, a connection
error raised, a RESP3 push handed to the parser's handler). Only where that is all
``read_response`` does: hiredis's parser with redis-py's "not enough data" marker
(redis-py 5.0.8 and later), a connection class whose ``read_response`` is redis-py's
own (a Sentinel-managed connection's is not: it turns ``READONLY`` into a reconnection),
RESP2, or RESP3 with a push handler. Anything else reads every reply through
``read_response``.
"""

from __future__ import annotations

from typing import Any, Final

import redis.asyncio.connection
import redis.connection
from redis.exceptions import ConnectionError as RedisConnectionError

__all__ = ["NOT_BUFFERED", "BufferedReplies"]

#: What :meth:`BufferedReplies.take` returns when the next reply is not whole in the
#: parser's buffer (then ``read_response`` reads it).
NOT_BUFFERED: Final = object()

#: redis-py's own ``read_response``s (sync and asyncio), which every connection class
#: but one that overrides it (Sentinel's) inherits.
_OWN_READ_RESPONSE = frozenset(
    {redis.connection.Connection.read_response, redis.asyncio.connection.Connection.read_response}
)

try:  # redis-py's hiredis parsers (private: with anything else, read_response reads)
    from redis._parsers.hiredis import NOT_ENOUGH_DATA as _NOT_ENOUGH_DATA
    from redis._parsers.hiredis import _AsyncHiredisParser, _HiredisParser
except ImportError:  # pragma: no cover - a redis-py before 5.0.8 ("not enough data": False)
    _HIREDIS_PARSERS: tuple[type, ...] = ()
    _NOT_ENOUGH_DATA = NOT_BUFFERED
else:
    _HIREDIS_PARSERS = (_HiredisParser, _AsyncHiredisParser)


class BufferedReplies:
    """The replies of ``connection`` whole in its parser's buffer, taken one by one:
    made right after ``read_response`` returned (or raised an error reply), used with
    nothing else reading meanwhile.

    :meth:`take` returns an error reply as its exception, as :class:`AsyncSent` keeps
    it, and raises one that means the connection is unusable (a ``ConnectionError``,
    as ``LOADING``), alone or first in an array, as ``read_response`` raises it (the
    caller's failure path drops the connection). A RESP3 push reply (a maintenance
    notification, an invalidation) is kept in :attr:`pushed`, for the parser's
    :attr:`push_handler`: the caller hands it there after each :meth:`take`, one that
    raises included, as ``read_response`` hands it on before it returns or raises
    what follows."""

    __slots__ = ("_gets", "push_handler", "push_type", "pushed")

    def __init__(self, connection: Any) -> None:
        parser = getattr(connection, "_parser", None)
        reader = getattr(parser, "_reader", None)
        #: the parser's handler of push replies (a coroutine function under asyncio)
        self.push_handler: Any = getattr(parser, "handle_push_response", None)
        self.push_type: Any = getattr(parser, "_hiredis_PushNotificationType", None)
        #: push replies taken, for :attr:`push_handler`
        self.pushed: list[Any] = []
        resp2 = str(getattr(connection, "protocol", 2)) == "2"
        self._gets: Any = None
        if (
            type(parser) in _HIREDIS_PARSERS
            and reader is not None
            and getattr(type(connection), "read_response", None) in _OWN_READ_RESPONSE
            # a reply a readiness check took out of hiredis, for read_response
            and getattr(parser, "_next_response", _NOT_ENOUGH_DATA) is _NOT_ENOUGH_DATA
            and (resp2 or self.push_handler is not None)
        ):
            self._gets = reader.gets

    def take(self) -> Any:
        """The next reply, or :data:`NOT_BUFFERED` when it is not whole in the buffer
        (or the parser is not one this reads)."""
        gets = self._gets
        if gets is None:
            return NOT_BUFFERED
        reply = gets()
        while self.push_type is not None and isinstance(reply, self.push_type):
            self.pushed.append(reply)
            reply = gets()
        if reply is _NOT_ENOUGH_DATA:
            return NOT_BUFFERED
        if isinstance(reply, RedisConnectionError):
            raise reply
        if type(reply) is list and reply and isinstance(reply[0], RedisConnectionError):
            raise reply[0]
        return reply
