"""Secret options in a broker URL: which option names are secrets, where a secret
option is written (in the query, or typed into the path), and the text of a URL or
message with such a secret masked. No URL parsing of its own (see :mod:`._url`)."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from itertools import pairwise
from typing import TYPE_CHECKING
from urllib.parse import quote, unquote, unquote_plus

if TYPE_CHECKING:
    from brokerkit._url import BrokerURL

__all__ = [
    "MASK",
    "NOT_SECRET_AUTH",
    "SECRET_NAMES_TEXT",
    "SECRET_PAIRS",
    "SECRET_PARTS",
    "SECRET_WORDS",
    "SHORT_VALUE",
    "AfterPathSecret",
    "hide_path",
    "holds_a_secret_option",
    "is_secret",
    "mask_chain",
    "mask_secrets",
    "query_typed_in",
    "secret_in",
    "shown_path",
]

#: What a secret is shown as.
MASK = "***"
#: A value that follows a secret (which may be the end of it) and is shorter than
#: this is masked only as ``name=value`` in a message: alone it would mask every
#: ``1`` of ``127.0.0.1`` (the CLI's masking, of a URL that parses or not).
SHORT_VALUE = 5


class AfterPathSecret(dict[str, str]):
    """The query of a URL whose path holds a secret option (``/token=x``): every option
    in it follows that secret, whose name is :attr:`secret` (see
    :func:`brokerkit._option_secrets.after_secrets`), as it may be the end of its value,
    split at a raw ``?``."""

    def __init__(self, secret: str) -> None:
        super().__init__()
        self.secret = secret


def secret_in(path: str) -> tuple[str, int] | None:
    """The first secret option written in ``path`` (decoded), as its name and the
    index of its ``=``: a ``=`` after a name that :func:`is_secret`, back to the
    ``=``, ``/``, ``&``, ``?`` or ``;`` before it. ``None``
    when the path holds none."""
    start = 0
    for index, char in enumerate(path):
        if char in "/&?;":
            start = index + 1
        elif char == "=":
            if is_secret(path[start:index]):
                return path[start:index], index
            start = index + 1
    return None


def query_typed_in(path: str) -> bool:
    """Whether ``path`` (as written in the URL) holds a secret option after a raw ``&``
    or ``;`` in one of its segments (``/0&token=x``, ``/vh&password=x``): a ``?``
    typed as ``&``, whose secret would otherwise be sent as part of the path (an AMQP
    vhost, which RabbitMQ logs and echoes). A whole segment ``token=x`` (a vhost or a
    memory broker may be so named), and an ``&`` percent-encoded, are taken."""
    for segment in path.split("/"):
        cut = min((i for i in (segment.find("&"), segment.find(";")) if i != -1), default=-1)
        if cut != -1 and any(
            is_secret(unquote(m.group(1))) for m in _PATH_NAME.finditer(segment, cut + 1)
        ):
            return True
    return False


#: A name and its ``=`` in a path segment, back to the ``= & ;`` before it.
_PATH_NAME = re.compile(r"([^=&;]*)=")


def shown_path(path: str) -> str:
    """``path`` as ``str()`` of its URL shows it (not percent-encoded): up to the ``=``
    of a secret option it holds, then ``***`` for the rest; unchanged if it holds
    none."""
    found = secret_in(path)
    return path if found is None else f"{path[: found[1]]}={MASK}"


def hide_path(text: str, url: BrokerURL) -> str:
    """``text`` (a driver's or server's message, which may echo the path: RabbitMQ's
    "vhost ... not found") with the path of ``url``, where it holds a secret option,
    shown as :func:`shown_path` shows it, and any other form of that option's value
    (with what follows it in the path) as ``***``. The path decoded once more is
    masked too (a driver may be given it so: the kombu+amqp vhost)."""
    for path in dict.fromkeys((url.path, unquote(url.path))):
        found = secret_in(path)
        if found is None:
            continue
        for whole in sorted({path, path.lstrip("/")}, key=len, reverse=True):
            if whole:
                text = text.replace(whole, shown_path(whole))
        value = path[found[1] + 1 :]
        forms = {value, quote(value), quote(value, safe=""), repr(value)[1:-1], ascii(value)[1:-1]}
        for form in sorted(forms, key=len, reverse=True):
            if form:
                text = text.replace(form, MASK)
    return text


def mask_secrets(text: str, secrets: Iterable[str | None]) -> str:
    """``text`` (a server's or driver's message, which may echo a credential) with each
    of ``secrets`` shown as ``***``: as written, percent-encoded and escaped as
    ``repr`` escapes it. One of :data:`SHORT_VALUE` characters or more is masked
    wherever it is; a shorter one only where quoted (``'pw'``, ``"pw"``, `` `pw` ``),
    as every ``1`` of ``127.0.0.1`` would be masked otherwise."""
    for secret in sorted({s for s in secrets if s}, key=len, reverse=True):
        forms = {secret, quote(secret), quote(secret, safe=""), repr(secret)[1:-1]}
        for form in sorted(forms, key=len, reverse=True):
            if len(form) >= SHORT_VALUE:
                text = text.replace(form, MASK)
            else:
                for mark in "'\"`":
                    text = text.replace(f"{mark}{form}{mark}", f"{mark}{MASK}{mark}")
    return text


def mask_chain(error: BaseException, mask: Callable[[str], str]) -> None:
    """Apply ``mask`` in place to the text arguments and notes of ``error`` and of every
    exception of its chain (``__cause__``, ``__context__``, which a printed traceback
    shows too). A driver's error is kept as the cause of the library's own, so its
    text must be masked where it is, not only where it is quoted."""
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        masked = tuple(mask(arg) if isinstance(arg, str) else arg for arg in current.args)
        if masked != current.args:
            current.args = masked
        notes = getattr(current, "__notes__", None)
        if isinstance(notes, list):
            notes[:] = [mask(note) if isinstance(note, str) else note for note in notes]
        current = current.__cause__ or current.__context__


def holds_a_secret_option(text: str) -> bool:
    """Whether ``text`` (as written in the URL) holds a raw ``=`` after a name that
    :func:`is_secret` (decoded), back to the ``=`` before it, if any."""
    return any(is_secret(unquote_plus(name)) for name in text.split("=")[:-1])


def is_secret(key: str) -> bool:
    """Whether an option name (a query key, a path's ``name=``, an options field) names
    a secret. The rule, in any case:

    - it holds ``password``, ``passwd``, ``passphrase``, ``pwd``, ``secret`` or
      ``token`` anywhere (``sentinel_password``, ``client_secret``, ``auth_token``);
    - or, split into words at ``_ - .``, spaces and other punctuation and at camelCase
      boundaries (``nkeySeed``: ``nkey seed``; ``APIKey``: ``api key``), one of its
      words is one of :data:`SECRET_WORDS` (``nkey_seed``, ``creds``,
      ``user_credentials``, ``apikey``, ``authkey``, ``authorization``) or starts with
      ``creds`` or ``credential`` (``credsfile``), two words in a row are one of
      :data:`SECRET_PAIRS` (``api_key``, ``API-Keys``, ``private_keys``,
      ``access_key``, ``user_seed``), its last word is ``pass`` or ``pw``
      (``user_pass``, not ``pass_through``), or one of its words is ``auth``
      (``redis_auth``, ``basic_auth``, ``auth_key``, ``auth_header``) unless it is one
      of the names of :data:`NOT_SECRET_AUTH` (``auth_mechanism``, ``authSource``,
      ``tls_client_auth``...).

    Whole words, not parts of them: ``author``, ``authority``, ``authuser``,
    ``oauth_version``, ``credit``, ``seed``, ``seeds``, ``seed_nodes``,
    ``random_seed``, ``monkey_patch`` and ``pass_through`` are no secrets. No option
    the library reads is one but ``sentinel_password``: ``ssl_keyfile`` is a path,
    ``stream_key`` a key's name."""
    lowered = key.lower()
    if any(word in lowered for word in SECRET_PARTS):
        return True
    words = _words(key)
    return (
        any(word in SECRET_WORDS or word.startswith(_SECRET_PREFIXES) for word in words)
        or any(pair in SECRET_PAIRS for pair in pairwise(words))
        or (bool(words) and words[-1] in _LAST_WORDS)
        or ("auth" in words and tuple(words) not in NOT_SECRET_AUTH)
    )


def _words(name: str) -> list[str]:
    """``name``'s words, lowercased: split at every character that is not a letter or
    a digit and at camelCase boundaries (``nkeySeed``, ``APIKey``; ``OAuthVersion``:
    ``oauth version``)."""
    name = name.replace("OAuth", "Oauth")  # one word, not "o auth"
    spaced = _ACRONYM_END.sub(r"\1 \2", _CAMEL.sub(r"\1 \2", name))
    return [word for word in _NON_WORD.split(spaced.lower()) if word]


#: What makes an option name a secret wherever it is in it, as a part of a word too.
SECRET_PARTS = ("password", "passwd", "passphrase", "pwd", "secret", "token")
#: Whole words that make an option name a secret: NATS nkeys and nkey seeds,
#: credentials (files), API, private and access keys written as one word, an
#: authorization header's value.
SECRET_WORDS = frozenset(
    {
        "nkey",
        "nkeys",
        "nkeyseed",
        "nkeysseed",
        "cred",
        "creds",
        "credential",
        "credentials",
        "apikey",
        "apikeys",
        "privatekey",
        "privatekeys",
        "accesskey",
        "accesskeys",
        "authkey",
        "authkeys",
        "authorization",
        "userseed",
    }
)
#: Word starts that make an option name a secret (``credsfile``; not ``cred``, which
#: starts ``credit``).
_SECRET_PREFIXES = ("creds", "credential")
#: Two words in a row that make an option name a secret: API, private and access keys,
#: a NATS user's nkey seed (``user_seed``; ``nkey_seed`` has the word ``nkey``).
SECRET_PAIRS = frozenset(
    {
        ("api", "key"),
        ("api", "keys"),
        ("private", "key"),
        ("private", "keys"),
        ("access", "key"),
        ("access", "keys"),
        ("user", "seed"),
    }
)
#: The option names, as words, holding the word ``auth`` that are no secrets: how to
#: authenticate, not with what (``auth_mechanism``, MongoDB's ``authSource``, NATS's
#: ``no_auth_user``, ``client_auth``, ``tls_client_auth``: whether a client
#: certificate is asked for). Any other name with the word ``auth`` is one
#: (``redis_auth``, ``basic_auth``, ``auth_key``, ``auth_header``, ``auth``).
NOT_SECRET_AUTH = frozenset(
    {
        ("auth", "mechanism"),
        ("auth", "mechanisms"),
        ("auth", "mechanism", "properties"),
        ("auth", "method"),
        ("auth", "methods"),
        ("auth", "type"),
        ("auth", "source"),
        ("auth", "timeout"),
        ("auth", "required"),
        ("auth", "enabled"),
        ("no", "auth", "user"),
        ("client", "auth"),
        ("tls", "client", "auth"),
        ("ssl", "client", "auth"),
    }
)
#: Words that make an option name a secret as its last word (``user_pass``).
_LAST_WORDS = frozenset({"pass", "pw"})
_CAMEL = re.compile(r"([a-z0-9])([A-Z])")
_ACRONYM_END = re.compile(r"([A-Z])([A-Z][a-z])")
_NON_WORD = re.compile(r"[\W_]+")

#: How messages name the secret options: "a name holding ..., then '='".
SECRET_NAMES_TEXT = (
    "a name holding password, passphrase, secret or token, or with the word nkey, "
    "creds, credentials, auth, api_key(s), private_key(s), access_key(s), user_seed "
    "or authorization, or ending in the word pass"
)
