"""What one gossip node holds, and how an update gets in.

:class:`GossipState` is the node without the network: every update, whether
published here or received from a peer, enters through it. A received update
is checked (size, structure, a known or deleted id, expiry, the origin's
signature) before it is stored, offered to peers or delivered; what fails is
dropped and counted, never raised or logged.
"""

from __future__ import annotations

import enum
from collections.abc import Callable

import attrs
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

from dhtkit.gossip.config import GossipConfig
from dhtkit.gossip.rumor import Rumors
from dhtkit.gossip.store import Added, UpdateStore
from dhtkit.gossip.update import (
    SIGNATURE_BYTES,
    Update,
    UpdateError,
    UpdateTooLarge,
    death_certificate,
    decode_update,
    make_update,
    update_id_of,
    verify_update,
)
from dhtkit.identity import Identity

UpdateCallback = Callable[[Update], object]

#: The counters of :meth:`GossipState.stats` that this module keeps.
STATE_COUNTERS = (
    "updates_received",
    "updates_new",
    "updates_known",
    "published",
    "delivered",
    "deleted",
    "expired",
    "dropped_malformed",
    "dropped_oversized",
    "dropped_forged",
    "dropped_expired",
    "dropped_bad_expiry",
    "dropped_store_full",
)


class Outcome(enum.Enum):
    """What became of an update received."""

    NEW = "new"
    KNOWN = "known"
    DROPPED = "dropped"


@attrs.define(eq=False)
class Subscription:
    """Callbacks for the updates of a topic (of all topics when ``topic`` is None)."""

    topic: str | None
    on_update: UpdateCallback
    on_delete: UpdateCallback | None
    _state: GossipState = attrs.field(repr=False)

    def cancel(self) -> None:
        """Stop the callbacks."""
        self._state._unsubscribe(self)


