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
two expressions; nats-py's own parser where it has no such expressions).
"""

from __future__ import annotations

import re
import types
from typing import Any

import nats.protocol.parser
from nats.aio.client import Client as _NatsPyClient

# (text only: imports nothing of redis-py)
from brokerkit.backends.redis._stream_fields import escaped_text

__all__ = ["Client", "connect", "subject_text"]


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


def _parser_class() -> type[Any]:
    """nats-py's parser, reading ``MSG`` lines by :data:`_MSG` and :data:`_HMSG`."""
    base: type[Any] = nats.protocol.parser.Parser
    parse: Any = base.parse
    names = parse.__code__.co_names
    if not {"MSG_RE", "HMSG_RE"} <= set(names) or parse.__closure__:
        return base  # (another nats-py: its own parsing, as it is)
    scope = {**parse.__globals__, "MSG_RE": _MSG, "HMSG_RE": _HMSG}
    ours = types.FunctionType(parse.__code__, scope, parse.__name__, parse.__defaults__)
    made: type[Any] = type("Parser", (base,), {"parse": ours, "__doc__": base.__doc__})
    return made


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
