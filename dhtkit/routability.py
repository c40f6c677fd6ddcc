"""Return routability: an address gets little until it proves it receives.

Sessions are per key, and a UDP source address is free to forge: a peer
holding a session with us could send a small query with a victim's address
as its source and have us send the victim a reply many times larger. So an
answer larger than :data:`AMPLIFICATION` times its query goes only to an
address that proved it receives datagrams for that key: one that answered a
query we sent it (only a receiver there could know its transaction id). For
any other address the answer is held, a small ping is sent there instead
(the probe), and the held answers follow when its reply proves the address;
if none comes, they are dropped and counted.

A victim of such a forgery thus receives a ping per forged query, and the
same ping once more when it does not answer: about what the attacker sent,
twice at most.

An answer that goes at once needs no probe to prove its asker: it carries a
challenge (:meth:`ReturnRoutability.challenge`), and the asker sends it back
in a one-way :data:`~dhtkit.wire.PROOF` datagram, which only a receiver at
the address could do. Three datagrams instead of a probe's four (the query,
its answer, the probe and its reply), and nothing kept meanwhile: the
challenge is a keyed hash of the asker's key, its address and the time, good
for one to two :data:`CHALLENGE_PERIOD`. A forged source draws no probe
that way, only the answer it was due.
"""

from __future__ import annotations

import hashlib
import hmac
import os
from collections.abc import Callable
from typing import Any

from twisted.internet import defer

from dhtkit.contact import Address
from dhtkit.sessions import Session

#: What an unproven address may receive, as a multiple of what it sent.
AMPLIFICATION = 3

#: Seconds a challenge is made for; one is good until the end of the next.
CHALLENGE_PERIOD = 60.0
#: A challenge's length: the hex of a 64-bit keyed hash.
CHALLENGE_CHARS = 16

Probe = Callable[[bytes, Address], "defer.Deferred[Any]"]
Write = Callable[[bytes, Address], None]


class ReturnRoutability:
    """Holds answers for unproven addresses and probes them.

    :param probe: ``probe(peer_key, address)`` sends a ping to ``address``
        MAC'd for ``peer_key``; its reply proves the address (the RPC layer
        then calls :meth:`proven`).
    :param write: sends a datagram.
    :param counters: where ``probes_sent``, ``probes_refused``,
        ``answers_held``, ``answers_released`` and ``dropped_unproven`` go.
    :param max_probes: probes in flight at once, all peers together.
    :param max_held: answers held per probe.
    """

    def __init__(
        self,
        probe: Probe,
        write: Write,
        counters: dict[str, int],
        *,
        max_probes: int = 256,
        max_held: int = 4,
    ) -> None:
        self._probe = probe
        self._write = write
        self.counters = counters
        self.max_probes = max_probes
        self.max_held = max_held
        # The key of the challenges.
        self._secret = os.urandom(32)
        # (peer key, address) -> the answers waiting for its proof
        self._probes: dict[tuple[bytes, Address], list[bytes]] = {}

    def send(
        self,
        session: Session | None,
        peer_key: bytes,
        address: Address,
        data: bytes,
        received: int,
    ) -> bool:
        """Send an answer to a query of ``received`` bytes, or hold it;
        whether it was sent now."""
        if len(data) <= AMPLIFICATION * received or (
            session is not None and session.is_proven(address)
        ):
            self._write(data, address)
            return True
        held = self.check(peer_key, address)
        if held is None or len(held) >= self.max_held:
            self.counters["dropped_unproven"] += 1
            return False
        held.append(data)
        self.counters["answers_held"] += 1
        return False

    def check(self, peer_key: bytes, address: Address) -> list[bytes] | None:
        """Probe ``address`` unless a probe is under way; the answers held
        for it, or None when no probe can be sent now."""
        pair = (peer_key, address)
        held = self._probes.get(pair)
        if held is not None:
            return held
        if len(self._probes) >= self.max_probes:
            self.counters["probes_refused"] += 1
            return None
        held = self._probes[pair] = []
        self.counters["probes_sent"] += 1
        self._probe(peer_key, address).addBoth(self._finished, pair)
        return held

    def probing(self, peer_key: bytes, address: Address) -> bool:
        """Whether a probe of ``address`` for ``peer_key`` is under way."""
        return (peer_key, address) in self._probes

    def proven(self, peer_key: bytes, address: Address) -> None:
        """``address`` proved it receives for ``peer_key``: release its answers."""
        held = self._probes.pop((peer_key, address), None)
        if held:
            self.counters["answers_released"] += len(held)
            for data in held:
                self._write(data, address)

    def challenge(self, peer_key: bytes, address: Address, now: float) -> str:
        """The challenge an answer to ``peer_key`` at ``address`` carries:
        sent back in a proof, it proves the address."""
        return self._challenge(peer_key, address, int(now // CHALLENGE_PERIOD))

    def is_answered(self, peer_key: bytes, address: Address, challenge: str, now: float) -> bool:
        """Whether ``challenge``, come back from ``peer_key`` at ``address``,
        is one made for them this period or the last."""
        if len(challenge) != CHALLENGE_CHARS or not challenge.isascii():
            return False  # (compare_digest takes ASCII text only)
        period = int(now // CHALLENGE_PERIOD)
        return hmac.compare_digest(
            challenge, self._challenge(peer_key, address, period)
        ) or hmac.compare_digest(challenge, self._challenge(peer_key, address, period - 1))

    def _challenge(self, peer_key: bytes, address: Address, period: int) -> str:
        host, port = address
        data = b"%s %d %d " % (host.encode(), port, period) + peer_key
        return hashlib.blake2b(data, key=self._secret, digest_size=CHALLENGE_CHARS // 2).hexdigest()

    def _finished(self, _: object, pair: tuple[bytes, Address]) -> None:
        # The probe's reply, when it came, already released the answers.
        held = self._probes.pop(pair, None)
        if held:
            self.counters["dropped_unproven"] += len(held)

    def __len__(self) -> int:
        return len(self._probes)
