"""Replies kept to answer a retried query again (at-most-once calls).

A query whose reply was lost is resent with the same transaction id. For a
method that is not idempotent (a compare-and-swap write, a store) the
handler must not run a second time: the first reply is sent again instead.
:class:`AnswerCache` keeps those replies for a while, bounded in number, the
oldest forgotten first.
"""

from __future__ import annotations

from collections import OrderedDict

AnswerKey = tuple[bytes, int]
"""(the querier's public key, the query's transaction id)."""

IN_PROGRESS = b""
"""What :meth:`AnswerCache.seen` returns while the handler is still working."""


class AnswerCache:
    """At most ``max_entries`` replies, each kept ``ttl`` seconds.

    :param ttl: seconds a reply is kept after its query first arrived.
    :param max_entries: replies kept at most; the oldest go first.
    """

    def __init__(self, ttl: float, max_entries: int) -> None:
        self.ttl = ttl
        self.max_entries = max_entries
        # key -> (expiry, the reply datagram, or None while the handler works)
        self._entries: OrderedDict[AnswerKey, tuple[float, bytes | None]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def seen(self, key: AnswerKey, now: float) -> bytes | None:
        """The reply to send again for a retry, :data:`IN_PROGRESS`, or None.

        None means the query is new (or its reply expired): the caller runs
        the handler, after :meth:`claim`.
        """
        known = self._entries.get(key)
        if known is None or known[0] <= now:
            return None
        return IN_PROGRESS if known[1] is None else known[1]

    def claim(self, key: AnswerKey, now: float) -> None:
        """Note that the handler runs for ``key``; its reply comes by :meth:`fill`."""
        entries = self._entries
        entries[key] = (now + self.ttl, None)
        entries.move_to_end(key)
        if len(entries) > self.max_entries:
            entries.popitem(last=False)
        # Kept in the order claimed, so with the same ttl in expiry order:
        # the replies no retry can ask for any more go now, not when the
        # cache is full (a node that stores rarely kept them for hours).
        while entries:
            oldest = next(iter(entries.values()))
            if oldest[0] > now:
                break
            entries.popitem(last=False)

    def fill(self, key: AnswerKey, reply: bytes) -> None:
        """Keep ``reply`` for the retries of a claimed query (if still kept)."""
        known = self._entries.get(key)
        if known is not None:
            self._entries[key] = (known[0], reply)
