"""A URL written for kombu, Celery or nats-py (``amqp://``, ``amqps://``, ``tls://``...)
is refused with a hint that names brokerkit's scheme for it, as a bare ``redis://`` is;
the list of installed schemes stays, and the URL's password is never echoed."""

from __future__ import annotations

import pytest

import brokerkit
from brokerkit import UnknownScheme
from brokerkit._plugins import load_registry, plugin_manager

SECRET = "s3cret-r36-pw"


def _refusal(url: str) -> str:
    with pytest.raises(UnknownScheme) as refused:
        brokerkit.connect(url)
    message = str(refused.value)
    assert SECRET not in message
    assert "(installed schemes: " in message and "kombu+amqp" in message
    return message


@pytest.mark.parametrize("scheme", ["amqp", "amqps", "pyamqp"])
def test_an_amqp_url_names_the_kombu_scheme(scheme: str) -> None:
    message = _refusal(f"{scheme}://guest:{SECRET}@localhost:5672//")
    assert f"use 'kombu+{scheme}://'" in message
    assert "RabbitMQ" in message


def test_a_celery_redis_url_also_names_kombu_redis() -> None:
    message = _refusal(f"redis://:{SECRET}@localhost:6379/0")
    assert "'redis+list', 'redis+stream', 'redis+pubsub'" in message  # kept
    assert "'kombu+redis'" in message


@pytest.mark.parametrize("scheme", ["tls", "ws", "wss"])
def test_a_nats_py_url_says_nats_is_reached_over_plain_tcp(scheme: str) -> None:
    message = _refusal(f"{scheme}://user:{SECRET}@localhost:4222")
    assert "'nats://" in message and "'nats+core://" in message
    assert "nats-py" in message


def test_without_the_kombu_plugin_an_amqp_url_says_what_to_install(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("BROKERKIT_BLOCK_PLUGINS", "brokerkit.backends.kombu")
    registry = load_registry(plugin_manager(entry_points=False))
    with pytest.raises(UnknownScheme) as refused:
        registry.get("amqp")
    message = str(refused.value)
    assert "kombu+amqp://" in message
    assert 'pip install "pybrokerkit[kombu]"' in message
    assert "kombu+amqp," not in message.split("(installed schemes: ")[1]
