"""One node's view of the ring: predecessors, successor list and fingers.

Pure state and the rules that change it, no traffic: the RPC handlers, the
maintenance rounds and the lookups all go through :class:`RingState`, and
the tests drive it directly. It trusts what it is given: the overlay passes
it only contacts that proved their ids, except the tails of the successor
and predecessor lists, which come from our successor's and our
predecessor's own lists (the successor list's as in the paper).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence

from twisted.logger import Logger

from dhtkit.chord.fingers import FingerTable, finger_range
from dhtkit.chord.messages import NEXT_CANDIDATES, FindAnswer
from dhtkit.chord.successors import SuccessorList, may_hold, within
from dhtkit.contact import Contact
from dhtkit.keyspace import ID_BITS, check_id, in_interval, ring_distance
from dhtkit.remembered import Remembered

NeighbourListener = Callable[[Contact], None]


class RingState:
    """Where node ``own_id`` stands on the ring.

    :param successors: the successor list's length (the paper's ``r``).
    :param predecessors: how many predecessors to keep. The paper keeps one;
        a node that holds copies of keys behind it (``k > 1``) needs ``k - 1``
        to tell exactly who else holds them (:meth:`holds`).
    :param counters: where changes are counted (shared with the overlay).
    """

    _log = Logger()

    def __init__(
        self,
        own_id: bytes,
        successors: int,
        counters: Counter[str] | None = None,
        predecessors: int = 1,
    ) -> None:
        if predecessors < 1:
            raise ValueError("a node keeps at least its predecessor")
        self.own_id = check_id(own_id)
        self.predecessor_list_size = predecessors
        # Nearest first; the first is the paper's predecessor.
        self._predecessors: list[Contact] = []
        self.successors = SuccessorList(own_id, successors)
        self.fingers = FingerTable(own_id)
        #: Nodes that proved their ids and were then lost (or joined
        #: through): where the merge round looks for another ring.
        self.lost = Remembered(self.own_id)
        self.counters: Counter[str] = counters if counters is not None else Counter()
        self._listeners: list[NeighbourListener] = []
        # The last predecessor announced: one that comes back after a lapse
        # (a missed ping) is not new, and its keys need not move again.
        self._announced_predecessor: bytes | None = None
        self._finger_cursor = 0
        #: Whether we are part of a ring (a ring of one included): until
        #: then the maintenance rounds wait, and we answer no lookups, or a
        #: node still looking for its place would claim every key.
        self.joined = False
        #: When the predecessor last sent us a verified message (clock time).
        self.predecessor_heard = float("-inf")

    # -- neighbours -----------------------------------------------------------------

    def add_listener(self, listener: NeighbourListener) -> None:
        """Call ``listener(contact)`` for a new predecessor or a new successor-list entry."""
        self._listeners.append(listener)

    def _announce(self, contact: Contact) -> None:
        for listener in self._listeners:
            try:
                listener(contact)
            except Exception:
                self._log.failure("neighbour listener {listener!r} failed", listener=listener)

    @property
    def predecessor(self) -> Contact | None:
        """Our predecessor, or None when we do not know it."""
        return self._predecessors[0] if self._predecessors else None

    @property
    def predecessors(self) -> list[Contact]:
        """Our predecessor and the nodes behind it that we know of, nearest first."""
        return list(self._predecessors)

    def set_predecessor(self, contact: Contact | None) -> None:
        """Make ``contact`` our predecessor (None: we do not know it)."""
        old = self.predecessor
        if contact is None:
            self._predecessors = []
        elif old is not None and old.node_id == contact.node_id:
            self._predecessors[0] = contact
        elif old is not None and in_interval(contact.node_id, old.node_id, self.own_id):
            # A node joined behind us: the old predecessors are behind it.
            self._predecessors = [contact, *self._predecessors][: self.predecessor_list_size]
        else:
            self._predecessors = [contact]
        if contact is None or old is None or old.node_id != contact.node_id:
            self.predecessor_heard = float("-inf")
        if contact is None or (old is not None and old.node_id == contact.node_id):
            return
        self.counters["predecessor_changes"] += 1
        if contact.node_id != self._announced_predecessor:
            self._announced_predecessor = contact.node_id
            self._announce(contact)

    def learn_predecessors(self, sender: Contact, reported: list[Contact]) -> None:
        """Our predecessor ``sender`` told us its own predecessors.

        Only those behind it and before us (going backwards) are kept, in
        that order, each once; from anyone but our predecessor, nothing. An
        empty list (a node that just joined knows none yet) leaves ours.
        """
        pred = self.predecessor
        if pred is None or pred.node_id != sender.node_id or not reported:
            return
        span = ring_distance(self.own_id, sender.node_id)
        ordered = within(reported, lambda node_id: ring_distance(node_id, sender.node_id), span)
        self._predecessors = [pred, *ordered][: self.predecessor_list_size]

    def consider_predecessor(self, contact: Contact) -> bool:
        """The paper's notify rule: ``contact`` becomes our predecessor if we
        have none or it lies between the one we have and us. Returns whether
        it is our predecessor now."""
        if contact.node_id == self.own_id:
            return False
        pred = self.predecessor
        if (
            pred is None
            or pred.node_id == contact.node_id
            or in_interval(contact.node_id, pred.node_id, self.own_id)
        ):
            self.set_predecessor(contact)
            return True
        return False

    def replace_successors(
        self, successor: Contact, reported: list[Contact], known: Sequence[Contact] = ()
    ) -> None:
        """Take ``successor`` (which just answered) and the list it reported
        (see :meth:`SuccessorList.replace` for ``known``)."""
        old_first = self.successors.first
        for contact in self.successors.replace(successor, reported, known):
            self._announce(contact)
        if old_first is None or old_first.node_id != successor.node_id:
            self.counters["successor_changes"] += 1
        self.counters["successor_refreshes"] += 1

    def heard_from(self, contact: Contact, now: float) -> None:
        """A verified message came from ``contact``: if it is our predecessor,
        it is alive.

        It is not offered to the fingers: a node still joining queries
        others too, and as a finger it would refuse every lookup until it
        has joined, having pushed out the finger it replaced.
        """
        if self.predecessor is not None and self.predecessor.node_id == contact.node_id:
            self.predecessor_heard = now

    def forget(self, node_id: bytes, *, left: bool = False) -> None:
        """Drop a node that failed (or ``left``) from the successor list and
        fingers. One that failed is remembered if it was a finger (see
        :meth:`lose_finger`); one that left is not."""
        self.successors.remove(node_id)
        if left:
            self.fingers.remove(node_id)
            self.lost.discard(node_id)
        else:
            self.lose_finger(node_id)

    def lose_finger(self, node_id: bytes) -> None:
        """Drop a finger that failed, and remember it in :attr:`lost`.

        Only fingers are remembered, which answered us themselves: a
        successor-list entry that never did may be one a successor made up.
        """
        for contact in self.fingers:
            if contact.node_id == node_id:
                self.lost.add(contact)
                self.fingers.remove(node_id)
                return

    # -- routing --------------------------------------------------------------------------

    def candidates(self, key: bytes, count: int) -> list[Contact]:
        """Up to ``count`` known nodes strictly between us and ``key``, best first.

        The fingers come first, nearest to ``key`` first: the first is the
        paper's closest preceding finger, where a lookup jumps. The
        successors follow as fallbacks; ranking them with the fingers would
        shorten the last steps of a lookup, and hide the paper's path length.
        """
        found = {c.node_id: c for c in self.fingers.preceding(key, count)}
        for contact in self.successors.preceding(key, count):
            found.setdefault(contact.node_id, contact)
        return list(found.values())[:count]

    def successors_from_here(self, me: Contact, count: int) -> list[Contact]:
        """Our successor and the nodes after it: ``count`` of them at most.

        A list shorter than its size means the ring is that small, so it
        comes round to us.
        """
        listed = self.successors.contacts()
        if not self.successors.full:
            listed.append(me)
        return listed[:count]

    def answer_find(self, me: Contact, key: bytes, count: int) -> FindAnswer:
        """What we answer to ``chord_find(key, count)`` (or tell ourselves).

        Only the successor pointer decides, as in the paper's
        find_successor. The predecessor would answer keys just behind us
        at once, but it is the weaker pointer: any node that notifies a node
        without one becomes it, and answers built on a wrong one would send
        joining nodes to wrong places, which stabilization cannot always
        undo (two rings interleaved stay so).
        """
        first = self.successors.first
        if first is None:
            return FindAnswer(True, [me])  # alone: every key is ours
        if in_interval(key, self.own_id, first.node_id, include_end=True):
            return FindAnswer(True, self.successors_from_here(me, count))
        return FindAnswer(False, self.candidates(key, NEXT_CANDIDATES))

    def holds(self, node_id: bytes, key: bytes, count: int) -> bool:
        """Whether ``node_id`` is among the ``count`` nodes responsible for
        ``key``, as far as our predecessors and successor list tell (see
        :func:`~dhtkit.chord.successors.may_hold`)."""
        listed = self.successors.ids()
        behind = [c.node_id for c in self._predecessors]
        meet = next((i for i, node in enumerate(behind) if node in listed), None)
        if meet is not None:
            # The lists meet round the ring: we see all of it.
            ring = listed[: listed.index(behind[meet]) + 1] + behind[:meet][::-1]
            return may_hold(node_id, key, count, self.own_id, [], ring, True)
        whole_ring = not behind and not self.successors.full
        return may_hold(node_id, key, count, self.own_id, behind, listed, whole_ring)

    def finger_indexes(self) -> range:
        """The finger entries worth a lookup: those above our successor's range.

        Entries up to it all point at the successor; about log2 N are left.
        """
        first = self.successors.first
        if first is None:
            return range(0)
        return range(finger_range(ring_distance(self.own_id, first.node_id)) + 1, ID_BITS + 1)

    def next_finger_index(self) -> int | None:
        """The next of :meth:`finger_indexes` to refresh, in turn; None if none."""
        indexes = self.finger_indexes()
        if not indexes:
            return None
        self._finger_cursor += 1
        if self._finger_cursor not in indexes:
            self._finger_cursor = indexes.start
        return self._finger_cursor

    def verified_contacts(self) -> list[Contact]:
        """The predecessor and the fingers: nodes that proved their ids."""
        out = {c.node_id: c for c in self.fingers}
        if self.predecessor is not None:
            out.setdefault(self.predecessor.node_id, self.predecessor)
        return list(out.values())

    def contacts(self) -> list[Contact]:
        """Successors, predecessors and fingers, each once."""
        out: dict[bytes, Contact] = {}
        for contact in [*self.successors, *self._predecessors, *self.fingers]:
            out.setdefault(contact.node_id, contact)
        return list(out.values())
