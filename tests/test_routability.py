from __future__ import annotations

from typing import Any

from dhtkit import wire
from dhtkit.contact import Contact
from dhtkit.routability import AMPLIFICATION
from dhtkit.rpc import RPCTimeout
from tests.conftest import LoggedErrors
from tests.test_rpc import A_ADDR, B_ADDR, Pair, answers, result_of

VICTIM = ("10.9.9.9", 53)
BIG = b"x" * 1000


def big_answer(sender: Contact, args: Any) -> bytes:
    return BIG


def sent_to(pair_side: Any, address: Any) -> list[bytes]:
    return [data for data, addr in Pair.take(pair_side) if addr == address]


def test_a_forged_source_gets_one_small_probe_not_the_answer() -> None:
    # A holds a session with B and sends a small query with a victim's
    # address as its source: the victim must not receive the large answer.
    pair = Pair()
    pair.b.register("big", big_answer, idempotent=True)
    pair.a.ping(B_ADDR)
    pair.exchange()
    probes_before = pair.b.stats()["probes_sent"]
    forged = pair.a.call_contact(pair.b_contact, "big")
    ((query, _),) = pair.take(pair.a)
    pair.b.datagramReceived(query, VICTIM)
    to_victim = sent_to(pair.b, VICTIM)
    assert sum(map(len, to_victim)) <= AMPLIFICATION * len(query) < len(BIG)
    ((probe,),) = [to_victim]
    assert wire.decode(probe).kind == wire.QUERY
    assert wire.decode(probe).method == "ping"
    stats = pair.b.stats()
    assert stats["answers_held"] == 1 and stats["probes_sent"] - probes_before == 1
    # The victim never answers: the probe is sent once more, then the held
    # answer is dropped and counted.
    pair.clock.advance(pair.b.timeout)
    ((again,),) = [sent_to(pair.b, VICTIM)]
    assert len(again) <= len(probe) + 1
    pair.clock.advance(pair.b.timeout)
    assert pair.b.stats()["dropped_unproven"] == 1
    assert sent_to(pair.b, VICTIM) == []
    assert result_of(forged).check(RPCTimeout)  # nothing came back to the attacker


def test_a_forged_source_gets_two_probes_at_most_with_a_round_trip_measured() -> None:
    # Once B has measured round trips, its calls are resent early. A probe
    # goes to an address that has not proven it receives: its early resend
    # is its retry, and the victim gets two probes, never a third.
    pair = Pair(timeout=2.0, retries=1)
    pair.b.register("big", big_answer, idempotent=True)
    pair.a.ping(B_ADDR)
    pair.exchange()
    measured = pair.b.ping(A_ADDR)
    pair.b_to_a()
    pair.clock.advance(0.04)
    pair.exchange()
    assert measured.called and pair.b.round_trip.smoothed is not None
    pair.take(pair.b)
    forged = pair.a.call_contact(pair.b_contact, "big")
    ((query, _),) = pair.take(pair.a)
    pair.b.datagramReceived(query, VICTIM)
    at = [0.0 for _ in sent_to(pair.b, VICTIM)]
    for step in range(1, 51):  # past the timeout and the retry's
        pair.clock.advance(0.1)
        at += [step / 10 for _ in sent_to(pair.b, VICTIM)]
    assert at == [0.0, 0.2]  # the second early: 3 R after one round trip R of 40 ms
    assert pair.b.stats()["early_resends"] == 1
    assert pair.b.stats()["dropped_unproven"] == 1
    assert result_of(forged).check(RPCTimeout)


def test_the_real_asker_proves_its_address_and_gets_its_answer() -> None:
    pair = Pair()
    pair.b.register("big", big_answer, idempotent=True)
    d = pair.a.call_contact(pair.b_contact, "big")
    pair.a_to_b()
    sent = pair.b_to_a()  # only B's probe: A's address is not proven yet
    assert answers(sent) == []
    pair.a_to_b()  # A answers the probe
    pair.b_to_a()  # and B releases the answer
    assert result_of(d) == BIG
    assert pair.b.stats()["answers_released"] == 1
    # From then on A's address is known: the next answer goes at once.
    d2 = pair.a.call_contact(pair.b_contact, "big")
    pair.a_to_b()
    assert len(answers(pair.b_to_a())) == 1
    assert result_of(d2) == BIG


def test_small_answers_go_at_once_to_an_unproven_address() -> None:
    pair = Pair()
    d = pair.a.ping(B_ADDR)
    (query,) = pair.a_to_b()
    (reply,) = answers([data for data, _ in pair.take(pair.b)])
    assert len(reply) <= AMPLIFICATION * len(query)
    pair.a.datagramReceived(reply, B_ADDR)
    assert result_of(d) == pair.b_contact


def test_listeners_hear_of_a_querier_only_once_its_address_is_proven() -> None:
    # A signed first-contact ping with a forged source once made a node hand
    # its records over to that address.
    pair = Pair()
    heard: list[Contact] = []
    pair.b.add_listener(heard.append)
    pair.a.ping(B_ADDR)
    (query,) = [data for data, _ in pair.take(pair.a)]
    pair.b.datagramReceived(query, VICTIM)
    assert heard == []
    pair.clock.advance(2 * pair.b.timeout)  # the victim ignores the probe, twice
    assert heard == []
    # the small ping answer and the probe: a few times the query, no more
    assert sum(map(len, sent_to(pair.b, VICTIM))) <= AMPLIFICATION * len(query)
    # The same from the real address: heard once A answers the probe.
    pair.a.ping(B_ADDR)
    pair.exchange()
    assert heard == [Contact.from_key(pair.a.identity.public_key, A_ADDR)]


