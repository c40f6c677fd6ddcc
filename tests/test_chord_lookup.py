"""The iterative Chord lookup after a timeout near the key: no walk back round the ring."""

from __future__ import annotations

from twisted.internet import defer

from dhtkit.chord.lookup import SuccessorSearch
from dhtkit.chord.messages import FindAnswer
from dhtkit.contact import Contact
from dhtkit.keyspace import from_int
from dhtkit.rpcerrors import RPCTimeout

KEY = 1000


def at(position: int) -> Contact:
    """A node whose id is ``position`` on the ring (its key does not matter here)."""
    return Contact(from_int(position), bytes(32), ("10.0.0.1", 4000 + position))


def test_after_the_keys_predecessor_times_out_nodes_behind_the_nearest_are_not_followed() -> None:
    dead, nearest, successor = at(990), at(950), at(1010)
    far, farther = at(100), at(200)
    behind = [at(600), at(700), at(650)]  # between the far nodes and the nearest
    answers = {
        far.node_id: FindAnswer(False, [dead, nearest]),
        nearest.node_id: FindAnswer(False, [dead]),  # it points at the dead node
        # Asked next, a node farther back names nodes the lookup has passed.
        farther.node_id: FindAnswer(False, behind[:2]),
        behind[0].node_id: FindAnswer(False, [behind[2]]),
        behind[1].node_id: FindAnswer(False, [dead]),
        behind[2].node_id: FindAnswer(False, [dead]),
    }
    asked: list[int] = []

    def ask(contact: Contact) -> defer.Deferred[FindAnswer]:
        asked.append(int.from_bytes(contact.node_id, "big"))
        if contact.node_id == dead.node_id:
            return defer.fail(RPCTimeout("no answer"))
        return defer.succeed(answers[contact.node_id])

    listed: list[int] = []

    def successors_of(contact: Contact) -> defer.Deferred[list[Contact]]:
        listed.append(int.from_bytes(contact.node_id, "big"))
        return defer.succeed([dead, successor])

    search = SuccessorSearch(
        from_int(KEY), 1, from_int(5), [far, farther], ask, successors_of=successors_of
    )
    results: list[object] = []
    search.run().addBoth(results.append)
    # The nearest node that answered lists the key's successor after the
    # dead one: the last resort, reached without asking the nodes behind.
    assert [c.node_id for c in results[0].contacts] == [successor.node_id]  # type: ignore[attr-defined]
    assert asked == [100, 990, 950, 200]
    assert listed == [950]
    assert (search.timeouts, search.messages) == (1, 5)
