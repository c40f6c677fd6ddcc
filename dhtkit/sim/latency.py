"""Latency models: how long a datagram takes from one host to another.

``dhtkit sim --latency constant|uniform|lognormal --rtt MS`` picks one with
:func:`latency_model`: each is parametrised by its *median round-trip time*,
so the three are comparable (half of it each way).
"""

from __future__ import annotations

import math
import random
from typing import Protocol

import attrs

__all__ = [
    "LATENCY_MODELS",
    "ConstantLatency",
    "LatencyModel",
    "LogNormalLatency",
    "UniformLatency",
    "latency_model",
]

#: The models ``dhtkit sim --latency`` names.
LATENCY_MODELS = ("constant", "uniform", "lognormal")
#: The log-normal's shape (sigma of the log) by default: a p99 about 3.2 times the median,
#: as wide-area round trips are (King measurements between DNS servers).
DEFAULT_SIGMA = 0.5


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


@attrs.frozen
class LogNormalLatency:
    """Each datagram takes a log-normal time: ``median * exp(sigma * Z)``, Z standard normal.

    A long right tail, as wide-area delays have: most datagrams near the
    median, a few several times slower.
    """

    median: float = attrs.field(validator=attrs.validators.gt(0.0))
    sigma: float = attrs.field(default=DEFAULT_SIGMA, validator=attrs.validators.ge(0.0))

    def delay(self, src_host: str, dst_host: str, rng: random.Random) -> float:
        """A fresh draw for every datagram."""
        return rng.lognormvariate(math.log(self.median), self.sigma)


def latency_model(name: str, median_rtt: float) -> LatencyModel:
    """The model ``name`` (of :data:`LATENCY_MODELS`), round trips of median ``median_rtt`` s.

    Constant at ``median_rtt / 2`` each way; uniform on ``[0, median_rtt]``
    each way (a round trip, the sum of two, has median ``median_rtt``); or
    log-normal each way, scaled so that the sum of two draws has median
    ``median_rtt`` (Fenton-Wilkinson: the sum of two log-normals is nearly
    log-normal, with a median ``exp((s^2 - s2^2) / 2)`` above the sum of the
    medians, where ``s2^2 = ln(1 + (exp(s^2) - 1) / 2)``).

    :raises ValueError: an unknown name or a round trip that is not positive.
    """
    if not median_rtt > 0 or math.isinf(median_rtt):
        raise ValueError("the median round trip is a positive time, not {}".format(median_rtt))
    one_way = median_rtt / 2
    if name == "constant":
        return ConstantLatency(one_way)
    if name == "uniform":
        return UniformLatency(0.0, median_rtt)
    if name == "lognormal":
        sigma2 = DEFAULT_SIGMA**2
        sum_sigma2 = math.log(1 + (math.exp(sigma2) - 1) / 2)
        return LogNormalLatency(one_way / math.exp((sigma2 - sum_sigma2) / 2))
    raise ValueError(
        "unknown latency model {!r}: one of {}".format(name, ", ".join(LATENCY_MODELS))
    )
