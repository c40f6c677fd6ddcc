"""Latency models: how long a datagram takes from one host to another."""

from __future__ import annotations

import random
from typing import Protocol

import attrs

__all__ = ["ConstantLatency", "LatencyModel", "UniformLatency"]


class LatencyModel(Protocol):
    """How long a datagram takes from one host to another."""

    def delay(self, src_host: str, dst_host: str, rng: random.Random) -> float:
        """Seconds (>= 0) for one datagram; draw any randomness from ``rng``."""


@attrs.frozen
class ConstantLatency:
    """Every datagram takes the same time."""

    seconds: float = attrs.field(validator=attrs.validators.ge(0.0))

    def delay(self, src_host: str, dst_host: str, rng: random.Random) -> float:
        """``seconds``, whoever the hosts."""
        return self.seconds


@attrs.frozen
class UniformLatency:
    """Each datagram takes a time drawn uniformly from ``[low, high]``.

    Datagrams between two hosts can therefore overtake one another, as they
    can on a real network.
    """

    low: float = attrs.field(validator=attrs.validators.ge(0.0))
    high: float = attrs.field()

    @high.validator
    def _check_high(self, attribute: attrs.Attribute[float], value: float) -> None:
        if value < self.low:
            raise ValueError("high ({}) must not be below low ({})".format(value, self.low))

    def delay(self, src_host: str, dst_host: str, rng: random.Random) -> float:
        """A fresh draw for every datagram."""
        return rng.uniform(self.low, self.high)
