"""The gossip protocol between a few nodes: rounds, exchanges, loss rules, hostile peers."""

from __future__ import annotations

import random
from collections.abc import Sequence
from itertools import pairwise
from typing import Any

import cbor2
import pytest
from twisted.internet import defer, task
from zope.interface.verify import verifyObject

from dhtkit.contact import Contact
from dhtkit.gossip.config import GossipConfig
from dhtkit.gossip.messages import METHOD, PAYLOAD_BUDGET
from dhtkit.gossip.protocol import GossipProtocol
from dhtkit.gossip.sampler import ContactList, IPeerSampler
from dhtkit.gossip.update import Update, make_update
from dhtkit.identity import Identity
from dhtkit.rpc import RemoteError, RPCProtocol
from dhtkit.sim.latency import ConstantLatency
from dhtkit.sim.network import VirtualNetwork
from tests.conftest import LoggedErrors

NOW = 1_000_000.0


class Recording(ContactList):
    """A fixed list that remembers what the protocol tells it."""

    def __init__(self, contacts: Sequence[Contact]) -> None:
        super().__init__(contacts)
        self.offered: list[Contact] = []
        self.failures: list[Contact] = []

    def offer(self, contact: Contact) -> None:
        self.offered.append(contact)

    def failed(self, contact: Contact) -> None:
        self.failures.append(contact)


class Net:
    """A few RPC nodes on a virtual network driven by a task.Clock."""

    def __init__(self, count: int) -> None:
        self.clock = task.Clock()
        self.clock.advance(NOW)
        self.network = VirtualNetwork(self.clock, latency=ConstantLatency(0.01), seed=1)
        self.rpcs: list[RPCProtocol] = []
        for n in range(count):
            reactor = self.network.reactor_for("10.0.0.{}".format(n + 1))
            rpc = RPCProtocol(Identity(bytes([n + 1]) * 32), reactor, rng=random.Random(n))
            reactor.listenUDP(4000, rpc)
            self.rpcs.append(rpc)

    def contact(self, n: int) -> Contact:
        contact = self.rpcs[n].contact
        assert contact is not None
        return contact

    def gossip(self, n: int, peers: Sequence[int], **options: Any) -> GossipProtocol:
        sampler = Recording([self.contact(p) for p in peers])
        node = GossipProtocol(
            self.rpcs[n], sampler, GossipConfig(**options), rng=random.Random(100 + n)
        )
        node.start(rounds=False)  # the tests run the rounds
        return node

    def settle(self) -> None:
        self.clock.pump([0.01] * 20)


def publish(node: GossipProtocol, n: int = 1, data: bytes = b"x") -> Update:
    return node.publish("news", data + str(n).encode())


def test_the_protocol_and_its_sampler_meet_their_interfaces() -> None:
    net = Net(2)
    node = net.gossip(0, [1])
    assert verifyObject(IPeerSampler, node.sampler)
    assert node.stats()["rounds"] == 0


def test_rounds_come_at_jittered_intervals_until_stopped() -> None:
    net = Net(1)
    node = net.gossip(0, [], period=10, jitter=0.5)
    times: list[float] = []
    node.run_round = lambda: times.append(net.clock.seconds())  # type: ignore[method-assign]
    node.start()
    node.start()  # a second start changes nothing
    assert node.running
    net.clock.pump([1.0] * 2000)
    assert times[0] - NOW < 10
    gaps = [b - a for a, b in pairwise(times)]
    assert all(5 <= gap <= 15 for gap in gaps)
    assert 180 <= len(times) <= 220
    node.stop()
    node.stop()
    assert not node.running and net.clock.getDelayedCalls() == []


def test_si_push_sends_only_the_updates_the_peer_lacks() -> None:
    net = Net(2)
    a, b = net.gossip(0, [1], mode="push"), net.gossip(1, [0], mode="push")
    shared, fresh = publish(a, 1), publish(a, 2)
    b.state.receive(shared.encoded)
    a.run_round()
    net.settle()
    assert b.state.knows(fresh.update_id)
    # One digest exchange, then one push carrying the one update missing.
    assert a.counters["exchanges"] == 2 and a.counters["updates_sent"] == 1
    assert b.counters["updates_known"] == 0


