"""Where gossip partners come from: a peer sampler.

Each round a node gossips with one peer drawn uniformly from its sampler's
candidates. :class:`StaticPeers` starts from a list of addresses (their keys
are learnt by a first, signed ping) and :class:`OverlayPeers` asks a running
overlay for its contacts; :class:`ContactList` is a fixed list, as the
simulator uses.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Iterable, Sequence

from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import Interface, implementer  # type: ignore[import-untyped]

from dhtkit.contact import Address, Contact, normalize_address
from dhtkit.rpcerrors import RPCError
from dhtkit.transport import IRPC


class IPeerSampler(Interface):  # type: ignore[misc]
    """The peers a gossip node may pick from."""

    def start() -> None:
        """Begin whatever discovery the sampler does."""

    def stop() -> None:
        """Stop its timers."""

    def candidates() -> Sequence[Contact]:
        """The contacts to draw a partner from (may include this node itself)."""

    def offer(contact: Contact) -> None:
        """A verified peer that gossiped with us; the sampler may keep it."""

    def failed(contact: Contact) -> None:
        """A call to ``contact`` failed; the sampler may drop or re-resolve it."""


@implementer(IPeerSampler)
class ContactList:
    """A fixed list of contacts, shared as is (no copy per round)."""

    def __init__(self, contacts: Sequence[Contact]) -> None:
        self.contacts = contacts

    def start(self) -> None:
        """Nothing to discover."""

    def stop(self) -> None:
        """Nothing to stop."""

    def candidates(self) -> Sequence[Contact]:
        """The list given."""
        return self.contacts

    def offer(self, contact: Contact) -> None:
        """The list is fixed."""

    def failed(self, contact: Contact) -> None:
        """The list is fixed."""


@implementer(IPeerSampler)
class OverlayPeers:
    """The contacts of a running overlay: ``contacts()`` is asked each round."""

    def __init__(self, contacts: Callable[[], Iterable[Contact]]) -> None:
        self._contacts = contacts

    def start(self) -> None:
        """The overlay does its own discovery."""

    def stop(self) -> None:
        """Nothing to stop."""

    def candidates(self) -> Sequence[Contact]:
        """The overlay's contacts now."""
        return list(self._contacts())

    def offer(self, contact: Contact) -> None:
        """The overlay sees every verified sender already."""

    def failed(self, contact: Contact) -> None:
        """The overlay's own liveness checks decide."""


@implementer(IPeerSampler)
class StaticPeers:
    """Peers given by address, plus the peers that gossip with us.

    An address is only a partner once a ping has told us the key of the node
    there; addresses that do not answer are pinged again every ``retry``
    seconds, and so is a resolved one whose calls start failing (its node may
    have restarted with a new key). Peers learnt from incoming gossip are
    kept too, at most ``max_learned``, the least recently heard dropped first,
    so that a node listed by others but listing none itself still gossips.

    :raises ValueError: an address is not an IP literal and port.
    """

    _log = Logger()

    def __init__(
        self,
        addresses: Iterable[Address],
        rpc: IRPC,
        clock: IReactorTime,
        *,
        retry: float = 30.0,
        max_learned: int = 1000,
    ) -> None:
        self._unresolved: set[Address] = {normalize_address(a) for a in addresses}
        self._resolved: dict[Address, Contact] = {}
        self._learned: OrderedDict[bytes, Contact] = OrderedDict()
        self._rpc = rpc
        self._clock = clock
        self.retry = retry
        self.max_learned = max_learned
        self._timer: IDelayedCall | None = None
        self._resolving: set[Address] = set()
        self._running = False

    def start(self) -> None:
        """Ping every address now, and the unanswered ones every ``retry`` seconds."""
        self._running = True
        self._resolve()

    def stop(self) -> None:
        """Stop pinging."""
        self._running = False
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None

    def candidates(self) -> Sequence[Contact]:
        """Resolved addresses and learnt peers, each once."""
        out = dict(self._learned)
        for contact in self._resolved.values():
            out[contact.public_key] = contact
        return list(out.values())

    def offer(self, contact: Contact) -> None:
        """Remember a peer that gossiped with us."""
        self._learned[contact.public_key] = contact
        self._learned.move_to_end(contact.public_key)
        if len(self._learned) > self.max_learned:
            self._learned.popitem(last=False)

    def failed(self, contact: Contact) -> None:
        """Forget a learnt peer; ping a listed address again."""
        self._learned.pop(contact.public_key, None)
        address = contact.address
        if self._resolved.get(address) == contact:
            del self._resolved[address]
            self._unresolved.add(address)
            if self._running and self._timer is None:
                self._timer = self._clock.callLater(self.retry, self._resolve)

    def _resolve(self) -> None:
        self._timer = None
        own = self._rpc.contact
        if own is not None:
            # A peer list shared by every node lists this one too.
            self._unresolved.discard(own.address)
        for address in sorted(self._unresolved - self._resolving):
            self._resolving.add(address)
            self._rpc.ping(address).addCallbacks(
                self._resolved_one,
                self._not_resolved,
                callbackArgs=(address,),
                errbackArgs=(address,),
            )
        if self._unresolved:
            self._timer = self._clock.callLater(self.retry, self._resolve)

    def _resolved_one(self, contact: Contact, address: Address) -> None:
        self._resolving.discard(address)
        self._unresolved.discard(address)
        if contact.public_key != self._rpc.identity.public_key:
            self._resolved[address] = contact

    def _not_resolved(self, failure: Failure, address: Address) -> Failure | None:
        self._resolving.discard(address)
        if not isinstance(failure.value, RPCError):
            return failure
        self._log.debug(
            "no answer from gossip peer {host}:{port}", host=address[0], port=address[1]
        )
        return None
