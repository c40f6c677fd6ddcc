"""Values sealed for one recipient: what ``put_encrypted`` stores.

A sealed value is a NaCl sealed box (an ephemeral X25519 key, XSalsa20 and
Poly1305) to the recipient's X25519 key, converted from its Ed25519 public
key with libsodium's ``crypto_sign_ed25519_pk_to_curve25519``: the same keys
that name nodes and sign values, nothing new to exchange. The box holds the
sender's public key before the value, so that the recipient can check that
the signed record carrying it comes from the node that sealed it (a sealed
box alone is anonymous: anyone could copy its bytes into a record of their
own). The nodes that store the record see only the box.
"""

from __future__ import annotations

from nacl.bindings import crypto_box_SEALBYTES, crypto_sign_ed25519_pk_to_curve25519
from nacl.exceptions import CryptoError
from nacl.public import PrivateKey, PublicKey, SealedBox

from dhtkit.identity import PUBLIC_KEY_BYTES, Identity
from dhtkit.values import ValueTooLarge

BOX_OVERHEAD: int = crypto_box_SEALBYTES
"""Bytes a sealed box adds: the ephemeral public key and the MAC."""

OVERHEAD = BOX_OVERHEAD + PUBLIC_KEY_BYTES
"""Bytes sealing adds to a value: the box, and the sender's key inside it."""


class NotSealedForUs(ValueError):
    """A sealed value that this key cannot open: sealed for another
    recipient, damaged, or not sealed at all."""


class BadRecipient(ValueError):
    """A recipient key that is not an Ed25519 public key."""


def _curve_public(ed25519_public_key: bytes) -> PublicKey:
    if not isinstance(ed25519_public_key, bytes) or len(ed25519_public_key) != PUBLIC_KEY_BYTES:
        raise BadRecipient("a recipient's public key is {} bytes".format(PUBLIC_KEY_BYTES))
    try:
        return PublicKey(crypto_sign_ed25519_pk_to_curve25519(ed25519_public_key))
    except CryptoError:
        raise BadRecipient(
            "{} is not an Ed25519 public key".format(ed25519_public_key.hex())
        ) from None


def max_plaintext(max_value_size: int) -> int:
    """The longest value that still fits a store's limit once sealed."""
    return max_value_size - OVERHEAD


def seal(value: bytes, sender: bytes, recipient: bytes, max_value_size: int) -> bytes:
    """``value`` from the key ``sender``, sealed for the key ``recipient``.

    :raises ValueTooLarge: sealed, it would exceed ``max_value_size``.
    :raises BadRecipient: ``recipient`` is not an Ed25519 public key.
    """
    if not isinstance(value, bytes):
        raise TypeError("a value is bytes")
    if len(value) > max_plaintext(max_value_size):
        raise ValueTooLarge(
            "the value is {} bytes; sealed for a recipient it may be at most {} bytes "
            "(the limit of {} less {} bytes of sealing)".format(
                len(value), max_plaintext(max_value_size), max_value_size, OVERHEAD
            )
        )
    box = SealedBox(_curve_public(recipient))
    return bytes(box.encrypt(sender + value))


def unseal(sealed: bytes, sender: bytes, identity: Identity) -> bytes:
    """The value in ``sealed``, opened with ``identity``'s key.

    :raises NotSealedForUs: it cannot be opened with this key, or was
        sealed by another key than ``sender`` (the signer of its record).
    """
    box = SealedBox(PrivateKey(identity.curve25519_secret()))
    try:
        opened = box.decrypt(sealed)
    except CryptoError:
        raise NotSealedForUs(
            "the value is not sealed for the key {} (or it is damaged)".format(
                identity.public_key.hex()
            )
        ) from None
    if opened[:PUBLIC_KEY_BYTES] != sender:
        raise NotSealedForUs(
            "the value was sealed by {}, not by {} who signed it".format(
                opened[:PUBLIC_KEY_BYTES].hex(), sender.hex()
            )
        )
    return opened[PUBLIC_KEY_BYTES:]


__all__ = ["OVERHEAD", "BadRecipient", "NotSealedForUs", "max_plaintext", "seal", "unseal"]
