"""The demo's config never shows its URL's password: ``brokerkit demo URL`` builds a
DemoConfig from the URL with its password (to connect), and a repr of it (a debugger,
a log of the config, a traceback's locals) printed it whole."""

from __future__ import annotations

from brokerkit.demo import DemoConfig


def test_a_demo_configs_repr_leaves_its_url_out() -> None:
    config = DemoConfig(url="redis+stream://user:s3cr3t-pw@127.0.0.1:6379/0")
    assert "s3cr3t-pw" not in repr(config)
    assert "orders=" in repr(config)