def test_no_probe_while_our_own_call_to_that_peer_is_waiting() -> None:
    pair = Pair()
    pair.a.call_contact(pair.b_contact, "ping")
    pair.b.call_contact(Contact.from_key(pair.a.identity.public_key, A_ADDR), "ping")
    pair.exchange()
    assert pair.a.stats()["probes_sent"] == 0
    assert pair.b.stats()["probes_sent"] == 0


def test_probes_and_held_answers_are_bounded() -> None:
    pair = Pair()
    pair.b.register("big", big_answer, idempotent=True)
    pair.b.routability.max_probes = 2
    pair.b.routability.max_held = 1
    pair.a.ping(B_ADDR)
    pair.exchange()
    probes_before = pair.b.stats()["probes_sent"]
    for n in range(5):
        pair.a.call_contact(pair.b_contact, "big")
        ((query, _),) = pair.take(pair.a)
        pair.b.datagramReceived(query, ("10.9.9.{}".format(n % 3), 53))
    stats = pair.b.stats()
    assert len(pair.b.routability) == 2
    assert stats["probes_sent"] - probes_before == 2
    assert stats["answers_held"] == 2
    assert stats["dropped_unproven"] == 3


def test_a_padded_query_gets_its_large_answer_at_once() -> None:
    # A query whose answer may be large is padded, so the answer needs no
    # probe of the asker's address first: one round trip, not two.
    pair = Pair()
    pair.b.register("big", big_answer, idempotent=True)
    d = pair.a.call_contact(pair.b_contact, "big", large_answer=True)
    (query,) = pair.a_to_b()
    assert len(query) * AMPLIFICATION >= wire.MAX_DATAGRAM
    (answer,) = pair.b_to_a()
    assert len(answer) <= AMPLIFICATION * len(query)
    assert result_of(d) == BIG
    assert pair.b.stats()["probes_sent"] == 0 and pair.b.stats()["answers_held"] == 0
    assert pair.a.stats()["queries_padded"] == 1


def test_a_peer_we_have_answered_gets_unpadded_queries_and_answers_them_at_once() -> None:
    # Our answer to B's ping proved our address to B: padding would be waste.
    pair = Pair()
    pair.b.register("big", big_answer, idempotent=True)
    pair.b.ping(A_ADDR)
    pair.exchange()
    d = pair.a.call_contact(pair.b_contact, "big", large_answer=True)
    (query,) = pair.a_to_b()
    assert len(query) < wire.MAX_DATAGRAM // AMPLIFICATION
    assert len(answers(pair.b_to_a())) == 1
    assert result_of(d) == BIG
    assert pair.a.stats()["queries_padded"] == 0
    assert pair.b.stats()["probes_sent"] == 0


def test_a_forged_padded_query_sends_the_victim_no_more_than_amplification_times_it() -> None:
    # Padding buys the answer only in proportion to what the forger sent.
    pair = Pair()
    pair.b.register("big", big_answer, idempotent=True)
    pair.a.ping(B_ADDR)
    pair.exchange()
    pair.a.call_contact(pair.b_contact, "big", large_answer=True)
    ((query, _),) = pair.take(pair.a)
    pair.b.datagramReceived(query, VICTIM)
    pair.clock.advance(2 * pair.b.timeout)
    assert 0 < sum(map(len, sent_to(pair.b, VICTIM))) <= AMPLIFICATION * len(query)


def test_a_stranger_no_listener_wants_is_not_probed() -> None:
    # A routing table with no room for the querier spares the probe and its
    # reply; the query is answered all the same.
    pair = Pair()
    heard: list[Contact] = []
    asked: list[Contact] = []

    def wants(contact: Contact) -> bool:
        asked.append(contact)
        return False

    pair.b.add_listener(heard.append, wants)
    d = pair.a.ping(B_ADDR)
    pair.exchange()
    assert result_of(d) == pair.b_contact
    assert pair.b.stats()["probes_sent"] == 0
    assert heard == [] and asked == [Contact.from_key(pair.a.identity.public_key, A_ADDR)]
    # A listener that wants it has it probed, and hears of it once proven.
    pair.b.add_listener(heard.append)
    pair.a.call_contact(pair.b_contact, "ping")
    pair.exchange()
    assert pair.b.stats()["probes_sent"] == 1
    assert heard == [Contact.from_key(pair.a.identity.public_key, A_ADDR)] * 2


def test_a_failing_wants_is_counted_and_logged_and_the_query_answered(
    logged_errors: LoggedErrors,
) -> None:
    pair = Pair()

    def wants(contact: Contact) -> bool:
        raise RuntimeError("a bug in the listener")

    pair.b.add_listener(lambda contact: None, wants)
    d = pair.a.ping(B_ADDR)
    pair.exchange()
    assert result_of(d) == pair.b_contact
    assert pair.b.stats()["listener_errors"] == 1
    assert pair.b.stats()["probes_sent"] == 0
    assert [e["log_format"] for e in logged_errors.take()] == ["listener {wants!r} failed"]
