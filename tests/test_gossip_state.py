"""A node's updates: what gets in, what is dropped and counted, who hears of it."""

from __future__ import annotations

import cbor2
import pytest
from twisted.internet import task

from dhtkit.gossip.config import GossipConfig
from dhtkit.gossip.state import GossipState, Outcome
from dhtkit.gossip.update import Update, UpdateTooLarge, death_certificate, make_update
from dhtkit.identity import Identity
from tests.conftest import LoggedErrors

ALICE = Identity(b"\1" * 32)
BOB = Identity(b"\2" * 32)
NOW = 1_000_000.0


def make_state(identity: Identity = BOB, **options: object) -> tuple[GossipState, task.Clock]:
    clock = task.Clock()
    clock.advance(NOW)
    return GossipState(identity, GossipConfig(**options), clock), clock  # type: ignore[arg-type]


def from_alice(seq: int = 1, expires: float = NOW + 100, data: bytes = b"hi") -> Update:
    return make_update(ALICE, "news", data, seq=seq, expires=expires)


def test_a_valid_update_is_stored_and_delivered_once() -> None:
    state, _ = make_state()
    got: list[Update] = []
    state.subscribe("news", got.append)
    update = from_alice()
    assert state.receive(update.encoded) is Outcome.NEW
    assert state.receive(update.encoded) is Outcome.KNOWN
    assert got == [update]
    assert state.knows(update.update_id) and state.updates("news") == [update]
    assert state.counters["updates_new"] == 1 and state.counters["updates_known"] == 1


def test_a_known_update_is_not_verified_again() -> None:
    state, _ = make_state()
    update = from_alice()
    state.receive(update.encoded)
    # Same body, garbage signature: recognised by its id, not stored again.
    assert state.receive(update.body + b"\0" * 64) is Outcome.KNOWN
    assert state.counters["dropped_forged"] == 0


def test_forged_updates_are_dropped_and_counted(logged_errors: LoggedErrors) -> None:
    state, _ = make_state()
    got: list[Update] = []
    state.subscribe(None, got.append)
    update = from_alice()
    assert state.receive(update.body + bytes(64)) is Outcome.DROPPED
    assert state.counters["dropped_forged"] == 1
    assert got == [] and len(state.store) == 0
    assert logged_errors.events == []


@pytest.mark.parametrize(
    ("encoded", "counter"),
    [
        (b"\x87" + b"\0" * 1300, "dropped_oversized"),
        (b"\x87" * 10, "dropped_malformed"),
        (b"\x83" + b"\0" * 100, "dropped_malformed"),
        (cbor2.dumps([1, 0, "t", b"x", b"k", 1, 1]) + b"\0" * 64, "dropped_malformed"),
    ],
)
def test_bad_bytes_are_dropped_and_counted(encoded: bytes, counter: str) -> None:
    state, _ = make_state()
    assert state.receive(encoded) is Outcome.DROPPED
    assert state.counters[counter] == 1


def test_an_expired_update_is_dropped() -> None:
    state, _ = make_state()
    assert state.receive(from_alice(expires=NOW).encoded) is Outcome.DROPPED
    assert state.counters["dropped_expired"] == 1


def test_an_update_expiring_too_far_ahead_is_dropped() -> None:
    state, _ = make_state(max_ttl=3600, max_clock_skew=60)
    assert state.receive(from_alice(expires=NOW + 3600 + 60).encoded) is Outcome.NEW
    assert state.receive(from_alice(seq=2, expires=NOW + 3661 + 1).encoded) is Outcome.DROPPED
    assert state.counters["dropped_bad_expiry"] == 1


def test_a_full_store_drops_new_updates() -> None:
    state, _ = make_state(max_updates=1)
    state.receive(from_alice(1).encoded)
    assert state.receive(from_alice(2).encoded) is Outcome.DROPPED
    assert state.counters["dropped_store_full"] == 1