def test_si_push_with_nothing_to_push_does_not_call() -> None:
    net = Net(2)
    a = net.gossip(0, [1], mode="push")
    net.gossip(1, [0], mode="push")
    a.run_round()
    assert a.counters["exchanges"] == 0 and a.counters["rounds"] == 1


def test_si_pull_fetches_what_the_caller_lacks() -> None:
    net = Net(2)
    a, b = net.gossip(0, [1], mode="pull"), net.gossip(1, [0], mode="pull")
    shared, fresh = publish(b, 1), publish(b, 2)
    a.state.receive(shared.encoded)
    a.run_round()
    net.settle()
    assert a.state.knows(fresh.update_id)
    assert a.counters["exchanges"] == 1 and b.counters["updates_sent"] == 1


def test_si_push_pull_exchanges_both_ways_in_one_round() -> None:
    net = Net(2)
    a, b = net.gossip(0, [1]), net.gossip(1, [0])
    mine, theirs = publish(a, 1), publish(b, 2)
    a.run_round()
    net.settle()
    assert a.state.knows(theirs.update_id) and b.state.knows(mine.update_id)
    assert b.counters["rounds"] == 0


@pytest.mark.parametrize(("model", "kept"), [("si", False), ("sir", True)])
def test_only_rumour_answers_are_kept_for_retries(model: str, kept: bool) -> None:
    # An anti-entropy exchange may simply run again when retried; a rumour's
    # must not (its feedback would count twice), so the RPC layer keeps its
    # reply to send again.
    net = Net(2)
    a, b = net.gossip(0, [1], model=model), net.gossip(1, [0], model=model)
    update = publish(a)
    a.run_round()
    net.settle()
    assert b.state.knows(update.update_id) and b.counters["requests_received"] >= 1
    assert (len(net.rpcs[1].answers) > 0) is kept


@pytest.mark.parametrize("mode", ["push", "pull", "pushpull"])
def test_anti_entropy_reconciles_stores_larger_than_a_message(mode: str) -> None:
    net = Net(2)
    a, b = net.gossip(0, [1], mode=mode), net.gossip(1, [0], mode=mode)
    sizes: list[int] = []
    for node in (a, b):
        call = node.rpc.call_contact

        def measured(contact: Contact, method: str, args: Any, call: Any = call, **kw: Any) -> Any:
            sizes.append(len(cbor2.dumps(args)))
            return call(contact, method, args, **kw)

        node.rpc.call_contact = measured  # type: ignore[method-assign]
    for n in range(150):
        publish(a if n % 3 else b, n, data=b"y" * 100)
    for _ in range(80):
        a.run_round()
        b.run_round()
        net.settle()
        if len(a.state.store) == len(b.state.store) == 150:
            break
    assert len(a.state.store) == len(b.state.store) == 150
    assert max(sizes) <= PAYLOAD_BUDGET
    if mode != "pushpull":
        # Compared window by window, nothing is sent that the peer has.
        assert a.counters["updates_known"] == b.counters["updates_known"] == 0


def test_sir_push_feedback_a_peer_that_knew_ends_the_rumour_at_k_1() -> None:
    net = Net(2)
    a = net.gossip(0, [1], model="sir", mode="push", k=1)
    b = net.gossip(1, [0], model="sir", mode="push", k=1)
    update = publish(a)
    a.run_round()
    net.settle()
    # B did not know it: A keeps spreading, and now B spreads it too.
    assert a.state.spreads(update.update_id) and b.state.spreads(update.update_id)
    a.run_round()
    net.settle()
    assert not a.state.spreads(update.update_id)
    assert a.stats()["removed"] == 1 and a.state.knows(update.update_id)
    a.run_round()  # removed: nothing left to push
    assert a.counters["exchanges"] == 2


def test_sir_blind_counts_a_contact_with_a_peer_that_did_not_know() -> None:
    net = Net(2)
    a = net.gossip(0, [1], model="sir", mode="push", variant="blind-counter", k=1)
    net.gossip(1, [0], model="sir", mode="push")
    update = publish(a)
    a.run_round()
    net.settle()
    assert not a.state.spreads(update.update_id)


