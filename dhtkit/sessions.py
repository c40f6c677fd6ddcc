"""Admission: which authenticated datagrams a node accepts, and from whom.

A datagram that :func:`wire.decode` parsed still has to pass here before any
handler sees it: it must not come from ourselves, its first datagram must be
fresh (close to our clock), its authenticator must verify under the session
key we share with its sender (or its signature, for a first contact), and its
sequence number must not have been accepted before.

:meth:`SessionTable.admit` is the one door: it returns the sender's
:class:`Session` or raises a :class:`Dropped` whose ``reason`` names the
counter. Everything kept per peer has a constant bound: a session is its key,
a :class:`ReplayWindow` of at most :data:`REPLAY_WINDOW` numbers, and at most
:data:`MAX_PROVEN` addresses; at most ``max_sessions`` sessions are kept, and
as many tombstones of evicted ones (a key and one number each).
"""

from __future__ import annotations

import sys
from array import array
from bisect import bisect_left

from dhtkit import wire
from dhtkit.contact import Address, Contact, shared_key
from dhtkit.identity import Identity
from dhtkit.ratelimit import RateLimiter

#: How many of one sender's datagrams may arrive out of order: a number more
#: than this many places behind the newest accepted one is refused.
REPLAY_WINDOW = 64

#: Addresses remembered per peer as proven to receive there.
MAX_PROVEN = 4


class Dropped(wire.WireError):
    """A well-formed datagram that admission refuses."""


class FromSelf(Dropped):
    """Our own datagram, reflected back to us."""

    reason = "self"


class Stale(Dropped):
    """The first datagram of a peer we remember nothing of is not fresh."""

    reason = "stale"


class Replayed(Dropped):
    """A sequence number accepted before, or too old to tell."""

    reason = "replay"


class HandshakeLimited(Dropped):
    """Public-key work is over its budget for now."""

    reason = "handshake_limited"


class ReplayWindow:
    """Which of one sender's sequence numbers were accepted.

    The newest :data:`REPLAY_WINDOW` accepted numbers are kept sorted; every
    number at or below ``floor`` (the newest one forgotten) is refused. The
    sender's numbers only grow (they are its clock in microseconds), so only
    reordering within the window is lost, and memory is constant whatever the
    sender sends.

    Most peers send a few datagrams: up to :data:`SMALL_WINDOW` numbers are
    one byte string, eight big-endian bytes each (so bytes order as the
    numbers do), 8 or 16 bytes for a peer met once or twice rather than an
    array object. Beyond that, the numbers move to an array, whose appends
    do not copy the window, for the busy peers.
    """

    __slots__ = ("floor", "recent")

    def __init__(self, floor: int = -1) -> None:
        self.floor = floor
        self.recent: bytes | array[int] = b""

    @property
    def empty(self) -> bool:
        """Whether nothing was accepted (or is remembered) yet."""
        return self.floor < 0 and not self.recent

    @property
    def remembered(self) -> int:
        """How many accepted numbers the window holds."""
        recent = self.recent
        return len(recent) >> 3 if type(recent) is bytes else len(recent)

    @property
    def highest(self) -> int:
        """The newest number accepted, or ``floor``."""
        recent = self.recent
        if not recent:
            return self.floor
        return _from_bytes(recent[-8:], "big") if type(recent) is bytes else recent[-1]

    def accept(self, seq: int) -> bool:
        """Record ``seq`` (below 2**64, as the wire has it); False if it is a
        repeat or too old to tell."""
        recent = self.recent
        if not isinstance(recent, bytes):
            return self._accept_many(recent, seq)
        if seq > (_from_bytes(recent[-8:], "big") if recent else self.floor):
            recent += seq.to_bytes(8, "big")
        else:
            if seq <= self.floor:
                return False
            item = seq.to_bytes(8, "big")
            # Binary search for the first number not below seq.
            lo, hi = 0, len(recent) >> 3
            while lo < hi:
                mid = (lo + hi) >> 1
                if recent[mid << 3 : (mid << 3) + 8] < item:
                    lo = mid + 1
                else:
                    hi = mid
            at = lo << 3
            if recent[at : at + 8] == item:
                return False
            recent = recent[:at] + item + recent[at:]
        if len(recent) > _SMALL_BYTES:
            numbers = array("Q")
            numbers.frombytes(recent)
            if sys.byteorder == "little":
                numbers.byteswap()
            self.recent = numbers
        else:
            self.recent = recent
        return True

    def _accept_many(self, recent: array[int], seq: int) -> bool:
        # The window of a busy peer: more than SMALL_WINDOW numbers.
        if seq > recent[-1]:
            recent.append(seq)
        else:
            if seq <= self.floor:
                return False
            i = bisect_left(recent, seq)
            if i < len(recent) and recent[i] == seq:
                return False
            recent.insert(i, seq)
        if len(recent) > REPLAY_WINDOW:
            self.floor = recent.pop(0)
        return True


