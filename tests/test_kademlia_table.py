"""The Kademlia routing table: k-buckets, the least-recently-seen rule, splits, queries.

The table trusts its caller to pass verified contacts, so these tests build
contacts with chosen ids directly; our own id is 0 unless a test says
otherwise, which makes an id its own distance from us.
"""

from __future__ import annotations

import itertools
import random
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.internet import defer, task

from dhtkit.contact import Contact
from dhtkit.identity import Identity, solves_puzzle
from dhtkit.kademlia.diversity import NetworkLimit
from dhtkit.kademlia.table import RoutingTable
from dhtkit.keyspace import RING_SIZE, bucket_index, distance, from_int, to_int
from dhtkit.rpc import RPCTimeout
from tests.conftest import LoggedErrors

OWN = from_int(0)
TOP = 1 << 159  # the far half of the id space, seen from OWN


def node(n: int, port: int = 4000) -> Contact:
    return Contact(from_int(n), n.to_bytes(32, "big"), ("10.0.0.1", port))


class Pinger:
    """A ping whose Deferreds the test fires by hand."""

    def __init__(self) -> None:
        self.calls: list[tuple[Contact, defer.Deferred[object]]] = []

    def __call__(self, contact: Contact) -> defer.Deferred[object]:
        d: defer.Deferred[object] = defer.Deferred()
        self.calls.append((contact, d))
        return d

    def pending(self) -> list[bytes]:
        return [c.node_id for c, d in self.calls if not d.called]


def make_table(own: bytes = OWN, **kw: Any) -> tuple[RoutingTable, Pinger, task.Clock]:
    pinger, clock = Pinger(), task.Clock()
    table = RoutingTable(own, ping=pinger, clock=clock, **kw)
    return table, pinger, clock


def ids_of(contacts: list[Contact]) -> list[int]:
    return [to_int(c.node_id) for c in contacts]


def far_full_table(**kw: Any) -> tuple[RoutingTable, Pinger, task.Clock]:
    """k=2: two near contacts and a full far bucket [TOP, 2**160) of TOP+1, TOP+2.

    The near contacts are closer to us than any far id, so the relaxed rule
    never splits the far bucket.
    """
    table, pinger, clock = make_table(k=2, **kw)
    for n in (1, 2, TOP + 1, TOP + 2):
        table.add_contact(node(n))
    assert len(table) == 4 and table.stats()["buckets"] == 2
    return table, pinger, clock


def far_ids(table: RoutingTable) -> list[int]:
    return [n for n in ids_of(table.contacts()) if n >= TOP]


def test_a_newcomer_is_appended_while_there_is_room() -> None:
    table, pinger, _ = make_table(k=3)
    for n in (TOP + 3, 5, TOP + 1):
        table.add_contact(node(n))
    assert ids_of(table.contacts()) == [TOP + 3, 5, TOP + 1]
    assert len(table) == 3 and pinger.calls == []


def test_a_known_contact_moves_to_the_tail_with_its_new_address() -> None:
    table, _, _ = make_table(k=3)
    for n in (1, 2, 3):
        table.add_contact(node(n))
    table.add_contact(node(1, port=5000))
    assert ids_of(table.contacts()) == [2, 3, 1]
    assert table.get(from_int(1)) == node(1, port=5000)
    assert table.stats()["added"] == 3


def test_a_full_far_bucket_pings_its_head_and_keeps_it_when_it_answers() -> None:
    table, pinger, _ = far_full_table()
    table.add_contact(node(TOP + 3))
    assert pinger.pending() == [from_int(TOP + 1)]
    assert from_int(TOP + 3) not in table
    pinger.calls[0][1].callback(None)
    assert far_ids(table) == [TOP + 2, TOP + 1]
    assert from_int(TOP + 3) not in table
    stats = table.stats()
    assert stats["replacements"] == 1 and stats["pings_answered"] == 1
    assert stats["evictions"] == 0 and stats["pinging"] == 0
    # The newcomer waited as a replacement: it takes the next free place.
    assert table.remove_contact(from_int(TOP + 2))
    assert far_ids(table) == [TOP + 1, TOP + 3]


