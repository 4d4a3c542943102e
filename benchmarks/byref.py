"""Raw redis-py consuming a list that leases by reference: issue 18's probe of the one
design that could take redis+list's 10 KB consume+ack to 0.8 of raw stream.

redis+list leases a message by moving its body (``SORT ... STORE`` copies each body
out of the queue and into a batch list) and the consumer reads the batch
(``LRANGE``): three copies of each body in Redis, where ``XREADGROUP`` makes one (see
docs/benchmarks.md, the tenth round). Here the bodies wait in string keys of their own
and the queue holds their names: a fetch moves 100 names (a script: ``SORT ... STORE``
and ``LTRIM``, as redis+list does) and reads the bodies by name in the same send
(``SORT batch BY nosort GET <prefix>*``: one copy, into the reply); the ack deletes the
batch and the bodies' keys (one ``DEL``). No brokerkit code runs: this is the limit
of such a design for a Python client, measured beside raw stream in the same rounds
(``python -m benchmarks.issue18 --part throughput``).
"""

from __future__ import annotations

from benchmarks import servertime
from benchmarks.moves import SORT_STORE
from benchmarks.raw import RawBench, _key, _timed
from brokerkit.cli._bench import Measurement

__all__ = ["RawListByReference"]


class RawListByReference(RawBench):
    """consume+ack only: bodies in keys of their own, the queue holding their names."""

    def consume(self, step: str, prefetch: int) -> Measurement:
        key, count, r = "{" + _key("byref") + "}", self.workload.count, self.r
        bodies = key + ":body:"
        take = r.register_script(SORT_STORE)
        names = [str(i) for i in range(count)]
        try:
            sent = 0
            for n in self.workload.batches():
                pipe = r.pipeline(transaction=True)
                pipe.mset({bodies + name: self.body for name in names[sent : sent + n]})
                pipe.lpush(key, *names[sent : sent + n])
                pipe.execute()
                sent += n
            r.script_load(SORT_STORE)

            def read_and_ack() -> None:
                done = fetches = 0
                while done < count:
                    batch = f"{key}:batch:{fetches}"
                    fetches += 1
                    pipe = r.pipeline(transaction=False)
                    pipe.evalsha(take.sha, 2, key, batch, prefetch)
                    pipe.sort(batch, by="nosort", get=["#", bodies + "*"])
                    _, got = pipe.execute()
                    taken, payloads = got[::2], got[1::2]
                    if not taken:
                        raise RuntimeError("raw list by reference: the queue ran dry")
                    if None in payloads:
                        raise RuntimeError("raw list by reference: a body was missing")
                    r.delete(batch, *[bodies + name.decode() for name in taken])
                    done += len(taken)

            servertime.mark()  # the prefill is not part of the round's server time
            return _timed(step, count, read_and_ack)
        finally:  # what a failed round left: the queue, its batches, the bodies
            r.delete(key, *r.scan_iter(match=key + ":batch:*"))
            for start in range(0, count, 1000):
                r.delete(*[bodies + name for name in names[start : start + 1000]])
