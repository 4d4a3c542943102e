"""Subjects as brokerkit reads them from NATS: text for any bytes, one to one.

A NATS server takes a subject of any bytes but whitespace from a client that sends the
protocol itself (``PUB p.\\xff 5``): not UTF-8, or not the image of any topic. nats-py
(2.16) decoded each message's subject and reply subject as UTF-8 in its read loop, and
a subject that is not UTF-8 raised there, which ended the loop: the connection read
nothing more (every subscription silent, every publish's flush unanswered) though it
still looked connected. And its parser reads a ``MSG`` line's fields as runs of what
Python's ``\\s`` is not, while the server separates them by spaces and tabs only: a
subject holding a vertical tab or a form feed (``\\x0b``, ``\\x0c``) was read as
other fields (a protocol error, and the connection dropped and made again, losing what
was under way), or as a message for another subscription (its ``sid``). A
``nats+core`` pattern subscription listens to every subject under the prefix, so any
other program could jam it, and the whole connection with it.

:class:`Client` reads a subject as :func:`~brokerkit.backends.redis._stream_fields.escaped_text`
shows it, the channel names of ``redis+pubsub`` likewise: UTF-8 as it is (every subject
brokerkit makes), bytes that are not UTF-8 as ``\\xff`` escapes with the backslashes
doubled. A reply subject is UTF-8 as it is, else shown the same way (nothing can answer
to those bytes: nats-py publishes to text). Its parser reads the fields of a ``MSG``
line as the server writes them (nats-py's parsing otherwise, its code run with these
two expressions). That is done only where nats-py's own expressions read the protocol
lines of :data:`_SAMPLES` into the very groups brokerkit's do (the groups its code
unpacks): a nats-py without them, or whose expressions changed shape, is run with its
own parser, as it is, and a warning says so once (a subject holding a vertical tab or a
form feed may then drop the connection). The expressions checked are those of the
nats-py imported with this module.
"""

from __future__ import annotations

import logging
import re
import types
from typing import Any

import nats.aio.client
import nats.protocol.parser
from nats.aio.client import Client as _NatsPyClient

from brokerkit._logging import log_fields

# (text only: imports nothing of redis-py)
from brokerkit.backends.redis._stream_fields import escaped_text

__all__ = ["Client", "connect", "subject_text"]

log = logging.getLogger("brokerkit.nats")


def subject_text(subject: bytes) -> str:
    """``subject`` as text, one to one over all byte strings (:func:`escaped_text`)."""
    return escaped_text(subject)


def _reply_text(reply: bytes) -> str:
    try:
        return reply.decode()
    except UnicodeDecodeError:
        return escaped_text(reply)


#: A ``MSG`` and an ``HMSG`` line: fields separated by spaces and tabs, as the server
#: reads (and writes) them, each any run of other bytes but CR and LF.
_FIELD, _SPACE = rb"([^ \t\r\n]+)", rb"[ \t]+"
_MSG = re.compile(
    rb"\AMSG"
    + _SPACE
    + _FIELD
    + _SPACE
    + _FIELD
    + _SPACE
    + rb"("
    + _FIELD
    + _SPACE
    + rb")?(\d+)\r\n"
)
_HMSG = re.compile(
    rb"\AHMSG"
    + _SPACE
    + _FIELD
    + _SPACE
    + _FIELD
    + _SPACE
    + rb"("
    + _FIELD
    + _SPACE
    + rb")?(\d+)"
    + _SPACE
    + rb"(\d+)\r\n"
)


#: Protocol lines as a server writes them (without and with a reply subject), each
#: followed by its payload: nats-py's expression of each name must read them into the
#: groups brokerkit's does, ending where it does, for brokerkit's to take its place.
_SAMPLES = {
    "MSG_RE": (
        _MSG,
        (b"MSG a.b 9 5\r\nhello\r\n", b"MSG a.b 12 _INBOX.x.y 5\r\nhello\r\n"),
    ),
    "HMSG_RE": (
        _HMSG,
        (
            b"HMSG a.b 9 12 17\r\nNATS/1.0\r\n\r\nhello\r\n",
            b"HMSG a.b 12 _INBOX.x.y 12 17\r\nNATS/1.0\r\n\r\nhello\r\n",
        ),
    ),
}


def _shape_differs(theirs: Any, ours: re.Pattern[bytes], lines: tuple[bytes, ...]) -> bool:
    """Whether nats-py's expression ``theirs`` reads ``lines`` otherwise than ``ours``
    (or is no compiled expression of bytes, or has other groups)."""
    if not isinstance(theirs, re.Pattern) or not isinstance(theirs.pattern, bytes):
        return True
    if (theirs.groups, theirs.groupindex) != (ours.groups, ours.groupindex):
        return True
    for line in lines:
        read, expected = theirs.match(line), ours.match(line)
        if read is None or expected is None:
            return True
        if (read.groups(), read.end()) != (expected.groups(), expected.end()):
            return True
    return False


def _parser_class() -> type[Any]:
    """nats-py's parser, reading ``MSG`` lines by :data:`_MSG` and :data:`_HMSG`; nats-py's
    own, as it is, when its code names no such expressions, or they differ in shape (see
    :data:`_SAMPLES`), or its ``parse`` is a closure: a warning says which."""
    base: type[Any] = nats.protocol.parser.Parser
    parse: Any = base.parse
    names = parse.__code__.co_names
    if not set(_SAMPLES) <= set(names):
        return _as_it_is(base, "its parser reads no MSG_RE and HMSG_RE")
    if parse.__closure__:
        return _as_it_is(base, "its parser's parse is a closure, not rebuilt with other globals")
    for name, (expression, lines) in _SAMPLES.items():
        if _shape_differs(parse.__globals__.get(name), expression, lines):
            return _as_it_is(base, f"its {name} reads a protocol line into other groups")
    scope = {**parse.__globals__, "MSG_RE": _MSG, "HMSG_RE": _HMSG}
    ours = types.FunctionType(parse.__code__, scope, parse.__name__, parse.__defaults__)
    made: type[Any] = type("Parser", (base,), {"parse": ours, "__doc__": base.__doc__})
    return made


def _as_it_is(base: type[Any], why: str) -> type[Any]:
    """``base``, nats-py's parser, with a warning of ``why`` brokerkit's is not made."""
    log.warning(
        "nats-py %s parses MSG lines otherwise than brokerkit expects (%s): its own "
        "parser is used, and a subject holding a vertical tab or a form feed may drop "
        "the connection",
        getattr(nats.aio.client, "__version__", "?"),
        why,
        extra=log_fields(),
    )
    return base


#: The parser of every connection, chosen once (at import: any warning is logged once).
_Parser = _parser_class()


class Client(_NatsPyClient):
    """A nats-py client whose read loop survives any subject the server sends."""

    def __init__(self) -> None:
        super().__init__()
        self._ps = _Parser(self)

    def _build_message(
        self,
        sid: int,
        subject: bytes,
        reply: bytes,
        data: bytes,
        headers: dict[str, str] | None,
    ) -> Any:
        return self.msg_class(
            subject=subject_text(subject),
            reply=_reply_text(reply),
            data=data,
            headers=headers,
            _client=self,
            _sid=sid,
        )


async def connect(**options: Any) -> Client:
    """:func:`nats.connect` with a :class:`Client`."""
    nc = Client()
    await nc.connect(**options)
    return nc
