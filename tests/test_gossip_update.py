"""Signed gossip updates: encoding, ids, signatures, and hostile bytes."""

from __future__ import annotations

import hashlib

import cbor2
import pytest
from hypothesis import given
from hypothesis import strategies as st

from dhtkit.gossip.update import (
    DATA,
    DEATH,
    MAX_UPDATE_BYTES,
    ForgedUpdate,
    MalformedUpdate,
    UpdateError,
    UpdateTooLarge,
    death_certificate,
    decode_update,
    make_update,
    update_id_of,
    verify_update,
)
from dhtkit.identity import Identity

ALICE = Identity(b"\1" * 32)
MALLORY = Identity(b"\2" * 32)


def test_an_update_round_trips_and_its_id_is_the_hash_of_its_body() -> None:
    update = make_update(ALICE, "news", b"hello", seq=7, expires=1000.5)
    decoded = decode_update(update.encoded)
    assert decoded == update
    assert decoded.kind == DATA and decoded.topic == "news" and decoded.data == b"hello"
    assert decoded.origin == ALICE.public_key and decoded.seq == 7
    assert decoded.expires == 1001  # whole seconds, rounded up
    assert update.update_id == hashlib.blake2b(update.body, digest_size=20).digest()
    assert update_id_of(update.encoded) == update.update_id
    verify_update(decoded)


def test_the_same_data_published_twice_makes_two_updates() -> None:
    first = make_update(ALICE, "news", b"hello", seq=1, expires=1000)
    second = make_update(ALICE, "news", b"hello", seq=2, expires=1000)
    assert first.update_id != second.update_id


def test_a_bad_signature_is_a_forgery() -> None:
    update = make_update(ALICE, "news", b"hello", seq=1, expires=1000)
    tampered = update.encoded[:-1] + bytes([update.encoded[-1] ^ 1])
    with pytest.raises(ForgedUpdate):
        verify_update(decode_update(tampered))


def test_a_changed_body_is_a_forgery_with_another_id() -> None:
    update = make_update(ALICE, "news", b"hello", seq=1, expires=1000)
    changed = update.encoded.replace(b"hello", b"jello")
    decoded = decode_update(changed)
    assert decoded.update_id != update.update_id
    with pytest.raises(ForgedUpdate):
        verify_update(decoded)


def test_an_update_claiming_another_origin_is_a_forgery() -> None:
    body = cbor2.dumps([1, DATA, "news", b"x", ALICE.public_key, 1, 1000])
    signed_by_mallory = body + MALLORY.sign(b"dhtkit-gossip-update-v1:" + body)
    with pytest.raises(ForgedUpdate):
        verify_update(decode_update(signed_by_mallory))


def test_an_origin_key_that_is_no_curve_point_is_a_forgery_not_a_crash() -> None:
    body = cbor2.dumps([1, DATA, "news", b"x", b"\xff" * 32, 1, 1000])
    with pytest.raises(ForgedUpdate):
        verify_update(decode_update(body + b"\0" * 64))


def test_publishing_too_much_data_is_a_clear_error() -> None:
    with pytest.raises(UpdateTooLarge, match="limit is 1200"):
        make_update(ALICE, "news", b"x" * MAX_UPDATE_BYTES, seq=1, expires=1000)
    largest = make_update(ALICE, "news", b"x" * 1000, seq=1, expires=1000)
    assert len(largest.encoded) <= MAX_UPDATE_BYTES


def test_oversized_encodings_are_refused_before_decoding() -> None:
    with pytest.raises(UpdateTooLarge):
        decode_update(b"\x87" + b"\0" * MAX_UPDATE_BYTES)
    update = make_update(ALICE, "news", b"x" * 200, seq=1, expires=1000)
    with pytest.raises(UpdateTooLarge):
        decode_update(update.encoded, max_bytes=100)


@pytest.mark.parametrize(
    ("topic", "error"),
    [("", ValueError), ("t" * 65, ValueError), ("é" * 33, ValueError), (b"news", TypeError)],
)
def test_topics_are_one_to_64_bytes_of_text(topic: object, error: type[Exception]) -> None:
    with pytest.raises(error):
        make_update(ALICE, topic, b"x", seq=1, expires=1000)  # type: ignore[arg-type]


def test_data_must_be_bytes() -> None:
    with pytest.raises(TypeError):
        make_update(ALICE, "news", "text", seq=1, expires=1000)  # type: ignore[arg-type]


def test_a_death_certificate_names_the_update_it_deletes() -> None:
    update = make_update(ALICE, "news", b"hello", seq=1, expires=1000)
    certificate = death_certificate(ALICE, update, seq=2, expires=2000)
    assert certificate.kind == DEATH and certificate.is_death_certificate
    assert certificate.deletes == update.update_id and update.deletes is None
    assert certificate.topic == "news"
    verify_update(decode_update(certificate.encoded))


def test_only_the_origin_may_delete_and_only_data() -> None:
    update = make_update(ALICE, "news", b"hello", seq=1, expires=1000)
    with pytest.raises(ValueError, match="origin"):
        death_certificate(MALLORY, update, seq=2, expires=2000)
    certificate = death_certificate(ALICE, update, seq=2, expires=2000)
    with pytest.raises(ValueError, match="not another certificate"):
        death_certificate(ALICE, certificate, seq=3, expires=2000)


def _signed(fields: list[object]) -> bytes:
    body = cbor2.dumps(fields)
    return body + ALICE.sign(b"dhtkit-gossip-update-v1:" + body)


GOOD = [1, DATA, "news", b"x", ALICE.public_key, 1, 1000]


@pytest.mark.parametrize(
    "fields",
    [
        GOOD[:6],
        [2, *GOOD[1:]],
        [1, 7, *GOOD[2:]],
        [1, DATA, "", *GOOD[3:]],
        [1, DATA, 5, *GOOD[3:]],
        [1, DATA, "news", "x", *GOOD[4:]],
        [1, DEATH, "news", b"short", *GOOD[4:]],
        [1, DATA, "news", b"x", b"key", 1, 1000],
        [1, DATA, "news", b"x", ALICE.public_key, -1, 1000],
        [1, DATA, "news", b"x", ALICE.public_key, 2**64, 1000],
        [1, DATA, "news", b"x", ALICE.public_key, 1, 1.5],
        [1, DATA, "news", b"x", ALICE.public_key, True, 1000],
        [1, DATA, ["deep"] * 3, b"x", ALICE.public_key, 1, 1000],
    ],
)
def test_malformed_fields_are_refused(fields: list[object]) -> None:
    with pytest.raises(MalformedUpdate):
        decode_update(_signed(fields))


@pytest.mark.parametrize(
    "encoded",
    [
        None,
        "text",
        b"",
        b"\x87" * 10,
        b"\x80" + b"\0" * 64,
        b"\x87" + b"\x81" * 1000 + b"\0" * 64,  # deeply nested
        b"\x87\x5b" + b"\xff" * 8 + b"\0" * 64,  # a huge length
        b"\x87\xd8\x1e\x82\x01\x02" + b"\0" * 64,  # a tag
    ],
)
def test_hostile_bytes_are_malformed_updates(encoded: object) -> None:
    with pytest.raises(MalformedUpdate):
        decode_update(encoded)


@given(st.binary(max_size=1400))
def test_any_bytes_decode_or_raise_an_update_error(data: bytes) -> None:
    try:
        update = decode_update(data)
    except UpdateError:
        return
    with pytest.raises(ForgedUpdate):
        verify_update(update)
