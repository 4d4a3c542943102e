"""A parsed URL written out again (``render``, as the CLI hands a URL to the processes
it starts) parses to the same hosts: a ``%`` in a host, an IPv6 zone's
(``[fe80::1%2512]``, zone ``12``), was written raw, and read back as the escape ``%12``
(the character U+0012), a host nobody has."""

from __future__ import annotations

import pytest

from brokerkit._url import BrokerURL


@pytest.mark.parametrize(
    ("url", "host"),
    [
        ("redis+stream://[fe80::1%2512]:6379/0", "fe80::1%12"),
        ("redis+stream://[fe80::1%25eth0]:6379/0", "fe80::1%eth0"),
        ("memory://fifty%2541", "fifty%41"),
        ("redis+stream://h1:7000,[fe80::2%25ab]:7001/0", "h1"),
    ],
)
def test_a_rendered_url_parses_to_the_same_hosts(url: str, host: str) -> None:
    parsed = BrokerURL.parse(url)
    assert parsed.host == host
    for hide in (True, False):
        again = BrokerURL.parse(parsed.render(hide_password=hide))
        assert again.hosts == parsed.hosts, parsed.render(hide_password=hide)
    assert BrokerURL.parse(parsed.render(hide_password=False)) == parsed


def test_plain_hosts_render_as_before() -> None:
    assert str(BrokerURL.parse("redis+stream://[::1]:6379/0")) == "redis+stream://[::1]:6379/0"
    assert str(BrokerURL.parse("redis+stream://h1:7000,h2:7001/0")) == (
        "redis+stream://h1:7000,h2:7001/0"
    )
