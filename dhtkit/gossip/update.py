"""Gossip updates: signed by their originator, named by the hash of what is signed.

An update travels as one byte string, ``body + signature``. ``body`` is the
CBOR array::

    [version, kind, topic, data, origin, seq, expires]

``origin`` is the publisher's Ed25519 public key and ``signature`` its
signature over ``body`` (domain-separated), so any node can check an update
it received from anyone. ``seq`` is the origin's own counter, which makes
two publications of the same data distinct updates; ``expires`` is the time
(seconds, on the origin's clock) after which nodes forget it. The update id
is BLAKE2b-160 of ``body``: it names exactly what was signed, so a node can
recognise an update it holds without decoding or verifying it again.

A *death certificate* is an update of kind :data:`DEATH` whose ``data`` is
the id of the update it deletes. Only the origin of that update can sign one
that takes effect; it is gossiped like any update and expires on its own.
"""

from __future__ import annotations

import hashlib
import math
from typing import Any, ClassVar

import attrs
import cbor2
from nacl.bindings import crypto_sign_open

from dhtkit.identity import PUBLIC_KEY_BYTES, Identity

UPDATE_VERSION = 1
#: The kinds of update: data for subscribers, or a death certificate.
DATA, DEATH = 0, 1
ID_BYTES = 20
SIGNATURE_BYTES = 64
MAX_TOPIC_BYTES = 64
#: The largest encoded update (body and signature): with the gossip message
#: around it and the RPC envelope around that, it still fits one datagram.
MAX_UPDATE_BYTES = 1200
MAX_SEQ = 2**64
MAX_EXPIRES = 2**53

_SIGN_CONTEXT = b"dhtkit-gossip-update-v1:"
# A CBOR array of seven items starts with this byte; anything else is refused
# before the decoder sees it.
_ARRAY_OF_SEVEN = 0x87


class UpdateError(ValueError):
    """An update that must be dropped; ``reason`` names its counter."""

    reason: ClassVar[str] = "malformed"


class MalformedUpdate(UpdateError):
    """Not an encoded update: bad CBOR, wrong types or lengths."""

    reason = "malformed"


class UpdateTooLarge(UpdateError):
    """Larger than the update size limit."""

    reason = "oversized"


class ForgedUpdate(UpdateError):
    """The signature does not match the body and the origin's key."""

    reason = "forged"


@attrs.frozen(slots=True)
class Update:
    """One signed update, as decoded (see :func:`decode_update`) or made here.

    Build one with :func:`make_update` or :func:`death_certificate`; an
    ``Update`` from :func:`decode_update` is well formed but its signature is
    checked only by :func:`verify_update`.
    """

    update_id: bytes = attrs.field(repr=lambda v: v.hex()[:12])
    kind: int
    topic: str
    data: bytes = attrs.field(repr=False)
    origin: bytes = attrs.field(repr=lambda v: v.hex()[:12])
    seq: int
    expires: int
    encoded: bytes = attrs.field(repr=False)

    @property
    def is_death_certificate(self) -> bool:
        """Whether this update deletes another."""
        return self.kind == DEATH

    @property
    def deletes(self) -> bytes | None:
        """The id of the update this death certificate deletes (None for data)."""
        return self.data if self.kind == DEATH else None

    @property
    def body(self) -> bytes:
        """The signed bytes."""
        return self.encoded[:-SIGNATURE_BYTES]

    @property
    def signature(self) -> bytes:
        """The origin's Ed25519 signature of :attr:`body`."""
        return self.encoded[-SIGNATURE_BYTES:]


def update_id_of(encoded: bytes) -> bytes:
    """The id of an encoded update: BLAKE2b-160 of its body.

    Cheap enough to run on every update received, before deciding whether it
    is new and worth decoding and verifying.
    """
    return hashlib.blake2b(encoded[:-SIGNATURE_BYTES], digest_size=ID_BYTES).digest()


