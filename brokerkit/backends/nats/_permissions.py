"""A NATS server's permissions violations, made :class:`~brokerkit.PermissionDenied`:
the requests of a connection that a violation concerns fail at once (they would wait in
vain until ``reconnect_timeout``), and whoever watches its subject (a reader, for its
pulls and its inbox) is told.

:class:`Permissions` is the part of :class:`~brokerkit.backends.nats._client.NatsClient`
that does it, over the requests waiting for their reply that the client keeps.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from nats.aio.msg import Msg

from brokerkit.exceptions import PermissionDenied

__all__ = ["Permissions"]

#: What nats-py makes of the server's ``-ERR 'Permissions Violation for Publish to
#: "<subject>"'`` (and ``Subscription to``, ``Publish with Reply of``): lower-cased.
_VIOLATION = re.compile(
    r'permissions violation for (publish|subscription) (to|with reply of) "([^"]*)"'
)


class Permissions:
    """Permissions violations for :class:`NatsClient`, which sets the attributes below."""

    _inbox: str
    _waiting: dict[str, tuple[str, asyncio.Future[Msg]]]
    _watchers: dict[str, list[tuple[str, Callable[[PermissionDenied], None]]]]

    if TYPE_CHECKING:

        @property
        def server(self) -> str: ...

    def _permission_denied(self, exc: Exception) -> PermissionDenied | None:
        """The server's permissions violation ``exc`` as PermissionDenied, which fails
        every request it concerns at once (they would wait in vain until
        ``reconnect_timeout``) and tells the reader watching its subject; else None.

        The server names the subject (nats-py lower-cases it): that of a request, its
        reply subject, or a subscription (this client's reply inbox: every request
        waits in vain)."""
        found = _VIOLATION.search(str(exc).lower())
        if found is None:
            return None
        kind, how, subject = found.groups()
        replies = f"{self._inbox}.*"
        hit = [
            (request_subject, future)
            for token, (request_subject, future) in self._waiting.items()
            if (kind == "subscription" and subject == replies.lower())
            or (how == "to" and request_subject.lower() == subject)
            or (how == "with reply of" and subject == f"{self._inbox}.{token}".lower())
        ]
        watchers = list(self._watchers.get(subject, ()))
        # The subject as it was sent (nats-py lower-cased the server's).
        named = subject
        if watchers:
            named = watchers[0][0]
        elif kind == "subscription" and subject == replies.lower():
            named = replies
        elif hit and how == "to":
            named = hit[0][0]
        if kind == "subscription":
            operation, phrase = "subscribe", f"subscribe to {named!r}"
        elif how == "to":
            operation, phrase = "publish", f"publish to {named!r}"
        else:
            operation, phrase = "publish", f"publish with the reply subject {named!r}"
        denied = PermissionDenied(
            f"NATS at {self.server} does not let this connection's user {phrase} "
            "(Permissions Violation): grant it in the server's authorization (the "
            "subjects a brokerkit user needs are in docs/backends/nats.md)",
            command=operation,
        )
        for _, future in hit:
            if not future.done():
                future.set_exception(denied)
        for _, told in watchers:
            told(denied)
        return denied

    def watch(self, subjects: Sequence[str], told: Callable[[PermissionDenied], None]) -> None:
        """Call ``told`` with the PermissionDenied of a permissions violation on one of
        ``subjects`` (a publish to it, a reply to it, a subscription to it), as every
        other watcher of that subject is called (the readers of one group share its
        pull subject)."""
        for subject in subjects:
            self._watchers.setdefault(subject.lower(), []).append((subject, told))

    def unwatch(self, subjects: Sequence[str], told: Callable[[PermissionDenied], None]) -> None:
        """Stop calling ``told`` for ``subjects`` (the other watchers stay)."""
        for subject in subjects:
            key = subject.lower()
            kept = [entry for entry in self._watchers.get(key, ()) if entry[1] != told]
            if kept:
                self._watchers[key] = kept
            else:
                self._watchers.pop(key, None)