def test_a_head_that_does_not_answer_is_evicted_for_the_newcomer() -> None:
    table, pinger, _ = far_full_table()
    table.add_contact(node(TOP + 3))
    pinger.calls[0][1].errback(RPCTimeout("no answer"))
    assert far_ids(table) == [TOP + 2, TOP + 3]
    stats = table.stats()
    assert stats["evictions"] == 1 and stats["pings_failed"] == 1
    assert stats["replacements"] == 0 and stats["pinging"] == 0


def test_a_bucket_pings_one_head_at_a_time() -> None:
    table, pinger, _ = far_full_table()
    for n in (TOP + 3, TOP + 4, TOP + 5):
        table.add_contact(node(n))
    assert len(pinger.calls) == 1 and table.stats()["pinging"] == 1
    assert table.stats()["replacements"] == 2  # k by default
    pinger.calls[0][1].errback(RPCTimeout("no answer"))
    # The newest replacement took the evicted head's place.
    assert far_ids(table) == [TOP + 2, TOP + 5]
    # The next newcomer pings the new head.
    table.add_contact(node(TOP + 6))
    assert pinger.pending() == [from_int(TOP + 2)]


def test_buckets_ping_independently() -> None:
    table, pinger, _ = make_table(k=1)
    for n in (1, TOP + 1, TOP + 2, (1 << 158) + 1, (1 << 158) + 2):
        table.add_contact(node(n))
    assert sorted(pinger.pending()) == [from_int((1 << 158) + 1), from_int(TOP + 1)]


def test_a_head_heard_from_while_pinged_is_kept_though_the_ping_fails() -> None:
    table, pinger, _ = far_full_table()
    table.add_contact(node(TOP + 3))
    table.add_contact(node(TOP + 1))
    pinger.calls[0][1].errback(RPCTimeout("no answer"))
    assert far_ids(table) == [TOP + 2, TOP + 1]
    assert table.stats()["evictions"] == 0


@pytest.mark.parametrize("how", ["remove", "failures"])
@pytest.mark.parametrize("answered", [True, False])
def test_a_head_removed_while_pinged_is_replaced_once(how: str, answered: bool) -> None:
    table, pinger, _ = far_full_table(max_failures=2)
    table.add_contact(node(TOP + 3))
    head = from_int(TOP + 1)
    if how == "remove":
        assert table.remove_contact(head)
    else:
        table.record_failure(head)
        table.record_failure(head)
    assert far_ids(table) == [TOP + 2, TOP + 3]
    # The ping still in flight keeps the bucket from starting another.
    table.add_contact(node(TOP + 4))
    assert len(pinger.calls) == 1
    d = pinger.calls[0][1]
    d.callback(None) if answered else d.errback(RPCTimeout("no answer"))
    # Its outcome concerns a contact that is gone: the new head stays.
    assert far_ids(table) == [TOP + 2, TOP + 3]
    assert table.stats()["evictions"] == 0 and table.stats()["pinging"] == 0
    table.add_contact(node(TOP + 5))
    assert pinger.pending() == [from_int(TOP + 2)]


def test_an_unexpected_ping_error_is_logged_and_evicts(logged_errors: LoggedErrors) -> None:
    def broken(contact: Contact) -> defer.Deferred[object]:
        raise KeyError("bug")

    table = RoutingTable(OWN, ping=broken, clock=task.Clock(), k=1)
    for n in (1, TOP + 1, TOP + 2):
        table.add_contact(node(n))
    assert ids_of(table.contacts()) == [1, TOP + 2]
    assert len(logged_errors.take()) == 1


def test_the_bucket_covering_our_id_splits_to_hold_more_than_k() -> None:
    rng = random.Random(7)
    own = rng.randbytes(20)
    table, _, _ = make_table(own, k=4, rng=rng)
    heard = [rng.randbytes(20) for _ in range(300)]
    for node_id in heard:
        table.add_contact(Contact(node_id, node_id + bytes(12), ("10.0.0.1", 4000)))
    stats = table.stats()
    assert len(table) > 4 * 5 and stats["buckets"] > 5 and stats["splits"] == stats["buckets"] - 1
    # Far buckets filled and then pinged their heads instead of splitting.
    assert stats["pings_sent"] > 0
    assert (
        sorted(distance(c.node_id, own) for c in table.closest(own, 4))
        == sorted(distance(n, own) for n in heard)[:4]
    )


