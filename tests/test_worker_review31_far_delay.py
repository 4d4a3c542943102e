"""A retry policy's delay that no nack takes (thirty-first review of the worker): one
due after the end of the year 9999 (milliseconds given as seconds, a policy's "never"
of 1e300) is a bug in the policy, as a negative or infinite one is: logged as an error
naming it, and the delivery retried at once. The nack refused it (InvalidOption): the
worker logged "retried in 1e+12 s", then "could not nack", and handed the delivery
back. (``Fixed(1e12)`` itself is refused when built: review 31b.)"""

from __future__ import annotations

import pytest

from brokerkit.worker import Fixed, RetryPolicy
from tests.worker_runs import WorkerLog, dead_letter, worker_log

__all__ = ["worker_log"]  # fixture


class Never(RetryPolicy):
    def delay(self, attempt: int) -> float:
        return 1e300


class Milliseconds(Fixed):
    """A Fixed(1e12) (refused when built since review 31b) that a subclass gives."""

    def delay(self, attempt: int) -> float:
        return self.seconds * 1000


@pytest.mark.parametrize(
    "policy",
    [Milliseconds(1e9, max_attempts=2), Never(max_attempts=2)],
    ids=["fixed-subclass", "own"],
)
def test_a_delay_past_the_year_9999_is_the_policy_s_bug(
    worker_log: WorkerLog, policy: RetryPolicy
) -> None:
    topic = f"review31-far-delay-{type(policy).__name__}"

    def job(body: dict[str, int]) -> None:
        raise ConnectionError("gateway timeout")

    dead_letter(topic, job, {"n": 1}, retry=policy)
    assert not [line for line in worker_log.lines if "could not nack" in line], worker_log.lines
    (bug,) = [line for line in worker_log.lines if "gave the delay" in line]
    assert "falling due by the end of the year 9999" in bug and "at once" in bug, bug
    retried = [line for line in worker_log.lines if "retried in" in line]
    assert len(retried) == 1 and "retried in 0 s" in retried[0], worker_log.lines
