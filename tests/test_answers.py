"""The replies kept to answer a retried query, and the IRPC seam."""

from __future__ import annotations

import pytest
from twisted.internet import task
from twisted.internet.testing import FakeDatagramTransport
from zope.interface.verify import verifyObject

from dhtkit.answers import IN_PROGRESS, AnswerCache
from dhtkit.identity import Identity
from dhtkit.rpc import RPCProtocol
from dhtkit.transport import IRPC


def test_a_new_query_is_not_seen_and_a_claimed_one_is_in_progress() -> None:
    cache = AnswerCache(ttl=5.0, max_entries=10)
    assert cache.seen((b"k", 1), now=0.0) is None
    cache.claim((b"k", 1), now=0.0)
    assert cache.seen((b"k", 1), now=1.0) is IN_PROGRESS
    cache.fill((b"k", 1), b"reply")
    assert cache.seen((b"k", 1), now=1.0) == b"reply"


def test_a_reply_expires_after_its_ttl() -> None:
    cache = AnswerCache(ttl=5.0, max_entries=10)
    cache.claim((b"k", 1), now=0.0)
    cache.fill((b"k", 1), b"reply")
    assert cache.seen((b"k", 1), now=4.9) == b"reply"
    assert cache.seen((b"k", 1), now=5.0) is None


def test_expired_replies_are_dropped_when_the_next_claim_comes() -> None:
    cache = AnswerCache(ttl=5.0, max_entries=10)
    for txid in range(3):
        cache.claim((b"k", txid), now=float(txid))
        cache.fill((b"k", txid), b"reply")
    cache.claim((b"k", 3), now=6.5)  # the first two expired (at 5 and 6)
    assert len(cache) == 2
    assert cache.seen((b"k", 2), now=6.5) == b"reply"


def test_the_oldest_claims_go_first_beyond_the_bound() -> None:
    cache = AnswerCache(ttl=5.0, max_entries=3)
    for txid in range(5):
        cache.claim((b"k", txid), now=0.0)
    assert len(cache) == 3
    assert cache.seen((b"k", 0), now=1.0) is None
    assert cache.seen((b"k", 4), now=1.0) is IN_PROGRESS


def test_a_fill_for_a_forgotten_claim_keeps_nothing() -> None:
    cache = AnswerCache(ttl=5.0, max_entries=1)
    cache.claim((b"k", 1), now=0.0)
    cache.claim((b"k", 2), now=0.0)
    cache.fill((b"k", 1), b"late")
    assert cache.seen((b"k", 1), now=1.0) is None
    assert len(cache) == 1


def _protocol() -> RPCProtocol:
    proto = RPCProtocol(Identity(b"\1" * 32), task.Clock())
    proto.makeConnection(FakeDatagramTransport())
    return proto


def test_the_rpc_protocol_provides_the_transport_interface() -> None:
    # Listening, so that it has a contact to show (a fake transport has no host).
    from twisted.internet import reactor

    proto = RPCProtocol(Identity(b"\1" * 32), task.Clock())
    port = reactor.listenUDP(0, proto, interface="127.0.0.1")  # type: ignore[attr-defined]
    try:
        assert verifyObject(IRPC, proto)
    finally:
        port.stopListening()


def test_an_unregistered_method_is_no_longer_answered() -> None:
    proto = _protocol()
    proto.register("echo", lambda sender, args: args)
    assert "echo" in proto._handlers
    proto.unregister("echo")
    assert "echo" not in proto._handlers
    proto.unregister("echo")  # twice is harmless


def test_ping_cannot_be_unregistered() -> None:
    with pytest.raises(ValueError, match="ping"):
        _protocol().unregister("ping")