def test_a_full_bucket_far_from_our_id_stays_at_k() -> None:
    table, pinger, _ = far_full_table()
    for i in range(3, 50):
        table.add_contact(node(TOP + i))
    assert far_ids(table) == [TOP + 1, TOP + 2] and len(pinger.calls) == 1
    pinger.calls[0][1].callback(None)
    for i in range(50, 60):
        table.add_contact(node(TOP + i))
    assert far_ids(table) == [TOP + 2, TOP + 1] and len(pinger.calls) == 2
    assert table.stats()["splits"] == 1 and table.stats()["buckets"] == 2


def test_a_full_far_bucket_splits_for_a_newcomer_among_our_k_closest() -> None:
    table, pinger, _ = make_table(k=2)
    c1, c2 = 3 << 158, (3 << 158) + 1
    for n in (c1, c2, TOP):
        table.add_contact(node(n))
    # TOP (prefix 10) is closer to us than c1, c2 (prefix 11): the far
    # bucket split though our id is not in its range.
    assert sorted(ids_of(table.contacts())) == [TOP, c1, c2]
    assert table.stats()["splits"] == 2 and pinger.calls == []


def test_a_pending_ping_follows_its_head_into_a_split_half() -> None:
    table, pinger, _ = make_table(k=2)
    c1, c2 = 3 << 158, (3 << 158) + 1
    for n in (c1, c2, c2 + 1):
        table.add_contact(node(n))
    assert pinger.pending() == [from_int(c1)] and table.stats()["splits"] == 1
    table.add_contact(node(TOP))
    assert table.stats()["splits"] == 2 and table.stats()["pinging"] == 1
    pinger.calls[0][1].errback(RPCTimeout("no answer"))
    assert sorted(ids_of(table.contacts())) == [TOP, c2, c2 + 1]
    assert table.stats()["pinging"] == 0


def test_a_split_promotes_waiting_replacements_into_a_half_with_room() -> None:
    table, pinger, _ = far_full_table()
    c1, c2 = 3 << 158, (3 << 158) + 1
    for n in (TOP + 1, TOP + 2):
        assert table.remove_contact(from_int(n))
    for n in (c1, c2, TOP + 5):
        table.add_contact(node(n))
    assert table.stats()["replacements"] == 1  # TOP + 5: 1 and 2 are closer to us
    table.remove_contact(from_int(1))
    table.remove_contact(from_int(2))
    table.add_contact(node(TOP + 4))
    # TOP + 4 is now among our 2 closest: the far bucket split, and its half
    # [TOP, 3 << 158) took TOP + 5 from the replacements before TOP + 4.
    assert sorted(ids_of(table.contacts())) == [TOP + 4, TOP + 5, c1, c2]
    assert table.stats()["promoted"] == 1 and table.stats()["replacements"] == 0
    assert pinger.pending() == [from_int(c1)]  # the full far bucket's head, before the split


def test_the_replacement_cache_is_bounded_and_the_newest_replace_first() -> None:
    table, pinger, _ = far_full_table(replacements=2, max_failures=1)
    for i in range(3, 7):
        table.add_contact(node(TOP + i))
    assert table.stats()["replacements"] == 2
    pinger.calls[0][1].errback(RPCTimeout("no answer"))
    assert far_ids(table) == [TOP + 2, TOP + 6]
    table.record_failure(from_int(TOP + 2))
    assert far_ids(table) == [TOP + 6, TOP + 5]
    table.record_failure(from_int(TOP + 6))
    assert far_ids(table) == [TOP + 5]
    assert table.stats()["dropped_failures"] == 2 and table.stats()["replacements"] == 0


def test_every_promoted_replacement_is_announced() -> None:
    promoted: list[Contact] = []
    table, pinger, _ = far_full_table(replacements=2, max_failures=1, on_promoted=promoted.append)
    for i in (3, 4):
        table.add_contact(node(TOP + i))
    assert promoted == []  # waiting as replacements is not being in the table
    pinger.calls[0][1].errback(RPCTimeout("no answer"))  # the head is evicted
    table.record_failure(from_int(TOP + 2))  # and the other one dropped
    assert ids_of(promoted) == [TOP + 4, TOP + 3]
    assert all(c.node_id in table for c in promoted)


