"""A path holding a secret option (``/token=x``, taken since the twenty-seventh review,
commit ed078ee) is masked where a backend quotes it or a driver's message echoes it,
as ``str(url)`` shows it (up to the ``=``, then ``***``): the kombu+redis database
check quoted it whole (got "token=S3cret"), and kombu+amqp embedded RabbitMQ's
reply 'NOT_ALLOWED - vhost token=S3cret not found' in ConnectionFailed. (redis
refuses such a path unseen since 58a4905; NATS and kombu+memory never quote it.)"""

from __future__ import annotations

import uuid

import pytest

import brokerkit
from brokerkit import BrokerURL, ConnectionFailed, InvalidURL


def test_kombu_redis_refuses_a_secret_path_without_quoting_it() -> None:
    with pytest.raises(InvalidURL, match="database number") as refused:
        brokerkit.connect("kombu+redis://127.0.0.1:1/token=Kx3q?reconnect_timeout=0")
    text = str(refused.value)
    assert "Kx3q" not in text and "token=***" in text, text


@pytest.mark.parametrize(
    ("path", "echo", "expected"),
    [
        ("/vhtoken=Kx3q", "vhost vhtoken=Kx3q not found", "vhost vhtoken=*** not found"),
        ("/vh&token=Kx3q/z", "access to vhost 'vh&token=Kx3q/z' refused", None),
        ("/token=K\u00e9x3q", "repr: 'token=K\\xe9x3q'", None),
        ("/token=Kx3q", "just the value Kx3q, quoted Kx3q", None),
        ("/token=a%41Kx3q", "double decoded: token=aAKx3q", None),
    ],
)
def test_a_driver_message_echoing_a_secret_path_is_masked(
    path: str, echo: str, expected: str | None
) -> None:
    from brokerkit._secret_options import hide_path  # (new with the fix)

    url = BrokerURL(scheme="kombu+amqp", host="h", path=path)
    hidden = hide_path(echo, url)
    assert "Kx3q" not in hidden and "x3q" not in hidden, hidden
    assert expected is None or hidden == expected, hidden
    assert hide_path(echo, BrokerURL(scheme="kombu+amqp", host="h", path="/plain")) == echo


@pytest.mark.parametrize("form", ["r27b{tag}token=Kx3qVH{tag}", "r27b{tag}%26token=Kx3qVH{tag}"])
def test_rabbitmqs_vhost_not_found_reply_does_not_show_the_secret(form: str) -> None:
    # a vhost that does not exist: nothing is created on the shared RabbitMQ
    tag = uuid.uuid4().hex[:8]
    vhost = form.format(tag=tag)
    url = f"kombu+amqp://guest:guest@127.0.0.1:5672/{vhost}?reconnect_timeout=0"
    with pytest.raises(ConnectionFailed) as failed:
        brokerkit.connect(url)
    text = str(failed.value)
    assert "Kx3q" not in text and f"VH{tag}" not in text, text
    assert "token=***" in text, text
