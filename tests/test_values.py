import hashlib
import itertools
from typing import Any

import attrs
import cbor2
import pytest
from hypothesis import given
from hypothesis import strategies as st

from dhtkit.identity import Identity
from dhtkit.keyspace import key_for
from dhtkit.values import (
    MAX_SEQ,
    REFUSALS,
    BadSignature,
    CASMismatch,
    ImmutableValue,
    KeyMismatch,
    KindConflict,
    MalformedRecord,
    PlainValue,
    Record,
    SaltTooLong,
    SequenceConflict,
    SignedValue,
    StaleSequence,
    ValueRefused,
    ValueTooLarge,
    admit,
    check_record,
    from_wire,
    immutable_key,
    newest,
    refusal_for,
    signed_key,
    signed_payload,
    to_wire,
)

ALICE = Identity(b"\1" * 32)
BOB = Identity(b"\2" * 32)
KEY = key_for("a plain key")


def signed(seq: int, value: bytes = b"v", salt: bytes = b"", who: Identity = ALICE) -> SignedValue:
    return SignedValue.create(who, value, seq, salt)


# -- the three kinds -------------------------------------------------------------


def test_an_immutable_value_lives_under_its_hash() -> None:
    record = ImmutableValue(b"hello")
    assert record.key == immutable_key(b"hello")
    assert (
        record.key == hashlib.blake2b(b"hello", digest_size=20, person=b"dhtkit:immut:v1").digest()
    )
    assert (record.kind, record.seq, record.size) == ("immutable", 0, 5)
    check_record(record, record.key)


def test_a_plain_value_lives_under_any_key() -> None:
    record = PlainValue(KEY, b"hello", 7)
    assert (record.key, record.kind, record.seq, record.size) == (KEY, "plain", 7, 25)
    check_record(record, KEY)


def test_a_signed_value_lives_under_its_public_key_and_salt() -> None:
    record = signed(3, b"hello", b"salt")
    assert record.key == signed_key(ALICE.public_key, b"salt")
    assert (
        record.key
        == hashlib.blake2b(
            ALICE.public_key + b"salt", digest_size=20, person=b"dhtkit:signed:v1"
        ).digest()
    )
    assert record.key != signed(3, b"hello", b"").key
    assert (record.kind, record.seq, record.size) == ("signed", 3, 32 + 64 + 4 + 5)
    check_record(record, record.key)


def test_the_signed_payload_is_unambiguous() -> None:
    assert signed_payload(b"a", 1, b"bc") != signed_payload(b"ab", 1, b"c")
    assert signed_payload(b"", 1, b"\0") != signed_payload(b"\0", 1, b"")


# -- check: one test per refusal -------------------------------------------------


@pytest.mark.parametrize(
    "record",
    [
        ImmutableValue(b"x" * 1001),
        PlainValue(KEY, b"x" * 1001, 1),
        signed(1, b"x" * 1001),
    ],
    ids=["immutable", "plain", "signed"],
)
def test_refuses_a_value_over_the_size_limit(record: Record) -> None:
    with pytest.raises(ValueTooLarge, match="1001 bytes; the limit is 1000"):
        record.check()
    record.check(max_value_size=1001)
    with pytest.raises(ValueTooLarge):
        record.check(max_value_size=10)


def test_refuses_a_salt_over_64_bytes() -> None:
    with pytest.raises(SaltTooLong):
        signed(1, salt=b"s" * 65)
    with pytest.raises(SaltTooLong):
        attrs.evolve(signed(1), salt=b"s" * 65).check()
    signed(1, salt=b"s" * 64).check()


@pytest.mark.parametrize(
    "record",
    [
        ImmutableValue("text"),  # type: ignore[arg-type]
        PlainValue(KEY[:19], b"v", 1),
        PlainValue(KEY.hex(), b"v", 1),  # type: ignore[arg-type]
        PlainValue(KEY, b"v", -1),
        PlainValue(KEY, b"v", MAX_SEQ + 1),
        PlainValue(KEY, b"v", True),
        PlainValue(KEY, b"v", 1.0),  # type: ignore[arg-type]
        attrs.evolve(signed(1), public_key=ALICE.public_key[:31]),
        attrs.evolve(signed(1), salt="salt"),
        attrs.evolve(signed(1), seq=-1),
        attrs.evolve(signed(1), value=None),
        attrs.evolve(signed(1), signature=b"\0" * 63),
    ],
)
def test_refuses_malformed_fields(record: Record) -> None:
    with pytest.raises(MalformedRecord):
        record.check()