def test_a_contact_is_dropped_after_max_failures_in_a_row() -> None:
    table, _, _ = make_table(k=3, max_failures=3)
    a = from_int(5)
    table.add_contact(node(5))
    table.record_failure(a)
    table.record_failure(a)
    table.add_contact(node(5))  # it answered something: the count starts again
    table.record_failure(a)
    table.record_failure(a)
    assert a in table
    table.record_failure(a)
    assert a not in table and table.stats()["dropped_failures"] == 1


def test_a_failing_replacement_is_forgotten_and_unknown_ids_are_ignored() -> None:
    table, _, _ = far_full_table()
    table.add_contact(node(TOP + 3))
    table.record_failure(from_int(TOP + 3))
    table.record_failure(from_int(TOP + 9))
    assert table.stats()["replacements"] == 0 and len(table) == 4
    assert not table.remove_contact(from_int(TOP + 9))


def test_never_holds_our_own_id() -> None:
    table, _, _ = make_table(k=2)
    table.add_contact(node(0))
    assert len(table) == 0 and OWN not in table and table.get(OWN) is None


def test_refuses_bad_parameters_and_ids() -> None:
    with pytest.raises(ValueError):
        make_table(k=0)
    with pytest.raises(ValueError):
        make_table(max_failures=0)
    table, _, _ = make_table()
    with pytest.raises(ValueError):
        table.closest(b"short", 3)
    assert b"short" not in table and "x" not in table


def ids_near(own: bytes) -> st.SearchStrategy[bytes]:
    """Uniform ids, and ids sharing long prefixes with ours (deep splits)."""
    near = st.integers(0, 2**20).map(lambda x: from_int(to_int(own) ^ x))
    return st.one_of(st.binary(min_size=20, max_size=20), near)


def fill(table: RoutingTable, heard: list[bytes]) -> None:
    for node_id in heard:
        table.add_contact(Contact(node_id, node_id + bytes(12), ("10.0.0.1", 4000)))


@settings(max_examples=60)
@given(st.data())
def test_closest_agrees_with_sorting_the_whole_table(data: st.DataObject) -> None:
    own = data.draw(st.binary(min_size=20, max_size=20))
    table, _, _ = make_table(own, k=data.draw(st.integers(1, 6)))
    fill(table, data.draw(st.lists(ids_near(own), max_size=120)))
    everyone = table.contacts()
    target = data.draw(ids_near(own))
    count = data.draw(st.integers(0, 30))
    exclude = {c.node_id for c in everyone if data.draw(st.booleans(), label="exclude")}
    bound = data.draw(st.one_of(st.none(), st.builds(distance, ids_near(own), st.just(target))))
    expected = sorted(
        (
            c
            for c in everyone
            if c.node_id not in exclude and (bound is None or distance(c.node_id, target) < bound)
        ),
        key=lambda c: distance(c.node_id, target),
    )[:count]
    assert table.closest(target, count, exclude, closer_than=bound) == expected


@settings(max_examples=60)
@given(st.data())
def test_knows_the_k_closest_of_everyone_heard_when_heads_answer(data: st.DataObject) -> None:
    own = data.draw(st.binary(min_size=20, max_size=20))
    k = data.draw(st.integers(1, 4))
    table = RoutingTable(own, ping=lambda c: defer.succeed(None), clock=task.Clock(), k=k)
    heard = data.draw(st.lists(ids_near(own), max_size=80, unique=True))
    fill(table, heard)
    expected = sorted(distance(n, own) for n in heard if n != own)[:k]
    assert [distance(c.node_id, own) for c in table.closest(own, k)] == expected


@settings(max_examples=60)
@given(st.data())
def test_is_close_agrees_with_ranking_everyone_known(data: st.DataObject) -> None:
    own = data.draw(st.binary(min_size=20, max_size=20))
    table, _, _ = make_table(own, k=3)
    fill(table, data.draw(st.lists(ids_near(own), max_size=60)))
    key = data.draw(ids_near(own))
    candidate = data.draw(st.one_of(st.just(own), ids_near(own)))
    count = data.draw(st.integers(0, 8))
    known = {c.node_id for c in table.contacts()} | {own, candidate}
    ranked = sorted(known, key=lambda n: distance(n, key))
    assert table.is_close(candidate, key, count) == (candidate in ranked[:count])


