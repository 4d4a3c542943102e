"""What a redis+list consumer keeps between its calls: when it next looks after leases
and held messages."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from brokerkit._acompat import Lock
from brokerkit.backends.redis._client_async import Reconnector
from brokerkit.backends.redis._held_async import AsyncReader
from brokerkit.backends.redis.list.plan import TopicPlan

if TYPE_CHECKING:
    from brokerkit.backends.redis.list.woken_async import PendingLease

__all__ = ["ConsumerState"]


class ConsumerState:
    """The state of one subscription. A delivery's receipt is the string
    ``<nonce><i>:<consumer>``, the name of its lease in Redis (the nonce is its
    fetch's, see :func:`.plan.new_nonces`)."""

    def __init__(
        self, plan: TopicPlan, reconnector: Reconnector, consumer: str, reader: AsyncReader
    ) -> None:
        self.plan = plan
        #: The connection its fetches go on (see :mod:`.._held_async`).
        self.reader = reader
        self.keys = plan.keys
        #: The ``KEYS`` of this consumer's fetches (but the batch), and where its
        #: BLMOVE moves to.
        self.fetch_keys = plan.keys_for((consumer,))
        self.processing = plan.keys.processing(consumer)
        self.reconnector = reconnector
        self.next_maintenance = 0.0
        #: When to look for held messages that became due (see ``delay_poll_interval``).
        self.next_release = 0.0
        #: When the next held message this consumer knows of is due (monotonic): a
        #: wake-up for it is kept to the millisecond.
        self.due_at = math.inf
        self.heartbeat_at = float("-inf")
        self.idle = False
        #: The mean size of the elements of the last fetch (0: none yet): a fetch of big
        #: ones takes fewer (see FETCH).
        self.element_size = 0
        #: Whether the server refused a fetch by moves (see FETCH, *Moves*): an ACL
        #: without ``RENAMENX``, ``EXEC`` or ``MULTI``; then every fetch leases by the
        #: script alone.
        self.moves_refused = False
        #: The receipts of the last fetch, in order, and per batch its name and minus
        #: its size: an ack of just these receipts names each batch alone (see
        #: SETTLE). One tuple, replaced whole: another thread may be settling.
        self.fetched: tuple[list[str], list[str | int]] = ([], [])
        self.reconcile = True
        #: The FETCH call leasing an element handed out before its reply was read, and
        #: the lock of whoever reads it (see :mod:`.woken_async`).
        self.pending: PendingLease | None = None
        self.confirm_lock = Lock()
        #: Held by the consumer's fetch (one at a time: see ``_fetch``).
        self.fetch_lock = Lock()
        #: Deliveries that call leased behind the one it handed out, for the next fetch.
        self.early: list[Any] = []
