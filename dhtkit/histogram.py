"""A histogram with fixed bucket bounds, as Prometheus counts one.

The overlays keep one of their lookups' hop counts (see
:class:`~dhtkit.overlay.LookupStats`); the metrics surface renders it. It
lives on the ground floor so that an overlay never imports a surface module.
"""

from __future__ import annotations

import bisect
import itertools
import math
from collections.abc import Iterable

import attrs

#: Upper bounds of the lookup hop buckets: one per hop where lookups
#: usually end (log2 of the network size), coarser beyond.
HOP_BOUNDS: tuple[float, ...] = (0, 1, 2, 3, 4, 5, 6, 8, 10, 12, 16)


def _bounds(value: Iterable[float]) -> tuple[float, ...]:
    bounds = tuple(float(b) for b in value)
    if not all(math.isfinite(b) for b in bounds):
        raise ValueError("histogram bounds are finite (+Inf is always added)")
    if any(a >= b for a, b in itertools.pairwise(bounds)):
        raise ValueError("histogram bounds are strictly increasing")
    return bounds


@attrs.define
class Histogram:
    """Observations counted in buckets with fixed upper bounds, as Prometheus does.

    A value falls in the first bucket whose bound it does not exceed; values
    above every bound fall in the implicit ``+Inf`` bucket.
    """

    bounds: tuple[float, ...] = attrs.field(default=HOP_BOUNDS, converter=_bounds)
    sum: float = 0.0
    count: int = 0
    _counts: list[int] = attrs.field(init=False)

    def __attrs_post_init__(self) -> None:
        self._counts = [0] * (len(self.bounds) + 1)

    def observe(self, value: float) -> None:
        """Count one observation.

        :raises ValueError: ``value`` is NaN (it belongs in no bucket).
        """
        if math.isnan(value):
            raise ValueError("cannot observe NaN")
        self._counts[bisect.bisect_left(self.bounds, value)] += 1
        self.sum += value
        self.count += 1

    def buckets(self) -> list[tuple[float, int]]:
        """``(upper bound, observations at or below it)`` for each bucket, ``+Inf`` last."""
        out: list[tuple[float, int]] = []
        total = 0
        for bound, n in zip((*self.bounds, math.inf), self._counts, strict=True):
            total += n
            out.append((bound, total))
        return out