def test_is_close_counts_ourselves() -> None:
    table, _, _ = make_table(k=3)
    for n in (0x10, 0x20, 0x30):
        table.add_contact(node(n))
    key = from_int(0x11)
    assert table.is_close(from_int(0x10), key, 1)
    assert not table.is_close(from_int(0x20), key, 1)
    # 0x13 is not in the table; only 0x10 is closer to 0x11 (we are at 0x11 from it).
    assert table.is_close(from_int(0x13), key, 2) and not table.is_close(from_int(0x13), key, 1)
    assert table.is_close(OWN, key, 2) and not table.is_close(OWN, key, 1)


def layered_table() -> tuple[RoutingTable, task.Clock, bytes]:
    """k=2, a random id, two contacts at each distance 2**i + 1, 2**i + 2 for
    i = 159..151, then a closest neighbour at 2**150 + 1: buckets 151..159
    and the bucket [0, 2**151) of distances around our id."""
    rng = random.Random(3)
    own = rng.randbytes(20)
    table, _, clock = make_table(own, k=2, rng=rng)
    offsets = [(1 << i) + j for i in range(159, 150, -1) for j in (1, 2)] + [(1 << 150) + 1]
    fill(table, [from_int(to_int(own) ^ x) for x in offsets])
    assert table.stats()["buckets"] == 10 and len(table) == 19
    return table, clock, own


def far(own: bytes, i: int, j: int) -> bytes:
    """The id at distance 2**i + j from ``own``."""
    return from_int(to_int(own) ^ ((1 << i) + j))


def test_refresh_after_join_covers_each_empty_bucket_beyond_the_closest_neighbour() -> None:
    table, _, own = layered_table()
    for i in range(151, 160):
        for j in (1, 2):
            assert table.remove_contact(far(own, i, j))
    ids = table.refresh_ids_after_join()
    assert sorted(bucket_index(own, i) for i in ids) == list(range(151, 160))


def test_refresh_after_join_skips_held_buckets_and_those_the_self_lookup_reached() -> None:
    table, _, own = layered_table()
    assert table.refresh_ids_after_join() == []  # every bucket holds contacts
    table.remove_contact(far(own, 154, 1))  # one left: still held
    for i in range(155, 160):
        for j in (1, 2):
            table.remove_contact(far(own, i, j))
    ids = table.refresh_ids_after_join()
    assert sorted(bucket_index(own, i) for i in ids) == list(range(155, 160))
    # Every id of buckets 155 and 156 is within 2**157 - 1 of us.
    ids = table.refresh_ids_after_join(reach=(1 << 157) - 1)
    assert sorted(bucket_index(own, i) for i in ids) == list(range(157, 160))
    ids = table.refresh_ids_after_join(reach=(1 << 157) - 2)
    assert sorted(bucket_index(own, i) for i in ids) == list(range(156, 160))


def test_a_bucket_is_full_at_k_contacts() -> None:
    table, _, own = layered_table()
    assert table.is_full(far(own, 159, 7))
    table.remove_contact(far(own, 159, 1))
    assert not table.is_full(far(own, 159, 7))


def test_refresh_after_join_is_empty_without_contacts() -> None:
    table, _, _ = make_table()
    assert table.refresh_ids_after_join() == []


def test_stale_buckets_are_those_no_lookup_touched() -> None:
    table, clock, own = layered_table()
    assert table.stale_buckets(3600) == []
    clock.advance(3000)
    table.touch(from_int(to_int(own) ^ (3 << 157)))  # bucket 158
    table.touch(from_int(to_int(own) ^ 5))  # the bucket around our id
    clock.advance(600)
    stale = table.stale_buckets(3600)
    assert sorted(bucket_index(own, i) for i in stale) == [151, 152, 153, 154, 155, 156, 157, 159]
    for node_id in stale:
        table.touch(node_id)
    assert table.stale_buckets(601) == []
    clock.advance(600)
    assert len(table.stale_buckets(600)) == 10


ops = st.lists(
    st.tuples(st.sampled_from(["add", "answer", "fail", "failure", "remove"]), st.integers(0, 99)),
    max_size=150,
)


