"""``brokerkit consume ... | head -2`` (review 5 of the command line, finding 3): when
writing the message in hand fails because stdout was closed, that message goes back to
the topic at once, and the command exits quietly with status 1 (as on any closed
stdout). Before, it stayed leased to the gone consumer until its visibility timeout."""

from __future__ import annotations

import subprocess
import sys

import pytest

import brokerkit
from brokerkit._url import BrokerURL
from brokerkit.backends.redis._unlink import unlink_prefixed
from tests.conftest import RedisTarget

pytest.importorskip("typer")


@pytest.mark.parametrize("no_ack", [False, True])
def test_the_message_a_closed_stdout_refused_goes_back_at_once(
    redis_target: RedisTarget, prefix: str, no_ack: bool
) -> None:
    url = redis_target.url("redis+stream", prefix=prefix)
    try:
        with brokerkit.connect(url) as broker:
            broker.publish_many("orders", ["order 1", "order 2"])
            argv = ["consume", url, "orders", "-g", "mail", "-t", "30"]
            child = subprocess.Popen(
                [sys.executable, "-m", "brokerkit.cli", *argv, *(["--no-ack"] if no_ack else [])],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            assert child.stdout is not None and child.stderr is not None
            assert child.stdout.readline() == "order 1\n"
            assert child.stdout.readline() == "order 2\n"
            child.stdout.close()  # as `head -2` does
            # published after: the child's next write is sure to find stdout closed
            broker.publish_many("orders", [f"order {n}" for n in range(3, 11)])
            assert child.wait(60) == 1
            err = child.stderr.read()
            child.stderr.close()
            assert "Traceback" not in err and "error" not in err
            # The message in hand (and, with --no-ack, those held) come back at once,
            # not after the visibility timeout (30 s).
            left = list(broker.consume("orders", group="mail", timeout=1))
            first = 1 if no_ack else 3  # nothing acked with --no-ack
            assert [d.body for d in left] == [f"order {n}" for n in range(first, 11)]
            assert [d.redelivered for d in left[: 4 - first]] == [True] * (4 - first)
            broker.ack(*left)
    finally:
        unlink_prefixed(BrokerURL.parse(redis_target.url("redis")), prefix)