def test_sir_pull_feedback_is_counted_by_the_peer_that_answers() -> None:
    net = Net(2)
    a = net.gossip(0, [1], model="sir", mode="pull", variant="counter", k=1)
    b = net.gossip(1, [0], model="sir", mode="pull", variant="counter", k=1)
    update = publish(b)
    a.run_round()
    net.settle()
    assert a.state.spreads(update.update_id) and b.state.spreads(update.update_id)
    a.run_round()  # A asks again, listing the update: B learns A knew it
    net.settle()
    assert not b.state.spreads(update.update_id) and a.state.spreads(update.update_id)


def test_sir_push_pull_does_both_with_feedback_on_each_side() -> None:
    net = Net(2)
    options = {"model": "sir", "mode": "pushpull", "variant": "counter", "k": 1}
    a, b = net.gossip(0, [1], **options), net.gossip(1, [0], **options)
    mine, theirs = publish(a, 1), publish(b, 2)
    a.run_round()
    net.settle()
    assert a.state.knows(theirs.update_id) and b.state.knows(mine.update_id)
    a.run_round()
    net.settle()
    # A pushed both and B knew both; B offered both and A's digest listed
    # both: with k = 1 every rumour is now dropped on both sides.
    for update in (mine, theirs):
        assert not a.state.spreads(update.update_id)
        assert not b.state.spreads(update.update_id)
    assert a.stats()["removed"] == b.stats()["removed"] == 2


def test_a_node_never_gossips_with_itself() -> None:
    net = Net(2)
    alone = net.gossip(0, [0])
    publish(alone)
    for _ in range(5):
        alone.run_round()
    assert alone.counters["exchanges"] == 0
    both = net.gossip(1, [0, 1])
    for _ in range(20):
        both.run_round()
    net.settle()
    assert both.counters["exchanges"] == 20 and both.counters["exchange_failures"] == 0


def test_callers_are_offered_to_the_sampler() -> None:
    net = Net(2)
    a, b = net.gossip(0, [1]), net.gossip(1, [])
    a.run_round()
    net.settle()
    assert isinstance(b.sampler, Recording) and b.sampler.offered == [net.contact(0)]


def test_a_failed_exchange_is_counted_and_reported_to_the_sampler(
    logged_errors: LoggedErrors,
) -> None:
    net = Net(2)
    a = net.gossip(0, [1], call_timeout=1.0)
    net.network.set_down("10.0.0.2")
    a.run_round()
    net.clock.pump([1.0] * 5)
    assert a.counters["exchange_failures"] == 1
    assert isinstance(a.sampler, Recording) and a.sampler.failures == [net.contact(1)]
    assert logged_errors.events == []


def test_updates_expire_and_are_no_longer_offered() -> None:
    net = Net(2)
    a, b = net.gossip(0, [1], mode="push"), net.gossip(1, [0], mode="push")
    a.publish("news", b"short-lived", ttl=5)
    net.clock.advance(5)
    a.run_round()
    net.settle()
    assert len(a.state.store) == 0 and len(b.state.store) == 0
    assert a.counters["expired"] == 1 and a.counters["exchanges"] == 0


def test_a_deletion_travels_and_subscribers_hear_of_it() -> None:
    net = Net(3)
    nodes = [net.gossip(n, [m for m in range(3) if m != n]) for n in range(3)]
    heard: list[Update] = []
    gone: list[Update] = []
    for node in nodes[1:]:
        node.state.subscribe("news", heard.append, gone.append)
    update = publish(nodes[0])
    for _ in range(6):
        for node in nodes:
            node.run_round()
        net.settle()
    assert heard == [update, update]
    certificate = nodes[0].state.delete(update)
    for _ in range(6):
        for node in nodes:
            node.run_round()
        net.settle()
    assert gone == [certificate, certificate]
    assert all(not node.state.knows(update.update_id) for node in nodes)
    assert all(node.state.knows(certificate.update_id) for node in nodes)