@settings(max_examples=60)
@given(st.data(), ops)
def test_buckets_stay_consistent_whatever_happens(
    data: st.DataObject, steps: list[tuple[str, int]]
) -> None:
    own = data.draw(st.binary(min_size=20, max_size=20))
    k = data.draw(st.integers(1, 4))
    table, pinger, _ = make_table(own, k=k, replacements=2, max_failures=2)
    pool = data.draw(st.lists(ids_near(own), min_size=1, max_size=40, unique=True))
    for op, i in steps:
        node_id = pool[i % len(pool)]
        if op == "add":
            fill(table, [node_id])
        elif op in ("answer", "fail") and pinger.pending():
            d = [d for _, d in pinger.calls if not d.called][i % len(pinger.pending())]
            d.callback(None) if op == "answer" else d.errback(RPCTimeout("no answer"))
        elif op == "failure":
            table.record_failure(node_id)
        elif op == "remove":
            table.remove_contact(node_id)
    buckets = table._buckets
    assert buckets[0].lo == 0 and buckets[-1].hi == RING_SIZE
    assert all(a.hi == b.lo for a, b in itertools.pairwise(buckets))
    for bucket in buckets:
        assert len(bucket) <= k and len(bucket.replacements) <= 2
        assert not set(bucket.contacts) & set(bucket.replacements)
        assert all(bucket.covers(to_int(n)) for n in [*bucket.contacts, *bucket.replacements])
        assert bucket.pinging is None or bucket.covers(to_int(bucket.pinging))
        if len(bucket) < k:
            assert not bucket.replacements
    assert own not in table
    assert sorted(bucket.pinging for bucket in buckets if bucket.pinging) == sorted(
        pinger.pending()
    )
    assert table.stats()["contacts"] == len(table.contacts()) == len(table)


# -- Sybil defences ---------------------------------------------------------------


def public(n: int, host: str, port: int = 4000) -> Contact:
    """Contact ``n`` at a public (non-private, non-loopback) address."""
    return Contact(from_int(n), n.to_bytes(32, "big"), (host, port))


def test_a_bucket_refuses_a_fourth_contact_of_one_slash_24() -> None:
    table, _, _ = make_table(k=20)
    for i in range(1, 5):
        table.add_contact(public(TOP + i, "93.184.216.{}".format(i)))
    assert far_ids(table) == [TOP + 1, TOP + 2, TOP + 3]
    assert table.stats()["refused_network"] == 1
    table.add_contact(public(TOP + 5, "93.184.217.1"))  # the next /24 is another network
    assert TOP + 5 in far_ids(table)


def test_a_bucket_refuses_a_fourth_contact_of_one_slash_64() -> None:
    table, _, _ = make_table(k=20)
    for i in range(1, 5):
        table.add_contact(public(TOP + i, "2a00:1450:4001:800::{}".format(i)))
    table.add_contact(public(TOP + 5, "2a00:1450:4001:801::1"))
    assert far_ids(table) == [TOP + 1, TOP + 2, TOP + 3, TOP + 5]


def test_a_replacement_cache_holds_a_few_contacts_of_one_network() -> None:
    table, _, _ = far_full_table(replacements=8)
    for i in range(3, 9):
        table.add_contact(public(TOP + i, "93.184.216.{}".format(i)))
    bucket = table._bucket(from_int(TOP))
    assert [to_int(n) for n in bucket.replacements] == [TOP + 3, TOP + 4, TOP + 5]


def test_loopback_and_private_addresses_are_not_limited() -> None:
    table, _, _ = make_table(k=20)
    for i in range(1, 11):
        table.add_contact(public(TOP + i, "127.0.0.1", 4000 + i))
        table.add_contact(public(TOP + 100 + i, "192.168.1.1", 4000 + i))
    assert len(table) == 20


def test_a_contact_with_a_failed_call_is_not_handed_out_until_it_answers() -> None:
    table, _, _ = make_table(k=20)
    for n in (1, 2, 3):
        table.add_contact(node(n))
    table.record_failure(from_int(2))
    assert ids_of(table.closest(OWN, 3)) == [1, 2, 3]  # still in the table
    assert ids_of(table.closest(OWN, 3, answerable=True)) == [1, 3]
    table.add_contact(node(2))  # it answered something
    assert ids_of(table.closest(OWN, 3, answerable=True)) == [1, 2, 3]


def test_answers_keep_a_few_contacts_per_network() -> None:
    table, _, _ = make_table(k=4)
    for i in range(1, 4):
        table.add_contact(public(i, "93.184.216.{}".format(i)))
    table.add_contact(public(4, "93.184.218.1"))
    for i in range(1, 4):  # the bucket splits: these are in the far half
        table.add_contact(public(TOP + i, "93.184.216.{}".format(10 + i)))
    table.add_contact(public(TOP + 9, "93.184.217.1"))
    assert len(table) == 8 and table.stats()["buckets"] == 2
    assert ids_of(table.closest(OWN, 20, answerable=True)) == [1, 2, 3, 4, TOP + 9]