#: Numbers a window keeps as a byte string before it moves them to an array.
SMALL_WINDOW = 8
_SMALL_BYTES = 8 * SMALL_WINDOW
_from_bytes = int.from_bytes


class Session(ReplayWindow):
    """What we remember of a peer: the key we share, what it sent (the
    replay window of its sequence numbers), where it is.

    ``contact`` is the peer as its latest datagram showed it (its key and
    source address), kept so that the datagrams after it, from the same
    address, need no new :class:`Contact`. A node keeps hundreds of
    sessions (a simulation, millions): the window is the session itself
    rather than an object of its own, and ``proven`` is empty, the one
    proven address itself (most peers have one), or a tuple of them.
    """

    __slots__ = ("answered", "contact", "key", "peer_key", "proven")

    def __init__(self, key: bytes, floor: int = -1, peer_key: bytes = b"") -> None:
        super().__init__(floor)
        self.key = key
        # The peer's public key, the very object the session table is keyed
        # by: a contact made for the peer shares it rather than copy it.
        self.peer_key = peer_key
        self.proven: Address | tuple[Address, ...] = ()
        self.contact: Contact | None = None
        # Whether we sent this peer an answer, which proved our address to
        # it (unless the answer was lost).
        self.answered = False

    def is_proven(self, address: Address) -> bool:
        """Whether ``address`` proved that this peer receives there."""
        proven = self.proven
        # One address equals it; a tuple of addresses holds it (an address
        # is never an item of an address, a port or a host).
        return proven == address or address in proven

    def proven_addresses(self) -> tuple[Address, ...]:
        """The addresses proven, oldest first."""
        proven = self.proven
        if proven and type(proven[1]) is int:
            return (proven,)  # type: ignore[return-value]
        return proven  # type: ignore[return-value]

    def prove(self, address: Address) -> None:
        """Remember that this peer received what we sent to ``address``."""
        if self.is_proven(address):
            return
        contact = self.contact
        if contact is not None and contact.address == address:
            address = contact.address  # one tuple for both, not two
        if not self.proven:
            self.proven = address
        else:
            self.proven = (*self.proven_addresses()[1 - MAX_PROVEN :], address)


