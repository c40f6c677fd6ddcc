"""A dict that keeps only the entries added last: the caches kept per
process or per node (session keys, records already checked, reads of the
store) are bounded by a constant, whatever peers send."""

from __future__ import annotations

from typing import TypeVar

K = TypeVar("K")
V = TypeVar("V")


class BoundedDict(dict[K, V]):
    """A dict of at most ``limit`` entries.

    :meth:`remember` adds an entry and, when the dict is full, forgets the
    one added first; reading is a plain dict's. Entries set by other means
    (``d[key] = value``) are not counted against the limit until the next
    :meth:`remember`.
    """

    __slots__ = ("limit",)

    def __init__(self, limit: int) -> None:
        if limit < 1:
            raise ValueError("a bounded dict holds at least one entry")
        super().__init__()
        self.limit = limit

    def remember(self, key: K, value: V) -> None:
        """Add (or replace) ``key``, forgetting the oldest entries over the limit."""
        if key not in self:
            while len(self) >= self.limit:
                del self[next(iter(self))]
        self[key] = value
