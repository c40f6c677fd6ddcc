"""Hedging: how long to wait for a peer before asking another in its place.

A read that waits for every peer waits out the timeout of each dead one. A
hedged read waits for a silent peer only ``HEDGE_FACTOR`` times the round
trip it has seen so far (the slowest answer, or a smoothed mean; never
less than ``HEDGE_FLOOR``, never more than its own stall limit), then goes
on without it; the peer's answer is still used if it comes. The cost of
hedging too early is one more query; of hedging too late, a read as slow
as a timeout. Kademlia's lookup
(:mod:`dhtkit.kademlia.lookup`) and the value layer's quorum reads
(:mod:`dhtkit.quorumread`) share the rule.
"""

from __future__ import annotations

#: A peer is hedged after this many times the round trip seen so far...
HEDGE_FACTOR = 4.0
#: ... but never sooner than this (seconds): a busy host's scheduling jitter.
HEDGE_FLOOR = 0.002


def patience(round_trip: float | None, limit: float) -> float:
    """Seconds to wait for a peer, given the round trip seen so far (None:
    no answer yet) and the most a caller will wait (``limit``)."""
    if round_trip is None:
        return limit
    return min(limit, max(HEDGE_FLOOR, HEDGE_FACTOR * round_trip))
