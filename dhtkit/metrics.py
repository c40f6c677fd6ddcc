"""Prometheus metrics: a node's counters and its hop histogram as exposition text.

The overlays keep a :class:`~dhtkit.histogram.Histogram` of their lookups' hop counts;
:func:`render` turns that, and every counter the RPC layer, the overlay,
the value layer and (when given) the gossip protocol keep, into the text
exposition format 0.0.4 that ``GET /metrics`` serves. Counters are read at
scrape time: nothing here runs between scrapes.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import dhtkit
from dhtkit import overlays
from dhtkit.histogram import Histogram

if TYPE_CHECKING:
    from dhtkit.service import OverlayService

#: The ``Content-Type`` of the text exposition format.
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

#: Values in the components' ``stats()`` that are levels, not event counts.
GAUGES = frozenset(
    {
        # rpc
        "sessions", "pending_calls",
        # gossip
        "updates", "spreading", "removed",
        # HTTP API
        "connections",
    }
) | overlays.gauges()  # fmt: skip


#: Value-layer counters reported from the start, so that a rate over them
#: has a first sample of 0 (the node counts each only once it happens).
VALUE_COUNTERS = ("puts", "gets", "read_repairs", "store_received", "get_received")


def format_value(value: float) -> str:
    """A sample value or bound as Prometheus writes it (``+Inf``, ``NaN``, ``3``, ``0.5``)."""
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if float(value).is_integer() and abs(value) < 2**53:
        return str(int(value))
    return repr(float(value))


def escape_label(value: str) -> str:
    """A label value escaped for the text format (backslash, quote, newline)."""
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _escape_help(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\n", "\\n")


_INVALID = re.compile(r"[^a-zA-Z0-9_]")


def metric_name(*parts: str) -> str:
    """Join ``parts`` with ``_`` and replace what a metric name cannot hold."""
    name = _INVALID.sub("_", "_".join(parts))
    return "_" + name if name[:1].isdigit() else name


class Exposition:
    """Metric families collected in order, written as exposition text.

    Each family gets its ``# HELP`` and ``# TYPE`` lines before its samples.
    A family added twice under one name keeps its first version: the names
    of counters come from ``stats()`` keys, and two keys may sanitize alike.
    """

    def __init__(self) -> None:
        self._families: dict[str, list[str]] = {}

    def _family(self, name: str, kind: str, help_text: str) -> list[str] | None:
        if name in self._families:
            return None
        lines = [
            "# HELP {} {}".format(name, _escape_help(help_text)),
            "# TYPE {} {}".format(name, kind),
        ]
        self._families[name] = lines
        return lines

    def sample(
        self,
        name: str,
        kind: str,
        help_text: str,
        value: float,
        labels: Mapping[str, str] | None = None,
    ) -> None:
        """Add a family of kind ``counter`` or ``gauge`` with one sample."""
        lines = self._family(name, kind, help_text)
        if lines is not None:
            lines.append("{}{} {}".format(name, _labels(labels or {}), format_value(value)))

    def histogram(self, name: str, help_text: str, histogram: Histogram) -> None:
        """Add ``histogram`` as ``name_bucket`` / ``name_sum`` / ``name_count``."""
        lines = self._family(name, "histogram", help_text)
        if lines is None:
            return
        for bound, count in histogram.buckets():
            lines.append('{}_bucket{{le="{}"}} {}'.format(name, format_value(bound), count))
        lines.append("{}_sum {}".format(name, format_value(histogram.sum)))
        lines.append("{}_count {}".format(name, histogram.count))

    def stats(self, prefix: str, source: str, stats: Mapping[str, int]) -> None:
        """Add each entry of a ``stats()`` dict: a gauge if it is a level, else a counter."""
        for key in sorted(stats):
            if key in GAUGES:
                name = metric_name(prefix, key)
                self.sample(name, "gauge", "{} {} (now)".format(source, key), stats[key])
            else:
                name = metric_name(prefix, key, "total")
                self.sample(name, "counter", "{} {} (since start)".format(source, key), stats[key])

    def text(self) -> str:
        """The exposition text, ending in a newline."""
        return "".join(line + "\n" for lines in self._families.values() for line in lines)


def _labels(labels: Mapping[str, str]) -> str:
    if not labels:
        return ""
    inner = ",".join('{}="{}"'.format(k, escape_label(v)) for k, v in labels.items())
    return "{" + inner + "}"


def render(service: OverlayService, gossip: Any = None, http: Any = None) -> str:
    """The metrics of a running node service (and its gossip protocol) as exposition text.

    :param gossip: a :class:`~dhtkit.gossip.protocol.GossipProtocol` (or
        anything with ``stats()``) whose counters are added as ``dhtkit_gossip_*``.
    :param http: the HTTP API's :class:`~dhtkit.webguard.ConnectionStats` (or
        anything with ``stats()``): its connections open, refused and closed,
        as ``dhtkit_http_*``.
    """
    status = service.status()
    overlay = service.overlay
    node = service.node
    out = Exposition()
    info = {
        "node_id": str(status["node_id"]),
        "protocol": str(status["protocol"]),
        "version": dhtkit.__version__,
    }
    out.sample("dhtkit_node_info", "gauge", "The node's id, overlay and version.", 1, info)
    out.sample(
        "dhtkit_uptime_seconds", "gauge", "Seconds since the node started.", status["uptime_s"]
    )
    out.sample(
        "dhtkit_routing_contacts",
        "gauge",
        "Contacts in the overlay's routing state.",
        len(overlay.contacts()),
    )
    records, size = node.store.usage()
    out.sample("dhtkit_store_records", "gauge", "Records in the local store.", records)
    out.sample("dhtkit_store_bytes", "gauge", "Bytes of records in the local store.", size)
    out.histogram("dhtkit_lookup_hops", "Hops per overlay lookup.", overlay.hop_histogram)
    out.stats("dhtkit_rpc", "RPC layer:", service.rpc.stats())
    out.stats("dhtkit_overlay", "Overlay:", overlay.stats())
    values = dict.fromkeys(VALUE_COUNTERS, 0)
    values.update(node.stats())
    # The store's size is reported above, as gauges.
    del values["records"], values["record_bytes"]
    out.stats("dhtkit_values", "Value layer:", values)
    if gossip is not None:
        out.stats("dhtkit_gossip", "Gossip:", gossip.stats())
    if http is not None:
        out.stats("dhtkit_http", "HTTP API:", http.stats())
    return out.text()
