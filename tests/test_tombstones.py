"""Tombstones: a delete is a version every store admits and orders like a value."""

import attrs
import pytest

from dhtkit.identity import Identity
from dhtkit.keyspace import key_for
from dhtkit.values import (
    BadSignature,
    MalformedRecord,
    NotPublisher,
    PlainValue,
    SignedValue,
    StaleSequence,
    admit,
    check_record,
    from_wire,
    newest,
    to_wire,
)

ALICE = Identity(b"\1" * 32)
BOB = Identity(b"\2" * 32)
KEY = key_for("a plain key")


def plain(seq: int, who: Identity | None = ALICE, value: bytes = b"v") -> PlainValue:
    return PlainValue(KEY, value, seq, who.public_key if who is not None else b"")


# -- signed ------------------------------------------------------------------------


def test_a_signed_tombstone_is_a_higher_version_without_a_value() -> None:
    value = SignedValue.create(ALICE, b"v", 3, b"salt")
    tombstone = SignedValue.tombstone(ALICE, 4, b"salt")
    check_record(tombstone, value.key)
    assert (tombstone.deleted, tombstone.value, tombstone.key) == (True, b"", value.key)
    assert admit(value, tombstone) is True
    with pytest.raises(StaleSequence):
        admit(tombstone, value)  # the deleted version cannot come back
    assert newest([value, tombstone]) == tombstone
    assert newest([tombstone, value]) == tombstone
    # a later version is a new value, stored over the tombstone
    assert admit(tombstone, SignedValue.create(ALICE, b"again", 5, b"salt")) is True


def test_a_value_signature_does_not_make_a_tombstone() -> None:
    # An empty value signed at seq 4 is a value; turned into a tombstone it fails.
    empty = SignedValue.create(ALICE, b"", 4)
    with pytest.raises(BadSignature):
        check_record(attrs.evolve(empty, deleted=True), empty.key)
    tombstone = SignedValue.tombstone(ALICE, 4)
    with pytest.raises(BadSignature):
        check_record(attrs.evolve(tombstone, deleted=False), tombstone.key)
    with pytest.raises(BadSignature):
        check_record(attrs.evolve(tombstone, seq=5), tombstone.key)


def test_a_signed_tombstone_with_a_value_is_malformed() -> None:
    tombstone = attrs.evolve(SignedValue.tombstone(ALICE, 4), value=b"x")
    with pytest.raises(MalformedRecord):
        tombstone.check()


@pytest.mark.parametrize(
    "record",
    [
        SignedValue.tombstone(ALICE, 9, b"s"),
        PlainValue.tombstone(ALICE, KEY, 9),
        PlainValue(KEY, b"v", 7, ALICE.public_key),
        PlainValue(KEY, b"v", 7),
    ],
)
def test_tombstones_and_owned_values_travel_on_the_wire(record: PlainValue | SignedValue) -> None:
    back = from_wire(to_wire(record))
    assert back == record
    check_record(back, record.key)


@pytest.mark.parametrize(
    "wire",
    [
        [3, KEY, 9, ALICE.public_key],  # a field short
        [4, ALICE.public_key, b"", 9, b"s" * 64, b"extra"],
        [1, KEY, b"v", 7, b"short owner"],
    ],
)
def test_malformed_tombstones_are_refused(wire: list[object]) -> None:
    with pytest.raises(MalformedRecord):
        from_wire(wire).check()


# -- plain ---------------------------------------------------------------------------


def test_the_owner_of_a_plain_value_deletes_it() -> None:
    tombstone = PlainValue.tombstone(ALICE, KEY, 8)
    check_record(tombstone, KEY)
    assert admit(plain(7), tombstone) is True
    with pytest.raises(StaleSequence):
        admit(tombstone, plain(7))  # the old copy stays deleted
    assert admit(tombstone, plain(9, BOB)) is True  # a later write is a new value


def test_a_stranger_cannot_delete_a_plain_value() -> None:
    with pytest.raises(NotPublisher):
        admit(plain(7, ALICE), PlainValue.tombstone(BOB, KEY, 8))
    with pytest.raises(NotPublisher):
        admit(plain(7, None), PlainValue.tombstone(BOB, KEY, 8))  # a value of no known owner


def test_a_plain_tombstone_cannot_claim_another_owner() -> None:
    forged = attrs.evolve(PlainValue.tombstone(BOB, KEY, 8), owner=ALICE.public_key)
    with pytest.raises(BadSignature):
        check_record(forged, KEY)
    with pytest.raises(BadSignature):
        check_record(attrs.evolve(PlainValue.tombstone(ALICE, KEY, 8), seq=9), KEY)


def test_a_plain_value_with_a_signature_is_malformed() -> None:
    with pytest.raises(MalformedRecord):
        PlainValue(KEY, b"v", 1, ALICE.public_key, b"s" * 64).check()
    with pytest.raises(MalformedRecord):
        PlainValue(KEY, b"v", 1, b"", b"s" * 64, True).check()


def test_a_read_believes_a_tombstone_only_against_its_owners_value() -> None:
    theirs = PlainValue.tombstone(BOB, KEY, 9)
    mine = PlainValue.tombstone(ALICE, KEY, 9)
    # a stranger's tombstone, stored where the value was missing, hides nothing
    assert newest([plain(7), theirs]) == plain(7)
    assert newest([theirs, plain(7)]) == plain(7)
    assert newest([plain(7), theirs, mine]) == mine
    # an older value overwritten by the owner's later one stays hidden after its delete
    assert newest([plain(5, BOB), plain(7), mine]) == mine
    # a write after the delete wins
    assert newest([mine, plain(10, BOB)]) == plain(10, BOB)
    assert newest([theirs]) == theirs