def test_a_stale_contact_is_rechecked_and_a_dead_one_leaves() -> None:
    table, pinger, clock = make_table(k=20, stale_after=300.0)
    for n in (1, 2, 3):
        table.add_contact(node(n))
    clock.advance(200.0)
    table.add_contact(node(3))  # heard from again
    assert table.recheck_stale(10) == 0
    clock.advance(100.0)
    # 1 and 2 have been silent for 300 s: not handed out, and re-checked.
    assert ids_of(table.closest(OWN, 3, answerable=True)) == [3]
    assert table.recheck_stale(10) == 2
    assert table.recheck_stale(10) == 0  # one re-check at a time
    assert sorted(to_int(n) for n in pinger.pending()) == [1, 2]
    (c1, d1), (_, d2) = pinger.calls
    dead, alive = (d1, d2) if to_int(c1.node_id) == 1 else (d2, d1)
    dead.errback(RPCTimeout("no answer"))
    alive.callback(None)
    assert sorted(ids_of(table.contacts())) == [2, 3]
    assert ids_of(table.closest(OWN, 3, answerable=True)) == [2, 3]
    assert table.stats()["stale_dropped"] == 1


def test_a_stale_contact_heard_from_during_its_recheck_stays() -> None:
    table, pinger, clock = make_table(k=20, stale_after=300.0)
    table.add_contact(node(1))
    clock.advance(300.0)
    table.recheck_stale(10)
    clock.advance(1.0)
    table.add_contact(node(1))
    pinger.calls[0][1].errback(RPCTimeout("no answer"))
    assert ids_of(table.contacts()) == [1]


def test_the_static_puzzle_refuses_a_cheap_id_and_accepts_a_solved_one() -> None:
    cheap = Identity(bytes(32))
    assert not solves_puzzle(cheap.public_key, 8)
    solved = Identity.generate(puzzle_bits=8)
    table, _, _ = make_table(k=20, puzzle_bits=8)
    table.add_contact(Contact.from_key(cheap.public_key, ("10.0.0.1", 4000)))
    table.add_contact(Contact.from_key(solved.public_key, ("10.0.0.2", 4000)))
    assert [c.node_id for c in table.contacts()] == [solved.node_id]
    assert table.stats()["refused_puzzle"] == 1


def test_a_head_heard_lately_is_not_pinged_for_a_newcomer() -> None:
    table, pinger, clock = far_full_table(ping_after=60.0)
    table.add_contact(node(TOP + 3))
    assert pinger.calls == []  # the head was heard just now: alive
    assert table.stats()["replacements"] == 1
    clock.advance(60.0)
    table.add_contact(node(TOP + 4))
    assert pinger.pending() == [from_int(TOP + 1)]  # now it is asked


def test_a_contact_that_kept_a_lookup_waiting_is_suspect_until_heard_from() -> None:
    table, _, _ = make_table(k=3)
    table.add_contact(node(5))
    assert not table.is_suspect(node(5).node_id)
    table.record_silence(node(5).node_id)
    assert table.is_suspect(node(5).node_id)
    assert node(5).node_id in table  # silence drops nothing
    table.add_contact(node(5))
    assert not table.is_suspect(node(5).node_id)
    table.record_silence(node(6).node_id)  # not in the table: not remembered
    assert not table.is_suspect(node(6).node_id)


def test_a_failed_contact_is_known_as_such_until_it_is_heard_from() -> None:
    table, _, _ = make_table(k=3, max_failures=3)
    table.add_contact(node(5))
    assert not table.has_failed(from_int(5))
    table.record_failure(from_int(5))
    assert table.has_failed(from_int(5)) and from_int(5) in table
    table.add_contact(node(5))  # it answered again
    assert not table.has_failed(from_int(5))


