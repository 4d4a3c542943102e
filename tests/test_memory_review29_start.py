"""memory://: ``subscribe(start=...)`` is checked as on redis+stream, whether or not the
group exists yet.

memory:// stands in for the other backends in unit tests, so what it accepts must be
what they accept: ``start="bogus"`` on a group that already existed was ignored
without a word (redis+stream refuses it every time), an object that is not a str
raised a bare TypeError, and ``True``, ``2.7``, ``b"3"``, ``" 3 "`` or ``"-2"`` were
read as offsets.
"""

from __future__ import annotations

import asyncio

import pytest

import brokerkit
import brokerkit.aio
from brokerkit.exceptions import InvalidOption

REFUSED = ["bogus", "", "Latest", " 3 ", "-2", "1_0", "٣", 5, True, 2.7, b"3", object()]


def _id(start: object) -> str:
    """The repr, but the same in every xdist worker (object()'s holds its address)."""
    return repr(start) if type(start) is not object else "object()"


@pytest.mark.parametrize("start", REFUSED, ids=_id)
@pytest.mark.parametrize("existing", [False, True], ids=["new group", "existing group"])
def test_a_start_that_is_no_position_is_refused(start: object, existing: bool) -> None:
    with brokerkit.connect("memory://") as broker:
        broker.publish_many("t", ["a", "b", "c"])
        if existing:
            broker.subscribe("t", group="g").close()
        with pytest.raises(InvalidOption, match="start must be 'earliest', 'latest' or a whole"):
            broker.subscribe("t", group="g", start=start)  # type: ignore[arg-type]
        assert [g.name for g in broker.inspect("t").groups] == (["g"] if existing else [])


def test_an_int_offset_is_told_to_be_a_str() -> None:
    with (
        brokerkit.connect("memory://") as broker,
        pytest.raises(InvalidOption, match="an offset is a str: start='1'"),
    ):
        broker.subscribe("t", group="g", start=1)  # type: ignore[arg-type]


@pytest.mark.parametrize(("start", "first"), [("earliest", "a"), ("1", "b"), ("latest", None)])
def test_the_positions_still_work(start: str, first: str | None) -> None:
    with brokerkit.connect("memory://") as broker:
        broker.publish_many("t", ["a", "b", "c"])
        with broker.subscribe("t", group="g", start=start) as subscription:
            delivery = subscription.receive(timeout=0)
            assert (delivery and delivery.body) == first
        # the group exists now: its start is checked, and ignored
        with broker.subscribe("t", group="g", start="earliest") as again:
            assert again.receive(timeout=0) is not None or first is None


def test_asyncio_refuses_the_same() -> None:
    async def main() -> None:
        async with await brokerkit.aio.connect("memory://") as broker:
            await (await broker.subscribe("t", group="g")).close()
            with pytest.raises(InvalidOption, match="start must be"):
                await broker.subscribe("t", group="g", start="bogus")

    asyncio.run(main())
