"""One gossip node on the network: its rounds, and its answers to others'.

Every round (a random interval around ``period`` on the injected clock) the
node draws a partner from its peer sampler and makes one exchange, the
``gossip`` RPC of :mod:`dhtkit.gossip.messages`:

=========  ===================================  =========================================
model      the caller sends                     the peer answers
=========  ===================================  =========================================
SI push    its digest, "which do you lack?"     those ids; the caller then sends them
SI pull    its digest, "send what I lack"       the updates the digest lacks
SIR push   its hot updates                      per update, whether it knew it (feedback)
SIR pull   its newest ids, "send what I lack"   its hot updates that the ids lack
=========  ===================================  =========================================

and push-pull does both in one exchange. In SI (anti-entropy) a node offers
what it holds for as long as it holds it; in SIR (rumour mongering) only
while it is infected with it, and the loss rule of :mod:`dhtkit.gossip.rumor`
decides when it stops. Updates enter through :class:`GossipState`, which
checks each one before it is stored or offered to anyone.
"""

from __future__ import annotations

import os
import random
from collections.abc import Callable, Iterable
from typing import Any

from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.python.failure import Failure

from dhtkit import wire
from dhtkit.contact import Contact
from dhtkit.gossip import messages
from dhtkit.gossip.config import GossipConfig
from dhtkit.gossip.messages import (
    METHOD,
    PAYLOAD_BUDGET,
    ExchangeReply,
    ExchangeRequest,
)
from dhtkit.gossip.rumor import Rumors
from dhtkit.gossip.sampler import IPeerSampler
from dhtkit.gossip.state import GossipState, Outcome
from dhtkit.gossip.update import Update
from dhtkit.rpcerrors import MalformedPayload, RemoteError, RPCError
from dhtkit.transport import IRPC

#: Follow-up calls at most, per exchange, to send the updates a peer lacks.
MAX_BATCHES = 4

_COUNTERS = (
    "rounds",
    "exchanges",
    "exchange_failures",
    "requests_received",
    "bad_requests",
    "bad_replies",
    "updates_sent",
)


