"""Edges of URLs and their options: a secret in the query string that a parser would
read otherwise than written, a password holding ':' in a URL without a scheme, one
reading of booleans and of empty values, typos of the driver's own options, Unix
sockets and port 0."""

from __future__ import annotations

from urllib.parse import quote

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import brokerkit
from brokerkit import BrokerURL, InvalidOption, InvalidURL, UnknownScheme
from brokerkit.backends.redis._deployment import Deployment
from brokerkit.backends.redis._options import RedisOptions
from brokerkit.cli._scratch import remove_keys
from tests.redis_cluster import RedisClusterSet

#: In every generated secret, so that "no part of the secret is shown" can be checked
#: without a coincidence: the messages under test never hold it.
_MARK = "\u00a7Q7"

_SENTINEL = "redis+stream://127.0.0.1:1/0?sentinel=m&sentinel_password="


def _hidden(secret_parts: list[str], text: str) -> bool:
    return not any(part in text or quote(part, safe="") in text for part in secret_parts)


# -- 3. a secret in the query string is read as written, or refused unseen ----------------


@pytest.mark.parametrize(
    ("secret", "parts", "words"),
    [
        ("Zm9vQ+YmFyQ/cXV4==", ["Zm9vQ", "YmFyQ"], "raw '\\+'"),
        ("s3cr3tA#Et-tail", ["s3cr3tA", "Et-tail"], "raw '#'"),
        ("s3cr3tA&Et-tail-of-the-password", ["s3cr3tA", "Et-tail"], "raw '&'"),
        ("s3cr3tA&Et-tail=x", ["s3cr3tA", "Et-tail"], "raw '&'"),
        ("s3cr3tA&", ["s3cr3tA"], "raw '&'"),
    ],
)
def test_a_query_secret_a_parser_would_misread_is_refused_unseen(
    secret: str, parts: list[str], words: str
) -> None:
    with pytest.raises(InvalidURL, match=words) as refused:
        brokerkit.connect(_SENTINEL + secret)
    message = str(refused.value)
    assert "sentinel_password" in message and "percent-encode" in message
    assert _hidden(parts, message), message
    encoded = BrokerURL.parse(_SENTINEL + quote(secret, safe=""))
    assert encoded.query["sentinel_password"] == secret
    assert _hidden(parts, str(encoded)) and _hidden(parts, repr(encoded))


def test_an_unknown_option_right_after_a_secret_is_not_quoted() -> None:
    # "s3cr3tA&etail=x": the '&' may be part of the password, so "etail" may be too
    with pytest.raises(InvalidOption, match="follows 'sentinel_password'") as refused:
        brokerkit.connect(_SENTINEL + "s3cr3tA&etail=x")
    message = str(refused.value)
    assert "etail" not in message and "s3cr3tA" not in message
    assert "%26" in message and "valid options" in message


def test_a_bad_value_right_after_a_secret_is_not_quoted() -> None:
    with pytest.raises(InvalidOption, match="replicas") as refused:
        brokerkit.connect(_SENTINEL + "s3cr3tA&replicas=tail0fit")
    assert "tail0fit" not in str(refused.value)


def test_options_after_a_secret_still_work() -> None:
    url = BrokerURL.parse(_SENTINEL + "s3cr3tA&prefix=shop&token=x%2By&replicas=1")
    assert url.query["sentinel_password"] == "s3cr3tA" and url.query["token"] == "x+y"
    assert url.query["prefix"] == "shop" and url.query["replicas"] == "1"
    # shown up to the secret's name: what follows it may be the end of its value
    assert str(url) == "redis+stream://127.0.0.1:1/0?sentinel=m&sentinel_password=***"


#: Secrets of any characters but lowercase letters and "_": a part of one after "&"
#: can never look like an option name, so it is either read whole or refused.
_query_secrets = st.builds(
    lambda a, b: a + _MARK + b,
    *[
        st.text(
            alphabet=st.characters(
                blacklist_categories=("Cs", "Cc", "Ll"), blacklist_characters="_%"
            ),
            max_size=12,
        )
    ]
    * 2,
)


