"""Property: a password, a NATS token or a secret query option's value never shows in
what a URL turns into, whatever it holds and whatever else is wrong with the URL: its
``str()`` and ``repr()``, the broker's and its options' ``repr()``, and the error
``connect()`` raises, printed with its whole chain. Percent-encoded secrets of any
characters, and raw ones of punctuation that a URL parser may split them at (every
piece of those is looked for). No server is reached: the URLs name port 1."""

from __future__ import annotations

import re
import traceback
from urllib.parse import quote

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import brokerkit
from brokerkit._url import BrokerURL

#: Schemes whose connect() does no I/O, or fails at once on port 1.
CONNECTED = ("redis+stream", "rediss+stream", "redis+pubsub", "nats", "nats+core", "memory")
#: Schemes only parsed here (their connect() retries a closed port for a while).
PARSED = ("redis+list", "rediss+list", "kombu+amqp", "kombu+amqps", "kombu+redis", "sqlite")

#: Where the secret goes ({S}: the scheme, {P}: the secret as written, {Q}: a mistake).
PLACES = (
    "{S}://app:{P}@127.0.0.1:1/0{Q}",
    "{S}://:{P}@127.0.0.1:1/0{Q}",
    "{S}://app:{P}@127.0.0.1:1,127.0.0.2:1/0{Q}",
    "{S}://127.0.0.1:1/0?sentinel=m&sentinel_password={P}{T}",
    "{S}://127.0.0.1:1/0?token={P}{T}",
    "{S}://127.0.0.1:1/0?prefix=p&api_key={P}{T}",
    "{S}:/app:{P}@127.0.0.1:1/0{Q}",
    "{S}//app:{P}@127.0.0.1:1/0{Q}",
    "app:{P}@127.0.0.1:1/0{Q}",
    "{S}://app:{P}@127.0.0.1:99999/0{Q}",
    "{S}://app:{P}@[::1:1/0{Q}",
    "{S}://127.0.0.1:1/vh/token={P}{Q}",
    "{S}://127.0.0.1:1/0&token={P}{Q}",
    "{S}://127.0.0.1:1/0?sentinel=m?sentinel_password={P}{T}",
)
#: A NATS user part alone is a token (elsewhere it is a user name, and shown).
NATS_TOKEN = "{S}://{P}@127.0.0.1:1{Q}"
#: Mistakes after the secret's place: a query of its own ({Q}) or options after it ({T}).
QUERIES = ("", "?bogus=1", "?prefix=a b", "?visibility_timeout=x", "?prefix=a&prefix=b",
           "?sentinel=", "?cluster=maybe", "?max_deliveries=-1", "#frag", "?db=x")  # fmt: skip
TAILS = ("", "&bogus=1", "&prefix=a b", "&visibility_timeout=x", "&prefix=a&prefix=b",
         "&cluster=maybe", "#frag", "&sentinel=", "&db=9999999999",
         "&ssl_ca_certs=/x")  # fmt: skip

_ANY = st.characters(blacklist_categories=("Cs",))
ENCODED = st.text(_ANY, min_size=8, max_size=24).filter(lambda p: len(set(p)) >= 5)
#: Raw secrets: pieces no message holds (letters Q X Z J K V W Y) between punctuation.
_PIECE = st.text(alphabet="QXZJKVWY", min_size=4, max_size=6)
_PUNCTUATION = "!$%&'()*+,-./:;<=>?@[]^_`{|}~#"


def _raw(punctuation: str) -> st.SearchStrategy[str]:
    marks = st.text(alphabet=punctuation, max_size=2)
    return st.lists(st.tuples(_PIECE, marks), min_size=1, max_size=4).map(
        lambda parts: "".join(a + b for a, b in parts)
    )


RAW = _raw(_PUNCTUATION)
#: A NATS token written raw: without ":", which makes what is before it a user name.
RAW_TOKEN = _raw(_PUNCTUATION.replace(":", ""))


def _shown(url: str, scheme: str) -> list[str]:
    """Everything that shows ``url``: parsed, and connected where that is quick."""
    texts: list[str] = []
    try:
        parsed = BrokerURL.parse(url)
        texts += [str(parsed), repr(parsed)]
        if scheme in CONNECTED:
            broker = brokerkit.connect(url, reconnect_timeout=0.2)
            texts += [str(broker), repr(broker), repr(broker.options), str(broker.options)]
            broker.close()
    except Exception as exc:
        texts += ["".join(traceback.format_exception(exc)), repr(exc), repr(exc.args)]
    return texts


def _url(scheme: str, place: str, secret: str, query: str, tail: str) -> str:
    return place.format(S=scheme, P=secret, Q=query, T=tail)


_SETTINGS = settings(
    max_examples=300, deadline=None, database=None, suppress_health_check=list(HealthCheck)
)
_SCHEMES = st.sampled_from(CONNECTED + PARSED)


@_SETTINGS
@given(
    secret=ENCODED,
    scheme=_SCHEMES,
    place=st.sampled_from(PLACES),
    query=st.sampled_from(QUERIES),
    tail=st.sampled_from(TAILS),
)
def test_a_percent_encoded_secret_never_shows(
    secret: str, scheme: str, place: str, query: str, tail: str
) -> None:
    url = _url(scheme, place, quote(secret, safe=""), query, tail)
    for text in _shown(url, scheme):
        for form in {secret, quote(secret, safe=""), quote(secret), repr(secret)[1:-1]}:
            assert form not in text, (url, text)


@_SETTINGS
@given(
    secret=RAW,
    scheme=_SCHEMES,
    place=st.sampled_from(PLACES),
    query=st.sampled_from(QUERIES),
    tail=st.sampled_from(TAILS),
)
def test_no_piece_of_a_raw_secret_ever_shows(
    secret: str, scheme: str, place: str, query: str, tail: str
) -> None:
    url = _url(scheme, place, secret, query, tail)
    for text in _shown(url, scheme):
        for piece in re.findall("[QXZJKVWY]{4,}", secret):
            assert piece not in text, (url, text)


@_SETTINGS
@given(
    secret=st.one_of(ENCODED.map(lambda p: quote(p, safe="")), RAW_TOKEN),
    query=st.sampled_from(QUERIES),
)
def test_a_nats_token_never_shows(secret: str, query: str) -> None:
    url = NATS_TOKEN.format(S="nats", P=secret, Q=query)
    for text in _shown(url, "nats"):
        pieces = re.findall("[QXZJKVWY]{4,}", secret) or [secret]
        for piece in pieces:
            assert piece not in text, (url, text)
