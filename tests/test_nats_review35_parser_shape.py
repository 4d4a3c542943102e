"""brokerkit's NATS connection runs nats-py's parser with its own ``MSG`` / ``HMSG``
expressions (``backends/nats/_subjects.py``) only where nats-py's own read a protocol
line into the same groups: a nats-py whose expressions changed shape (other groups)
is run as it is, and that is logged (once: the choice is made at import), rather than
have its code unpack groups of another shape (a silent misparse). Against the real NATS
server, both ways deliver.

Monkeypatching nats-py's module global here is a test of brokerkit's guard (what a
future nats-py would look like), not a mock of a broker."""

from __future__ import annotations

import asyncio
import logging
import re

import nats.protocol.parser
import pytest

from brokerkit.backends.nats import _subjects

#: nats-py's MSG_RE with its groups changed: the reply subject is one group, and
#: ``groups()`` holds four values where the parser unpacks five.
OTHER_SHAPE = re.compile(rb"\AMSG\s+(\S+)\s+(\S+)\s+(?:(\S+)\s+)?(\d+)\r\n")
#: ... or its groups named (read by name, which brokerkit's expression cannot answer)
NAMED = re.compile(
    rb"\AMSG\s+(?P<subject>\S+)\s+(?P<sid>\S+)\s+((?P<reply>\S+)\s+)?(?P<size>\d+)\r\n"
)


def _round_trip(url: str, subject: str, *, headers: bool = True) -> tuple[str, bytes, str]:
    """A message published and received over a brokerkit NATS connection (subject,
    data, reply), and the class of the connection's parser. With headers, the server
    writes an HMSG line; without, a MSG line."""
    sent = {"k": "v"} if headers else None

    async def main() -> tuple[str, bytes, str]:
        nc = await _subjects.connect(servers=[url], allow_reconnect=False)
        try:
            sub = await nc.subscribe(subject)
            await nc.publish(subject, b"hello", reply="_INBOX.obs35", headers=sent)
            msg = await sub.next_msg(timeout=10)
            assert msg.headers == sent
            return msg.subject, msg.data, msg.reply + " " + type(nc._ps).__module__
        finally:
            await nc.close()

    return asyncio.run(main())


@pytest.mark.parametrize("theirs", [OTHER_SHAPE, NAMED], ids=["groups", "named"])
def test_nats_pys_expressions_of_another_shape_are_left_to_nats_py(
    caplog: pytest.LogCaptureFixture, nats_url: str, theirs: re.Pattern[bytes]
) -> None:
    original = nats.protocol.parser.Parser
    with pytest.MonkeyPatch.context() as patch, caplog.at_level(logging.WARNING, "brokerkit.nats"):
        patch.setattr(nats.protocol.parser, "MSG_RE", theirs)
        # before: brokerkit's Parser, nats-py's code run with brokerkit's expressions
        assert _subjects._parser_class() is original
        [record] = [r for r in caplog.records if r.name == "brokerkit.nats"]
        assert record.levelno == logging.WARNING
        assert "MSG_RE" in record.getMessage()
        # the connections use it (as they would have had it been chosen at import),
        # and work: with headers, the server writes HMSG lines, which the patched MSG_RE
        # does not read; without, MSG lines, which it reads (NAMED only: nats-py's code
        # as installed unpacks NAMED's groups by position, OTHER_SHAPE's not at all, as
        # only a nats-py whose code changed with its expression would)
        patch.setattr(_subjects, "_Parser", _subjects._parser_class())
        caplog.clear()
        first = _round_trip(nats_url, "obs35.shape.other")
        second = _round_trip(nats_url, "obs35.shape.other2")
        plain = (
            _round_trip(nats_url, "obs35.shape.plain", headers=False) if theirs is NAMED else None
        )
        assert [r for r in caplog.records if r.name == "brokerkit.nats"] == []
    assert first == ("obs35.shape.other", b"hello", "_INBOX.obs35 nats.protocol.parser")
    assert second[0] == "obs35.shape.other2"
    if plain is not None:
        assert plain == ("obs35.shape.plain", b"hello", "_INBOX.obs35 nats.protocol.parser")


def _closure_parse() -> object:
    """A parse function naming MSG_RE and HMSG_RE, but a closure (it reads ``state``
    from its enclosing function): its globals cannot simply be substituted."""
    state = b""

    def parse(self: object, data: bytes = b"") -> None:
        del self
        MSG_RE.match(state + data)  # type: ignore[name-defined]  # noqa: F821
        HMSG_RE.match(data)  # type: ignore[name-defined]  # noqa: F821

    return parse


def test_a_closure_parse_is_left_to_nats_py_and_the_warning_says_why(
    caplog: pytest.LogCaptureFixture,
) -> None:
    original = nats.protocol.parser.Parser
    with pytest.MonkeyPatch.context() as patch, caplog.at_level(logging.WARNING, "brokerkit.nats"):
        patch.setattr(original, "parse", _closure_parse())
        assert _subjects._parser_class() is original
    [record] = [r for r in caplog.records if r.name == "brokerkit.nats"]
    message = record.getMessage()
    assert "closure" in message
    assert "reads no MSG_RE" not in message  # it does read them


def test_nats_pys_expressions_of_the_known_shape_get_brokerkits(
    caplog: pytest.LogCaptureFixture, nats_url: str
) -> None:
    with caplog.at_level(logging.WARNING, logger="brokerkit.nats"):
        parser = _subjects._parser_class()
    assert parser is not nats.protocol.parser.Parser
    assert issubclass(parser, nats.protocol.parser.Parser)
    assert parser.parse.__globals__["MSG_RE"] is _subjects._MSG
    assert [r for r in caplog.records if r.name == "brokerkit.nats"] == []
    subject, data, reply_and_parser = _round_trip(nats_url, "obs35.shape.known")
    assert (subject, data) == ("obs35.shape.known", b"hello")
    assert reply_and_parser == "_INBOX.obs35 brokerkit.backends.nats._subjects"
