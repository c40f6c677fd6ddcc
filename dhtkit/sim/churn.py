"""Churn as sessions: each node stays up for an exponential time, then leaves.

``dhtkit sim OVERLAY --churn F`` means that a fraction ``F`` of the nodes
leaves per simulated hour: every node's session lasts an exponentially
distributed time of mean ``1/F`` hours (the memoryless model of Rhea et
al., "Handling churn in a DHT", 2004), it leaves without a goodbye, and a
new node (a fresh identity) joins in its place, so that the size of the
network stays about the same while its members turn over.
"""

from __future__ import annotations

import random

import attrs

__all__ = ["HOUR", "SessionChurn"]

#: Seconds in a simulated hour: churn rates are per hour.
HOUR = 3600.0


@attrs.frozen
class SessionChurn:
    """Sessions whose lengths are exponential with a mean of ``1 / per_hour`` hours.

    :param per_hour: the fraction of the nodes that leaves per simulated hour (> 0).
    """

    per_hour: float = attrs.field(validator=attrs.validators.gt(0.0))

    @property
    def mean_lifetime(self) -> float:
        """The mean session, in seconds."""
        return HOUR / self.per_hour

    def session(self, rng: random.Random) -> float:
        """Seconds one session lasts: a fresh exponential draw from ``rng``."""
        return rng.expovariate(self.per_hour / HOUR)