@pytest.mark.parametrize(
    "change",
    [
        {"value": b"w"},
        {"seq": 2},
        {"salt": b"other"},
        {"public_key": BOB.public_key},
        {"signature": bytes(64)},
    ],
)
def test_refuses_a_signature_that_does_not_match(change: dict[str, Any]) -> None:
    with pytest.raises(BadSignature):
        attrs.evolve(signed(1), **change).check()


def test_refuses_a_record_under_a_key_it_does_not_belong_to() -> None:
    for record in (ImmutableValue(b"v"), PlainValue(KEY, b"v", 1), signed(1)):
        with pytest.raises(KeyMismatch):
            check_record(record, key_for(b"elsewhere"))


# -- admit ------------------------------------------------------------------------


def test_anything_valid_is_admitted_to_an_empty_key() -> None:
    for record in (ImmutableValue(b"v"), PlainValue(KEY, b"v", 1), signed(1)):
        assert admit(None, record) is True


def test_a_higher_seq_replaces_and_a_lower_seq_is_refused() -> None:
    assert admit(signed(1), signed(2)) is True
    with pytest.raises(StaleSequence):
        admit(signed(2), signed(1))


def test_the_same_seq_with_other_content_is_refused() -> None:
    with pytest.raises(SequenceConflict):
        admit(signed(2, b"v"), signed(2, b"w"))


def test_the_identical_record_is_a_refresh() -> None:
    for record in (ImmutableValue(b"v"), PlainValue(KEY, b"v", 1), signed(1)):
        assert admit(record, record) is False


def test_compare_and_swap_needs_the_expected_seq() -> None:
    assert admit(signed(3), signed(4), expected_seq=3) is True
    with pytest.raises(CASMismatch, match="expected seq 2, stored seq 3"):
        admit(signed(3), signed(4), expected_seq=2)
    with pytest.raises(CASMismatch, match="stored nothing"):
        admit(None, signed(4), expected_seq=3)


def test_compare_and_swap_applies_to_signed_values_only() -> None:
    with pytest.raises(CASMismatch, match="signed values only"):
        admit(PlainValue(KEY, b"v", 1), PlainValue(KEY, b"w", 2), expected_seq=1)
    with pytest.raises(CASMismatch):
        admit(None, ImmutableValue(b"v"), expected_seq=0)


def test_compare_and_swap_does_not_match_another_kind_with_that_seq() -> None:
    plain = PlainValue(signed(5).key, b"squat", 5)
    with pytest.raises(CASMismatch, match="a plain value"):
        admit(plain, signed(6), expected_seq=5)


def test_a_plain_value_gives_way_to_verifiable_ones() -> None:
    immutable = ImmutableValue(b"v")
    assert admit(PlainValue(immutable.key, b"w", MAX_SEQ), immutable) is True
    assert admit(PlainValue(signed(1).key, b"w", MAX_SEQ), signed(1)) is True


def test_a_plain_value_cannot_replace_a_verifiable_one() -> None:
    immutable = ImmutableValue(b"v")
    with pytest.raises(KindConflict, match="immutable"):
        admit(immutable, PlainValue(immutable.key, b"w", 1))
    with pytest.raises(KindConflict, match="signed"):
        admit(signed(1), PlainValue(signed(1).key, b"w", 1))


def test_an_immutable_value_cannot_squat_a_signed_key() -> None:
    # public key + salt as an immutable value: its key is in another domain.
    squat = ImmutableValue(ALICE.public_key + b"salt")
    owner = signed(1, salt=b"salt")
    assert squat.key != owner.key
    with pytest.raises(KeyMismatch):
        check_record(squat, owner.key)
    # And where a store migrated from before still holds both kinds, signed wins.
    assert admit(squat, owner) is True
    with pytest.raises(KindConflict):
        admit(owner, squat)


