"""Every metric family a node exports, and how the components' counters map onto them.

The components keep plain counters: each one's ``stats()`` dict. A
:class:`Source` says how one such dict is read: each key becomes a family
with a written HELP text and a type, and where one thing is counted by
cause (datagrams dropped, stores refused) the cause becomes a ``reason``
label. :data:`FAMILIES` is the whole list, which ``docs/metrics.rst``
mirrors (a test holds the two together); :mod:`dhtkit.web.metrics` reads
them at scrape time.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Mapping

import attrs
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
    UnknownMetricFamily,
)

from dhtkit.values import REFUSALS

COUNTER = "counter"
GAUGE = "gauge"
HISTOGRAM = "histogram"


@attrs.frozen
class Family:
    """A metric family as ``/metrics`` exports it and ``docs/metrics.rst`` lists it.

    :ivar name: the family's name; a counter's sample adds ``_total`` to it.
    :ivar kind: :data:`COUNTER`, :data:`GAUGE` or :data:`HISTOGRAM`.
    :ivar help: the HELP text, written for an operator.
    :ivar labels: the names of its samples' labels.
    """

    name: str
    kind: str
    help: str
    labels: tuple[str, ...] = ()

    @property
    def sample_name(self) -> str:
        """The name a query uses: ``_total`` added for a counter."""
        return self.name + "_total" if self.kind == COUNTER else self.name

    def metric(self) -> Metric:
        """An empty ``prometheus_client`` family of this kind, name and HELP."""
        if self.kind == COUNTER:
            return CounterMetricFamily(self.name, self.help, labels=self.labels)
        if self.kind == GAUGE:
            return GaugeMetricFamily(self.name, self.help, labels=self.labels)
        return HistogramMetricFamily(self.name, self.help, labels=self.labels)


NODE_INFO = Family(
    "dhtkit_node_info",
    GAUGE,
    "Always 1; the labels name the node, its overlay and the dhtkit version.",
    ("node_id", "protocol", "version"),
)
UPTIME = Family("dhtkit_uptime_seconds", GAUGE, "Seconds since the node started.")
ROUTING_CONTACTS = Family(
    "dhtkit_routing_contacts", GAUGE, "Contacts in the overlay's routing state now."
)
STORE_RECORDS = Family("dhtkit_store_records", GAUGE, "Records in the local store now.")
STORE_BYTES = Family("dhtkit_store_bytes", GAUGE, "Bytes of the records in the local store now.")
LOOKUP_HOPS = Family("dhtkit_lookup_hops", HISTOGRAM, "Hops of each overlay lookup this node ran.")


_INVALID = re.compile("[^a-zA-Z0-9_]")


@attrs.define
class Source:
    """How one component's ``stats()`` dict is read: each key to a family.

    :ivar prefix: the start of its families' names (``dhtkit_rpc``).
    :ivar keys: stat key -> (family name, ``reason`` label or None).
    :ivar by_prefix: key prefix -> family name; the rest of such a key is
        its ``reason`` (for causes that come from exception classes).
    :ivar skip: keys that are exported otherwise, or are sums of others.
    :ivar reported: every key in ``keys`` is exported from the start, at 0
        until it is counted, so that a rate has a first sample. Off for the
        overlay: which keys it has depends on the overlay.
    """

    prefix: str
    reported: bool = True
    keys: dict[str, tuple[str, str | None]] = attrs.Factory(dict)
    by_prefix: dict[str, str] = attrs.Factory(dict)
    skip: set[str] = attrs.Factory(set)
    families: list[Family] = attrs.Factory(list)

    def _add(self, name: str, kind: str, help_text: str, labels: tuple[str, ...] = ()) -> str:
        family = Family("{}_{}".format(self.prefix, name), kind, help_text, labels)
        self.families.append(family)
        return family.name

    def counter(self, key: str, help_text: str) -> None:
        """``key`` counts events: ``<prefix>_<key>_total`` (``_total`` once)."""
        name = key[: -len("_total")] if key.endswith("_total") else key
        self.keys[key] = (self._add(name, COUNTER, help_text), None)

    def gauge(self, key: str, help_text: str) -> None:
        """``key`` is a level: ``<prefix>_<key>``."""
        self.keys[key] = (self._add(key, GAUGE, help_text), None)

    def by_reason(
        self,
        name: str,
        help_text: str,
        keys: Mapping[str, str] | None = None,
        prefix: str | None = None,
        reasons: Iterable[str] = (),
    ) -> None:
        """One counter ``<prefix>_<name>_total{reason}`` for several keys.

        :param keys: stat key -> its reason.
        :param prefix: every key ``prefix + reason`` belongs here too.
        :param reasons: reasons known in advance, for ``prefix`` (reported from 0).
        """
        family = self._add(name, COUNTER, help_text, ("reason",))
        for key, reason in (keys or {}).items():
            self.keys[key] = (family, reason)
        if prefix is not None:
            self.by_prefix[prefix] = family
            for reason in reasons:
                self.keys[prefix + reason] = (family, reason)

    def family_of(self, key: str) -> tuple[str, str | None] | None:
        """The family of ``key`` and its reason; None for a key not described here."""
        found = self.keys.get(key)
        if found is not None:
            return found
        for prefix, family in self.by_prefix.items():
            if key.startswith(prefix) and len(key) > len(prefix):
                return family, key[len(prefix) :]
        return None

    def read(self, stats: Mapping[str, float], source: str) -> Iterator[Metric]:
        """The families of ``stats``; a key not described here is exported untyped."""
        samples: dict[str, dict[str | None, float]] = {}
        if self.reported:
            for family, reason in self.keys.values():
                samples.setdefault(family, {})[reason] = 0
        unknown: list[Metric] = []
        for key, value in stats.items():
            if key in self.skip:
                continue
            found = self.family_of(key)
            if found is None:
                name = _INVALID.sub("_", "{}_{}".format(self.prefix, key))
                help_text = "The {} stat {!r}, not described yet.".format(source, key)
                unknown.append(UnknownMetricFamily(name, help_text, value=value))
                continue
            family, reason = found
            by_reason = samples.setdefault(family, {})
            by_reason[reason] = by_reason.get(reason, 0) + value
        for declared in self.families:
            counted = samples.get(declared.name)
            if counted is None:
                continue
            metric = declared.metric()
            for reason, value in sorted(counted.items(), key=lambda item: item[0] or ""):
                labels = [] if reason is None else [reason]
                metric.add_metric(labels, value)  # type: ignore[attr-defined]
            yield metric
        yield from unknown


# -- RPC: RPCProtocol.stats() ------------------------------------------------------------

RPC = Source("dhtkit_rpc")
RPC.skip.add("dropped")  # the sum of the reasons below
RPC.counter("received", "Datagrams received, before any check.")
RPC.counter("sent", "Datagrams sent.")
RPC.counter("queries_sent", "Queries this node sent (each retry counts again).")
RPC.counter("queries_received", "Queries received that passed every check.")
RPC.counter("replies_received", "Replies received to this node's pending calls.")
RPC.counter("errors_sent", "Error replies sent (a handler refused or failed a query).")
RPC.counter("errors_received", "Error replies received to this node's calls.")
RPC.counter("retries", "Queries sent again after no reply came in time.")
RPC.counter(
    "early_resends",
    "Queries sent again before their timeout: no reply within the round-trip timer.",
)
RPC.counter("duplicate_queries", "Queries received again and answered from the answer cache.")
RPC.counter("timeouts", "Calls that got no reply after every retry.")
RPC.counter("send_errors", "Datagrams the operating system refused to send.")
RPC.by_reason(
    "dropped",
    "Datagrams received and dropped, by reason (rate_limited, malformed, oversized, "
    "bad_node_id, bad_auth, replay, stale, self, handshake_limited, unexpected_reply, "
    "unproven, bad_proof).",
    prefix="dropped_",
)
RPC.counter("probes_sent", "Routability probes sent to addresses not yet proven.")
RPC.counter("probes_refused", "Routability probes not sent: the probe budget was spent.")
RPC.counter("challenges_sent", "Answers asking their querier to prove its address.")
RPC.counter("proofs_sent", "Challenges sent back to prove this node's address.")
RPC.counter("proofs_received", "Challenges sent back by queriers that proved their address.")
RPC.counter("queries_padded", "Queries padded so that their large answer needs no probe.")
RPC.counter(
    "unreachable_hints",
    "ICMP errors that said nothing answers at an address we sent to"
    " (hints: nothing is failed for them).",
)
RPC.counter("answers_held", "Large answers held until their address proves it receives.")
RPC.counter("answers_released", "Held answers sent once their address was proven.")
RPC.counter("handler_errors", "Queries whose handler failed unexpectedly (a bug).")
RPC.counter("listener_errors", "Listeners of verified messages that failed (a bug).")
RPC.gauge("sessions", "Peers with a session key now.")
RPC.gauge("pending_calls", "Calls waiting for a reply now.")

# -- the overlay: IRoutingOverlay.stats(), whichever overlay runs --------------------------

OVERLAY = Source("dhtkit_overlay", reported=False)
OVERLAY.skip.add("contacts")  # dhtkit_routing_contacts, for every overlay
OVERLAY.counter("lookups", "Lookups this node ran.")
OVERLAY.counter("lookups_failed", "Lookups that found no live node responsible for the key.")
OVERLAY.counter("lookup_hops", "Hops of every lookup, summed.")
OVERLAY.counter("lookup_messages", "Queries sent by lookups.")
OVERLAY.counter("lookup_timeouts", "Lookup queries that got no reply.")
OVERLAY.counter("lookup_bad_answers", "Lookup answers dropped as malformed.")
OVERLAY.counter(
    "bad_answers",
    "Answers outside lookups (placement, ring merges, repairs) dropped as malformed.",
)
OVERLAY.counter("no_progress", "Lookup hops refused: no closer to the key (they could loop).")
OVERLAY.counter("refreshes", "Buckets refreshed by a lookup of a random id in them.")
OVERLAY.counter(
    "unsolved_contacts_dropped", "Contacts dropped from answers for lacking the id puzzle."
)
OVERLAY.counter("disjoint_lookups", "Reads run over disjoint paths.")
OVERLAY.gauge("buckets", "k-buckets in the routing table now.")
OVERLAY.gauge("replacements", "Contacts waiting in the buckets' replacement caches now.")
OVERLAY.gauge("pinging", "Buckets pinging their oldest contact now.")
OVERLAY.counter("added", "Contacts added to the routing table.")
OVERLAY.counter("splits", "k-buckets split.")
OVERLAY.counter("promoted", "Replacements promoted into a bucket.")
OVERLAY.counter("pings_sent", "Pings of a full bucket's oldest contact.")
OVERLAY.counter("pings_answered", "Pings of a full bucket's oldest contact answered.")
OVERLAY.counter("pings_failed", "Pings of a full bucket's oldest contact not answered.")
OVERLAY.counter("stale_pings", "Contacts silent for long, pinged before being handed out.")
OVERLAY.by_reason(
    "contacts_removed",
    "Contacts removed from the routing table, by reason (evicted: did not answer a "
    "ping; failures: too many failed calls; stale: silent and did not answer; "
    "removed: left or was removed).",
    keys={
        "evictions": "evicted",
        "dropped_failures": "failures",
        "stale_dropped": "stale",
        "removed": "removed",
    },
)
OVERLAY.by_reason(
    "contacts_refused",
    "Contacts the routing table refused, by reason (network: too many from one "
    "network; puzzle: the id puzzle is not solved).",
    prefix="refused_",
)
OVERLAY.gauge("fingers", "Distinct contacts in the finger table now.")
OVERLAY.gauge("successors", "Entries in the successor list now.")
OVERLAY.gauge("has_predecessor", "1 when the node knows its predecessor, else 0.")
OVERLAY.counter("joins", "Times this node joined the network.")
OVERLAY.counter("rejoins", "Times this node joined again after losing every successor.")
OVERLAY.counter("leaves", "Times this node left the network, telling its neighbours.")
OVERLAY.counter("leaves_received", "Neighbours that said they were leaving.")
OVERLAY.counter("notifies_received", "Notify messages received from would-be predecessors.")
OVERLAY.counter("stabilize_rounds", "Stabilize rounds run.")
OVERLAY.counter("successor_changes", "Times the first successor changed.")
OVERLAY.counter("successor_refreshes", "Successor lists taken over from the successor.")
OVERLAY.counter("successors_failed", "Successors that did not answer and were passed over.")
OVERLAY.counter("fix_fingers_rounds", "Fix-fingers rounds run.")
OVERLAY.counter(
    "fingers_asked", "Finger refreshes that asked the finger held for its predecessors."
)
OVERLAY.counter(
    "fingers_confirmed", "Finger refreshes where the finger held was still the right one."
)
OVERLAY.counter("successor_checks", "Checks that the successor is the right one.")
OVERLAY.counter("successor_checks_corrected", "Successor checks that found a closer node.")
OVERLAY.counter("check_predecessor_rounds", "Check-predecessor rounds run.")
OVERLAY.counter("predecessor_changes", "Times the predecessor changed.")
OVERLAY.counter("predecessors_failed", "Predecessors that did not answer and were forgotten.")
OVERLAY.counter(
    "merge_attempts",
    "Merge rounds that asked a node lost earlier"
    " (which may be on the other side of a healed partition).",
)
OVERLAY.counter(
    "merges",
    "Merges through a node lost earlier: Chord, nearer successors adopted from another ring;"
    " Pastry, joins completed through it.",
)
OVERLAY.counter("merge_notifies", "Notify messages sent to merge two rings.")
OVERLAY.gauge("leaf_set", "Nodes in the leaf set now.")
OVERLAY.gauge("table_entries", "Entries in the routing table now.")
OVERLAY.gauge("neighbourhood", "Nodes in the neighbourhood set now.")
OVERLAY.counter("join_messages", "Messages exchanged by this node's joins.")
OVERLAY.counter("announces_received", "Arrival announcements received from new nodes.")
OVERLAY.counter("leaf_repairs", "Leaf-set repairs after a member failed.")
OVERLAY.counter("table_repairs", "Routing-table repairs after an entry failed.")
OVERLAY.counter("leaf_rounds", "Periodic leaf-set exchanges.")
OVERLAY.counter("neighbourhood_rounds", "Periodic neighbourhood-set exchanges.")
OVERLAY.counter("candidates_pinged", "Candidate contacts pinged before being admitted.")
OVERLAY.counter("candidates_dropped", "Candidate contacts dropped: too many waiting.")

# -- the value layer: DHTNode.stats() ------------------------------------------------------

VALUES = Source("dhtkit_values")
VALUES.skip.update({"records", "record_bytes"})  # dhtkit_store_records and _bytes
VALUES.counter("puts", "Values this node stored in the network.")
VALUES.counter("puts_failed", "Puts that reached too few replicas.")
VALUES.counter("deletes", "Deletes this node published (tombstones of plain and signed values).")
VALUES.counter("gets", "Values this node looked up.")
VALUES.counter("gets_answered_locally", "Gets answered from the node's own store, with no traffic.")
VALUES.counter("lookups_reused", "Writes stored on the nodes the read before them had just found.")
VALUES.counter(
    "stored_by_lookup",
    "Replicas a put stored on in its lookup's last step (store_near), not by a later store.",
)
VALUES.counter(
    "gets_by_quorum",
    "Gets that ended before every node asked had answered (a read quorum, or a hedge).",
)
VALUES.counter("bad_answers", "Answers to this node's gets dropped as invalid.")
VALUES.counter("read_repairs", "Stale or missing replicas a get brought up to date.")
VALUES.counter("cached_copies_sent", "Copies cached on the lookup path after a get.")
VALUES.counter("store_received", "Store requests received from peers.")
VALUES.by_reason(
    "store_refused",
    "Store requests refused, by reason (too_large, salt_too_long, malformed, key_mismatch, "
    "bad_signature, kind_conflict, stale_seq, seq_conflict, cas_mismatch, clock_skew, "
    "over_quota, not_publisher).",
    prefix="store_refused_",
    reasons=sorted(REFUSALS),
)
VALUES.counter(
    "store_declined_not_close",
    "store_near requests declined: this node knows enough nodes closer to the key.",
)
VALUES.counter(
    "store_not_durable",
    "Store requests answered unavailable: the store could not make them durable (a disk error).",
)
VALUES.counter("get_received", "Get requests received from peers.")
VALUES.by_reason(
    "get_refused",
    "Get requests refused, by reason (malformed).",
    prefix="get_refused_",
    reasons=("malformed",),
)
VALUES.counter("handed_over", "Records handed over to a node newly responsible for them.")
VALUES.counter("handed_over_on_leave", "Records handed over as this node left.")
VALUES.counter("hand_over_deferred", "Records queued to be handed over at their peer's pace.")
VALUES.counter(
    "hand_over_dropped", "Records not handed over: queues full, or the peer did not answer."
)
VALUES.counter("hand_over_skipped", "New neighbours handed nothing: too many hand-overs under way.")
VALUES.counter("scheduler_expired", "Records expired from the store.")
VALUES.counter("scheduler_replicated", "Records replicated to their other holders.")
VALUES.counter("scheduler_republished", "Records this node published, published again.")
VALUES.counter("scheduler_failed", "Replications and republishes that failed (retried later).")

# -- gossip: GossipProtocol.stats() ------------------------------------------------------

GOSSIP = Source("dhtkit_gossip")
GOSSIP.skip.add("dropped")  # the sum of the reasons below
GOSSIP.counter("rounds", "Gossip rounds run.")
GOSSIP.counter("exchanges", "Exchanges with a partner this node started.")
GOSSIP.counter("exchange_failures", "Exchanges that failed (no answer, or an error).")
GOSSIP.counter("requests_received", "Exchanges other nodes started with this one.")
GOSSIP.counter("bad_requests", "Exchange requests dropped as malformed.")
GOSSIP.counter("bad_replies", "Exchange replies dropped as malformed.")
GOSSIP.counter("updates_sent", "Updates sent to partners.")
GOSSIP.counter("updates_received", "Updates received from partners.")
GOSSIP.counter("updates_new", "Updates received that were new here.")
GOSSIP.counter("updates_known", "Updates received that were known already.")
GOSSIP.by_reason(
    "dropped",
    "Updates received and dropped, by reason (malformed, oversized, forged, expired, "
    "bad_expiry, store_full).",
    prefix="dropped_",
)
GOSSIP.counter("published", "Updates (and deletions) this node published.")
GOSSIP.counter("delivered", "Updates delivered to local subscribers.")
GOSSIP.counter("deleted", "Updates deleted by their origin's death certificate.")
GOSSIP.counter("expired", "Updates expired from the store.")
GOSSIP.counter("removed", "Updates this node stopped spreading (SIR: it lost interest).")
GOSSIP.gauge("updates", "Live updates held now.")
GOSSIP.gauge("spreading", "Updates this node is spreading now.")

# -- the HTTP API: ConnectionStats.stats() -------------------------------------------------

HTTP = Source("dhtkit_http")
HTTP.gauge("connections", "Connections to the HTTP API open now.")
HTTP.by_reason(
    "refused",
    "Connections or requests refused, by reason (per_source: the cap per client "
    "address; total_cap: the cap on all connections; length: a Content-Length too "
    "large to be a body).",
    keys={
        "refused_per_source": "per_source",
        "refused_total_cap": "total_cap",
        "refused_length": "length",
    },
)
HTTP.counter("evicted_waiting", "Idle connections closed to make room for a new one.")
HTTP.counter("request_timeouts", "Connections closed for not sending a request in time.")
HTTP.counter("streams_opened", "Event streams (/v1/listen) opened.")
HTTP.counter("streams_closed", "Event streams closed, whatever the cause.")
HTTP.counter(
    "streams_closed_slow",
    "Event streams closed because their client stopped reading (also in streams_closed).",
)
HTTP.by_reason(
    "streams_refused",
    "Event streams refused, by reason (per_source: the cap per client address; "
    "total_cap: the cap on all streams).",
    keys={
        "streams_refused_per_source": "per_source",
        "streams_refused_total_cap": "total_cap",
    },
)


def _index(*families: Family) -> dict[str, Family]:
    index: dict[str, Family] = {}
    for family in families:
        if family.name in index:
            raise ValueError("metric family {} declared twice".format(family.name))
        index[family.name] = family
    return index


#: Every family a node exports, by name, in the order ``/metrics`` writes them
#: (the library's ``process_*`` and ``python_info`` come after).
FAMILIES: dict[str, Family] = _index(
    NODE_INFO,
    UPTIME,
    ROUTING_CONTACTS,
    STORE_RECORDS,
    STORE_BYTES,
    LOOKUP_HOPS,
    *(family for source in (RPC, OVERLAY, VALUES, GOSSIP, HTTP) for family in source.families),
)
