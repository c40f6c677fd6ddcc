from __future__ import annotations

from typing import Any

from dhtkit import wire
from dhtkit.contact import Contact
from dhtkit.identity import Identity
from dhtkit.routability import AMPLIFICATION, CHALLENGE_CHARS, CHALLENGE_PERIOD
from dhtkit.rpc import RPCProtocol, RPCTimeout
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
    # A listener that wants it has it asked to prove its address, and
    # hears of it once proven.
    pair.b.add_listener(heard.append)
    pair.a.call_contact(pair.b_contact, "ping")
    pair.exchange()
    assert pair.b.stats()["challenges_sent"] == 1 and pair.b.stats()["proofs_received"] == 1
    assert pair.b.stats()["probes_sent"] == 0
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


# -- challenges: the proof folded into the answer ---------------------------------------------


def wanting_pair(**kw: Any) -> tuple[Pair, list[Contact]]:
    """A pair whose B has a listener that takes every sender."""
    pair = Pair(**kw)
    heard: list[Contact] = []
    pair.b.add_listener(heard.append)
    return pair, heard


def a_at(address: Any, pair: Pair) -> Contact:
    return Contact.from_key(pair.a.identity.public_key, address)


def test_an_answer_asks_a_wanted_querier_to_prove_its_address_in_one_datagram() -> None:
    # Three datagrams where a probe took four: the query, the answer with
    # its challenge, and the challenge sent back.
    pair, heard = wanting_pair()
    d = pair.a.call_contact(pair.b_contact, "ping")
    (query,) = pair.a_to_b()
    (answer,) = pair.b_to_a()
    assert result_of(d) == wire.encode_address(A_ADDR)
    challenge = wire.decode(answer).method
    assert len(challenge) == CHALLENGE_CHARS
    assert heard == []  # not before its proof
    (proof,) = pair.a_to_b()
    message = wire.decode(proof)
    assert (message.kind, message.method, message.payload) == (wire.PROOF, challenge, None)
    assert message.txid == wire.decode(query).txid
    assert heard == [a_at(A_ADDR, pair)]
    assert pair.b_to_a() == []  # a proof gets no answer
    assert pair.b.is_proven(a_at(A_ADDR, pair))
    stats = pair.b.stats()
    assert (stats["challenges_sent"], stats["proofs_received"], stats["probes_sent"]) == (1, 1, 0)
    assert pair.a.stats()["proofs_sent"] == 1
    # Proven: the next answer carries no challenge, and nothing comes back.
    pair.a.call_contact(pair.b_contact, "ping")
    pair.a_to_b()
    (again,) = pair.b_to_a()
    assert wire.decode(again).method == ""
    assert pair.a_to_b() == []


def test_a_forged_source_gets_its_small_answer_and_no_probe() -> None:
    # The victim of a forged query gets the answer it would have got, with
    # a challenge it ignores: nothing more, no probe twice as before.
    pair, heard = wanting_pair()
    pair.a.call_contact(pair.b_contact, "ping")
    ((query, _),) = pair.take(pair.a)
    pair.b.datagramReceived(query, VICTIM)
    pair.clock.advance(2 * pair.b.timeout)
    (answer,) = sent_to(pair.b, VICTIM)
    assert len(answer) <= AMPLIFICATION * len(query)
    assert heard == [] and pair.b.stats()["probes_sent"] == 0


def challenged(pair: Pair) -> tuple[wire.Message, str]:
    """A's query to B, and the challenge B's answer carried (A not told)."""
    pair.a.call_contact(pair.b_contact, "ping")
    ((query, _),) = pair.take(pair.a)
    pair.b.datagramReceived(query, A_ADDR)
    ((answer, _),) = pair.take(pair.b)
    return wire.decode(query), wire.decode(answer).method


def proof_from(pair: Pair, txid: int, challenge: str, sender: RPCProtocol | None = None) -> bytes:
    """A proof datagram to B, from A unless ``sender`` says who."""
    sender = pair.a if sender is None else sender
    return wire.encode(
        wire.PROOF,
        txid,
        challenge,
        None,
        sender.identity,
        sender._next_seq(),
        sender.sessions.key_for(pair.b.identity.public_key),
    )


def test_a_wrong_or_stale_or_misdirected_proof_proves_nothing() -> None:
    pair, heard = wanting_pair()
    query, challenge = challenged(pair)
    other = "0" * CHALLENGE_CHARS if challenge != "0" * CHALLENGE_CHARS else "1" * CHALLENGE_CHARS
    for text in (other, challenge[:-1], challenge + "0", "é" * CHALLENGE_CHARS, ""):
        pair.b.datagramReceived(proof_from(pair, query.txid, text), A_ADDR)
    # the right challenge from another address: it was made for A_ADDR
    pair.b.datagramReceived(proof_from(pair, query.txid, challenge), VICTIM)
    assert pair.b.stats()["dropped_bad_proof"] == 6
    assert heard == [] and not pair.b.is_proven(a_at(A_ADDR, pair))
    assert not pair.b.is_proven(a_at(VICTIM, pair))
    assert pair.take(pair.b) == []  # no answer to any of them
    # Two periods later the right one is too old.
    pair.clock.advance(2 * CHALLENGE_PERIOD)
    pair.b.datagramReceived(proof_from(pair, query.txid, challenge), A_ADDR)
    assert pair.b.stats()["dropped_bad_proof"] == 7 and heard == []