# -- hostile peers -----------------------------------------------------------------


def call_gossip(net: Net, caller: int, callee: int, payload: Any) -> list[Any]:
    results: list[Any] = []
    d: defer.Deferred[Any] = net.rpcs[caller].call_contact(net.contact(callee), METHOD, payload)
    d.addBoth(results.append)
    net.settle()
    assert results
    return results


def test_a_forged_update_is_dropped_and_counted(logged_errors: LoggedErrors) -> None:
    net = Net(2)
    b = net.gossip(1, [0])
    genuine = make_update(Identity(b"\7" * 32), "news", b"x", seq=1, expires=NOW + 60)
    forged = genuine.body + bytes(64)
    [reply] = call_gossip(net, 0, 1, {"u": [forged, b"junk" * 20]})
    assert reply == {"k": [True, True]}  # neither was of use here
    [reply] = call_gossip(net, 0, 1, {"u": [b"\x87" + b"\0" * 1250]})
    assert reply == {"k": [True]}
    stats = b.stats()
    assert stats["dropped_forged"] == 1 and stats["dropped_oversized"] == 1
    assert stats["dropped_malformed"] == 1 and stats["updates"] == 0
    assert logged_errors.events == []


@pytest.mark.parametrize(
    "payload",
    [None, "gossip", [1, 2], {"u": "x"}, {"d": [b"short"]}, {"p": "yes"}, {"evil": 1}],
)
def test_malformed_requests_get_an_error_and_are_counted(
    payload: Any, logged_errors: LoggedErrors
) -> None:
    net = Net(2)
    b = net.gossip(1, [0])
    [failure] = call_gossip(net, 0, 1, payload)
    assert failure.check(RemoteError) and failure.value.code == "bad_request"
    assert b.counters["bad_requests"] == 1 and b.counters["requests_received"] == 0
    assert logged_errors.events == []


@pytest.mark.parametrize("reply", ["garbage", [1], {"k": "no"}, {"u": [7]}])
def test_a_malformed_reply_is_counted(reply: Any, logged_errors: LoggedErrors) -> None:
    net = Net(2)
    a = net.gossip(0, [1])
    net.rpcs[1].register(METHOD, lambda sender, args: reply)
    a.run_round()
    net.settle()
    assert a.counters["bad_replies"] == 1
    assert logged_errors.events == []


def test_an_unsolicited_want_list_is_ignored() -> None:
    net = Net(2)
    a = net.gossip(0, [1], mode="pull")
    update = publish(a)
    # A rogue peer asks for what A never offered to push.
    net.rpcs[1].register(METHOD, lambda sender, args: {"w": [update.update_id]})
    a.run_round()
    net.settle()
    assert a.counters["exchanges"] == 1 and a.counters["updates_sent"] == 0


def test_the_largest_answer_a_request_can_ask_for_still_fits(logged_errors: LoggedErrors) -> None:
    net = Net(2)
    b = net.gossip(1, [0])
    # As many junk updates and unknown ids as a request may carry: the
    # answer lists them all back (k and w) and must still fit a datagram.
    payload = {"u": [b"j"] * 30, "d": [bytes([n]) * 20 for n in range(56)], "w": True}
    [reply] = call_gossip(net, 0, 1, payload)
    assert len(reply["w"]) == 56 and reply["k"] == [True] * 30
    assert b.counters["dropped_malformed"] == 30
    assert logged_errors.events == []


def test_a_stopped_node_answers_unknown_method_and_a_restarted_one_answers_again() -> None:
    net = Net(2)
    net.gossip(0, [1])
    b = net.gossip(1, [0])

    def ask() -> str:
        errors: list[Any] = []
        net.rpcs[0].call_contact(net.contact(1), METHOD, None).addErrback(errors.append)
        net.settle()
        (failure,) = errors
        return str(failure.value.code)

    assert ask() == "bad_request"  # answered: the handler refused the empty exchange
    b.stop()
    assert ask() == "unknown_method"
    b.start()  # on the same RPC layer
    b.stop()
    b.start(rounds=False)
    assert ask() == "bad_request"
