"""Chord: a ring of node ids, successor lists, fingers and iterative lookups.

:class:`ChordOverlay` is what services and simulations build; the pieces
are public for tests and tools.
"""

from dhtkit.chord.fingers import FingerTable
from dhtkit.chord.lookup import LookupFailed, SuccessorSearch
from dhtkit.chord.overlay import ChordOverlay
from dhtkit.chord.state import RingState
from dhtkit.chord.successors import SuccessorList, may_hold

__all__ = [
    "ChordOverlay",
    "FingerTable",
    "LookupFailed",
    "RingState",
    "SuccessorList",
    "SuccessorSearch",
    "may_hold",
]