def make_update(
    identity: Identity, topic: str, data: bytes, *, seq: int, expires: float, kind: int = DATA
) -> Update:
    """A new update signed by ``identity``.

    :raises UpdateTooLarge: it would exceed :data:`MAX_UPDATE_BYTES`.
    :raises ValueError, TypeError: a field is out of range or of a wrong type.
    """
    if not isinstance(topic, str):
        raise TypeError("a topic is a str, not {}".format(type(topic).__name__))
    if not 0 < len(topic.encode("utf-8")) <= MAX_TOPIC_BYTES:
        raise ValueError("a topic is 1 to {} bytes of UTF-8".format(MAX_TOPIC_BYTES))
    if not isinstance(data, bytes):
        raise TypeError("update data is bytes, not {}".format(type(data).__name__))
    if kind not in (DATA, DEATH) or (kind == DEATH and len(data) != ID_BYTES):
        raise ValueError("a death certificate's data is the {}-byte id it deletes".format(ID_BYTES))
    expires_at = math.ceil(expires)
    if not 0 <= seq < MAX_SEQ or not 0 <= expires_at < MAX_EXPIRES:
        raise ValueError("seq or expiry out of range")
    body = cbor2.dumps([UPDATE_VERSION, kind, topic, data, identity.public_key, seq, expires_at])
    encoded = body + identity.sign(_SIGN_CONTEXT + body)
    if len(encoded) > MAX_UPDATE_BYTES:
        raise UpdateTooLarge(
            "the update takes {} bytes signed; the limit is {} (about {} bytes of data)".format(
                len(encoded), MAX_UPDATE_BYTES, MAX_UPDATE_BYTES - (len(encoded) - len(data))
            )
        )
    update_id = hashlib.blake2b(body, digest_size=ID_BYTES).digest()
    return Update(update_id, kind, topic, data, identity.public_key, seq, expires_at, encoded)


def death_certificate(identity: Identity, target: Update, *, seq: int, expires: float) -> Update:
    """A signed certificate deleting ``target``, which ``identity`` published.

    :raises ValueError: ``target`` is another origin's (its certificate
        would be ignored everywhere) or is itself a certificate.
    """
    if target.origin != identity.public_key:
        raise ValueError("only the origin of an update can delete it")
    if target.kind != DATA:
        raise ValueError("a death certificate deletes data, not another certificate")
    return make_update(
        identity, target.topic, target.update_id, seq=seq, expires=expires, kind=DEATH
    )


def decode_update(
    encoded: Any, max_bytes: int = MAX_UPDATE_BYTES, update_id: bytes | None = None
) -> Update:
    """Parse an encoded update, without checking its signature.

    Any input either returns an :class:`Update` or raises :class:`UpdateError`.
    ``update_id`` may pass the id already computed with :func:`update_id_of`.
    """
    if type(encoded) is not bytes:
        raise MalformedUpdate("an update is a byte string")
    if len(encoded) > max_bytes:
        raise UpdateTooLarge("update of {} bytes exceeds {}".format(len(encoded), max_bytes))
    if len(encoded) <= SIGNATURE_BYTES or encoded[0] != _ARRAY_OF_SEVEN:
        raise MalformedUpdate("not a signed seven-item array")
    body = encoded[:-SIGNATURE_BYTES]
    try:
        fields = cbor2.loads(body)
    except Exception:  # cbor2 raises many types on hostile input
        raise MalformedUpdate("undecodable CBOR") from None
    if type(fields) is not list or len(fields) != 7:
        raise MalformedUpdate("the body is not a seven-item array")
    version, kind, topic, data, origin, seq, expires = fields
    if type(version) is not int or version != UPDATE_VERSION:
        raise MalformedUpdate("unsupported version")
    if type(kind) is not int or kind not in (DATA, DEATH):
        raise MalformedUpdate("unknown kind")
    if type(topic) is not str or not 0 < len(topic.encode("utf-8", "replace")) <= MAX_TOPIC_BYTES:
        raise MalformedUpdate("bad topic")
    if type(data) is not bytes or (kind == DEATH and len(data) != ID_BYTES):
        raise MalformedUpdate("bad data")
    if type(origin) is not bytes or len(origin) != PUBLIC_KEY_BYTES:
        raise MalformedUpdate("bad origin key")
    if type(seq) is not int or not 0 <= seq < MAX_SEQ:
        raise MalformedUpdate("bad sequence number")
    if type(expires) is not int or not 0 <= expires < MAX_EXPIRES:
        raise MalformedUpdate("bad expiry")
    if update_id is None:
        update_id = hashlib.blake2b(body, digest_size=ID_BYTES).digest()
    return Update(update_id, kind, topic, data, origin, seq, expires, encoded)


def verify_update(update: Update) -> None:
    """Check the origin's signature.

    :raises ForgedUpdate: it does not match.
    """
    try:
        crypto_sign_open(update.signature + _SIGN_CONTEXT + update.body, update.origin)
    except Exception:  # BadSignatureError, or a key that is not a curve point
        raise ForgedUpdate("bad signature") from None


__all__ = [
    "DATA",
    "DEATH",
    "ID_BYTES",
    "MAX_TOPIC_BYTES",
    "MAX_UPDATE_BYTES",
    "ForgedUpdate",
    "MalformedUpdate",
    "Update",
    "UpdateError",
    "UpdateTooLarge",
    "death_certificate",
    "decode_update",
    "make_update",
    "update_id_of",
    "verify_update",
]
