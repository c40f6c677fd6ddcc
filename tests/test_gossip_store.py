"""The update store: arrival order, capacity, expiry, death certificates."""

from __future__ import annotations

import random

import pytest

from dhtkit.gossip.store import Added, UpdateStore, key_of
from dhtkit.gossip.update import Update, death_certificate, make_update
from dhtkit.identity import Identity

ALICE = Identity(b"\1" * 32)
BOB = Identity(b"\2" * 32)


def update(n: int, expires: int = 1000, identity: Identity = ALICE) -> Update:
    return make_update(identity, "t", str(n).encode(), seq=n, expires=expires)


def test_new_then_known() -> None:
    store = UpdateStore()
    u = update(1)
    assert store.add(u) == (Added.NEW, None)
    assert store.add(u) == (Added.KNOWN, None)
    assert u.update_id in store and store.knows(u.update_id)
    assert store.get(u.update_id) is u and len(store) == 1


def test_a_full_store_refuses_new_updates() -> None:
    store = UpdateStore(max_updates=2)
    store.add(update(1))
    store.add(update(2))
    assert store.add(update(3)) == (Added.FULL, None)
    assert len(store) == 2
    with pytest.raises(ValueError):
        UpdateStore(max_updates=0)


def test_updates_are_kept_in_the_canonical_order_of_seq_then_id() -> None:
    store = UpdateStore()
    updates = [update(n) for n in range(10)]
    for u in reversed(updates):  # the arrival order does not matter
        store.add(u)
    assert list(store) == updates
    assert store.keys() == [key_of(u) for u in updates]
    assert store.newest(3) == updates[:-4:-1]
    assert store.newest(0) == []
    twins = [make_update(ALICE, "t", bytes([n]), seq=99, expires=1000) for n in range(3)]
    for u in twins:
        store.add(u)
    assert store.newest(3) == sorted(twins, key=lambda u: u.update_id, reverse=True)


def test_between_is_a_half_open_range_newest_first() -> None:
    store = UpdateStore()
    updates = [update(n) for n in range(10)]
    for u in updates:
        store.add(u)
    keys = [key_of(u) for u in updates]
    assert list(store.between(keys[2], keys[5])) == updates[5:2:-1]
    assert list(store.between(None, keys[1])) == updates[1::-1]
    assert list(store.between(keys[7], None)) == updates[:7:-1]
    assert list(store.between(None, None)) == updates[::-1]
    assert list(store.between((3, b"\xff" * 20), (6, b""))) == updates[5:3:-1]


def test_expiry_removes_what_is_due_only() -> None:
    store = UpdateStore()
    early, late = update(1, expires=100), update(2, expires=200)
    store.add(early)
    store.add(late)
    assert store.expire(99) == []
    assert store.expire(100) == [early]
    assert early.update_id not in store and late.update_id in store
    assert store.expire(1000) == [late]
    assert len(store) == 0


def test_the_expiry_heap_does_not_grow_with_removed_updates() -> None:
    store = UpdateStore()
    for n in range(500):
        u = update(n, expires=10_000)
        store.add(u)
        store.remove(u.update_id)
    store.expire(0)
    assert len(store._expiry) <= 64


def test_a_certificate_removes_the_origins_update() -> None:
    store = UpdateStore()
    u = update(1)
    store.add(u)
    certificate = death_certificate(ALICE, u, seq=2, expires=2000)
    assert store.add(certificate) == (Added.NEW, u)
    assert u.update_id not in store and certificate.update_id in store
    assert store.knows(u.update_id)
    # A stale copy arriving later is recognised as deleted.
    assert store.deleted_by(u) is certificate
    assert store.add(u) == (Added.KNOWN, None)


def test_a_certificate_arriving_first_refuses_the_update() -> None:
    store = UpdateStore()
    u = update(1)
    store.add(death_certificate(ALICE, u, seq=2, expires=2000))
    assert store.add(u) == (Added.KNOWN, None)
    assert u.update_id not in store


def test_a_certificate_from_another_origin_deletes_nothing() -> None:
    store = UpdateStore()
    u = update(1)
    store.add(u)
    # Bob signs a certificate naming Alice's update (death_certificate would
    # refuse to make it): kept and gossiped like any update, it deletes nothing.
    fake = make_update(BOB, "t", u.update_id, seq=11, expires=2000, kind=1)
    assert store.add(fake) == (Added.NEW, None)
    assert u.update_id in store and store.deleted_by(u) is None


def test_another_origins_certificate_first_does_not_block_the_real_one() -> None:
    store = UpdateStore()
    u = update(1)
    store.add(make_update(BOB, "t", u.update_id, seq=11, expires=2000, kind=1))
    real = death_certificate(ALICE, u, seq=2, expires=2000)
    store.add(real)
    assert store.deleted_by(u) is real
    assert store.add(u) == (Added.KNOWN, None)


def test_an_expired_certificate_stops_refusing() -> None:
    store = UpdateStore()
    u = update(1, expires=5000)
    store.add(death_certificate(ALICE, u, seq=2, expires=100))
    store.expire(100)
    assert not store.knows(u.update_id)
    assert store.add(u) == (Added.NEW, None)


def test_clear_forgets_everything() -> None:
    store = UpdateStore()
    u = update(1)
    store.add(u)
    store.add(death_certificate(ALICE, u, seq=2, expires=2000))
    store.clear()
    assert len(store) == 0 and not store.knows(u.update_id)


def test_removing_keeps_the_order_consistent() -> None:
    store = UpdateStore()
    updates = [update(n) for n in range(5)]
    for u in updates:
        store.add(u)
    assert store.remove(updates[2].update_id) is updates[2]
    assert store.remove(updates[2].update_id) is None
    assert list(store) == updates[:2] + updates[3:]
    assert store.keys() == [key_of(u) for u in list(store)]


def test_a_store_that_fits_is_one_whole_window() -> None:
    store = UpdateStore()
    updates = [update(n) for n in range(5)]
    for u in updates:
        store.add(u)
    assert store.window(5, random.Random(1)) == ([u.update_id for u in updates], (None, None))


def test_windows_of_a_large_store_are_exact_ranges_that_cover_it() -> None:
    store = UpdateStore()
    updates = [update(n) for n in range(100)]
    for u in updates:
        store.add(u)
    rng = random.Random(1)
    covered: set[bytes] = set()
    for _ in range(60):
        ids, (low, high) = store.window(30, rng)
        assert 0 < len(ids) <= 30
        # The ids are exactly what the store holds in the window's range.
        assert ids == [u.update_id for u in reversed(list(store.between(low, high)))]
        covered.update(ids)
    assert covered == {u.update_id for u in updates}
