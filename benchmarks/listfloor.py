"""Raw redis-py leasing list elements by moving them, with nothing else: the floor of
any reliable queue on a Redis list, issue 18's bound for redis+list at 10 KB.

A reliable list queue leases an element by moving it out of the queue into a key of
the consumer's (the article's ``LMOVE`` to a processing list), so that a consumer that
dies leaves it behind for a rescue. Here a fetch is one transaction of ``MULTI``, 100
``LMOVE`` from the queue into a batch list and ``EXEC`` (whose replies are the
elements), packed once and sent in one write; the ack deletes the batch (one ``DEL``).
That is less than redis+list does (no lease deadline, no attempt counts, no envelope)
and less than any consumer that keeps a lease could do with a list; Redis copies each
body three times on the way (out of the queue, into the batch, into the reply), where
``XREADGROUP`` copies it once. Measured beside raw stream in the same rounds (``python
-m benchmarks.issue18 --part throughput``): what it reaches is the most a list-based
design can reach against raw stream on this machine.
"""

from __future__ import annotations

from typing import Any

from benchmarks import servertime
from benchmarks.raw import RawBench, _key, _timed
from brokerkit.cli._bench import Measurement

__all__ = ["RawListByMoves"]


class RawListByMoves(RawBench):
    """consume+ack only: a transaction of ``LMOVE``s into a batch list, ``DEL`` of it."""

    def consume(self, step: str, prefetch: int) -> Measurement:
        key, count, r = "{" + _key("moves") + "}", self.workload.count, self.r
        try:
            for n in self.workload.batches():
                r.lpush(key, *[self.body] * n)
            connection: Any = r.connection_pool.get_connection()
            batch = key + ":batch"
            packed: dict[int, list[bytes]] = {}  # a fetch of n moves, packed once

            def fetch(moves: int) -> list[bytes]:
                if moves not in packed:
                    commands = [("MULTI",), *[("LMOVE", key, batch, "RIGHT", "RIGHT")] * moves]
                    packed[moves] = connection.pack_commands([*commands, ("EXEC",)])
                connection.send_packed_command(packed[moves])
                for _ in range(moves + 1):  # +OK, then QUEUED a move
                    connection.read_response()
                return [value for value in connection.read_response() if value is not None]

            def read_and_ack() -> None:
                done = 0
                while done < count:
                    taken = fetch(min(prefetch, count - done))
                    if not taken:
                        raise RuntimeError("raw list by moves: the queue ran dry")
                    connection.send_command("DEL", batch)
                    connection.read_response()
                    done += len(taken)

            try:
                servertime.mark()  # the prefill is not part of the round's server time
                return _timed(step, count, read_and_ack)
            finally:
                r.connection_pool.release(connection)
        finally:  # what a failed round left: the queue, its batch
            r.delete(key, key + ":batch")
