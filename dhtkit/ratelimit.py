"""Per-source token buckets, checked before a datagram is even decoded.

A source is any hashable value: a host, or a (host, port) pair where ports
tell nodes apart (loopback).
"""

from __future__ import annotations

from collections.abc import Hashable

#: Below this many sources the table is not swept.
_FIRST_SWEEP = 64


class RateLimiter:
    """A token bucket per source host.

    Each source may send ``burst`` datagrams at once and ``rate`` per second
    after that. Buckets that have refilled carry no information and are
    forgotten whenever the table has doubled since the last such sweep (so
    it holds about twice the sources that sent lately, for amortized O(1)),
    and the table never grows past ``max_sources``, so a spray of spoofed
    sources costs bounded memory.
    """

    __slots__ = ("_buckets", "_sweep_at", "burst", "max_sources", "rate")

    def __init__(self, rate: float, burst: float, max_sources: int = 65536) -> None:
        if rate <= 0 or burst < 1:
            raise ValueError("a rate limit needs rate > 0 and burst >= 1")
        self.rate = float(rate)
        self.burst = float(burst)
        self.max_sources = max_sources
        # source -> [tokens, time of last refill]
        self._buckets: dict[Hashable, list[float]] = {}
        # The table's size at which refilled buckets are next swept away.
        self._sweep_at = _FIRST_SWEEP

    def allow(self, source: Hashable, now: float) -> bool:
        """Take one token from ``source``'s bucket; False when it is empty."""
        bucket = self._buckets.get(source)
        if bucket is None:
            size = len(self._buckets)
            if size >= self._sweep_at or size >= self.max_sources:
                self._prune(now)
                self._sweep_at = max(_FIRST_SWEEP, 2 * len(self._buckets))
            self._buckets[source] = [self.burst - 1.0, now]
            return True
        tokens = bucket[0] + (now - bucket[1]) * self.rate
        if tokens > self.burst:
            tokens = self.burst
        bucket[1] = now
        if tokens < 1.0:
            bucket[0] = tokens
            return False
        bucket[0] = tokens - 1.0
        return True

    def _prune(self, now: float) -> None:
        # A full bucket carries no information: dropping it changes nothing.
        full = [
            source
            for source, (tokens, last) in self._buckets.items()
            if tokens + (now - last) * self.rate >= self.burst
        ]
        for source in full:
            del self._buckets[source]
        if len(self._buckets) >= self.max_sources:
            # Still full of busy sources: forget the oldest half rather than
            # grow without bound.
            for source in list(self._buckets)[: len(self._buckets) // 2]:
                del self._buckets[source]

    def __len__(self) -> int:
        return len(self._buckets)