@pytest.mark.parametrize("name", ["alice's page", "", "x" * 300])
def test_an_immutable_value_cannot_take_the_key_of_a_name(name: str) -> None:
    squat = ImmutableValue(name.encode())
    assert squat.key != key_for(name)
    with pytest.raises(KeyMismatch):
        check_record(squat, key_for(name))


def test_names_immutable_and_signed_keys_are_separate_domains() -> None:
    data = ALICE.public_key + b"salt"
    keys = {key_for(data), immutable_key(data), signed_key(ALICE.public_key, b"salt")}
    assert len(keys) == 3


def test_a_later_plain_write_replaces_an_earlier_one() -> None:
    assert admit(PlainValue(KEY, b"v", 1), PlainValue(KEY, b"w", 2)) is True
    # Two writes in the same microsecond: the later one to arrive wins.
    assert admit(PlainValue(KEY, b"v", 2), PlainValue(KEY, b"w", 2)) is True


def test_a_stale_plain_write_is_refused() -> None:
    with pytest.raises(StaleSequence):
        admit(PlainValue(KEY, b"v", 2), PlainValue(KEY, b"w", 1))


# -- newest -----------------------------------------------------------------------


def test_newest_of_nothing_is_none() -> None:
    assert newest([]) is None


def test_newest_is_the_highest_seq_of_a_kind() -> None:
    assert newest([signed(1), signed(3), signed(2)]) == signed(3)
    plain = [PlainValue(KEY, b"%d" % n, n) for n in (5, 9, 7)]
    assert newest(plain) == plain[1]


def test_newest_ranks_signed_over_immutable_over_plain() -> None:
    records: list[Record] = [
        PlainValue(KEY, b"p", MAX_SEQ),
        ImmutableValue(ALICE.public_key),
        signed(0),
        signed(4),
    ]
    for order in itertools.permutations(records):
        assert newest(list(order)) == signed(4)
    assert newest(records[:2]) == records[1]
    assert newest(records[1::-1]) == records[1]


# -- the wire ---------------------------------------------------------------------

binaries = st.binary(max_size=80)
seqs = st.integers(0, MAX_SEQ)
records = st.one_of(
    st.builds(ImmutableValue, binaries),
    st.builds(PlainValue, st.binary(min_size=20, max_size=20), binaries, seqs),
    st.builds(
        SignedValue.create,
        st.sampled_from([ALICE, BOB]),
        binaries,
        seqs,
        st.binary(max_size=64),
    ),
)


@given(records)
def test_a_record_survives_the_wire(record: Record) -> None:
    received = from_wire(cbor2.loads(cbor2.dumps(to_wire(record))))
    assert received == record
    check_record(received, record.key)


anything = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**64), 2**64) | binaries | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=6),
    max_leaves=12,
)
# Lists that start like a record, with fields of any type or length.
record_like = st.builds(
    lambda code, fields: [code, *fields],
    st.sampled_from([0, 1, 2]),
    st.lists(binaries | seqs | anything, max_size=6),
)


@given(anything | record_like)
def test_garbage_from_the_wire_is_refused_as_a_value_refusal(obj: Any) -> None:
    try:
        record = from_wire(obj)
    except MalformedRecord:
        return
    try:
        record.check()
    except ValueRefused:
        return
    # A record that passes every check is a real record: it has a key and
    # survives the wire unchanged.
    check_record(record, record.key)
    assert from_wire(to_wire(record)) == record


def test_refusal_for_gives_the_exception_of_each_reason() -> None:
    for reason, cls in REFUSALS.items():
        refusal = refusal_for(reason, "because")
        assert type(refusal) is cls
        assert (refusal.reason, str(refusal)) == (reason, "because")
    assert len(set(REFUSALS.values())) == len(REFUSALS)


def test_refusal_for_an_unknown_reason_is_a_plain_refusal() -> None:
    refusal = refusal_for("something new", "because")
    assert type(refusal) is ValueRefused
    assert refusal.reason == "refused"