def test_add_contact_says_whether_the_contact_is_new_or_back_after_failing() -> None:
    table, _, _ = make_table(k=3, max_failures=3)
    assert table.add_contact(node(5))  # new
    assert not table.add_contact(node(5))  # heard from again
    table.record_failure(from_int(5))
    assert table.add_contact(node(5))  # back after failing: it may have missed writes
    assert not table.add_contact(node(5))
    assert not table.add_contact(node(0))  # ourselves
    full, _, _ = far_full_table()
    assert not full.add_contact(node(TOP + 3))  # a replacement waits outside
    assert from_int(TOP + 3) not in full


def network_of_host(host: str) -> str:
    """The /24 of a public IPv4 host, computed apart from the module under test."""
    return host.rsplit(".", 1)[0]


@settings(max_examples=150)
@given(st.data())
def test_answerable_closest_agrees_with_filtering_and_limiting_a_full_sort(
    data: st.DataObject,
) -> None:
    # What a node hands out, against a brute force over every contact: the
    # closest first, none excluded, failed or stale, at most 3 per /24.
    own = data.draw(st.binary(min_size=20, max_size=20))
    table, _, clock = make_table(own, k=data.draw(st.integers(1, 6)), stale_after=100.0)
    hosts = st.builds("93.184.{}.{}".format, st.integers(0, 3), st.integers(1, 9))
    for node_id in data.draw(st.lists(ids_near(own), max_size=120)):
        table.add_contact(Contact(node_id, node_id + bytes(12), (data.draw(hosts), 4000)))
        clock.advance(data.draw(st.sampled_from([0.0, 0.0, 1.0, 40.0, 60.0])))
    everyone = table.contacts()
    for c in everyone:
        if data.draw(st.integers(0, 9), label="fail") == 0:
            table.record_failure(c.node_id)
    target = data.draw(ids_near(own))
    count = data.draw(st.integers(0, 30))
    exclude = {c.node_id for c in everyone if data.draw(st.booleans(), label="exclude")}
    # Only those closer than a bound (what a STORE_NEAR answers), or all.
    bound = data.draw(st.one_of(st.none(), st.builds(distance, ids_near(own), st.just(target))))
    now = clock.seconds()
    expected: list[Contact] = []
    taken: dict[str, int] = {}
    for c in sorted(everyone, key=lambda c: distance(c.node_id, target)):
        if len(expected) == count or (bound is not None and distance(c.node_id, target) >= bound):
            break
        heard = table._last_seen[c.node_id]
        if c.node_id in exclude or table.has_failed(c.node_id) or now - heard >= 100.0:
            continue
        network = network_of_host(c.address[0])
        if taken.get(network, 0) < 3:
            taken[network] = taken.get(network, 0) + 1
            expected.append(c)
    assert table.closest(target, count, exclude, answerable=True, closer_than=bound) == expected


def test_the_table_wants_a_stranger_only_where_it_has_room() -> None:
    # A stranger's address is worth a probe only where the table has room
    # for it; a full bucket's head is not pinged on its account either.
    table, pinger, clock = far_full_table(ping_after=60.0)
    assert table.wants(node(TOP + 1))  # known: heard from again
    assert not table.wants(Contact(OWN, bytes(32), ("10.0.0.1", 4000)))  # ourselves
    assert table.wants(node(3))  # the near bucket splits for it
    assert not table.wants(node(TOP + 3))  # the far bucket is full
    clock.advance(3600.0)
    assert not table.wants(node(TOP + 3))  # however stale its head
    assert pinger.calls == []
    table.record_failure(from_int(TOP + 1))  # a lookup found the head silent,
    table.record_failure(from_int(TOP + 1))
    table.record_failure(from_int(TOP + 1))
    if from_int(TOP + 1) not in table:  # and evicted it: room for a stranger
        assert table.wants(node(TOP + 3))


def test_the_table_does_not_want_a_stranger_it_would_refuse() -> None:
    cheap = Identity(bytes(32))
    table, _, _ = make_table(k=20, puzzle_bits=8)
    assert not table.wants(Contact.from_key(cheap.public_key, ("10.0.0.1", 4000)))
    assert table.stats()["refused_puzzle"] == 1
    limited, _, _ = make_table(k=20, network_limit=NetworkLimit(limit_private=True))
    for n in range(1, 100):
        if not limited.wants(node(TOP + n, port=4000 + n)):
            break
        limited.add_contact(node(TOP + n, port=4000 + n))
    else:
        raise AssertionError("one network filled a bucket")
    assert len(limited) == limited.network_limit.per_network
    assert limited.stats()["refused_network"] == 1
