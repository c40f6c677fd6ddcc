"""The collector settings a simulation runs under."""

from __future__ import annotations

import gc
import weakref

from dhtkit.sim.collector import YOUNG, park, parked
from dhtkit.sim.scenario import Scenario, build


class _Node:
    """Something that can sit in a reference cycle and be watched."""

    other: object = None


def test_parked_restores_the_thresholds_and_unparks() -> None:
    before = gc.get_threshold()
    with parked():
        assert gc.get_threshold()[0] == YOUNG
        assert gc.get_freeze_count() > 0
        park()
    assert gc.get_threshold() == before
    assert gc.get_freeze_count() == 0


def test_parked_restores_them_when_the_block_raises() -> None:
    before = gc.get_threshold()
    try:
        with parked():
            raise KeyError("the simulation failed")
    except KeyError:
        pass
    assert gc.get_threshold() == before
    assert gc.get_freeze_count() == 0


def _garbage_cycle() -> weakref.ref[_Node]:
    """Two objects that only refer to each other; a reference to watch one."""
    a, b = _Node(), _Node()
    a.other, b.other = b, a
    return weakref.ref(a)


def test_garbage_made_after_a_park_is_still_collected() -> None:
    with parked():
        watch = _garbage_cycle()
        gc.collect()
        assert watch() is None


def test_park_collects_garbage_before_parking() -> None:
    with parked():
        watch = _garbage_cycle()
        park()
        # Parked survivors would keep the cycle out of every later pass.
        assert watch() is None


def test_outside_a_parked_block_park_parks_nothing() -> None:
    park()
    assert gc.get_freeze_count() == 0
    build(Scenario("chord", 8, 2, seed=2))  # parks after every join batch within a run
    assert gc.get_freeze_count() == 0


def test_a_nested_block_leaves_the_outer_one_parked() -> None:
    with parked():
        with parked():
            pass
        assert gc.get_freeze_count() > 0
        assert gc.get_threshold()[0] == YOUNG
    assert gc.get_freeze_count() == 0
