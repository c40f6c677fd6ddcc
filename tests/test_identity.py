import hashlib
import os
import stat

import pytest
from nacl.bindings import crypto_sign_open
from nacl.exceptions import BadSignatureError

from dhtkit.identity import Identity, IdentityError, node_id_for, puzzle_hash, solves_puzzle


def test_node_id_is_blake2b_160_of_public_key() -> None:
    identity = Identity.generate()
    expected = hashlib.blake2b(identity.public_key, digest_size=20).digest()
    assert identity.node_id == expected == node_id_for(identity.public_key)
    assert len(identity.public_key) == 32


def test_generate_makes_distinct_identities() -> None:
    assert Identity.generate().node_id != Identity.generate().node_id


def test_signature_verifies_with_public_key_and_not_after_tampering() -> None:
    identity = Identity.generate()
    signature = identity.sign(b"hello")
    assert len(signature) == 64
    assert crypto_sign_open(signature + b"hello", identity.public_key) == b"hello"
    with pytest.raises(BadSignatureError):
        crypto_sign_open(signature + b"hellp", identity.public_key)


def test_save_and_load_round_trip_with_mode_0600(tmp_path) -> None:
    identity = Identity.generate()
    path = tmp_path / "identity.key"
    identity.save(path)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    loaded = Identity.from_file(path)
    assert loaded.public_key == identity.public_key
    assert loaded.node_id == identity.node_id
    assert loaded.sign(b"x") == identity.sign(b"x")


def test_save_replaces_an_existing_file_and_keeps_it_private(tmp_path) -> None:
    path = tmp_path / "identity.key"
    path.write_bytes(b"old")
    os.chmod(path, 0o644)
    identity = Identity.generate()
    identity.save(path)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert Identity.from_file(path).node_id == identity.node_id
    assert [p.name for p in tmp_path.iterdir()] == ["identity.key"]


@pytest.mark.parametrize(
    "content",
    [
        b"",
        b"short",
        b"x" * 55,
        os.urandom(32),
        b"dhtkit-ed25519-seed-v1\n" + b"\0" * 31,
        b"dhtkit-ed25519-seed-v1\n" + b"\0" * 33,
        b"-----BEGIN OPENSSH PRIVATE KEY-----\n" + b"a" * 20,
    ],
)
def test_loading_a_wrong_file_is_a_clear_error(tmp_path, content: bytes) -> None:
    path = tmp_path / "identity.key"
    path.write_bytes(content)
    with pytest.raises(IdentityError, match="not a dhtkit identity key file"):
        Identity.from_file(path)


def test_loading_a_missing_file_raises_oserror(tmp_path) -> None:
    with pytest.raises(FileNotFoundError):
        Identity.from_file(tmp_path / "absent.key")


@pytest.mark.parametrize("seed", [b"", b"x" * 31, b"x" * 33, "x" * 32])
def test_a_seed_of_the_wrong_size_is_refused(seed) -> None:
    with pytest.raises(IdentityError):
        Identity(seed)


def test_repr_shows_the_node_id_and_not_the_key() -> None:
    identity = Identity(b"\1" * 32)
    assert identity.node_id.hex() in repr(identity)
    assert (b"\1" * 32).hex() not in repr(identity)


def test_the_static_puzzle_asks_leading_zero_bits_of_a_hash_of_the_key() -> None:
    solved = Identity.generate(puzzle_bits=10)
    assert solves_puzzle(solved.public_key, 10)
    assert int.from_bytes(puzzle_hash(solved.public_key), "big") >> 150 == 0
    cheap = next(
        i
        for i in (Identity(bytes([n]) * 32) for n in range(256))
        if not solves_puzzle(i.public_key, 1)
    )
    assert not solves_puzzle(cheap.public_key, 1)
    assert solves_puzzle(cheap.public_key, 0)


@pytest.mark.parametrize("bits", [-1, 65])
def test_a_puzzle_out_of_range_is_refused(bits: int) -> None:
    with pytest.raises(ValueError):
        solves_puzzle(b"\x00" * 32, bits)
    with pytest.raises(ValueError):
        Identity.generate(puzzle_bits=bits)