@settings(max_examples=300, deadline=None)
@given(
    secret=_query_secrets,
    key=st.sampled_from(["sentinel_password", "token", "client_secret"]),
    after=st.sampled_from(["", "&prefix=x", "#frag"]),
)
def test_a_raw_query_secret_is_read_whole_or_refused_unseen(
    secret: str, key: str, after: str
) -> None:
    text = f"redis+stream://127.0.0.1:1/0?sentinel=m&{key}={secret}{after}"
    try:
        url = BrokerURL.parse(text)
    except InvalidURL as exc:
        refused = str(exc)
    else:
        refused = ""
    assert _MARK not in refused and quote(_MARK) not in refused, refused
    if refused:
        return
    assert url.query[key] == secret
    assert BrokerURL.parse(url.render(hide_password=False)) == url  # a space is no '+'
    for shown in (str(url), repr(url)):
        assert _MARK not in shown and quote(_MARK) not in shown, shown


# -- 6. a URL without a scheme whose password holds ':' ----------------------------------

_colon_passwords = st.lists(
    st.builds(
        lambda a, b: a + _MARK + b,
        st.text(alphabet=st.characters(blacklist_categories=("Cs", "Cc")), max_size=6),
        st.text(alphabet=st.characters(blacklist_categories=("Cs", "Cc")), max_size=6),
    ),
    min_size=2,
    max_size=4,
).map(":".join)


@settings(max_examples=300, deadline=None)
@given(
    password=_colon_passwords,
    form=st.sampled_from(
        [
            "app:{pw}@cache:6379/0",
            "app:{pw}@cache",
            "redis+stream:app:{pw}@cache/0",
            "redis+stream:/app:{pw}@cache/0",
            ":{pw}@cache/0",
        ]
    ),
)
def test_a_password_with_colons_in_a_url_without_scheme_never_shows(
    password: str, form: str
) -> None:
    with pytest.raises(InvalidURL) as refused:
        brokerkit.connect(form.format(pw=password))
    message = str(refused.value)
    assert _MARK not in message and quote(_MARK) not in message, message


def test_a_scheme_less_url_keeps_the_user_name_and_masks_the_whole_password() -> None:
    with pytest.raises(InvalidURL) as refused:
        brokerkit.connect("app:pass:word-SECRET@cache:6379/0")
    message = str(refused.value)
    assert "'app:***@cache:6379/0'" in message
    assert "pass" not in message and "SECRET" not in message


# -- 4. one reading of booleans, with or without options ---------------------------------


@pytest.mark.parametrize("value", ["True", "TRUE", "On", "yes", "1"])
def test_deployment_reads_cluster_as_the_options_do(value: str) -> None:
    url = BrokerURL.parse(f"redis+stream://h1:7000,h2:7001/0?cluster={value}")
    options = RedisOptions.build(url.query, {}, backend="redis+stream")
    assert options.cluster is True
    assert Deployment.of(url, options).kind == Deployment.of(url).kind == "cluster"


def test_deployment_without_options_refuses_what_the_options_refuse() -> None:
    with pytest.raises(InvalidOption, match="cluster"):
        Deployment.of(BrokerURL.parse("redis+stream://h1:7000/0?cluster=maybe"))


@pytest.mark.parametrize("seeds", [1, 3])
def test_scratch_keys_are_removed_from_every_master_with_cluster_true_capitalised(
    redis_cluster: RedisClusterSet, prefix: str, seeds: int
) -> None:
    client = redis_cluster.client()
    try:
        keys = [f"{prefix}:k{i}" for i in range(40)]  # spread over every slot range
        for key in keys:
            client.set(key, 1)
        hosts = ",".join(f"127.0.0.1:{node.port}" for node in redis_cluster.nodes[:seeds])
        url = BrokerURL.parse(f"redis+stream://{hosts}/0?cluster=True")
        assert remove_keys(url, prefix) == 40
        assert not any(client.exists(k) for k in keys)
    finally:
        for key in keys:
            client.delete(key)
        client.close()


# -- 5. an empty sentinel= is refused, not read as "no Sentinel" --------------------------


