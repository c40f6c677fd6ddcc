"""Hedging: how long to wait for a peer before asking another in its place.

A read that waits for every peer waits out the timeout of each dead one. A
hedged read waits for a silent peer only as long as an answer could
plausibly take, then goes on without it; the peer's answer is still used if
it comes. How long that is follows TCP's retransmission timer (RFC 6298):
a smoothed round trip plus four times its mean deviation, or plus
``HEDGE_FLOOR`` (the reactor's clock granularity) where that is more, and
never more than the caller's own limit. The cost of hedging too early is one more query; of
hedging too late, a read as slow as a timeout. Kademlia's lookup
(:mod:`dhtkit.kademlia.lookup`) and the value layer's quorum reads
(:mod:`dhtkit.quorumread`) share the rule.

Where the network says at once that nothing answers at a peer's address
(:mod:`dhtkit.udpport`), there is nothing to wait for: those two hedge such
a peer then and there, and the routes of Chord and Pastry, which ask one
node at a time, go on past it with :func:`hinted`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import attrs
from twisted.internet import defer
from twisted.python.failure import Failure

from dhtkit.contact import Address
from dhtkit.rpcerrors import Unreachable
from dhtkit.transport import Watch

_T = TypeVar("_T")

#: The least margin past the smoothed round trip (seconds): RFC 6298's G,
#: here the reactor's clock granularity (epoll waits in whole milliseconds).
HEDGE_FLOOR = 0.001
#: The weight of a new sample in the smoothed round trip, and in its deviation.
_GAIN, _VAR_GAIN = 0.125, 0.25


@attrs.define
class RoundTrip:
    """A smoothed round trip and its deviation (seconds), as RFC 6298 keeps them."""

    smoothed: float | None = None
    deviation: float = 0.0

    def observe(self, rtt: float) -> None:
        """Learn from one answer that took ``rtt`` seconds."""
        if self.smoothed is None:
            self.smoothed, self.deviation = rtt, rtt / 2
            return
        self.deviation += _VAR_GAIN * (abs(self.smoothed - rtt) - self.deviation)
        self.smoothed += _GAIN * (rtt - self.smoothed)

    def patience(self, limit: float) -> float:
        """Seconds to wait for a peer, at most ``limit`` (all of it while no
        answer has been seen)."""
        if self.smoothed is None:
            return limit
        # RFC 6298's SRTT + max(G, 4 * RTTVAR): on a path whose round trip
        # never varies, an answer due at exactly the smoothed time is not
        # given up on at that very moment.
        return min(limit, self.smoothed + max(HEDGE_FLOOR, 4 * self.deviation))


def hinted(
    watch: Watch,
    address: Address,
    call: defer.Deferred[_T],
    late: Callable[[Any], None],
) -> defer.Deferred[_T]:
    """``call``'s outcome; or, as soon as ``watch`` hears that nothing
    answers at ``address``, an :class:`~dhtkit.rpcerrors.Unreachable`
    failure, after which ``late`` gets the call's own outcome (a result or
    a :class:`~twisted.python.failure.Failure`) when it comes.

    A hint may be forged, so a caller moves on past the peer for now but
    learns only from ``late`` whether it failed.
    """
    out: defer.Deferred[_T] = defer.Deferred()

    def unreachable() -> None:
        if not out.called:
            out.errback(Unreachable("{}:{} unreachable".format(*address)))

    unwatch = watch(address, unreachable)

    def done(result: Any) -> None:
        unwatch()
        if out.called:
            late(result)
        elif isinstance(result, Failure):
            out.errback(result)
        else:
            out.callback(result)

    call.addBoth(done)
    return out
