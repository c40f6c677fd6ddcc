"""Value records: immutable, plain (last writer wins) and signed mutable.

Three kinds of record share one key space:

* :class:`ImmutableValue` — the key is BLAKE2b-160 of the value, personalised
  with its own domain (:func:`immutable_key`), so anyone can check that a
  value belongs to its key;
* :class:`PlainValue` — the classic Kademlia ``set``: any key, any value, the
  latest write (by the writer's timestamp) wins;
* :class:`SignedValue` — mutable values with the semantics of BitTorrent's
  BEP 44: the key is BLAKE2b-160 of (public key + salt) in the signed
  domain (:func:`signed_key`), every version carries
  a sequence number and an Ed25519 signature over (salt, seq, value), and a
  store keeps the highest valid sequence number.

A delete is a version like any other, a *tombstone* (``deleted=True``, no
value): a signed tombstone is signed by the key's owner like a value, in its
own signing domain, and outranks the versions below its seq; a plain
tombstone is signed by the key that wrote the plain value
(:attr:`PlainValue.owner`) and only that key's tombstone may replace it
(:class:`NotPublisher`). Stores keep tombstones until they expire, so an
older copy cannot come back through read repair, replication or hand-over.

:func:`admit` holds the one rule every store applies when a record arrives for
a key that may already hold one. Each reason to refuse is its own exception
type with a stable ``reason`` code, which travels over the wire so that the
caller of a remote put sees the same type as a local one.

Keys are separated by domain: a name's key is :func:`~dhtkit.keyspace.key_for`
(unpersonalised BLAKE2b-160), while immutable and signed keys are BLAKE2b-160
personalised with their own domain. So no immutable value can take the key
of a name, nor of a signed value, and no name can take theirs.

Numbers that come off the wire (seq, ttl, expected seq) are checked by
:func:`check_ttl`, :func:`check_expected_seq` and the records' own checks
before anything uses them: a number is of the right type, finite and in
range, or the record or answer is malformed.
"""

from __future__ import annotations

import struct
from typing import Any, ClassVar

import attrs
from nacl.bindings import crypto_sign_open
from nacl.exceptions import BadSignatureError

from dhtkit.identity import PUBLIC_KEY_BYTES, Identity
from dhtkit.keyspace import ID_BYTES, IMMUTABLE_DOMAIN, SIGNED_DOMAIN, domain_key

MAX_VALUE_SIZE = 1000
MAX_SALT_SIZE = 64
MAX_SEQ = 2**63 - 1
SIGNATURE_BYTES = 64
MAX_TTL = 10 * 365 * 24 * 3600
"""The longest lifetime (seconds) a peer may give a record; longer is malformed."""

_SIGNED_CONTEXT = b"dhtkit-signed-value-v1"
_SIGNED_TOMBSTONE_CONTEXT = b"dhtkit-signed-tombstone-v1"
_PLAIN_TOMBSTONE_CONTEXT = b"dhtkit-plain-tombstone-v1"


class ValueRefused(ValueError):
    """A record that a store will not take; ``reason`` names why."""

    reason: ClassVar[str] = "refused"


class ValueTooLarge(ValueRefused):
    """The value is longer than the store's size limit."""

    reason = "too_large"


class SaltTooLong(ValueRefused):
    """A signed value's salt is longer than 64 bytes."""

    reason = "salt_too_long"


class MalformedRecord(ValueRefused):
    """A record whose fields have the wrong types or lengths."""

    reason = "malformed"


class KeyMismatch(ValueRefused):
    """The record does not belong to the key it was stored under."""

    reason = "key_mismatch"


class BadSignature(ValueRefused):
    """A signed value whose signature does not verify."""

    reason = "bad_signature"


class KindConflict(ValueRefused):
    """A record of another kind would replace one that outranks it."""

    reason = "kind_conflict"


class StaleSequence(ValueRefused):
    """The stored record has a higher sequence number (or a later write)."""

    reason = "stale_seq"


class SequenceConflict(ValueRefused):
    """Another value is stored with the same sequence number."""

    reason = "seq_conflict"


class CASMismatch(ValueRefused):
    """Compare-and-swap: the stored sequence number is not the expected one."""

    reason = "cas_mismatch"


class WriteTimeAhead(ValueRefused):
    """A plain value written later than the receiver's clock allows."""

    reason = "clock_skew"


