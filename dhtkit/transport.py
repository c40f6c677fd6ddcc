"""The seam between the overlays and the wire: :class:`IRPC`.

Overlays, the value layer (:class:`~dhtkit.holder.Holder`), gossip and
:class:`~dhtkit.node.DHTNode` talk to the network only through this
interface, so a second transport (another wire format, another socket kind)
can carry them without touching their routing cores.
:class:`dhtkit.rpc.RPCProtocol` is the transport dhtkit ships.

What a call fails with is in :mod:`dhtkit.rpcerrors`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from twisted.internet import defer
from zope.interface import Attribute, Interface

from dhtkit.contact import Address, Contact

Handler = Callable[[Contact, Any], Any]
"""``handler(sender, args)``: the result, a Deferred or coroutine of it."""

Listener = Callable[[Contact], None]
"""``listener(contact)``, called for the sender of every verified message."""

Wants = Callable[[Contact], bool]

#: ``watch(address, hint)``: call ``hint()`` if the network says nothing
#: answers at ``address``; returns the function that stops watching
#: (:meth:`IRPC.watch_unreachable`).
Watch = Callable[[Address, Callable[[], None]], Callable[[], None]]
"""``wants(contact)``: whether a listener would use a sender that has not
proven its address yet (and so is worth asking to prove it)."""

Caller = Callable[[Contact, str, Any], "defer.Deferred[Any]"]
"""``call(contact, method, args)``: :meth:`IRPC.call_contact` as an overlay's
rounds use it (with the overlay's own timeout and retries)."""


class IRPC(Interface):
    """Authenticated request/reply between nodes."""

    identity = Attribute("The :class:`~dhtkit.identity.Identity` whose key signs what we send.")
    clock = Attribute("The IReactorTime that times calls out.")
    timeout = Attribute("Seconds a call waits for a reply, per attempt.")
    contact = Attribute("This node as others reach it (a Contact), or None before listening.")

    def register(method: str, handler: Handler, *, idempotent: bool = False) -> None:
        """Answer queries for ``method`` with ``handler(sender, args)``.

        The handler returns the result, a Deferred or a coroutine of it, or
        raises :class:`~dhtkit.rpcerrors.RemoteError`. A retried query runs a
        handler at most once unless the method is ``idempotent``.
        """

    def unregister(method: str) -> None:
        """Stop answering ``method`` (its queries get ``unknown_method``)."""

    def add_listener(listener: Listener, wants: Wants | None = None) -> None:
        """Call ``listener(contact)`` for the sender of every verified message
        (once it has proven its address; with ``wants``, a sender is asked
        to prove it only if ``wants(contact)``)."""

    def remove_listener(listener: Listener) -> None:
        """Stop calling ``listener``."""

    def call(
        address: Address,
        method: str,
        args: Any = None,
        *,
        key: bytes | None = None,
        timeout: float | None = None,
        retries: int | None = None,
        large_answer: bool = False,
    ) -> defer.Deferred[Any]:
        """Send a query; a Deferred firing with the peer's result.

        With ``key`` (the peer's public key) only that peer may answer. With
        ``large_answer`` the query is padded, where needed, so that the peer
        may answer at once (see :mod:`dhtkit.routability`).
        Fails with :class:`~dhtkit.rpcerrors.RPCError` subclasses.
        """

    def call_contact(
        contact: Contact, method: str, args: Any = None, **kw: Any
    ) -> defer.Deferred[Any]:
        """:meth:`call` a known contact: only it may answer."""

    def ping(address: Address, key: bytes | None = None) -> defer.Deferred[Contact]:
        """Ping an address; a Deferred firing with the verified contact that answered."""

    def is_proven(contact: Contact) -> bool:
        """Whether ``contact``'s key has proven that it receives at its address.

        Nothing big goes to an unproven address (:mod:`dhtkit.routability`):
        a caller about to send much there pings it first.
        """

    def watch_unreachable(address: Address, hint: Callable[[], None]) -> Callable[[], None]:
        """Call ``hint()`` if the network says that ``address`` does not
        answer (an ICMP error; only a hint, see :mod:`dhtkit.udpport`),
        until the function returned is called."""

    def stats() -> dict[str, int]:
        """Counters of the transport, by name."""


class ITrustedNetwork(Interface):
    """A transport whose every datagram was written by a node's own code in
    this process: the simulator's virtual network, built with ``trusted``
    (``dhtkit sim ... --trust-sim``).

    On such a transport :class:`~dhtkit.rpc.RPCProtocol` does not check MACs
    and signatures, a cost that only measures the simulator's machine;
    every other check stays. No socket provides it, and nothing in the
    daemon or the services declares it: only the simulator, asked by name.
    """