def test_a_proof_is_good_within_the_next_period_and_only_once() -> None:
    pair, heard = wanting_pair()
    query, challenge = challenged(pair)
    pair.clock.advance(CHALLENGE_PERIOD)
    proof = proof_from(pair, query.txid, challenge)
    pair.b.datagramReceived(proof, A_ADDR)
    assert heard == [a_at(A_ADDR, pair)]
    pair.b.datagramReceived(proof, A_ADDR)  # the same datagram again: a replay
    assert pair.b.stats()["dropped_replay"] == 1
    assert heard == [a_at(A_ADDR, pair)] and pair.b.stats()["proofs_received"] == 1


def test_another_key_cannot_use_a_challenge_made_for_a() -> None:
    pair, heard = wanting_pair()
    query, challenge = challenged(pair)
    mallory = pair.make(Identity(b"\3" * 32))
    pair.b.datagramReceived(proof_from(pair, query.txid, challenge, mallory), A_ADDR)
    assert pair.b.stats()["dropped_bad_proof"] == 1 and heard == []


def test_a_challenge_of_another_form_is_not_sent_back() -> None:
    # A peer cannot make us echo text of its choosing: only a challenge's form.
    pair = Pair()
    pair.b.register("odd", lambda sender, args: None, idempotent=True)
    d = pair.a.call_contact(pair.b_contact, "odd")
    (query,) = pair.a_to_b()
    txid = wire.decode(query).txid
    reply = wire.encode(
        wire.RESPONSE,
        txid,
        "not a challenge",
        None,
        pair.b.identity,
        pair.b._next_seq(),
        pair.b.sessions.key_for(pair.a.identity.public_key),
    )
    pair.take(pair.b)
    pair.a.datagramReceived(reply, B_ADDR)
    assert result_of(d) is None
    assert pair.take(pair.a) == [] and pair.a.stats()["proofs_sent"] == 0


def test_an_answer_held_for_a_probe_carries_no_challenge() -> None:
    # Too large to go at once: the probe's reply proves the address, and
    # the released answer asks for nothing more.
    pair, heard = wanting_pair()
    pair.b.register("big", big_answer, idempotent=True)
    d = pair.a.call_contact(pair.b_contact, "big")
    pair.a_to_b()
    pair.b_to_a()  # the probe
    pair.a_to_b()  # its reply
    (released,) = pair.b_to_a()
    assert result_of(d) == BIG
    assert wire.decode(released).method == ""
    assert pair.a_to_b() == []
    stats = pair.b.stats()
    assert (stats["probes_sent"], stats["challenges_sent"], stats["answers_released"]) == (1, 0, 1)
    assert heard == [a_at(A_ADDR, pair)]


def test_a_full_answer_goes_without_its_challenge_rather_than_not_at_all() -> None:
    # Sixteen more bytes would not fit the datagram: the answer goes without
    # them, and a probe proves the address, as before challenges.
    pair, heard = wanting_pair()
    probe = wire.encode(
        wire.RESPONSE, 2**31, "", b"", pair.b.identity, 2**60, bytes(32)
    )  # the answer's fixed part
    room = wire.MAX_DATAGRAM - len(probe) - 3  # a 3-byte bytes head
    pair.b.register("full", lambda sender, args: b"x" * room, idempotent=True)
    d = pair.a.call_contact(pair.b_contact, "full", large_answer=True)
    pair.exchange()
    assert result_of(d) == b"x" * room
    assert (pair.b.stats()["challenges_sent"], pair.b.stats()["probes_sent"]) == (0, 1)
    assert heard == [a_at(A_ADDR, pair)]


def test_a_retried_query_is_answered_with_the_challenge_again() -> None:
    # The answer the first copy of the query had was lost, challenge and all.
    pair, heard = wanting_pair()
    pair.b.register("write", lambda sender, args: b"ok")  # answered once, then kept
    d = pair.a.call_contact(pair.b_contact, "write")
    pair.a_to_b()
    pair.take(pair.b)  # lost
    pair.clock.advance(pair.a.timeout)  # A sends the query again
    pair.a_to_b()
    (again,) = pair.b_to_a()
    assert len(wire.decode(again).method) == CHALLENGE_CHARS
    assert pair.b.stats()["duplicate_queries"] == 1
    assert result_of(d) == b"ok"
    pair.a_to_b()
    assert heard == [a_at(A_ADDR, pair)]