class SessionTable:
    """The sessions of one node, and the rules that admit a datagram.

    :param identity: ours, for the key agreement.
    :param max_sessions: sessions kept; the least recently used is evicted,
        leaving a tombstone with its newest sequence number.
    :param max_clock_skew: seconds the first datagram of a peer we remember
        nothing of may be from our clock.
    :param handshake_rate: signatures checked plus session keys derived per
        second, all peers together.

    ``verify_authenticators`` is True unless the RPC layer runs on a
    :class:`~dhtkit.transport.ITrustedNetwork` (a simulation that asked for
    it by name): then MACs and signatures are taken as they come.
    """

    def __init__(
        self,
        identity: Identity,
        *,
        max_sessions: int = 10_000,
        max_clock_skew: float = 600.0,
        handshake_rate: float = 2000.0,
    ) -> None:
        self.identity = identity
        self.max_sessions = max_sessions
        self.verify_authenticators = True
        self.max_clock_skew_us = int(max_clock_skew * 1_000_000)
        # Public-key work (a signature to check, a session key to derive) costs
        # tens of microseconds; spoofed sources could dodge per-host buckets,
        # so it has one bucket for everyone.
        self.handshake_limiter = RateLimiter(handshake_rate, handshake_rate, max_sources=1)
        # Least recently used first (a plain dict, re-inserted on use: a
        # third of an OrderedDict's bytes per entry, and there is one per
        # peer met).
        self._sessions: dict[bytes, Session] = {}
        # Evicted peers' newest sequence numbers: a datagram captured before
        # an eviction cannot be replayed after it.
        self._tombstones: dict[bytes, int] = {}
        # Every sequence number at or below this one belonged to a peer whose
        # tombstone was forgotten too: refused from anyone we do not remember.
        self.floor = -1

    def __len__(self) -> int:
        return len(self._sessions)

    def get(self, peer_key: bytes) -> Session | None:
        """The session of ``peer_key``, if one is kept."""
        return self._sessions.get(peer_key)

    def key_for(self, peer_key: bytes) -> bytes:
        """The session key for a datagram to ``peer_key`` (derived once)."""
        session = self._sessions.get(peer_key)
        if session is None:
            session = self._open(peer_key, wire.session_key(self.identity, peer_key))
        return session.key

    def admit(self, message: wire.Message, now: float) -> Session:
        """The sender's session, once ``message`` passed every check.

        :raises wire.WireError: a :class:`Dropped` or the authenticator's
            :class:`wire.BadAuthenticator`; ``reason`` names the counter.
        """
        peer_key = message.sender_key
        if peer_key == self.identity.public_key:
            raise FromSelf("our own datagram")
        session = self._sessions.get(peer_key)
        if session is None or (session.floor < 0 and not session.recent):
            # Nothing tells what this peer sent before: only a fresh datagram
            # may open the window, or an old one could be replayed once.
            skew = message.seq - int(now * 1_000_000)
            if not -self.max_clock_skew_us <= skew <= self.max_clock_skew_us:
                raise Stale("the first datagram of a peer is not fresh")
            floor = self._tombstones.get(peer_key, self.floor)
            if message.seq <= floor:
                raise Stale("older than what this peer sent before its session was evicted")
        if (session is None or len(message.auth) != wire.MAC_BYTES) and not (
            self.handshake_limiter.allow("", now)
        ):
            raise HandshakeLimited("public-key work is over budget")
        if session is None:
            key = wire.session_key(self.identity, peer_key)
            if self.verify_authenticators:
                wire.verify(message, key)
            session = self._open(peer_key, key)
        else:
            if self.verify_authenticators:
                wire.verify(message, session.key)
            sessions = self._sessions
            # Now the most recently used, still keyed by the shared key.
            sessions[session.peer_key] = sessions.pop(peer_key)
        if not session.accept(message.seq):
            raise Replayed("sequence number seen before or too old")
        return session

    def _open(self, peer_key: bytes, key: bytes) -> Session:
        peer_key = shared_key(peer_key)
        floor = self._tombstones.pop(peer_key, self.floor)
        session = self._sessions[peer_key] = Session(key, floor, peer_key)
        if len(self._sessions) > self.max_sessions:
            old_key = next(iter(self._sessions))  # the least recently used
            old = self._sessions.pop(old_key)
            self._tombstones[old_key] = old.highest
            if len(self._tombstones) > self.max_sessions:
                highest = self._tombstones.pop(next(iter(self._tombstones)))
                self.floor = max(self.floor, highest)
        return session
