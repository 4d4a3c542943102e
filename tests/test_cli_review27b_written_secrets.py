"""The CLI masks a URL's secrets as written in the URL too, as docs/cli.md promises
("decoded or as written"): a password percent-encoded in lower case (``p%2fss``, which
``quote`` writes ``p%2Fss``) and a secret in the path as written (``/token=vh%30st``)
were masked only decoded or re-encoded, the written forms being read from the query
alone."""

from __future__ import annotations

import pytest

from brokerkit.cli._output import redact


@pytest.mark.parametrize(
    ("url", "said", "hidden"),
    [
        ("redis://:p%2fss@h/0", "password p%2fss refused", "p%2fss"),
        ("redis://u:Pw%3dX%2f9@h/0", "bad password Pw%3dX%2f9", "Pw%3dX%2f9"),
        ("nats://t%6fken9x@h:4222", "Authorization Violation for t%6fken9x", "t%6fken9x"),
        (
            "kombu+amqp://guest:pw@host/token=vh%30stSecret",
            "vhost vh%30stSecret not found",
            "vh%30stSecret",
        ),
        (
            "kombu+amqp://guest:pw@host/tok%65n=vh%30stSecret",
            "vhost tok%65n=vh%30stSecret not found",
            "vh%30stSecret",
        ),
        (
            "memory://shop/token=S%65cretX?max_size=100000",
            "no such store S%65cretX?max_size=100000 here",
            "S%65cretX",
        ),
    ],
)
def test_a_secret_is_masked_as_written(url: str, said: str, hidden: str) -> None:
    masked = redact(said, [url])
    assert hidden not in masked, masked
    assert "***" in masked, masked


def test_a_user_name_that_is_not_a_secret_stays() -> None:
    assert redact("user al%69ce refused", ["nats://al%69ce:pw9x@h:4222"]) == (
        "user al%69ce refused"
    )


def test_what_follows_a_path_secret_is_masked_as_written() -> None:
    url = "kombu+amqp://guest:pw@host/token=vh%30st?prefetch_count=1%30"
    masked = redact("vhost vh%30st?prefetch_count=1%30 and 1%30", [url])
    assert "vh%30st" not in masked and "prefetch_count=1%30" not in masked, masked