class GossipState:
    """A node's updates, its rumours (SIR), and its subscribers.

    :param identity: signs what this node publishes.
    :param config: limits and the model (SIR keeps :class:`Rumors`).
    :param clock: the clock that expiry and sequence numbers read.
    :param counters: the dict to count in (shared with the protocol's).
    """

    _log = Logger()

    def __init__(
        self,
        identity: Identity,
        config: GossipConfig,
        clock: IReactorTime,
        counters: dict[str, int] | None = None,
    ) -> None:
        self.identity = identity
        self.config = config
        self.clock = clock
        self.store = UpdateStore(config.max_updates)
        #: The updates this node is infected with (SIR only; None for SI).
        self.rumors: Rumors | None = (
            Rumors(config.k, feedback=config.feedback, counter=config.counter)
            if config.model == "sir"
            else None
        )
        self.counters = counters if counters is not None else {}
        for name in STATE_COUNTERS:
            self.counters.setdefault(name, 0)
        self._subscriptions: list[Subscription] = []
        self._seq = 0

    # -- updates from peers ------------------------------------------------------------

    def receive(self, encoded: bytes, now: float | None = None) -> Outcome:
        """Check an encoded update from a peer; store it if it is new and valid.

        The cheap checks come first: an update already held is recognised by
        the hash of its body, without decoding or verifying it again.
        """
        counters = self.counters
        counters["updates_received"] += 1
        config = self.config
        if len(encoded) > config.max_update_bytes:
            counters["dropped_oversized"] += 1
            return Outcome.DROPPED
        if len(encoded) <= SIGNATURE_BYTES:
            counters["dropped_malformed"] += 1
            return Outcome.DROPPED
        update_id = update_id_of(encoded)
        if update_id in self.store:
            counters["updates_known"] += 1
            return Outcome.KNOWN
        try:
            update = decode_update(encoded, config.max_update_bytes, update_id)
        except UpdateError as e:
            counters["dropped_" + e.reason] += 1
            return Outcome.DROPPED
        if self.store.deleted_by(update) is not None:
            counters["updates_known"] += 1
            return Outcome.KNOWN
        if now is None:
            now = self.clock.seconds()
        if update.expires <= now:
            counters["dropped_expired"] += 1
            return Outcome.DROPPED
        if update.expires > now + config.max_ttl + config.max_clock_skew:
            counters["dropped_bad_expiry"] += 1
            return Outcome.DROPPED
        try:
            verify_update(update)
        except UpdateError:
            counters["dropped_forged"] += 1
            return Outcome.DROPPED
        return self._accept(update)

    def _accept(self, update: Update) -> Outcome:
        added, removed = self.store.add(update)
        if added is Added.FULL:
            self.counters["dropped_store_full"] += 1
            return Outcome.DROPPED
        if added is Added.KNOWN:
            self.counters["updates_known"] += 1
            return Outcome.KNOWN
        self.counters["updates_new"] += 1
        if self.rumors is not None:
            self.rumors.infect(update.update_id)
            if removed is not None:
                self.rumors.discard([removed.update_id])
        if removed is not None:
            self.counters["deleted"] += 1
            self._notify(removed.topic, update, deletion=True)
        elif update.deletes is None:
            self._notify(update.topic, update, deletion=False)
        return Outcome.NEW

    def expire(self, now: float) -> None:
        """Forget the updates whose time has passed."""
        expired = self.store.expire(now)
        if expired:
            self.counters["expired"] += len(expired)
            if self.rumors is not None:
                self.rumors.discard(u.update_id for u in expired)

    # -- updates from here ---------------------------------------------------------------

    def publish(self, topic: str, data: bytes, ttl: float | None = None) -> Update:
        """Sign and store an update; local subscribers get it too.

        :param ttl: seconds until it expires (``config.ttl`` by default, at
            most ``config.max_ttl``).
        :raises UpdateTooLarge: it does not fit one datagram.
        :raises ValueError, TypeError: a bad topic, data or ttl.
        """
        ttl = self._check_ttl(ttl)
        update = make_update(
            self.identity, topic, data, seq=self._next_seq(), expires=self.clock.seconds() + ttl
        )
        if len(update.encoded) > self.config.max_update_bytes:
            raise UpdateTooLarge(
                "the update takes {} bytes; this node's limit is {}".format(
                    len(update.encoded), self.config.max_update_bytes
                )
            )
        self.counters["published"] += 1
        self._accept(update)
        return update

    def delete(self, update: Update, ttl: float | None = None) -> Update:
        """Sign and store a death certificate for an update published here.

        The certificate lives until the update would have expired, or ``ttl``
        seconds if that is later, so that no stale copy can come back.

        :raises ValueError: the update is not this node's.
        """
        expires = max(update.expires, self.clock.seconds() + self._check_ttl(ttl))
        certificate = death_certificate(
            self.identity, update, seq=self._next_seq(), expires=expires
        )
        self.counters["published"] += 1
        self._accept(certificate)
        return certificate

    def _check_ttl(self, ttl: float | None) -> float:
        if ttl is None:
            return self.config.ttl
        if not 0 < ttl <= self.config.max_ttl:
            raise ValueError("ttl must be in (0, {}] seconds".format(self.config.max_ttl))
        return float(ttl)

    def _next_seq(self) -> int:
        # Microseconds of the clock, strictly increasing: unique per origin,
        # even across restarts.
        now = int(self.clock.seconds() * 1_000_000)
        self._seq = now if now > self._seq else self._seq + 1
        return self._seq

    # -- subscribers ---------------------------------------------------------------------

    def subscribe(
        self,
        topic: str | None,
        on_update: UpdateCallback,
        on_delete: UpdateCallback | None = None,
    ) -> Subscription:
        """Call ``on_update(update)`` for each new update of ``topic`` (None: any).

        ``on_delete(certificate)`` is called when a death certificate removes
        an update held here; ``certificate.deletes`` is its id.
        """
        subscription = Subscription(topic, on_update, on_delete, self)
        self._subscriptions.append(subscription)
        return subscription

    def _unsubscribe(self, subscription: Subscription) -> None:
        if subscription in self._subscriptions:
            self._subscriptions.remove(subscription)

    def _notify(self, topic: str, update: Update, deletion: bool) -> None:
        for subscription in list(self._subscriptions):
            if subscription.topic is not None and subscription.topic != topic:
                continue
            callback = subscription.on_delete if deletion else subscription.on_update
            if callback is None:
                continue
            self.counters["delivered"] += 1
            try:
                callback(update)
            except Exception:
                # The subscriber's bug, not the peer's input: worth an error.
                self._log.failure("gossip subscriber {callback!r} failed", callback=callback)

    # -- what is held --------------------------------------------------------------------

    def knows(self, update_id: bytes) -> bool:
        """Whether the update is held here (the node is infected or removed)."""
        return update_id in self.store

    def spreads(self, update_id: bytes) -> bool:
        """Whether the update is still offered (SI: whenever it is held)."""
        if self.rumors is None:
            return update_id in self.store
        return update_id in self.rumors

    def updates(self, topic: str | None = None) -> list[Update]:
        """The data updates held (of ``topic``, or all)."""
        return [u for u in self.store if u.deletes is None and (topic is None or u.topic == topic)]

    def reset(self) -> None:
        """Forget every update and rumour (a simulation starts each rumour afresh)."""
        self.store.clear()
        if self.rumors is not None:
            self.rumors.clear()
