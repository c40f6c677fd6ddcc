"""Hand-overs, paced: what a node sends a new neighbour, at a bounded rate.

When a node appears among our neighbours, :class:`~dhtkit.node.DHTNode`
hands it the records it is now responsible for. Sent all at once, that is
one datagram of ours per record for one datagram of its: a spoofed first
contact from an id next to ours once turned a 147-byte datagram into 2 MB
sent to the spoofed address. So hand-overs go through a
:class:`HandOverQueue`:

- each peer gets at most ``per_peer_rate`` records a second (after a burst
  of ``per_peer_burst``), all peers together at most ``rate`` (burst
  ``burst``);
- what cannot go at once waits, its keys only (20 bytes each), at most
  ``max_per_peer`` keys a peer, ``max_queued`` in all and ``max_peers``
  peers: beyond that keys are dropped. Nothing is lost by a drop: the
  holders' hourly replication stores every record on the nodes responsible
  for it anyway; a hand-over only makes that sooner;
- at most ``window`` records to one peer are unanswered at a time, and
  when one is not answered (a timeout: nobody there receives, as when the
  address was spoofed) the rest of that peer's keys are dropped. An address
  that never answers gets ``window`` records, not the whole store;
- every record that waited is counted in ``hand_over_deferred``, every one
  dropped in ``hand_over_dropped``.

A record is read from the store again when its turn comes, so one that
changed meanwhile goes out in its latest version, and one that expired not
at all.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable

import attrs
from twisted.internet import defer
from twisted.internet.interfaces import IDelayedCall, IReactorTime

from dhtkit.contact import Contact

RATE = 200.0
"""Records handed over per second, to all peers together."""
PER_PEER_RATE = 20.0
"""Records handed over per second to one peer."""
MAX_QUEUED = 20_000
"""Keys waiting in all (20 bytes each: 400 kB at most)."""
MAX_PER_PEER = 2_000
"""Keys waiting for one peer."""
MAX_PEERS = 256
"""Peers with keys waiting, or with a budget spent recently."""
WINDOW = 8
"""Records handed over to one peer and not answered yet."""


@attrs.define
class _Peer:
    contact: Contact
    tokens: float
    refilled: float
    keys: dict[bytes, None] = attrs.field(factory=dict)  # insertion-ordered set
    in_flight: int = 0


class HandOverQueue:
    """Sends ``send(contact, key)`` for each key offered, within the rates.

    :param clock: schedules the next round while keys wait.
    :param send: hands one record over; fires True once the peer answered
        (an acknowledgment or a refusal), False when it did not.
    :param counters: where ``hand_over_deferred`` and ``hand_over_dropped`` go.
    """

    def __init__(
        self,
        clock: IReactorTime,
        send: Callable[[Contact, bytes], defer.Deferred[bool]],
        counters: Counter[str],
        *,
        rate: float = RATE,
        burst: float | None = None,
        per_peer_rate: float = PER_PEER_RATE,
        per_peer_burst: float | None = None,
        max_queued: int = MAX_QUEUED,
        max_per_peer: int = MAX_PER_PEER,
        max_peers: int = MAX_PEERS,
        window: int = WINDOW,
    ) -> None:
        if rate <= 0 or per_peer_rate <= 0:
            raise ValueError("hand-over rates must be positive")
        self.clock = clock
        self.send = send
        self.counters = counters
        self.rate = rate
        self.burst = max(1.0, burst if burst is not None else rate)
        self.per_peer_rate = per_peer_rate
        self.per_peer_burst = max(
            1.0, per_peer_burst if per_peer_burst is not None else per_peer_rate
        )
        self.max_queued = max_queued
        self.max_per_peer = max_per_peer
        self.max_peers = max_peers
        self.window = window
        self._tokens = self.burst
        self._refilled = clock.seconds()
        self._peers: dict[bytes, _Peer] = {}
        self._queued = 0
        self._timer: IDelayedCall | None = None

    def __len__(self) -> int:
        """Keys waiting."""
        return self._queued

    @property
    def peers(self) -> int:
        """Peers whose budget or keys are kept (at most ``max_peers``)."""
        return len(self._peers)

    def has_room_for(self, contact: Contact) -> bool:
        """Whether an offer to ``contact`` could queue anything now.

        Checked before the store is scanned for its keys, so that a stream
        of new neighbours costs no scan once the queue is full.
        """
        peer = self._peers.get(contact.node_id)
        if peer is not None:
            return len(peer.keys) < self.max_per_peer and self._queued < self.max_queued
        if len(self._peers) >= self.max_peers:
            self._forget_idle(self.clock.seconds())
        return len(self._peers) < self.max_peers and self._queued < self.max_queued

    def offer(self, contact: Contact, keys: Iterable[bytes]) -> None:
        """Hand the records of ``keys`` over to ``contact``, now or later."""
        keys = list(keys)
        now = self.clock.seconds()
        peer = self._peers.get(contact.node_id)
        if peer is None:
            if not keys:
                # Every new neighbour is offered our keys, most often none:
                # no state is kept for a peer with nothing to hand over.
                return
            if len(self._peers) >= self.max_peers:
                self._forget_idle(now)
            if len(self._peers) >= self.max_peers:
                self.counters["hand_over_dropped"] += len(keys)
                return
            peer = self._peers[contact.node_id] = _Peer(contact, self.per_peer_burst, now)
        peer.contact = contact
        added: list[bytes] = []
        for key in keys:
            if key in peer.keys:
                continue
            if len(peer.keys) >= self.max_per_peer or self._queued >= self.max_queued:
                self.counters["hand_over_dropped"] += 1
                continue
            peer.keys[key] = None
            added.append(key)
            self._queued += 1
        self._drain()
        self.counters["hand_over_deferred"] += sum(1 for key in added if key in peer.keys)

    def stop(self) -> None:
        """Forget every key waiting and stop the timer."""
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None
        for peer in self._peers.values():
            peer.keys.clear()
        self._peers.clear()
        self._queued = 0

    def _refill(self, now: float) -> None:
        self._tokens = min(self.burst, self._tokens + (now - self._refilled) * self.rate)
        self._refilled = now
        for peer in self._peers.values():
            peer.tokens = min(
                self.per_peer_burst, peer.tokens + (now - peer.refilled) * self.per_peer_rate
            )
            peer.refilled = now

    def _forget_idle(self, now: float) -> None:
        # A peer with nothing waiting and a full budget carries no information.
        self._refill(now)
        for node_id in [
            node_id
            for node_id, peer in self._peers.items()
            if not peer.keys and not peer.in_flight and peer.tokens >= self.per_peer_burst
        ]:
            del self._peers[node_id]

    def _drain(self) -> None:
        if self._timer is not None and self._timer.active():
            self._timer.cancel()  # an offer came first; the schedule is made again below
        self._timer = None
        now = self.clock.seconds()
        self._refill(now)
        # Round robin: one record per peer per turn, while budgets last.
        sent_one = True
        while sent_one and self._tokens >= 1.0:
            sent_one = False
            for peer in list(self._peers.values()):
                if self._tokens < 1.0:
                    break
                if not peer.keys or peer.tokens < 1.0 or peer.in_flight >= self.window:
                    continue
                key = next(iter(peer.keys))
                del peer.keys[key]
                self._queued -= 1
                peer.tokens -= 1.0
                self._tokens -= 1.0
                peer.in_flight += 1
                sent_one = True
                # To the back of the line: the next round starts with another peer.
                del self._peers[peer.contact.node_id]
                self._peers[peer.contact.node_id] = peer
                self.send(peer.contact, key).addBoth(self._answered, peer)
        if any(p.keys and p.in_flight < self.window for p in self._peers.values()):
            self._schedule()

    def _answered(self, result: object, peer: _Peer) -> None:
        peer.in_flight -= 1
        if result is not True and peer.keys:
            # Nobody answers there: what is left for it would only be lost.
            self.counters["hand_over_dropped"] += len(peer.keys)
            self._queued -= len(peer.keys)
            peer.keys.clear()
        if self._peers.get(peer.contact.node_id) is peer and peer.keys:
            self._drain()

    def _schedule(self) -> None:
        if self._timer is not None and self._timer.active():
            return
        waiting = [p for p in self._peers.values() if p.keys and p.in_flight < self.window]
        wait_global = max(0.0, (1.0 - self._tokens) / self.rate)
        wait_peer = min(max(0.0, (1.0 - p.tokens) / self.per_peer_rate) for p in waiting)
        self._timer = self.clock.callLater(max(wait_global, wait_peer, 1e-3), self._drain)
