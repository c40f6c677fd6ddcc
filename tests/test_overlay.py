"""The full-mesh overlay and the kit every overlay shares (lookup counters, the join preamble)."""

from __future__ import annotations

import pytest
from zope.interface.verify import verifyObject

from dhtkit.contact import Contact
from dhtkit.identity import Identity
from dhtkit.keyspace import distance, key_for
from dhtkit.overlay import LOOKUP_COUNTERS, IOverlay, LookupStats, StaticOverlay


def contacts(count: int) -> list[Contact]:
    return [
        Contact.from_key(Identity(bytes([n]) * 32).public_key, ("10.77.0.{}".format(n), 4000))
        for n in range(1, count + 1)
    ]


def test_provides_the_overlay_interface() -> None:
    assert verifyObject(IOverlay, StaticOverlay())


def test_the_closest_members_are_responsible_closest_first() -> None:
    members = contacts(10)
    overlay = StaticOverlay(members, k=4)
    key = key_for("k")
    found: list[Contact] = []
    overlay.find_responsible(key, 4).addCallback(found.extend)
    assert found == sorted(members, key=lambda c: distance(c.node_id, key))[:4]
    assert overlay.k == 4


def test_members_join_move_and_leave() -> None:
    a, b = contacts(2)
    overlay = StaticOverlay([a])
    overlay.add(b)
    moved = Contact.from_key(b.public_key, ("10.77.0.9", 5000))
    overlay.add(moved)
    assert len(overlay) == 2
    assert moved in overlay.closest(key_for("x"), 5)
    overlay.remove(a.node_id)
    overlay.remove(a.node_id)
    assert overlay.closest(key_for("x"), 5) == [moved]


def test_a_bad_key_fails_the_deferred() -> None:
    failures: list[object] = []
    StaticOverlay(contacts(1)).find_responsible(b"short", 3).addErrback(failures.append)
    assert len(failures) == 1
    with pytest.raises(ValueError):
        StaticOverlay().closest(b"", 1)


def test_lookup_stats_count_every_lookup_under_the_shared_names() -> None:
    stats = LookupStats()
    assert stats.stats() == dict.fromkeys(LOOKUP_COUNTERS, 0)
    stats.record(3, 7, timeouts=1, bad_answers=2)
    stats.record(0, 0)
    stats.record(5, 9, failed=True)
    assert stats.stats() == {
        "lookups": 3,
        "lookup_hops": 8,
        "lookup_messages": 16,
        "lookup_timeouts": 1,
        "lookup_bad_answers": 2,
        "lookups_failed": 1,
    }
    assert (stats.hops.count, stats.hops.sum) == (3, 8)
    assert stats.hops.buckets()[0] == (0.0, 1)  # the lookup answered from our own state
