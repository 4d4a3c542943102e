"""What a review of this session's core changes found: an int too long to print passed
where a delivery goes raised a bare ValueError from the refusal's own repr (ack,
nack, extend); a generator of schemes was read empty by the check before the
registration; an IPv6 address without brackets was told to write its last group as a
port ([fe80:]:1); a worker's wait of minus an int too long to print raised a bare
ValueError."""

from __future__ import annotations

import pytest

import brokerkit
from brokerkit import BackendRegistry
from brokerkit._url import BrokerURL
from brokerkit.backends.memory.broker import MemoryBroker
from brokerkit.exceptions import DeliveryError, InvalidOption, InvalidURL
from brokerkit.worker import Worker

HUGE = 10**5000


@pytest.mark.parametrize("settle", ["ack", "nack", "extend"])
def test_an_unprintable_int_where_a_delivery_goes_is_told_by_its_size(settle: str) -> None:
    with (
        brokerkit.connect("memory://") as broker,
        pytest.raises(DeliveryError, match="int of about 5,001 digits: the settings"),
    ):
        getattr(broker, settle)(HUGE)


def test_schemes_given_as_a_generator_are_registered() -> None:
    registry = BackendRegistry()
    registry.add(MemoryBroker, schemes=(s for s in ("acme", "acme+x")))
    assert registry.schemes() == ["acme", "acme+x"]
    assert registry.get(BrokerURL.parse("acme+x://h").scheme).load() is MemoryBroker


@pytest.mark.parametrize(
    ("host", "told"),
    [
        ("fe80::1", "redis+stream://[fe80::1]"),
        ("::1", "redis+stream://[::1]"),
        ("fe80::1%eth0", "redis+stream://[fe80::1%25eth0]"),
        ("fe80::1:6379", "redis+stream://[fe80::1]:6379 (or redis+stream://[fe80::1:6379]"),
        ("fe80::1%25eth0", "redis+stream://[fe80::1%25eth0]"),
        ("fe80::1%25eth0:6379", "redis+stream://[fe80::1%25eth0]:6379"),
    ],
    ids=["no-port", "loopback", "zone", "either", "encoded-zone", "encoded-zone-port"],
)
def test_an_ipv6_address_without_brackets_is_told_how_to_write_it(host: str, told: str) -> None:
    with pytest.raises(InvalidURL) as refused:
        brokerkit.connect(f"redis+stream://{host}/0")
    assert f"then the port: {told}" in str(refused.value)
    assert "[fe80:]" not in str(refused.value) and "[:]" not in str(refused.value)
    assert "%2525" not in str(refused.value)
    if "%" in host:  # a zone holds no ':': the port is no part of the address
        assert "(or " not in str(refused.value)


def test_a_worker_refuses_minus_an_unprintable_int_of_seconds() -> None:
    with brokerkit.connect("memory://") as broker:
        with pytest.raises(InvalidOption, match="a negative int of about 5,001 digits"):
            Worker(broker, grace=-HUGE)
        worker = Worker(broker)
        with pytest.raises(InvalidOption, match="a negative int of about 5,001 digits"):
            worker.wait_ready(-HUGE)
