"""The iterative lookup: convergence, termination, alpha, timeouts and FIND_VALUE, on task.Clock."""

from __future__ import annotations

import random
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.internet import defer, task

from dhtkit.contact import Contact
from dhtkit.hedge import HEDGE_FLOOR, RoundTrip
from dhtkit.identity import Identity
from dhtkit.kademlia.diversity import NetworkLimit
from dhtkit.kademlia.lookup import (
    _ANSWERED,
    _ASKING,
    _FAILED,
    _WAITING,
    Answer,
    IterativeLookup,
    LookupOutcome,
)
from dhtkit.keyspace import bucket_index, distance
from dhtkit.rpc import RPCTimeout
from dhtkit.wire import MalformedMessage
from tests.hints import Watches

K = 8


def make_contacts(count: int, seed: int = 1) -> list[Contact]:
    rng = random.Random(seed)
    return [
        Contact.from_key(
            Identity(rng.randbytes(32)).public_key,
            ("10.0.{}.{}".format(i // 250, i % 250 + 1), 4000),
        )
        for i in range(count)
    ]


class FakeNetwork:
    """Who knows whom; asking a contact answers with the K closest it knows."""

    def __init__(self, contacts: list[Contact], known: dict[bytes, list[Contact]]) -> None:
        self.contacts = contacts
        self.known = known
        self.asked: list[Contact] = []
        self.outstanding = 0
        self.most_outstanding = 0
        self.silent: set[bytes] = set()
        self.failing: set[bytes] = set()
        self.holders: dict[bytes, Any] = {}
        self.delay = 0.0
        self.late: dict[bytes, float] = {}  # contacts slower than ``delay``
        self.clock = task.Clock()

    def ask(self, target: bytes) -> Any:
        def ask(contact: Contact) -> defer.Deferred[Answer]:
            self.asked.append(contact)
            if contact.node_id in self.silent:
                return defer.Deferred()  # never answers
            if contact.node_id in self.failing:
                return defer.fail(RPCTimeout("no answer"))
            known = sorted(self.known[contact.node_id], key=lambda c: distance(c.node_id, target))
            answer: Answer = (known[:K], self.holders.get(contact.node_id))
            delay = self.late.get(contact.node_id, self.delay)
            if not delay:
                return defer.succeed(answer)
            self.outstanding += 1
            self.most_outstanding = max(self.most_outstanding, self.outstanding)
            d: defer.Deferred[Answer] = defer.Deferred()

            def reply() -> None:
                self.outstanding -= 1
                d.callback(answer)

            self.clock.callLater(delay, reply)
            return d

        return ask


def well_connected(count: int = 200, seed: int = 1) -> FakeNetwork:
    """Each node knows its K closest and two nodes of every other bucket, as
    k-buckets would: lookups can converge."""
    contacts = make_contacts(count, seed)
    known = {}
    for c in contacts:
        others = sorted(
            (o for o in contacts if o != c), key=lambda o: distance(o.node_id, c.node_id)
        )
        by_bucket: dict[int, list[Contact]] = {}
        for o in others[K:]:
            by_bucket.setdefault(bucket_index(o.node_id, c.node_id), []).append(o)
        known[c.node_id] = others[:K] + [o for group in by_bucket.values() for o in group[:2]]
    return FakeNetwork(contacts, known)


def run(
    net: FakeNetwork, target: bytes, seeds: list[Contact], **kw: Any
) -> defer.Deferred[LookupOutcome]:
    lookup = IterativeLookup(
        target,
        seeds,
        net.ask(target),
        net.clock,
        k=K,
        alpha=kw.pop("alpha", 3),
        stall_after=kw.pop("stall_after", 1.0),
        exclude=b"\xff" * 20,
        **kw,
    )
    return lookup.run()


def result_of(d: defer.Deferred[LookupOutcome]) -> LookupOutcome:
    results: list[LookupOutcome] = []
    d.addCallback(results.append)
    assert results, "the lookup has not finished"
    return results[0]


def true_closest(net: FakeNetwork, target: bytes) -> list[Contact]:
    return sorted(net.contacts, key=lambda c: distance(c.node_id, target))[:K]


def test_converges_on_the_k_closest() -> None:
    net = well_connected()
    rng = random.Random(7)
    for _ in range(20):
        target = rng.randbytes(20)
        outcome = result_of(run(net, target, rng.sample(net.contacts, 3)))
        assert outcome.contacts == true_closest(net, target)
        assert not outcome.stopped_early
        assert outcome.timeouts == 0


def test_ends_once_the_k_closest_answered_and_asks_each_contact_once() -> None:
    net = well_connected()
    target = random.Random(3).randbytes(20)
    outcome = result_of(run(net, target, net.contacts[:3]))
    assert len(net.asked) == len(set(net.asked)) == outcome.messages
    assert set(true_closest(net, target)) <= set(net.asked)
    # Far from asking everyone: it converges.
    assert outcome.messages < len(net.contacts) / 2


def test_keeps_at_most_alpha_queries_in_flight_while_it_gets_closer() -> None:
    net = well_connected()
    net.delay = 0.1
    target = random.Random(4).randbytes(20)
    d = run(net, target, net.contacts[:10], alpha=3)
    while not d.called:
        net.clock.advance(0.1)
    # alpha at a time, and all of the k closest at once only in the final round.
    assert net.most_outstanding <= K
    assert result_of(d).contacts == true_closest(net, target)


def test_alpha_bounds_the_first_round() -> None:
    net = well_connected()
    net.delay = 0.1
    target = random.Random(5).randbytes(20)
    run(net, target, net.contacts[:10], alpha=2)
    assert net.outstanding == 2


def test_a_silent_contact_is_passed_over_without_stalling_the_lookup() -> None:
    net = well_connected()
    target = random.Random(6).randbytes(20)
    closest = true_closest(net, target)
    net.silent.add(closest[0].node_id)
    d = run(net, target, [closest[0], *net.contacts[:3]], stall_after=1.0)
    assert not d.called  # it waits for the silent one, but only until it stalls
    net.clock.advance(1.0)
    outcome = result_of(d)
    others = [c for c in net.contacts if c != closest[0]]
    assert outcome.contacts == sorted(others, key=lambda c: distance(c.node_id, target))[:K]
    assert outcome.timeouts == 0  # stalled, not failed: its answer may still come


def test_a_failing_contact_is_reported_and_left_out() -> None:
    net = well_connected()
    target = random.Random(8).randbytes(20)
    closest = true_closest(net, target)
    net.failing.add(closest[1].node_id)
    failed: list[Contact] = []
    outcome = result_of(run(net, target, net.contacts[:3], failed=failed.append))
    assert failed == [closest[1]]
    assert closest[1] not in outcome.contacts
    assert outcome.timeouts == 1
    assert outcome.contacts[0] == closest[0]


def test_stops_at_the_first_holder_when_that_is_enough() -> None:
    net = well_connected()
    target = random.Random(9).randbytes(20)
    closest = true_closest(net, target)
    net.holders[closest[2].node_id] = ["record", 60]
    outcome = result_of(run(net, target, net.contacts[:3], enough=lambda c, a: True))
    assert outcome.stopped_early
    assert outcome.values == [(closest[2], ["record", 60])]
    assert closest[2] not in outcome.without
    assert all(c in net.asked for c in outcome.without)


def test_collects_every_holder_when_no_answer_is_enough() -> None:
    net = well_connected()
    target = random.Random(10).randbytes(20)
    closest = true_closest(net, target)
    for c in closest[:3]:
        net.holders[c.node_id] = ["record", 60]
    outcome = result_of(run(net, target, net.contacts[:3], enough=lambda c, a: False))
    assert not outcome.stopped_early
    assert {c for c, _ in outcome.values} == set(closest[:3])
    assert outcome.contacts == closest


def test_counts_hops_along_the_chain_of_answers() -> None:
    a, b, c, d = make_contacts(4, seed=2)
    # a knows only b, b knows only c, c knows only d: d is three answers away.
    known = {a.node_id: [b], b.node_id: [c], c.node_id: [d], d.node_id: []}
    net = FakeNetwork([a, b, c, d], known)
    outcome = result_of(run(net, d.node_id, [a]))
    assert outcome.contacts[0] == d
    assert outcome.hops == 4  # a at hop 1, b at 2, c at 3, d at 4


def test_a_lookup_with_no_contacts_ends_empty() -> None:
    net = FakeNetwork([], {})
    outcome = result_of(run(net, b"\x00" * 20, []))
    assert outcome.contacts == [] and outcome.hops == 0 and outcome.messages == 0


def test_seeds_beyond_k_are_asked_only_when_the_closest_fail() -> None:
    net = well_connected()
    target = random.Random(11).randbytes(20)
    by_distance = sorted(net.contacts, key=lambda c: distance(c.node_id, target))
    # 3k seeds from the far side of the network: the k closest of them are dead.
    seeds = by_distance[-3 * K :]
    for seed in seeds[:K]:
        net.failing.add(seed.node_id)
    outcome = result_of(run(net, target, seeds))
    assert outcome.contacts == true_closest(net, target)
    assert outcome.timeouts == K
    # All alive: the farther seeds are never asked.
    net.failing.clear()
    net.asked.clear()
    result_of(run(net, target, seeds))
    assert not set(seeds[K:]) & set(net.asked)


def test_a_malformed_answer_is_counted_apart_from_timeouts() -> None:
    net = well_connected()
    target = random.Random(12).randbytes(20)
    closest = true_closest(net, target)
    ask = net.ask(target)

    def garbled(contact: Contact) -> defer.Deferred[Answer]:
        if contact == closest[0]:
            return defer.fail(MalformedMessage("not a contact list"))
        return ask(contact)

    lookup = IterativeLookup(
        target, net.contacts[:3], garbled, net.clock, k=K, alpha=3, stall_after=1.0,
        exclude=b"\xff" * 20,
    )  # fmt: skip
    outcome = result_of(lookup.run())
    assert (outcome.bad_answers, outcome.timeouts) == (1, 0)
    assert outcome.contacts == [*closest[1:], true_closest_n(net, target, K + 1)[-1]]


def true_closest_n(net: FakeNetwork, target: bytes, count: int) -> list[Contact]:
    return sorted(net.contacts, key=lambda c: distance(c.node_id, target))[:count]


# -- Sybil defences ---------------------------------------------------------------


def honest_and_sybils(seed: int = 5) -> tuple[FakeNetwork, set[bytes]]:
    """50 nodes each in its own /24 and 200 Sybils in one /24; all know all."""
    rng = random.Random(seed)

    def at(host: str) -> Contact:
        return Contact.from_key(Identity(rng.randbytes(32)).public_key, (host, 4000))

    honest = [at("93.{}.1.1".format(i)) for i in range(50)]
    sybils = [at("94.1.1.{}".format(i + 1)) for i in range(200)]
    everyone = honest + sybils
    net = FakeNetwork(everyone, {c.node_id: everyone for c in everyone})
    return net, {c.node_id for c in sybils}


def test_a_lookup_result_keeps_a_few_contacts_per_network() -> None:
    net, sybils = honest_and_sybils()
    target = random.Random(6).randbytes(20)
    plain = result_of(run(net, target, net.contacts[:3]))
    assert sum(c.node_id in sybils for c in plain.contacts) > 3  # most of any K closest
    limited = result_of(run(net, target, net.contacts[:3], select=NetworkLimit().select))
    assert len(limited.contacts) == K
    assert sum(c.node_id in sybils for c in limited.contacts) == 3
    distances = [distance(c.node_id, target) for c in limited.contacts]
    assert distances == sorted(distances)


def test_a_lookup_never_asks_a_contact_it_may_not_claim() -> None:
    net = well_connected()
    target = random.Random(8).randbytes(20)
    barred = {c.node_id for c in true_closest(net, target)[:4]}
    outcome = result_of(
        run(net, target, net.contacts[:3], claim=lambda node_id: node_id not in barred)
    )
    assert not barred & {c.node_id for c in net.asked}
    assert not barred & {c.node_id for c in outcome.contacts}


def test_a_read_quorum_ends_the_lookup_once_the_closest_holders_answered() -> None:
    net = well_connected()
    target = random.Random(21).randbytes(20)
    closest = true_closest(net, target)
    for c in closest:
        net.holders[c.node_id] = ["record", 60]
    full = result_of(run(net, target, net.contacts[:3], enough=lambda c, a: False))
    net.asked.clear()
    outcome = result_of(run(net, target, net.contacts[:3], enough=lambda c, a: False, quorum=3))
    assert outcome.stopped_early and outcome.quorum_reached
    assert outcome.messages < full.messages
    holders = [c for c, _ in outcome.values]
    assert len(holders) >= 3
    # What it returns are the closest that answered, none beyond the quorum.
    farthest = sorted(distance(c.node_id, target) for c in holders)[2]
    assert outcome.contacts
    assert all(distance(c.node_id, target) <= farthest for c in outcome.contacts)
    assert set(outcome.contacts) <= set(net.asked)


def test_a_read_asks_no_more_than_its_quorum_still_lacks() -> None:
    net = well_connected()
    target = random.Random(25).randbytes(20)
    closest = true_closest(net, target)
    for c in closest:
        net.holders[c.node_id] = ["record", 60]
    net.delay = 0.01
    # Seeded with the closest: the alpha asked first hold the value, and
    # nothing else is asked while their answers are on the way.
    d = run(net, target, closest, enough=lambda c, a: False, quorum=3)
    net.clock.pump([0.005] * 10)
    outcome = result_of(d)
    assert outcome.quorum_reached
    assert outcome.messages == 3
    assert net.asked == closest[:3]
    # With two copies in, one more query at a time: a silent holder is
    # replaced by the next, not by alpha more.
    net.asked.clear()
    net.silent.add(closest[2].node_id)
    d = run(net, target, closest, enough=lambda c, a: False, quorum=3)
    net.clock.pump([0.005] * 40)
    outcome = result_of(d)
    assert outcome.quorum_reached
    assert net.asked == closest[:4]


def test_seeds_beyond_the_k_closest_stand_in_for_dead_ones() -> None:
    net = well_connected()
    target = random.Random(26).randbytes(20)
    ranked = sorted(net.contacts, key=lambda c: distance(c.node_id, target))
    seeds = ranked[: 3 * K]
    # Healthy: the seeds beyond the k closest are never asked.
    outcome = result_of(run(net, target, seeds))
    assert outcome.contacts == ranked[:K]
    assert not set(net.asked) & set(seeds[K:])
    # The k closest dead, and nothing else known: the reserve takes their place.
    net.asked.clear()
    net.failing.update(c.node_id for c in seeds[:K])
    lonely = FakeNetwork(net.contacts, {c.node_id: [] for c in net.contacts})
    lonely.failing = net.failing
    outcome = result_of(run(lonely, target, list(reversed(seeds))))
    assert outcome.contacts == seeds[K : 2 * K]
    assert set(lonely.asked) == set(seeds[: 2 * K])


def test_answers_that_fail_the_check_do_not_make_a_quorum() -> None:
    net = well_connected()
    target = random.Random(22).randbytes(20)
    closest = true_closest(net, target)
    for c in closest:
        net.holders[c.node_id] = "forged"
    outcome = result_of(
        run(
            net,
            target,
            net.contacts[:3],
            enough=lambda c, a: False,
            quorum=3,
            valid=lambda c, a: a != "forged",
        )
    )
    # No valid copy: it went on until k contacts answered.
    assert not outcome.stopped_early and not outcome.quorum_reached
    assert len(outcome.contacts) == K


def test_without_a_quorum_of_holders_it_goes_on_until_the_k_closest_answered() -> None:
    net = well_connected()
    target = random.Random(23).randbytes(20)
    closest = true_closest(net, target)
    for c in closest[:2]:
        net.holders[c.node_id] = ["record", 60]
    outcome = result_of(run(net, target, net.contacts[:3], enough=lambda c, a: False, quorum=3))
    assert not outcome.stopped_early
    assert outcome.contacts == closest
    assert {c for c, _ in outcome.values} == set(closest[:2])


def test_a_silent_contact_is_hedged_after_a_few_round_trips_not_a_stall() -> None:
    net = well_connected()
    net.delay = 0.01  # every answer takes 10 ms
    target = random.Random(24).randbytes(20)
    closest = true_closest(net, target)
    net.silent.add(closest[0].node_id)
    d = run(net, target, [closest[0], *net.contacts[:3]], stall_after=1.0)
    net.clock.pump([0.005] * 40)
    # Within 0.2 s (a few round trips of 10 ms, not the 1 s stall) the others
    # were asked in its place...
    assert len(net.asked) > K
    # ... but a lookup for the closest nodes ends only once it stalls.
    assert not d.called
    net.clock.pump([0.005] * 200)
    outcome = result_of(d)
    assert closest[0] not in outcome.contacts
    assert outcome.timeouts == 0  # hedged, not failed: its answer may still come


def test_a_read_quorum_does_not_wait_for_a_hedged_contact() -> None:
    net = well_connected()
    net.delay = 0.01
    target = random.Random(24).randbytes(20)
    closest = true_closest(net, target)
    for c in closest:
        net.holders[c.node_id] = ["record", 60]
    net.silent.add(closest[0].node_id)
    slow: list[Contact] = []
    d = run(
        net,
        target,
        [closest[0], *net.contacts[:3]],
        stall_after=1.0,
        enough=lambda c, a: False,
        quorum=3,
        slow=slow.append,
    )
    waited = 0.0
    while not d.called and waited < 1.0:
        net.clock.advance(0.005)
        waited += 0.005
    assert waited < 0.25
    assert result_of(d).quorum_reached
    assert slow == [closest[0]]


def test_suspects_are_asked_only_when_too_few_others_are_left() -> None:
    net = well_connected()
    target = random.Random(25).randbytes(20)
    closest = true_closest(net, target)
    suspects = {c.node_id for c in closest[:2]}
    net.silent |= suspects  # they are dead indeed
    outcome = result_of(
        run(net, target, net.contacts[:3], suspect=lambda node_id: node_id in suspects)
    )
    assert not suspects & {c.node_id for c in net.asked}
    assert len(outcome.contacts) == K and not suspects & {c.node_id for c in outcome.contacts}
    # With only suspects to go on, they are asked all the same.
    net.asked.clear()
    lone = run(net, target, closest[2:3], suspect=lambda node_id: True)
    net.clock.advance(1.0)
    assert closest[2] in net.asked
    assert result_of(lone).contacts


def test_a_contact_hinted_unreachable_is_hedged_at_once() -> None:
    net = well_connected()
    target = random.Random(27).randbytes(20)
    net.delay = 0.01
    seeds = sorted(net.contacts[:10], key=lambda c: distance(c.node_id, target))
    dead = seeds[0]
    net.silent.add(dead.node_id)
    watches = Watches()
    slow: list[Contact] = []
    d = run(net, target, seeds, watch=watches.watch, slow=slow.append)
    assert net.asked == seeds[:3]
    watches.unreachable(dead.address)
    # The next seed is asked in its place before any time passes, and the
    # dead one is told to the table as slow, as a hedge would.
    assert net.asked == seeds[:4]
    assert slow == [dead]
    net.clock.pump([0.01] * 100)
    assert dead not in result_of(d).contacts
    # Every watch ended with the lookup.
    assert not any(watches.hints.values())


def test_a_short_lookup_does_not_wait_for_a_contact_hinted_unreachable() -> None:
    # Fewer than k nodes: a lookup waits for every contact it passed over
    # (a lost datagram is resent) unless the network said it is gone.
    net = well_connected(count=6)
    target = random.Random(29).randbytes(20)
    net.delay = 0.01
    seeds = sorted(net.contacts, key=lambda c: distance(c.node_id, target))
    dead = seeds[0]
    net.silent.add(dead.node_id)
    watches = Watches()
    d = run(net, target, seeds, watch=watches.watch, stall_after=10.0)
    watches.unreachable(dead.address)
    net.clock.pump([0.01] * 20)
    assert d.called  # well before the 10 s stall
    assert dead not in result_of(d).contacts
    # Without the hint it waits for the RPC layer.
    net.asked.clear()
    waiting = run(net, target, seeds, stall_after=10.0)
    net.clock.pump([0.01] * 20)
    assert not waiting.called


def test_a_hint_for_a_contact_that_answered_changes_nothing() -> None:
    net = well_connected()
    target = random.Random(28).randbytes(20)
    net.delay = 0.01
    seeds = net.contacts[:10]
    watches = Watches()
    d = run(net, target, seeds, watch=watches.watch)
    first = list(net.asked)
    net.clock.advance(0.01)  # the first three answered: their watches ended
    for contact in first:
        assert not watches.hints.get(contact.address)
        watches.unreachable(contact.address)
    net.clock.pump([0.01] * 100)
    assert result_of(d).contacts


def test_a_lone_contact_answering_after_the_stall_is_waited_for() -> None:
    # Its first answer was lost and the RPC layer resends: the lookup (a
    # join's first has only its bootstrap node) must not end empty meanwhile.
    net = well_connected()
    target = random.Random(40).randbytes(20)
    seed = net.contacts[0]
    net.late[seed.node_id] = 1.5
    d = run(net, target, [seed], stall_after=1.0)
    net.clock.advance(1.2)
    assert not d.called  # stalled, and no one else to ask: it waits
    net.clock.advance(0.3)
    outcome = result_of(d)
    assert outcome.contacts == true_closest(net, target)


def test_a_lookup_short_of_k_contacts_ends_once_the_slow_one_fails() -> None:
    net = well_connected()
    target = random.Random(41).randbytes(20)
    late: defer.Deferred[Answer] = defer.Deferred()
    lookup = IterativeLookup(
        target,
        [net.contacts[0]],
        lambda contact: late,
        net.clock,
        k=K,
        alpha=3,
        stall_after=1.0,
        exclude=b"\xff" * 20,
    )
    d = lookup.run()
    net.clock.advance(1.5)
    assert not d.called
    late.errback(RPCTimeout("no answer after the retries"))
    outcome = result_of(d)
    assert (outcome.contacts, outcome.timeouts) == ([], 1)


def test_a_read_that_found_no_copy_waits_for_a_hedged_contact_until_it_stalls() -> None:
    net = well_connected()
    net.delay = 0.01
    target = random.Random(42).randbytes(20)
    closest = true_closest(net, target)
    # The one copy is on a contact slow enough to be hedged (its answer was
    # lost, say), not to stall.
    net.holders[closest[0].node_id] = ["record", 60]
    net.late[closest[0].node_id] = 0.5
    d = run(
        net,
        target,
        [closest[0], *net.contacts[:3]],
        stall_after=1.0,
        enough=lambda c, a: False,
        quorum=3,
    )
    net.clock.pump([0.01] * 40)
    assert not d.called  # the others answered long ago, without the value
    net.clock.pump([0.01] * 20)
    outcome = result_of(d)
    assert [c for c, _ in outcome.values] == [closest[0]]


@settings(max_examples=150)
@given(st.data())
def test_the_shortlist_is_the_k_closest_alive_with_suspects_last_and_a_few_per_network(
    data: st.DataObject,
) -> None:
    # Whatever state each candidate is in, as contacts arrive in any order:
    # the shortlist against a brute force over every candidate.
    rng = random.Random(data.draw(st.integers(0, 2**32), label="seed"))
    contacts = [
        Contact(rng.randbytes(20), rng.randbytes(32), ("93.184.{}.1".format(rng.randrange(6)), 1))
        for _ in range(data.draw(st.integers(0, 40)))
    ]
    suspects = {c.node_id for c in contacts if rng.random() < 0.2}
    quorum = data.draw(st.sampled_from([0, 2]))
    target = rng.randbytes(20)
    lookup = IterativeLookup(
        target,
        contacts[:5],
        lambda contact: defer.Deferred(),
        task.Clock(),
        k=K,
        alpha=3,
        stall_after=1.0,
        exclude=b"\xff" * 20,
        select=NetworkLimit().select,
        quorum=quorum,
        suspect=suspects.__contains__,
    )
    for start in range(5, len(contacts), 7):
        lookup._add(contacts[start : start + 7], 2)
    states = st.sampled_from([_WAITING, _ASKING, _ANSWERED, _FAILED])
    for candidate in lookup._candidates.values():
        candidate.state = data.draw(states)
        candidate.stalled, candidate.hedged = data.draw(st.booleans()), data.draw(st.booleans())
    everyone = sorted(
        lookup._candidates.values(), key=lambda c: distance(c.contact.node_id, target)
    )
    alive = [
        c
        for c in everyone
        if c.state != _FAILED
        and not (c.state == _ASKING and (c.stalled or (c.hedged and quorum > 0)))
    ]
    last = [c for c in alive if c.contact.node_id in suspects and c.state == _WAITING]
    ordered = [c for c in alive if c not in last] + last
    expected, per_network = [], {}
    for c in ordered:
        network = c.contact.address[0]
        if len(expected) < K and per_network.get(network, 0) < 3:
            per_network[network] = per_network.get(network, 0) + 1
            expected.append(c)
    assert lookup._shortlist() == expected


def test_an_answer_that_leaves_the_patience_as_it_was_leaves_the_other_timers_alone() -> None:
    # The contacts still being asked are hedged at their send time plus the
    # patience; an answer re-arms their timers only when the patience moves.
    clock = task.Clock()
    asked: dict[bytes, defer.Deferred[Answer]] = {}

    def ask(contact: Contact) -> defer.Deferred[Answer]:
        asked[contact.node_id] = defer.Deferred()
        return asked[contact.node_id]

    contacts = make_contacts(4)
    lookup = IterativeLookup(
        b"\x00" * 20,
        contacts,
        ask,
        clock,
        k=K,
        alpha=3,
        stall_after=1.0,
        exclude=b"\xff" * 20,
        rtt=RoundTrip(smoothed=0.1, deviation=0.0),
    )
    lookup.run()
    first, *others = [lookup._candidates[node_id] for node_id in asked]
    timers = [c.timer for c in others]
    clock.advance(0.1)
    asked[first.contact.node_id].callback(([], None))  # a round trip of 0.1 s, as expected
    assert [c.timer for c in others] == timers
    assert all(t is not None and t.getTime() == pytest.approx(0.1 + HEDGE_FLOOR) for t in timers)
    clock.advance(0.001)
    second = others[0]
    asked[second.contact.node_id].callback(([], None))  # slower: the patience grows
    third = others[1]
    assert third.timer is not timers[1]
    assert third.timer is not None and third.timer.getTime() > 0.1 + HEDGE_FLOOR


def test_a_lookup_hedges_by_its_own_round_trips_when_they_are_quicker() -> None:
    # Earlier lookups saw 50 ms (a busy moment); this one's answers take 1 ms.
    net = well_connected()
    net.delay = 0.001
    target = random.Random(27).randbytes(20)
    closest = true_closest(net, target)
    net.silent.add(closest[0].node_id)
    hedged: list[Contact] = []
    before = RoundTrip(smoothed=0.05, deviation=0.02)
    run(
        net,
        target,
        closest[:3],
        enough=lambda c, a: False,
        quorum=3,
        rtt=before,
        slow=hedged.append,
    )
    assert before.patience(1.0) == pytest.approx(0.13)
    net.clock.pump([0.001] * 10)
    # Its own estimate after two answers of 1 ms: 1 ms + max(1 ms, 4 * 0.375 ms).
    assert hedged == [closest[0]]


def test_more_seeds_are_fetched_only_when_the_seeds_fail() -> None:
    net = well_connected()
    target = random.Random(28).randbytes(20)
    ranked = sorted(net.contacts, key=lambda c: distance(c.node_id, target))
    fetched: list[int] = []

    def more_seeds() -> list[Contact]:
        fetched.append(1)
        return ranked[: 3 * K]

    outcome = result_of(run(net, target, ranked[:K], more_seeds=more_seeds))
    assert outcome.contacts == ranked[:K] and not fetched
    # The seeds dead and nobody else known: the ones standing by are asked.
    lonely = FakeNetwork(net.contacts, {c.node_id: [] for c in net.contacts})
    lonely.failing.update(c.node_id for c in ranked[:K])
    outcome = result_of(run(lonely, target, ranked[:K], more_seeds=more_seeds))
    assert fetched == [1]
    assert outcome.contacts == ranked[K : 2 * K]


def storing(net: FakeNetwork, target: bytes, asked: list[Contact]) -> Any:
    """A ``last_ask`` that answers as FIND_NODE does, with "stored" for the value."""
    find = net.ask(target)

    def store(contact: Contact) -> defer.Deferred[Answer]:
        asked.append(contact)
        return find(contact).addCallback(lambda answer: (answer[0], "stored"))

    return store


def test_a_put_asks_the_closest_of_its_last_step_with_its_store() -> None:
    net = well_connected()
    rng = random.Random(11)
    for _ in range(10):
        target = rng.randbytes(20)
        net.asked.clear()
        stored: list[Contact] = []
        outcome = result_of(
            run(net, target, rng.sample(net.contacts, 3), last_ask=storing(net, target, stored))
        )
        closest = true_closest(net, target)
        assert outcome.contacts == closest
        # Every one of the k closest was asked with the store, once, and
        # its outcome kept; one asked with FIND_NODE before it was among
        # them is asked a second time, no other contact is.
        assert set(closest) <= set(stored)
        assert len(stored) == len(set(stored))
        assert {c.node_id: v for c, v in outcome.values if c in closest} == {
            c.node_id: "stored" for c in closest
        }
        twice = [c for c in set(net.asked) if net.asked.count(c) > 1]
        assert all(net.asked.count(c) == 2 and c in stored for c in twice)
        assert outcome.messages == len(net.asked)


def test_a_put_stores_only_on_as_many_of_the_closest_as_it_asks() -> None:
    net = well_connected()
    target = random.Random(12).randbytes(20)
    stored: list[Contact] = []
    outcome = result_of(
        run(net, target, net.contacts[:3], last_ask=storing(net, target, stored), last_count=3)
    )
    assert outcome.contacts == true_closest(net, target)
    assert set(true_closest(net, target)[:3]) <= set(stored)
    # The last step's others were asked with FIND_NODE; a store went
    # beyond the three only to a contact among the three closest seen then.
    assert len(stored) < K


def test_a_slow_store_does_not_widen_a_put_nor_teach_it_round_trips() -> None:
    net = well_connected()
    target = random.Random(13).randbytes(20)
    find = net.ask(target)
    stored: list[Contact] = []

    def slow_store(contact: Contact) -> defer.Deferred[Answer]:
        stored.append(contact)
        d: defer.Deferred[Answer] = defer.Deferred()
        # A disk that takes 100 ms to make the record durable, answers at once.
        find(contact).addCallback(
            lambda answer: net.clock.callLater(0.1, d.callback, (answer[0], "stored"))
        )
        return d

    rtt = RoundTrip()
    rtt.observe(0.001)
    d = run(net, target, net.contacts[:3], last_ask=slow_store, rtt=rtt)
    while not d.called:
        net.clock.advance(0.01)
    outcome = result_of(d)
    assert outcome.contacts == true_closest(net, target)
    assert len(stored) == len(set(stored)) <= K
    assert outcome.round_trip is not None and outcome.round_trip.smoothed < 0.01