def test_updates_expire_with_the_clock() -> None:
    state, clock = make_state(model="sir")
    update = from_alice(expires=NOW + 10)
    state.receive(update.encoded)
    assert state.spreads(update.update_id)
    clock.advance(10)
    state.expire(clock.seconds())
    assert not state.knows(update.update_id) and not state.spreads(update.update_id)
    assert state.counters["expired"] == 1


def test_publishing_stores_signs_and_delivers_locally() -> None:
    state, _ = make_state(ttl=60)
    got: list[Update] = []
    state.subscribe("news", got.append)
    update = state.publish("news", b"hello")
    assert got == [update] and update.origin == BOB.public_key
    assert update.expires == NOW + 60
    assert state.publish("news", b"hello").seq > update.seq
    assert state.counters["published"] == 2


def test_publishing_checks_its_arguments() -> None:
    state, _ = make_state(max_ttl=100)
    with pytest.raises(UpdateTooLarge):
        state.publish("news", b"x" * 2000)
    with pytest.raises(ValueError):
        state.publish("news", b"x", ttl=101)
    with pytest.raises(ValueError):
        state.publish("news", b"x", ttl=0)
    with pytest.raises(TypeError):
        state.publish("news", "text")  # type: ignore[arg-type]
    small, _ = make_state(max_update_bytes=200)
    with pytest.raises(UpdateTooLarge, match="limit is 200"):
        small.publish("news", b"x" * 150)


def test_a_death_certificate_removes_the_update_and_tells_subscribers() -> None:
    state, _ = make_state(model="sir")
    deleted: list[Update] = []
    state.subscribe("news", lambda u: None, deleted.append)
    update = from_alice()
    state.receive(update.encoded)
    certificate = death_certificate(ALICE, update, seq=2, expires=NOW + 200)
    assert state.receive(certificate.encoded) is Outcome.NEW
    assert deleted == [certificate]
    assert not state.knows(update.update_id) and state.updates() == []
    assert state.spreads(certificate.update_id) and not state.spreads(update.update_id)
    # A stale copy is recognised, not stored again.
    assert state.receive(update.encoded) is Outcome.KNOWN
    assert state.counters["deleted"] == 1


def test_deleting_ones_own_update() -> None:
    state, clock = make_state(ttl=100)
    update = state.publish("news", b"oops")
    clock.advance(5)
    certificate = state.delete(update, ttl=10)
    assert certificate.deletes == update.update_id
    assert certificate.expires == update.expires  # outlives the update
    assert not state.knows(update.update_id)
    with pytest.raises(ValueError, match="origin"):
        state.delete(from_alice())


def test_subscriptions_filter_by_topic_and_can_be_cancelled() -> None:
    state, _ = make_state()
    news: list[Update] = []
    every: list[Update] = []
    subscription = state.subscribe("news", news.append)
    state.subscribe(None, every.append)
    other = make_update(ALICE, "other", b"x", seq=5, expires=NOW + 100)
    state.receive(other.encoded)
    subscription.cancel()
    subscription.cancel()
    state.receive(from_alice().encoded)
    assert news == [] and len(every) == 2


def test_a_failing_subscriber_is_logged_and_the_others_still_hear(
    logged_errors: LoggedErrors,
) -> None:
    state, _ = make_state()
    got: list[Update] = []

    def broken(update: Update) -> None:
        raise RuntimeError("subscriber bug")

    state.subscribe(None, broken)
    state.subscribe(None, got.append)
    assert state.receive(from_alice().encoded) is Outcome.NEW
    assert len(got) == 1
    assert len(logged_errors.take()) == 1


def test_sir_infects_on_arrival_and_reset_forgets() -> None:
    state, _ = make_state(model="sir")
    update = from_alice()
    state.receive(update.encoded)
    assert state.rumors is not None and state.rumors.hot() == [update.update_id]
    state.reset()
    assert not state.knows(update.update_id) and len(state.rumors) == 0
    si, _ = make_state(model="si")
    si.receive(update.encoded)
    assert si.rumors is None and si.spreads(update.update_id)