class GossipProtocol:
    """Epidemic dissemination of signed updates over an :class:`~dhtkit.transport.IRPC`.

    :param rpc: the node's RPC layer; the ``gossip`` method is registered on it.
    :param sampler: where partners come from (:class:`IPeerSampler`).
    :param config: model, mode, loss rule and limits (:class:`GossipConfig`).
    :param clock: the clock for rounds and expiry (the RPC's by default).
    :param rng: partner choice, coins and round intervals (seed it in simulations).

    Publishing, deleting and subscribing go to :attr:`state`
    (:class:`GossipState`).

    :ivar on_sent: when set, called with the updates of every request and
        reply this node sends (the simulator counts each rumour's messages
        apart when several spread together); None by default.
    """

    def __init__(
        self,
        rpc: IRPC,
        sampler: IPeerSampler,
        config: GossipConfig | None = None,
        *,
        clock: IReactorTime | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self.config = config = config if config is not None else GossipConfig()
        self.rpc = rpc
        self.sampler = sampler
        self.clock = clock if clock is not None else rpc.clock
        self.rng = rng if rng is not None else random.Random(os.urandom(16))
        self.counters: dict[str, int] = dict.fromkeys(_COUNTERS, 0)
        self.state = GossipState(rpc.identity, config, self.clock, self.counters)
        self._call_options: dict[str, Any] = (
            {} if config.call_timeout is None else {"timeout": config.call_timeout}
        )
        self._timer: IDelayedCall | None = None
        self.on_sent: Callable[[list[Update]], None] | None = None

    # -- running ----------------------------------------------------------------

    def start(self, rounds: bool = True) -> None:
        """Answer exchanges, and start the sampler and the rounds (the first within one period).

        With ``rounds=False`` the node only answers: whoever drives it (a
        simulation) calls :meth:`run_round` itself.
        """
        # Anti-entropy's answer may run again for a retried exchange: what it
        # stores is stored once and what it offers is what is held, so the RPC
        # layer need not keep every reply for the retries (a busy node would
        # hold thousands). A rumour's may not: its feedback and coins would
        # count one contact twice.
        self.rpc.register(METHOD, self._answer, idempotent=self.state.rumors is None)
        if rounds and self._timer is None:
            self.sampler.start()
            self._timer = self.clock.callLater(self.rng.uniform(0, self.config.period), self._tick)

    def stop(self) -> None:
        """Stop answering, the rounds and the sampler; calls in flight end on their own."""
        self.rpc.unregister(METHOD)
        if self._timer is not None:
            if self._timer.active():
                self._timer.cancel()
            self._timer = None
            self.sampler.stop()

    @property
    def running(self) -> bool:
        """Whether rounds are scheduled."""
        return self._timer is not None

    def _tick(self) -> None:
        jitter = self.config.jitter
        interval = self.config.period * self.rng.uniform(1 - jitter, 1 + jitter)
        # Rescheduled first: a round that fails must not end the rounds.
        self._timer = self.clock.callLater(interval, self._tick)
        self.run_round()

    def run_round(self) -> None:
        """One round: forget expired updates, pick a partner, exchange.

        The node's own timer calls it once started; a simulation with
        synchronous rounds calls it on every node at each round instead.
        """
        self.counters["rounds"] += 1
        state = self.state
        state.expire(self.clock.seconds())
        rumors = state.rumors
        if not self.config.pull and not (state.store if rumors is None else rumors):
            return  # push only, and nothing to push
        peer = self._pick_peer()
        if peer is None:
            return
        if rumors is None:
            self._anti_entropy(peer)
        else:
            self._monger(peer, rumors)

    def _pick_peer(self) -> Contact | None:
        candidates = self.sampler.candidates()
        count = len(candidates)
        own = self.rpc.identity.public_key
        # Rejection sampling: uniform over the others without copying the
        # sampler's list; a list of only ourselves gives up soon.
        for _ in range(8):
            if count == 0:
                return None
            peer = candidates[int(self.rng.random() * count)]
            if peer.public_key != own:
                return peer
        return None

    # -- the caller's side ---------------------------------------------------------

    def _anti_entropy(self, peer: Contact) -> None:
        config = self.config
        budget = PAYLOAD_BUDGET - messages.request_overhead(2, window=True)
        limit = min(messages.MAX_DIGEST, (budget - messages.list_size([])) // messages.ID_SIZE)
        digest, window = self.state.store.window(limit, self.rng)
        request = ExchangeRequest(digest=digest, window=window, pull=config.pull, want=config.push)
        self._exchange(peer, request, [])

    def _monger(self, peer: Contact, rumors: Rumors) -> None:
        config = self.config
        hot = rumors.hot()
        budget = PAYLOAD_BUDGET - messages.request_overhead(2)
        pushed: list[Update] = []
        if config.push and hot:
            if len(hot) > 1:
                self.rng.shuffle(hot)
            pushed = messages.fit([self.state.store.get(i) for i in hot], budget)
            budget -= messages.list_size([u.encoded for u in pushed])
        digest: list[bytes] = []
        if config.pull:
            # The newest ids: hot rumours are recent, and a rumour the peer
            # finds listed here is one it need not send (and counts as known).
            limit = min(messages.MAX_DIGEST, (budget - messages.list_size([])) // messages.ID_SIZE)
            digest = [u.update_id for u in self.state.store.newest(limit)]
        request = ExchangeRequest([u.encoded for u in pushed], digest, None, config.pull)
        self._exchange(peer, request, pushed)

    def _exchange(
        self,
        peer: Contact,
        request: ExchangeRequest,
        pushed: list[Update],
        carried: list[Update] | None = None,
    ) -> None:
        # ``carried``: the updates of the request, when they are not ``pushed``
        # (those a peer asked for are sent without a rumour's bookkeeping).
        self.counters["exchanges"] += 1
        self._sent(pushed if carried is None else carried)
        d = self.rpc.call_contact(peer, METHOD, request.to_payload(), **self._call_options)
        d.addCallbacks(
            self._replied,
            self._failed,
            callbackArgs=(peer, request, pushed),
            errbackArgs=(peer,),
        )

    def _replied(
        self, payload: Any, peer: Contact, request: ExchangeRequest, pushed: list[Update]
    ) -> None:
        try:
            reply = messages.parse_reply(payload)
        except MalformedPayload:
            self.counters["bad_replies"] += 1
            return
        rumors = self.state.rumors
        if rumors is not None:
            known = reply.known
            for n, update in enumerate(pushed):
                rumors.contacted(update.update_id, n < len(known) and known[n], self.rng)
        now = self.clock.seconds()
        for encoded in reply.updates:
            self.state.receive(encoded, now)
        if reply.wanted and request.want:
            self._send_wanted(peer, reply.wanted)

    def _send_wanted(self, peer: Contact, wanted: list[bytes]) -> None:
        store = self.state.store
        updates = [store.get(i) for i in wanted]
        budget = PAYLOAD_BUDGET - messages.request_overhead(0)
        for _ in range(MAX_BATCHES):
            batch = messages.fit(updates, budget)
            if not batch:
                return
            self._exchange(peer, ExchangeRequest(updates=[u.encoded for u in batch]), [], batch)
            sent = {u.update_id for u in batch}
            updates = [u for u in updates if u is not None and u.update_id not in sent]

    def _sent(self, updates: list[Update]) -> None:
        self.counters["updates_sent"] += len(updates)
        if self.on_sent is not None and updates:
            self.on_sent(updates)

    def _failed(self, failure: Failure, peer: Contact) -> Failure | None:
        if not isinstance(failure.value, (RPCError, wire.WireError)):
            return failure  # a bug of ours: let it be logged
        self.counters["exchange_failures"] += 1
        self.sampler.failed(peer)
        return None

    # -- the peer's side -----------------------------------------------------------

    def _answer(self, sender: Contact, payload: Any) -> dict[str, Any]:
        try:
            request = messages.parse_request(payload)
        except MalformedPayload as e:
            self.counters["bad_requests"] += 1
            raise RemoteError("bad_request", str(e)) from None
        self.counters["requests_received"] += 1
        self.sampler.offer(sender)
        state = self.state
        now = self.clock.seconds()
        # Anything but a new update tells the caller that sending it here was
        # of no use: the feedback its loss rule counts.
        known = [state.receive(encoded, now) is not Outcome.NEW for encoded in request.updates]
        budget = PAYLOAD_BUDGET - messages.list_size([]) - len(known)
        wanted: list[bytes] = []
        if request.want:
            wanted = [i for i in request.digest if not state.store.knows(i)]
            budget -= messages.list_size(wanted)
        sent: list[Update] = []
        if request.pull:
            sent = messages.fit(self._offer_for(request), budget)
            rumors = state.rumors
            if rumors is not None and not rumors.feedback:
                for update in sent:
                    rumors.contacted(update.update_id, False, self.rng)
        self._sent(sent)
        return ExchangeReply(known, [u.encoded for u in sent], wanted).to_payload()

    def _offer_for(self, request: ExchangeRequest) -> list[Update | None]:
        # What a pull may send: in SI what the digest lacks; in SIR only hot
        # rumours, and one the caller knew already is a contact that counts
        # toward losing it (the feedback).
        has = set(request.digest)
        store = self.state.store
        rumors = self.state.rumors
        offer: list[Update | None] = []
        if rumors is None:
            # Within the window the digest is exact: what it does not name is
            # missing there. Without a window (a rumour-mongering caller) it
            # is a hint, and the newest updates are the likeliest missing.
            window = request.window
            candidates: Iterable[Update] = (
                store.newest(messages.MAX_DIGEST)
                if window is None
                else store.between(window[0], window[1])
            )
            for update in candidates:
                if update.update_id not in has:
                    offer.append(update)
                    if len(offer) >= messages.MAX_UPDATES:
                        break
            return offer
        for update_id in rumors.hot():
            if update_id in has:
                rumors.contacted(update_id, True, self.rng)
            else:
                offer.append(store.get(update_id))
        return offer

    # -- the state, for convenience --------------------------------------------------

    def publish(self, topic: str, data: bytes, ttl: float | None = None) -> Update:
        """Sign an update and start spreading it (see :meth:`GossipState.publish`)."""
        return self.state.publish(topic, data, ttl)

    def stats(self) -> dict[str, int]:
        """A copy of the counters, plus what is held now."""
        out = dict(self.counters)
        out["dropped"] = sum(v for k, v in self.counters.items() if k.startswith("dropped_"))
        rumors = self.state.rumors
        out["updates"] = len(self.state.store)
        out["spreading"] = out["updates"] if rumors is None else len(rumors)
        out["removed"] = 0 if rumors is None else rumors.removed
        return out