class OverQuota(ValueRefused):
    """The store, or this publisher's share of it, is full."""

    reason = "over_quota"


class NotPublisher(ValueRefused):
    """A plain tombstone for a value that another key wrote (or nobody claims)."""

    reason = "not_publisher"


REFUSALS: dict[str, type[ValueRefused]] = {
    cls.reason: cls
    for cls in (
        ValueTooLarge,
        SaltTooLong,
        MalformedRecord,
        KeyMismatch,
        BadSignature,
        KindConflict,
        StaleSequence,
        SequenceConflict,
        CASMismatch,
        WriteTimeAhead,
        OverQuota,
        NotPublisher,
    )
}


class ValueDeleted(LookupError):
    """A read found that the newest version of a key is a delete (a tombstone).

    :ivar record: the tombstone, whose ``seq`` says which version deleted it.
    """

    def __init__(self, record: PlainValue | SignedValue) -> None:
        super().__init__(
            "the value under {} was deleted by its publisher (version {})".format(
                record.key.hex(), record.seq
            )
        )
        self.record = record


def refusal_for(reason: str, message: str) -> ValueRefused:
    """The typed refusal for a reason code received from a peer."""
    return REFUSALS.get(reason, ValueRefused)(message)


def _check_bytes(name: str, value: object, length: int | None = None) -> None:
    if not isinstance(value, bytes):
        raise MalformedRecord("{} must be bytes".format(name))
    if length is not None and len(value) != length:
        raise MalformedRecord("{} must be {} bytes, not {}".format(name, length, len(value)))


def check_value(value: object, max_size: int = MAX_VALUE_SIZE) -> None:
    """Raise :class:`ValueTooLarge` or :class:`MalformedRecord` for a bad value."""
    _check_bytes("value", value)
    assert isinstance(value, bytes)
    if len(value) > max_size:
        raise ValueTooLarge(
            "the value is {} bytes; the limit is {} bytes".format(len(value), max_size)
        )


def _check_seq(seq: object) -> None:
    if type(seq) is not int or not 0 <= seq <= MAX_SEQ:
        raise MalformedRecord("seq must be an integer from 0 to 2**63-1")


def check_ttl(ttl: object) -> float:
    """A lifetime off the wire, in seconds, as a float.

    :raises MalformedRecord: unless ``ttl`` is an int or a float with
        0 < ttl <= :data:`MAX_TTL` (so neither NaN, nor infinity, nor an
        integer too large for a float).
    """
    # int against float compares exactly in Python, whatever the int's size,
    # and every comparison with NaN is false.
    if isinstance(ttl, bool) or not isinstance(ttl, (int, float)) or not 0 < ttl <= MAX_TTL:
        raise MalformedRecord("the ttl must be a number of seconds in (0, {}]".format(MAX_TTL))
    return float(ttl)


def check_expected_seq(expected_seq: object) -> int | None:
    """A compare-and-swap sequence number off the wire: None or a valid seq.

    :raises MalformedRecord: otherwise.
    """
    if expected_seq is None:
        return None
    if type(expected_seq) is not int or not 0 <= expected_seq <= MAX_SEQ:
        raise MalformedRecord("the expected seq must be null or an integer from 0 to 2**63-1")
    return expected_seq


@attrs.frozen
class ImmutableValue:
    """A value stored under its own hash."""

    value: bytes
    kind: ClassVar[str] = "immutable"
    seq: ClassVar[int] = 0
    deleted: ClassVar[bool] = False

    @property
    def key(self) -> bytes:
        return immutable_key(self.value)

    @property
    def size(self) -> int:
        return len(self.value)

    def check(self, max_value_size: int = MAX_VALUE_SIZE) -> None:
        """Raise the :class:`ValueRefused` that this record deserves, if any."""
        check_value(self.value, max_value_size)


