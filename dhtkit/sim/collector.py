"""The garbage collector while a simulation runs.

A simulated network is millions of objects that live as long as the run
(every node's sessions, routing state and timers), and CPython's collector
scans every tracked object on each full pass. At 3,000 Kademlia nodes the
collector took 37 s of a 154 s build, 29 s of it in full passes that found
next to nothing. :func:`parked` moves what survives into the permanent
generation (``gc.freeze``), which no pass scans, and :func:`park` does so
again each time the network has grown: each pass then scans only the
objects made since. The young generation is also let grow larger before it
is collected: most of a datagram's objects die on their reference count
before the collector would look at them.

Cycles among parked objects that become garbage later are not collected
until the run ends; the build leaves few (measured: the same peak memory).
:func:`park` parks only within :func:`parked`, which gives everything back
on leaving: a caller of :func:`dhtkit.sim.scenario.build` outside it (a
test, a notebook) is left with no objects the collector cannot reach.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager

#: Tracked objects made before the young generation is collected (Python's default is 700).
YOUNG = 20_000


#: How many :func:`parked` blocks are open (they may nest).
_open = 0


def park() -> None:
    """Collect what is garbage now, and park every survivor out of the
    collector's passes; outside a :func:`parked` block, nothing."""
    if _open:
        gc.collect()
        gc.freeze()


@contextmanager
def parked() -> Iterator[None]:
    """A block run with the objects alive at its start parked and the young
    generation at :data:`YOUNG`; on leaving it the collector's thresholds are
    restored and every parked object goes back to the collector (so a caller
    that runs several simulations in one process gets its memory back)."""
    global _open
    thresholds = gc.get_threshold()
    gc.set_threshold(YOUNG, thresholds[1], thresholds[2])
    _open += 1
    try:
        park()
        yield
    finally:
        _open -= 1
        gc.set_threshold(*thresholds)
        if not _open:
            gc.unfreeze()
