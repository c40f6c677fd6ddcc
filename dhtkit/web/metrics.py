"""``GET /metrics``: a node's counters for Prometheus, read at scrape time.

:class:`NodeCollector` is a ``prometheus_client`` collector that reads the
components' counters when a scrape asks (nothing runs between scrapes) and
writes them as the families of :mod:`dhtkit.web.families`.
:func:`node_registry` puts it in a registry of its own, beside the
library's process and platform collectors: several nodes may live in one
process (the simulator, the tests, the demo), so no node uses the
library's global registry.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, PlatformCollector, ProcessCollector
from prometheus_client.core import HistogramMetricFamily, Metric
from prometheus_client.exposition import generate_latest

import dhtkit
from dhtkit.histogram import Histogram
from dhtkit.web.families import (
    GOSSIP,
    HTTP,
    LOOKUP_HOPS,
    NODE_INFO,
    OVERLAY,
    ROUTING_CONTACTS,
    RPC,
    STORE_BYTES,
    STORE_RECORDS,
    UPTIME,
    VALUES,
    Family,
)

if TYPE_CHECKING:
    from dhtkit.service import OverlayService

#: The ``Content-Type`` of the text exposition format ``GET /metrics`` serves.
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class NodeCollector:
    """A ``prometheus_client`` collector of one node: it reads the counters at each scrape.

    :param service: a started :class:`~dhtkit.service.OverlayService`.
    :param gossip: a :class:`~dhtkit.gossip.protocol.GossipProtocol` (or
        anything with ``stats()``), exported as ``dhtkit_gossip_*``.
    :param http: the HTTP API's :class:`~dhtkit.web.guard.ConnectionStats`
        (or anything with ``stats()``), exported as ``dhtkit_http_*``.
    """

    def __init__(self, service: OverlayService, gossip: Any = None, http: Any = None) -> None:
        self.service = service
        self.gossip = gossip
        self.http = http

    def collect(self) -> Iterator[Metric]:
        """Every family of the node, as its counters stand now."""
        service = self.service
        status = service.status()
        overlay = service.overlay
        info = NODE_INFO.metric()
        info.add_metric(  # type: ignore[attr-defined]
            [str(status["node_id"]), str(status["protocol"]), dhtkit.__version__], 1
        )
        yield info
        yield _single(UPTIME, status["uptime_s"])
        yield _single(ROUTING_CONTACTS, len(overlay.contacts()))
        records, size = service.node.store.usage()
        yield _single(STORE_RECORDS, records)
        yield _single(STORE_BYTES, size)
        yield _histogram(LOOKUP_HOPS, overlay.hop_histogram)
        yield from RPC.read(service.rpc.stats(), "RPC")
        yield from OVERLAY.read(overlay.stats(), "overlay")
        yield from VALUES.read(service.node.stats(), "value layer")
        if self.gossip is not None:
            yield from GOSSIP.read(self.gossip.stats(), "gossip")
        if self.http is not None:
            yield from HTTP.read(self.http.stats(), "HTTP API")


def _single(family: Family, value: float) -> Metric:
    metric = family.metric()
    metric.add_metric([], value)  # type: ignore[attr-defined]
    return metric


def _histogram(family: Family, histogram: Histogram) -> Metric:
    metric = HistogramMetricFamily(
        family.name,
        family.help,
        buckets=[(_bound(b), float(n)) for b, n in histogram.buckets()],
        sum_value=histogram.sum,
    )
    return metric


def _bound(value: float) -> str:
    # As Prometheus writes an ``le`` label: +Inf, and integers without ".0".
    if math.isinf(value):
        return "+Inf"
    return str(int(value)) if value.is_integer() else repr(value)


def node_registry(
    service: OverlayService, gossip: Any = None, http: Any = None
) -> CollectorRegistry:
    """A registry of its own for one node: its :class:`NodeCollector` and the process's metrics.

    The process collector (``process_*``: CPU, memory, open files; read from
    ``/proc``, so Linux only) and the platform collector (``python_info``)
    are the library's.
    """
    registry = CollectorRegistry()
    registry.register(NodeCollector(service, gossip, http))
    ProcessCollector(registry=registry)
    PlatformCollector(registry=registry)
    return registry


def exposition(registry: CollectorRegistry) -> bytes:
    """The text exposition (format 0.0.4, :data:`CONTENT_TYPE`) of ``registry`` now."""
    return generate_latest(registry)


def render(service: OverlayService, gossip: Any = None, http: Any = None) -> str:
    """The metrics of a running node service as exposition text (see :func:`node_registry`)."""
    return exposition(node_registry(service, gossip, http)).decode("utf-8")