@attrs.frozen
class PlainValue:
    """A value under any key; ``seq`` is the writer's clock in microseconds.

    ``owner`` is the public key of the node that wrote it (empty for values
    written before plain values had one). It is a claim, not signed: it
    gives that key, and no other, the right to delete the value with a
    tombstone (``deleted=True``, an empty value, and ``signature`` by the
    owner over key and seq, see :meth:`tombstone`). Anyone may still
    overwrite a plain value with a later write: last writer wins.
    """

    key: bytes
    value: bytes
    seq: int
    owner: bytes = b""
    signature: bytes = b""
    deleted: bool = False
    kind: ClassVar[str] = "plain"

    @classmethod
    def tombstone(cls, identity: Identity, key: bytes, seq: int) -> PlainValue:
        """The delete, by ``identity``, of its plain value under ``key``, written at ``seq``."""
        record = cls(key, b"", seq, identity.public_key, b"\0" * SIGNATURE_BYTES, True)
        record.check_fields()
        return attrs.evolve(record, signature=identity.sign(plain_tombstone_payload(key, seq)))

    @property
    def size(self) -> int:
        return ID_BYTES + len(self.value) + len(self.owner) + len(self.signature)

    def check_fields(self, max_value_size: int = MAX_VALUE_SIZE) -> None:
        """Check types and sizes, not a tombstone's signature."""
        _check_bytes("key", self.key, ID_BYTES)
        check_value(self.value, max_value_size)
        _check_seq(self.seq)
        _check_bytes("owner", self.owner)
        _check_bytes("signature", self.signature)
        if type(self.deleted) is not bool:
            raise MalformedRecord("deleted must be a boolean")
        if self.owner:
            _check_bytes("owner", self.owner, PUBLIC_KEY_BYTES)
        if self.deleted:
            if self.value or not self.owner:
                raise MalformedRecord("a plain tombstone has no value and an owner")
            _check_bytes("signature", self.signature, SIGNATURE_BYTES)
        elif self.signature:
            raise MalformedRecord("a plain value carries no signature")

    def check(self, max_value_size: int = MAX_VALUE_SIZE) -> None:
        """Raise the :class:`ValueRefused` that this record deserves, if any."""
        self.check_fields(max_value_size)
        if self.deleted:
            _verify(self.signature, plain_tombstone_payload(self.key, self.seq), self.owner)


def signed_payload(salt: bytes, seq: int, value: bytes) -> bytes:
    """The bytes a signed value's signature covers.

    Every field has a fixed width or a length prefix, so no two (salt, seq,
    value) triples share an encoding.
    """
    return b"".join(
        (
            _SIGNED_CONTEXT,
            struct.pack(">B", len(salt)),
            salt,
            struct.pack(">QI", seq, len(value)),
            value,
        )
    )


def signed_tombstone_payload(salt: bytes, seq: int) -> bytes:
    """The bytes a signed tombstone's signature covers: its own domain, salt and seq."""
    return b"".join(
        (_SIGNED_TOMBSTONE_CONTEXT, struct.pack(">B", len(salt)), salt, struct.pack(">Q", seq))
    )


def plain_tombstone_payload(key: bytes, seq: int) -> bytes:
    """The bytes a plain tombstone's signature covers: its own domain, key and seq."""
    return _PLAIN_TOMBSTONE_CONTEXT + key + struct.pack(">Q", seq)


def _verify(signature: bytes, payload: bytes, public_key: bytes) -> None:
    try:
        crypto_sign_open(signature + payload, public_key)
    except (BadSignatureError, ValueError):
        raise BadSignature("the signature does not match the record") from None


def immutable_key(value: bytes) -> bytes:
    """The key an immutable ``value`` is stored under.

    BLAKE2b-160 of the value in the immutable domain: never the key of a name
    (:func:`~dhtkit.keyspace.key_for`), so an immutable value cannot take a
    name's key and outrank the plain values stored under it.
    """
    return domain_key(IMMUTABLE_DOMAIN, value)


def signed_key(public_key: bytes, salt: bytes = b"") -> bytes:
    """The key a signed value of ``public_key`` and ``salt`` is stored under.

    BLAKE2b-160 of public key + salt in the signed domain. The public key
    has a fixed length, so (public key, salt) pairs never share an input.
    """
    if not isinstance(public_key, bytes) or not isinstance(salt, bytes):
        raise TypeError("a public key and a salt are bytes")
    return domain_key(SIGNED_DOMAIN, public_key + salt)


