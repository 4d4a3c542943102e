"""How the commands sent on a kept connection (:mod:`._held_async`) are packed into
the Redis protocol (no I/O: shared by the sync and async readers).

redis-py packs a command argument by argument in Python (its encoder, then hiredis's
packer on the tuple it built): 12.5 us for a fetch's script call of 26 arguments, where
hiredis's packer alone takes 1.7 us (measured with redis-py 8.2 and hiredis 3.5); a
consumer packs two such calls for every 100 messages it fetches and acks. hiredis's
packer sends what redis-py's encoder sends for the arguments brokerkit passes (``str``
as UTF-8, ``int`` and ``float`` as their ``repr``, ``bytes`` as they are), so with
a hiredis that redis-py itself uses (``redis.utils.HIREDIS_AVAILABLE``) and a
connection that encodes as redis-py does by default (UTF-8, strict), it packs them;
anything else is packed by the connection, as redis-py would: no hiredis, another
encoding, an argument hiredis does not take (``None``, ``bool``, ``bytearray``: redis-py
refuses or converts them with its own rules), a command name of more than one word
(``"SCRIPT LOAD"``, which redis-py splits), no command at all. A ``memoryview``
argument must be contiguous (hiredis reads its buffer as one run of bytes); brokerkit
passes none: bodies are ``bytes`` by then.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from redis.utils import HIREDIS_AVAILABLE

__all__ = ["pack"]

_pack_command: Callable[[tuple[Any, ...]], bytes] | None = None
if HIREDIS_AVAILABLE:  # (an older hiredis redis-py does not use is not used here either)
    from hiredis import pack_command as _pack_command

#: Packed commands up to this size are joined into one write, a bigger one is written
#: alone (redis-py's own cutoff: a body is not copied into a buffer again).
_JOIN_UP_TO = 6000


def pack(connection: Any, commands: Sequence[tuple[Any, ...]]) -> list[bytes]:
    """``commands`` in the bytes ``connection.send_packed_command`` writes, as
    ``connection.pack_commands`` packs them."""
    if (
        _pack_command is None
        or not _encodes_as_hiredis(connection)
        or not all(command and _one_word(command[0]) for command in commands)
    ):
        return list(connection.pack_commands(commands))
    try:
        pieces = [_pack_command(command) for command in commands]
    except TypeError:  # an argument hiredis does not take: redis-py's error for it
        return list(connection.pack_commands(commands))
    out: list[bytes] = []
    small: list[bytes] = []
    for piece in pieces:
        if len(piece) <= _JOIN_UP_TO:
            small.append(piece)
            continue
        if small:
            out.append(b"".join(small))
            small = []
        out.append(piece)
    if small:
        out.append(b"".join(small))
    return out


def _one_word(name: object) -> bool:
    """Whether redis-py sends the command name ``name`` as it is: it splits a ``str``
    name at any whitespace (``"SCRIPT LOAD"`` goes as two arguments, ``""`` as none)
    and a ``bytes`` one that holds a space."""
    if isinstance(name, str):
        encoded = name.encode()
        return encoded.split() == [encoded]
    return not isinstance(name, bytes) or b" " not in name


def _encodes_as_hiredis(connection: Any) -> bool:
    encoder = getattr(connection, "encoder", None)
    return (
        encoder is not None
        and str(getattr(encoder, "encoding", "")).lower().replace("_", "-") in ("utf-8", "utf8")
        and getattr(encoder, "encoding_errors", None) == "strict"
    )