@pytest.mark.parametrize(
    ("url", "words"),
    [
        ("redis+stream://127.0.0.1:1/0?sentinel=", "must name the master"),
        ("redis+stream://s1:26379,s2:26379/0?sentinel=", "must name the master"),
        ("redis+list://127.0.0.1:1/0?sentinel=&sentinel_password=x", "must name the master"),
    ],
)
def test_an_empty_sentinel_is_refused(url: str, words: str) -> None:
    with pytest.raises(InvalidOption, match=words):
        brokerkit.connect(url)


@pytest.mark.parametrize("option", ["queue_key", "stream_key", "raw_content_type"])
def test_another_empty_text_option_still_means_its_default(option: str) -> None:
    """Only sentinel= refuses an empty value: an empty queue_key= (a templated variable
    left unset, as existing configurations have it) still means the default."""
    scheme = "redis+stream" if option == "stream_key" else "redis+list"
    with brokerkit.connect(f"{scheme}://127.0.0.1:1/0?{option}=") as broker:
        assert getattr(broker.options, option) is None


def test_an_empty_sentinel_keyword_is_refused() -> None:
    with pytest.raises(InvalidOption, match="must name the master"):
        brokerkit.connect("redis+stream://127.0.0.1:1/0", sentinel="")


def test_an_empty_sentinel_is_refused_without_options_too() -> None:
    with pytest.raises(InvalidOption, match="must name the master"):
        Deployment.of(BrokerURL.parse("redis+stream://127.0.0.1:1/0?sentinel="))


def test_none_still_unsets_an_optional_option() -> None:
    with brokerkit.connect("redis+stream://127.0.0.1:1/0?sentinel=none&maxlen=") as broker:
        assert broker.options.sentinel is None  # type: ignore[attr-defined]
        assert broker.options.maxlen is None  # type: ignore[attr-defined]


# -- 7. a typo of one of the driver's own options ----------------------------------------


@pytest.mark.parametrize(
    ("url", "meant"),
    [
        ("redis+stream://cache/0?socket_timout=5", "socket_timeout"),
        ("rediss+stream://cache/0?ssl_ca_cert=/etc/ca.pem", "ssl_ca_certs"),
        ("redis+list://cache/0?max_connection=10", "max_connections"),
    ],
)
def test_a_typo_of_a_driver_option_suggests_it_and_lists_it(url: str, meant: str) -> None:
    with pytest.raises(InvalidOption, match=f"did you mean '{meant}'") as refused:
        brokerkit.connect(url)
    listed = str(refused.value).split("did you mean", 1)[1]
    assert meant in listed.split("?", 1)[1] and "prefix" in listed


def test_a_driver_option_given_as_a_keyword_says_where_it_goes() -> None:
    with pytest.raises(InvalidOption, match="query") as refused:
        brokerkit.connect("redis+stream://cache/0", socket_timeout=5)
    assert "socket_timeout" in str(refused.value)


# -- 9. Unix sockets, and port 0 ---------------------------------------------------------


def test_a_unix_socket_url_says_it_is_not_supported() -> None:
    with pytest.raises(UnknownScheme) as refused:
        brokerkit.connect("unix:///tmp/redis.sock")
    message = str(refused.value)
    assert "Unix sockets are not supported" in message
    assert "'redis+list'" not in message  # no hint that cannot name a socket


@pytest.mark.parametrize(
    "url",
    [
        "redis+stream://h:0/0",
        "redis+list://user:hunter2@h:0/0",
        "redis+stream://h1:7000,h2:0/0?cluster=true",
        "redis+stream://h:65536/0",
    ],
)
def test_port_0_and_ports_out_of_range_are_refused(url: str) -> None:
    with pytest.raises(InvalidURL, match="from 1 to 65535") as refused:
        brokerkit.connect(url)
    assert "hunter2" not in str(refused.value)


def test_a_url_built_with_port_0_is_refused() -> None:
    with pytest.raises(InvalidURL, match="from 1 to 65535"):
        BrokerURL(scheme="redis+stream", host="h", port=0, path="/0")
    with pytest.raises(InvalidURL, match="from 1 to 65535"):
        BrokerURL(scheme="redis+stream", host="h", more_hosts=(("h2", 0),), path="/0")