@attrs.frozen
class SignedValue:
    """A version of a mutable value, signed by the owner of ``public_key``.

    A version with ``deleted`` is a tombstone: no value, and a signature in
    the tombstone domain (:func:`signed_tombstone_payload`), so that no
    value's signature can serve as a delete or the other way round.
    """

    public_key: bytes
    salt: bytes
    seq: int
    value: bytes
    signature: bytes
    deleted: bool = False
    kind: ClassVar[str] = "signed"

    @property
    def owner(self) -> bytes:
        return self.public_key

    @classmethod
    def create(cls, identity: Identity, value: bytes, seq: int, salt: bytes = b"") -> SignedValue:
        """Sign ``value`` as version ``seq`` under ``identity``'s key and ``salt``."""
        record = cls(identity.public_key, salt, seq, value, b"\0" * SIGNATURE_BYTES)
        record.check_fields(max_value_size=len(value))  # the size limit is the store's
        return attrs.evolve(record, signature=identity.sign(signed_payload(salt, seq, value)))

    @classmethod
    def tombstone(cls, identity: Identity, seq: int, salt: bytes = b"") -> SignedValue:
        """The delete, as version ``seq``, of ``identity``'s mutable value under ``salt``."""
        record = cls(identity.public_key, salt, seq, b"", b"\0" * SIGNATURE_BYTES, True)
        record.check_fields()
        return attrs.evolve(record, signature=identity.sign(signed_tombstone_payload(salt, seq)))

    @property
    def key(self) -> bytes:
        return signed_key(self.public_key, self.salt)

    @property
    def size(self) -> int:
        return PUBLIC_KEY_BYTES + SIGNATURE_BYTES + len(self.salt) + len(self.value)

    def check_fields(self, max_value_size: int = MAX_VALUE_SIZE) -> None:
        """Check types and sizes, not the signature."""
        _check_bytes("public key", self.public_key, PUBLIC_KEY_BYTES)
        _check_bytes("salt", self.salt)
        if len(self.salt) > MAX_SALT_SIZE:
            raise SaltTooLong(
                "the salt is {} bytes; the limit is {} bytes".format(len(self.salt), MAX_SALT_SIZE)
            )
        _check_seq(self.seq)
        check_value(self.value, max_value_size)
        _check_bytes("signature", self.signature, SIGNATURE_BYTES)
        if type(self.deleted) is not bool:
            raise MalformedRecord("deleted must be a boolean")
        if self.deleted and self.value:
            raise MalformedRecord("a signed tombstone has no value")

    def check(self, max_value_size: int = MAX_VALUE_SIZE) -> None:
        """Raise the :class:`ValueRefused` that this record deserves, if any."""
        self.check_fields(max_value_size)
        if self.deleted:
            payload = signed_tombstone_payload(self.salt, self.seq)
        else:
            payload = signed_payload(self.salt, self.seq, self.value)
        _verify(self.signature, payload, self.public_key)


Record = ImmutableValue | PlainValue | SignedValue


def to_wire(record: Record) -> list[Any]:
    """The record as a plain list for an RPC payload.

    Codes: 0 immutable, 1 plain (with its owner when it has one), 2 signed,
    3 plain tombstone, 4 signed tombstone.
    """
    if isinstance(record, ImmutableValue):
        return [0, record.value]
    if isinstance(record, PlainValue):
        if record.deleted:
            return [3, record.key, record.seq, record.owner, record.signature]
        if record.owner:
            return [1, record.key, record.value, record.seq, record.owner]
        return [1, record.key, record.value, record.seq]
    if record.deleted:
        return [4, record.public_key, record.salt, record.seq, record.signature]
    return [2, record.public_key, record.salt, record.seq, record.value, record.signature]


def from_wire(obj: Any) -> Record:
    """A record from :func:`to_wire`'s list; fields are checked by ``check``.

    :raises MalformedRecord: the list does not have a record's shape.
    """
    if isinstance(obj, list) and obj:
        code, fields = obj[0], obj[1:]
        try:
            if code == 0 and len(fields) == 1:
                return ImmutableValue(*fields)
            if code == 1 and len(fields) in (3, 4):
                return PlainValue(*fields)
            if code == 2 and len(fields) == 5:
                return SignedValue(*fields)
            if code == 3 and len(fields) == 4:
                key, seq, owner, signature = fields
                return PlainValue(key, b"", seq, owner, signature, True)
            if code == 4 and len(fields) == 4:
                public_key, salt, seq, signature = fields
                return SignedValue(public_key, salt, seq, b"", signature, True)
        except TypeError:
            pass
    raise MalformedRecord("not a value record")


