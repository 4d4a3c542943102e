"""A sync subscribe run through the loop bridge (nats+core) and interrupted while it
waits for a lost connection (Ctrl-C) leaves no subscription in the NATS client once
the connection comes back (which nats-py would send the server again at each
reconnection); a subscribe not interrupted rides out the outage as before.

Found by the review: the coroutine went on on the bridge's loop and, once the server
was back, made a NATS subscription that neither the sync broker nor the asyncio one
listed, to which the server sent every matching message for as long as the broker
stayed open.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import threading
import time
import uuid
from pathlib import Path

import brokerkit
from tests.nats_server import NatsServer

#: Seconds anything here may take at most; nothing waits that long when all is well.
GUARD = 30.0

ROOT = Path(__file__).resolve().parent.parent

_CHILD = textwrap.dedent(
    """
    import signal, sys, threading, time
    from pathlib import Path

    import brokerkit
    from brokerkit.backends.nats._wire import subject_for
    from tests.nats_server import NatsServer

    GUARD, PREFIX = float(sys.argv[1]), sys.argv[2]
    main = threading.main_thread()


    def waiting_for_subscribe():
        # The main thread sleeps in the bridge's wait for its subscribe: its frames
        # say where it is, its state that it is blocked there.
        frame = sys._current_frames().get(main.ident)
        where = []
        while frame is not None:
            where.append((Path(frame.f_code.co_filename).name, frame.f_code.co_name))
            frame = frame.f_back
        stat = Path(f"/proc/self/task/{main.native_id}/stat").read_text()
        return (
            bool(where) and where[0][1] == "wait" and ("_bridge.py", "_subscribe") in where
            and stat.rpartition(")")[2].split()[0] == "S"
        )


    def interrupt():
        deadline = time.monotonic() + GUARD
        while not waiting_for_subscribe():
            if time.monotonic() > deadline:
                return
            time.sleep(0.001)
        signal.pthread_kill(main.ident, signal.SIGINT)


    server = NatsServer().start()
    try:
        url = server.url.replace("nats://", "nats+core://", 1)
        broker = brokerkit.connect(url, prefix=PREFIX, reconnect_timeout=GUARD)
        try:
            broker.publish("warm", "up")  # connected
            server.kill()
            threading.Thread(target=interrupt, daemon=True).start()
            try:
                broker.subscribe("news")
            except KeyboardInterrupt:
                print("interrupted")
            else:
                print("not interrupted")
            server.start()
            # Waits for the connection back. (nats-py holds a SUB from its subscribe on,
            # the interrupted one's too, until it is unsubscribed.)
            guard = broker.subscribe("guard")
            print("subscribed elsewhere")
            subjects = [sub.subject for sub in broker.inner._client._nc._subs.values()]
            print("news:", subject_for(PREFIX, "news") in subjects)
            print("listed:", len(broker._subscriptions), len(broker.inner._subscriptions))
            guard.close()
        finally:
            broker.close()
    finally:
        server.stop()
    """
)


def test_an_interrupted_subscribe_leaves_no_subscription_on_the_server() -> None:
    child = subprocess.run(
        [sys.executable, "-c", _CHILD, str(GUARD), f"bkt_{uuid.uuid4().hex[:12]}"],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=4 * GUARD,
    )
    lines = child.stdout.splitlines()
    assert child.returncode == 0, child.stderr[-3000:]
    assert lines[:2] == ["interrupted", "subscribed elsewhere"], (lines, child.stderr[-3000:])
    assert lines[2] == "news: False", "the interrupted subscribe was made after all"
    assert lines[3] == "listed: 1 0", lines


def test_a_subscribe_during_a_short_outage_still_subscribes() -> None:
    """The guard: a subscribe not interrupted waits for the connection and subscribes."""
    server = NatsServer().start()
    try:
        url = server.url.replace("nats://", "nats+core://", 1)
        prefix = f"bkt_{uuid.uuid4().hex[:12]}"
        with brokerkit.connect(url, prefix=prefix, reconnect_timeout=GUARD) as broker:
            broker.publish("warm", "up")
            server.kill()
            waiting = threading.Thread(target=_restart_once_waiting, args=(server, broker))
            waiting.start()
            try:
                subscription = broker.subscribe("news")
            finally:
                waiting.join(GUARD)
            broker.publish("news", "after the outage")
            delivery = subscription.receive(timeout=GUARD)
            assert delivery is not None and delivery.body == "after the outage"
            delivery.ack()
    finally:
        server.stop()


def _restart_once_waiting(server: NatsServer, broker: brokerkit.Broker) -> None:
    """Start ``server`` again once the main thread's subscribe waits for it (one
    subscribe under way), a bounded poll of the broker's count."""
    deadline = time.monotonic() + GUARD
    while not broker._subscribing:
        if time.monotonic() > deadline:
            break
        time.sleep(0.001)
    server.start()
