"""A node's identity: an Ed25519 key pair whose public half names the node.

The node id is BLAKE2b-160 of the public key, so an id cannot be chosen
without also holding the matching private key.
"""

from __future__ import annotations

import hashlib
import os
from functools import lru_cache
from pathlib import Path

from nacl.bindings import (
    crypto_sign,
    crypto_sign_BYTES,
    crypto_sign_ed25519_sk_to_curve25519,
    crypto_sign_PUBLICKEYBYTES,
    crypto_sign_seed_keypair,
    crypto_sign_SEEDBYTES,
)

from dhtkit.keyspace import ID_BYTES, key_for

PUBLIC_KEY_BYTES = crypto_sign_PUBLICKEYBYTES

# The key file holds a magic line and the 32-byte seed, so a wrong or foreign
# file is recognised instead of being taken as key material.
_FILE_MAGIC = b"dhtkit-ed25519-seed-v1\n"
_FILE_SIZE = len(_FILE_MAGIC) + crypto_sign_SEEDBYTES


class IdentityError(ValueError):
    """A key file or key material that cannot be an identity."""


@lru_cache(maxsize=65536)
def node_id_for(public_key: bytes) -> bytes:
    """The node id that belongs to an Ed25519 public key: BLAKE2b-160 of it.

    Cached: every datagram and every contact in a reply asks again, and the
    same keys recur.
    """
    return key_for(public_key)


#: The most leading zero bits the static puzzle may ask (2**64 hashes is
#: beyond any node's patience, so a larger number is a configuration error).
MAX_PUZZLE_BITS = 64


def puzzle_hash(public_key: bytes) -> bytes:
    """The hash the S/Kademlia static puzzle is judged on: H(H(public key)).

    Hashing the node id again (rather than asking the id itself for zero
    bits) keeps solved ids uniformly spread over the key space.
    """
    return hashlib.blake2b(
        node_id_for(public_key), digest_size=20, person=b"dhtkit-puzzle"
    ).digest()


def solves_puzzle(public_key: bytes, bits: int) -> bool:
    """Whether ``public_key`` solves the static puzzle: ``bits`` leading zero bits.

    Cheap to check (one hash), about ``2**bits`` key generations to solve.
    """
    if not 0 <= bits <= MAX_PUZZLE_BITS:
        raise ValueError("puzzle bits are 0-{}".format(MAX_PUZZLE_BITS))
    if bits == 0:
        return True
    return int.from_bytes(puzzle_hash(public_key), "big") >> (160 - bits) == 0


class Identity:
    """An Ed25519 key pair and the node id derived from it."""

    __slots__ = ("_curve_secret", "_secret_key", "_seed", "node_id", "public_key")

    public_key: bytes
    node_id: bytes

    def __init__(self, seed: bytes) -> None:
        if not isinstance(seed, bytes) or len(seed) != crypto_sign_SEEDBYTES:
            raise IdentityError("an Ed25519 seed is {} bytes".format(crypto_sign_SEEDBYTES))
        self._seed = seed
        self.public_key, self._secret_key = crypto_sign_seed_keypair(seed)
        self.node_id = node_id_for(self.public_key)
        self._curve_secret = crypto_sign_ed25519_sk_to_curve25519(self._secret_key)

    @classmethod
    def generate(cls, puzzle_bits: int = 0) -> Identity:
        """A new identity from the operating system's random source.

        With ``puzzle_bits``, keys are drawn until one solves the static
        puzzle (:func:`solves_puzzle`): about ``2**puzzle_bits`` tries.
        """
        if not 0 <= puzzle_bits <= MAX_PUZZLE_BITS:
            raise ValueError("puzzle bits are 0-{}".format(MAX_PUZZLE_BITS))
        while True:
            identity = cls(os.urandom(crypto_sign_SEEDBYTES))
            if solves_puzzle(identity.public_key, puzzle_bits):
                return identity

    @classmethod
    def from_file(cls, path: str | os.PathLike[str]) -> Identity:
        """Load an identity written by :meth:`save`.

        :raises IdentityError: the file is not a dhtkit key file.
        :raises OSError: the file cannot be read.
        """
        data = Path(path).read_bytes()
        if len(data) != _FILE_SIZE or not data.startswith(_FILE_MAGIC):
            raise IdentityError(
                "{} is not a dhtkit identity key file "
                "(expected {} bytes starting with {!r}, found {} bytes)".format(
                    os.fspath(path), _FILE_SIZE, _FILE_MAGIC.strip(), len(data)
                )
            )
        return cls(data[len(_FILE_MAGIC) :])

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write the private key to ``path``, readable by the owner only.

        The file is created with mode 0600 before any key byte is written and
        replaced atomically, so a crash never leaves a half-written key.
        """
        target = Path(path)
        tmp = target.with_name(target.name + ".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.fchmod(fd, 0o600)
            os.write(fd, _FILE_MAGIC + self._seed)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, target)

    def sign(self, data: bytes) -> bytes:
        """The 64-byte Ed25519 signature of ``data``."""
        return crypto_sign(data, self._secret_key)[:crypto_sign_BYTES]

    def curve25519_secret(self) -> bytes:
        """The X25519 secret matching this key, for session-key agreement."""
        return self._curve_secret

    def __repr__(self) -> str:
        return "<Identity node_id={}>".format(self.node_id.hex())


__all__ = ["ID_BYTES", "PUBLIC_KEY_BYTES", "Identity", "IdentityError", "node_id_for"]
