"""benchmarks/woken.py: the client's time from a fetch's reply to ``receive``
returning, for a consumer woken by each message and for one whose messages wait."""

from __future__ import annotations

import pytest

from tests.conftest import RedisTarget

pytestmark = pytest.mark.redis_list


def test_the_woken_consumers_client_time_is_measured_in_both_modes(
    redis_target: RedisTarget,
) -> None:
    from benchmarks import woken
    from brokerkit.backends.redis import _held

    originals = (_held.Reader.execute, _held.Reader.execute_many)
    result = woken.measure(redis_target.url("redis"), count=20, interval=0.003)
    assert set(result) == {"woken", "waiting"}
    for medians in result.values():
        assert medians["after reply"] > 0 and medians["fixed work"] > 0
    # the stamping hooks are gone again
    assert (_held.Reader.execute, _held.Reader.execute_many) == originals
