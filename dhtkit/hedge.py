"""Hedging: how long to wait for a peer before asking another in its place.

A read that waits for every peer waits out the timeout of each dead one. A
hedged read waits for a silent peer only ``HEDGE_FACTOR`` times the slowest
answer it has had so far (never less than ``HEDGE_FLOOR``, never more than
its own stall limit), then goes on without it; the peer's answer is still
used if it comes. The cost of hedging too early is one more query; of
hedging too late, a read as slow as a timeout. Kademlia's lookup
(:mod:`dhtkit.kademlia.lookup`) and the value layer's quorum reads
(:mod:`dhtkit.quorumread`) share the rule.
"""

from __future__ import annotations

#: A peer is hedged after this many times the slowest answer seen so far...
HEDGE_FACTOR = 4.0
#: ... but never sooner than this (seconds): a busy host's scheduling jitter.
HEDGE_FLOOR = 0.002


def patience(slowest: float | None, limit: float) -> float:
    """Seconds to wait for a peer, given the slowest answer so far (None:
    none yet) and the most a caller will wait (``limit``)."""
    if slowest is None:
        return limit
    return min(limit, max(HEDGE_FLOOR, HEDGE_FACTOR * slowest))