def from_columns(
    kind: str,
    key: bytes,
    value: bytes,
    seq: int,
    public_key: bytes,
    salt: bytes,
    signature: bytes,
    deleted: bool = False,
) -> Record:
    """Rebuild a record from the columns a store keeps (a plain owner is ``public_key``)."""
    if kind == "immutable":
        return ImmutableValue(value)
    if kind == "plain":
        return PlainValue(key, value, seq, public_key, signature, deleted)
    if kind == "signed":
        return SignedValue(public_key, salt, seq, value, signature, deleted)
    raise MalformedRecord("unknown record kind {!r}".format(kind))


def check_record(record: Record, key: bytes, max_value_size: int = MAX_VALUE_SIZE) -> None:
    """Check ``record`` in full and that it belongs under ``key``.

    The fields are checked before the record's own key is computed from
    them: a record off the wire may hold anything.
    """
    record.check(max_value_size)
    if record.key != key:
        raise KeyMismatch("the record belongs to key {}".format(record.key.hex()))


# Which kind keeps a key that two kinds claim. Verifiable beats plain: a
# plain value may be put under any key, an immutable or signed one too. And
# signed beats immutable; their keys are in separate domains now, but a
# store migrated from before kept this order, and it costs nothing.
_KIND_RANK: dict[str, int] = {"plain": 0, "immutable": 1, "signed": 2}


def admit(old: Record | None, new: Record, expected_seq: int | None = None) -> bool:
    """Whether ``new`` replaces ``old`` under the same key.

    Returns False when ``new`` is the record already stored (a refresh), True
    when it should be written, and raises the refusal otherwise. Both records
    must already have passed :func:`check_record`.
    """
    if expected_seq is not None:
        if not isinstance(new, SignedValue):
            raise CASMismatch("compare-and-swap applies to signed values only")
        if old is None or old.kind != new.kind or old.seq != expected_seq:
            raise CASMismatch(
                "expected seq {}, stored {}".format(
                    expected_seq,
                    "nothing"
                    if old is None
                    else "seq {}".format(old.seq)
                    if old.kind == new.kind
                    else "a {} value".format(old.kind),
                )
            )
    if old is None:
        return True
    if old.kind != new.kind:
        if _KIND_RANK[new.kind] > _KIND_RANK[old.kind]:
            return True
        raise KindConflict("a {} value is stored under this key".format(old.kind))
    if isinstance(new, PlainValue) and isinstance(old, PlainValue):
        _check_plain_delete(old, new)
    if new.seq < old.seq:
        raise StaleSequence("stored seq {} is higher than {}".format(old.seq, new.seq))
    if new == old:
        return False
    if new.seq == old.seq and isinstance(new, SignedValue):
        raise SequenceConflict("another value is stored with seq {}".format(new.seq))
    return True


def _check_plain_delete(old: PlainValue, new: PlainValue) -> None:
    """Only the key that wrote a plain value may replace it with a tombstone."""
    if new.deleted and not old.deleted and old.owner != new.owner:
        raise NotPublisher(
            "only the node that wrote a plain value can delete it; this one was "
            "written by {}".format(old.owner.hex() if old.owner else "a node that did not say")
        )


def newest(records: list[Record]) -> Record | None:
    """The record a reader should believe when replicas disagree.

    Signed records beat immutable ones, which beat plain ones (as in
    :func:`admit`); among the same kind the highest seq wins (for plain
    values, the latest write), tombstones included. A plain tombstone
    counts only against a value of its own owner: the newest plain value
    is the answer unless its owner deleted it later, so a tombstone from a
    stranger (stored where the value was missing) never hides it.
    """
    best: Record | None = None
    for record in records:
        if best is None:
            best = record
        elif record.kind != best.kind:
            if _KIND_RANK[record.kind] > _KIND_RANK[best.kind]:
                best = record
        elif record.seq > best.seq:
            best = record
    if not isinstance(best, PlainValue):
        return best
    plain = [r for r in records if isinstance(r, PlainValue)]
    values = [r for r in plain if not r.deleted]
    if not values:
        return best
    latest = values[0]
    for value in values[1:]:
        if value.seq > latest.seq:
            latest = value
    deletes = [r for r in plain if r.deleted and r.owner == latest.owner and r.seq > latest.seq]
    return max(deletes, key=lambda r: r.seq) if deletes else latest
