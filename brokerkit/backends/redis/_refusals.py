"""What a connection error's text says TLS refused (a certificate, the handshake, or
TLS itself: a port that does not speak it), and what to do about it. No I/O."""

from __future__ import annotations

import re

from brokerkit.backends.redis._plain_port import NOT_TLS, spoke_tls

__all__ = ["tls_refusal"]

#: What to do about a server certificate that was not accepted.
_TRUST_HINT = "trust its CA with ssl_ca_certs=/path/to/ca.pem (or fix the host name in the URL)"
#: The TLS alerts by which a server refuses the client's certificate (none given where
#: it wants one, one from a CA it does not trust, expired, revoked...), as OpenSSL
#: names them in the client's error (``[SSL: TLSV1_ALERT_UNKNOWN_CA]``).
_CLIENT_CERTIFICATE_ALERTS = re.compile(
    r"ALERT_(?:CERTIFICATE_REQUIRED|UNKNOWN_CA|BAD_CERTIFICATE|CERTIFICATE_UNKNOWN"
    r"|UNSUPPORTED_CERTIFICATE|CERTIFICATE_EXPIRED|CERTIFICATE_REVOKED|ACCESS_DENIED)\]"
)
#: The alert by which a TLS 1.2 server ends a handshake it will not go on with (no
#: client certificate where it wants one, no version or cipher in common).
_HANDSHAKE_ALERTS = re.compile(r"ALERT_(?:HANDSHAKE_FAILURE|PROTOCOL_VERSION)\]")
#: How OpenSSL says that the server's answer to the hello was not TLS (plain Redis
#: answers ``-ERR`` when the hello happens to hold a newline).
_NOT_TLS_ANSWERS = re.compile(r"WRONG_VERSION_NUMBER|PACKET_LENGTH_TOO_LONG|RECORD_LAYER_FAILURE")
#: The server a redis-py connection error names (``Error 1 connecting to h:p.``,
#: ``Error while reading from h:p : ...``).
_FAILED_AT = re.compile(r"(?:connecting to|reading from) (?P<host>\S+):(?P<port>\d+)")
_NOT_TLS_HINT = (
    "use a redis+... URL (no 's') for a port without TLS, or the port the server speaks "
    "TLS on (its tls-port)"
)
_CLIENT_CERTIFICATE_HINT = (
    "give this client a certificate signed by a CA the server trusts, with "
    "ssl_certfile=/path/to/client.pem and ssl_keyfile=/path/to/client.key"
)


def tls_refusal(text: str, *, reached: bool = False) -> tuple[str, str] | None:
    """What a connection error's text says TLS refused, when it does, and what to do
    about it: the server's certificate (an untrusted CA, or a host name it was not
    issued for), this client's (the server's alert), or TLS itself (a port that
    answered in plain text). The probe's verdict (:class:`._plain_port.PlainRedisPort`,
    only ever given of a port never shaken TLS hands with) always is; OpenSSL's "wrong
    version number" is only of a server this process never shook TLS hands with: the
    one the error names, else (``reached``) those of the URL. From one it has, bytes
    that are no TLS are a stream garbled on the way, ridden out as a lost connection.
    ``{}`` in the first is where (``Redis at <url>``, ``the sentinel at <host:port>``).
    Nothing to retry: none of it will change by waiting."""
    if NOT_TLS in text or (_NOT_TLS_ANSWERS.search(text) and not _spoke_tls_at(text, reached)):
        return "{} does not speak TLS on that port (it answered in plain text)", _NOT_TLS_HINT
    if "CERTIFICATE_VERIFY_FAILED" in text or "doesn't match" in text:
        return "the TLS certificate of {} was not accepted", _TRUST_HINT
    if _CLIENT_CERTIFICATE_ALERTS.search(text):
        return "{} refused this client's TLS certificate (or its lack of one)", (
            _CLIENT_CERTIFICATE_HINT
        )
    if _HANDSHAKE_ALERTS.search(text):
        return "{} refused the TLS handshake", (
            f"if it wants a client certificate, {_CLIENT_CERTIFICATE_HINT}; else check "
            "ssl_min_version against the TLS versions it takes"
        )
    return None


def _spoke_tls_at(text: str, reached: bool) -> bool:
    """Whether the server that ``text`` (a connection error) names has shaken TLS hands
    with this process: ``reached`` when it names none."""
    failed = _FAILED_AT.search(text)
    if failed is None:
        return reached
    return spoke_tls(failed.group("host"), int(failed.group("port")))
