"""The datagram format: a CBOR envelope, validated and authenticated.

A datagram is the CBOR array ``[body, auth]``, or ``[body, auth, padding]``.
``body`` is a byte string holding the CBOR array::

    [version, kind, txid, method, payload, sender_key, sender_id, seq]

and ``auth`` authenticates exactly those bytes, so nothing is re-encoded to
check it. ``auth`` is one of:

* a 16-byte BLAKE2b MAC under the session key the two peers share (X25519
  agreement over their Ed25519 keys): microseconds to make and check;
* a 64-byte Ed25519 signature, for a query to an address whose key the
  sender does not know yet (a bootstrap node); every reply is MAC'd, since
  the query told the responder who asked.

Either proves that the sender holds the private key behind ``sender_key``;
``sender_id`` must be the hash of that key. ``seq`` is the sender's
per-datagram counter, which the RPC layer uses to refuse replays.

``padding``, a byte string whose content is ignored, only makes a query
larger: an address not yet proven to receive may get answers up to a few
times the size of what it sent (see :mod:`dhtkit.routability`), so a query
whose answer may be large is padded to spare the peer an address probe.

``kind`` is :data:`QUERY`, :data:`RESPONSE`, :data:`ERROR` or
:data:`PROOF`. A query names its handler in ``method``; a response's or an
error's ``method`` is empty, or a return-routability challenge the asker
sends back in a :data:`PROOF` (the answered query's ``txid``, the challenge
as ``method``, no payload), a one-way datagram that proves the asker
receives at its address.

Everything here is pure: no clock, no sockets. Each failure is a
:class:`WireError` subclass whose ``reason`` names the counter it goes to.
"""

from __future__ import annotations

import hashlib
import hmac
import io
import socket
import struct
from functools import lru_cache, partial
from typing import Any, ClassVar, NamedTuple

import cbor2
from nacl.bindings import (
    crypto_scalarmult,
    crypto_sign_ed25519_pk_to_curve25519,
    crypto_sign_open,
)
from nacl.exceptions import BadSignatureError

from dhtkit.bounded import BoundedDict
from dhtkit.contact import Address, Contact, contact_at
from dhtkit.identity import ID_BYTES, PUBLIC_KEY_BYTES, Identity, node_id_for

VERSION = 1
QUERY, RESPONSE, ERROR, PROOF = 0, 1, 2, 3
KINDS = (QUERY, RESPONSE, ERROR, PROOF)

MAX_DATAGRAM = 1400
MAC_BYTES = 16
SIGNATURE_BYTES = 64
SESSION_KEY_BYTES = 32
MAX_METHOD_LENGTH = 64
MAX_TXID = 2**32
MAX_SEQ = 2**64
MAX_PAYLOAD_DEPTH = 12

_SIGNATURE_CONTEXT = b"dhtkit-datagram-v1:"
_blake2b = hashlib.blake2b
_SESSION_PERSON = b"dhtkit-session1"


class WireError(ValueError):
    """A datagram that must be dropped; ``reason`` names its counter."""

    reason: ClassVar[str] = "malformed"


class MalformedMessage(WireError):
    """Not a dhtkit datagram: bad CBOR, wrong types or lengths."""

    reason = "malformed"


class MessageTooLarge(WireError):
    """Larger than the datagram size limit."""

    reason = "oversized"


class BadNodeId(WireError):
    """The sender's node id is not the hash of its public key."""

    reason = "bad_node_id"


class BadAuthenticator(WireError):
    """The MAC or signature does not match the body and the sender's key."""

    reason = "bad_auth"


class Message(NamedTuple):
    """A decoded datagram whose structure is valid but whose ``auth`` is not
    yet checked: see :func:`verify`.

    A named tuple, immutable and built in one step: one is made per datagram.
    """

    kind: int
    txid: int
    method: str
    payload: Any
    sender_key: bytes
    sender_id: bytes
    seq: int
    body: bytes
    auth: bytes

    @property
    def signed(self) -> bool:
        """Whether ``auth`` is a signature (else a session MAC)."""
        return len(self.auth) == SIGNATURE_BYTES

    def __repr__(self) -> str:
        return "Message(kind={}, txid={}, method={!r}, sender={}, seq={})".format(
            self.kind, self.txid, self.method, self.sender_id.hex()[:12], self.seq
        )


# The body as cbor2 would encode it, written directly for the usual shapes
# (a 32-bit transaction id, a short method name, a sequence number of our
# clock in microseconds): half the cost of a general encoder, byte for byte
# the same output (tests compare them); anything else goes to cbor2.
# array(8), version, kind, uint32 txid, the method's text head (< 24 bytes)
_BODY_HEAD = struct.Struct(">BBBBIB").pack
_SEQ = struct.Struct(">Q").pack  # the uint64's value (its head ends the sender tail)
_NO_PAYLOAD = b"\xf6"


def encode_body(
    kind: int, txid: int, method: str, payload: Any, identity: Identity, seq: int
) -> bytes:
    """The canonical bytes that the authenticator covers."""
    if (
        type(txid) is int
        and type(seq) is int
        and type(kind) is int
        and 0x10000 <= txid < MAX_TXID
        and 0x100000000 <= seq < MAX_SEQ
        and kind in KINDS
        and type(method) is str
        and len(method) < 24
        and method.isascii()
    ):
        sender = _SENDER_TAILS.get(identity.public_key) or _sender_tail(identity)
        if sender:
            if payload is None:
                encoded = _NO_PAYLOAD
            elif type(payload) is bytes and len(payload) < 0x100:
                encoded = _BYTES_HEADS[len(payload)] + payload
            else:
                try:
                    encoded = cbor2.dumps(payload)
                except (cbor2.CBOREncodeError, TypeError, ValueError) as e:
                    raise MalformedMessage("payload cannot be encoded: {}".format(e)) from e
            return b"".join(
                (
                    _BODY_HEAD(0x88, VERSION, kind, 0x1A, txid, 0x60 | len(method)),
                    method.encode(),
                    encoded,
                    sender,
                    _SEQ(seq),
                )
            )
    try:
        return cbor2.dumps(
            [VERSION, kind, txid, method, payload, identity.public_key, identity.node_id, seq]
        )
    except (cbor2.CBOREncodeError, TypeError, ValueError) as e:
        raise MalformedMessage("payload cannot be encoded: {}".format(e)) from e


def _sender_tail(identity: Identity) -> bytes:
    # The public key and node id of a body, as CBOR, with the sequence
    # number's head: the same for every datagram an identity sends, so
    # written once. Empty for keys of unusual lengths (then cbor2 writes it).
    key, node_id = identity.public_key, identity.node_id
    if len(key) != PUBLIC_KEY_BYTES or len(node_id) != ID_BYTES:
        return b""
    tail = b"\x58\x20" + key + b"\x54" + node_id + b"\x1b"
    _SENDER_TAILS.remember(key, tail)
    return tail


#: Identities and pairs of peers whose derived bytes are kept per process.
_MAX_SESSION_KEYS = 8192
#: public key -> the CBOR of key, node id and the sequence number's head.
_SENDER_TAILS: BoundedDict[bytes, bytes] = BoundedDict(_MAX_SESSION_KEYS)


def _bytes_head(n: int) -> bytes:
    # The CBOR head of a byte string of n bytes (n < 2**16: a datagram's).
    if n < 24:
        return bytes((0x40 | n,))
    if n < 0x100:
        return bytes((0x58, n))
    if n < 0x10000:
        return bytes((0x59, n >> 8, n & 0xFF))
    return cbor2.dumps(bytes(n))[:-n]


_BYTES_HEADS = [_bytes_head(n) for n in range(0x100)]
_MAC_HEAD = _bytes_head(MAC_BYTES)
_AUTH_HEADS = {MAC_BYTES: _bytes_head(MAC_BYTES), SIGNATURE_BYTES: _bytes_head(SIGNATURE_BYTES)}


def seal(body: bytes, auth: bytes, max_size: int = MAX_DATAGRAM) -> bytes:
    """The datagram carrying ``body`` and its authenticator."""
    # cbor2.dumps([body, auth]), written out: an array of two byte strings.
    data = b"".join(
        (
            b"\x82",
            _bytes_head(len(body)),
            body,
            _AUTH_HEADS.get(len(auth)) or _bytes_head(len(auth)),
            auth,
        )
    )
    if len(data) > max_size:
        raise MessageTooLarge(
            "datagram of {} bytes exceeds the limit of {}".format(len(data), max_size)
        )
    return data


def pad(data: bytes, size: int) -> bytes:
    """``data`` (a datagram as :func:`seal` or :func:`encode` write it)
    padded to ``size`` bytes (one more for a few sizes); unchanged when it
    is that long already."""
    short = size - len(data)
    if short <= 0 or data[:1] != b"\x82":
        return data
    # The padding's head takes 1-3 bytes; a few sizes fall between two
    # heads and are overshot by a byte.
    for extra in (0, 1):
        for head in (1, 2, 3):
            n = short + extra - head
            if n >= 0 and len(_bytes_head(n)) == head:
                return b"".join((b"\x83", data[1:], _bytes_head(n), bytes(n)))
    raise AssertionError("unreachable: {} bytes of padding".format(short))  # pragma: no cover


def mac(body: bytes, session_key: bytes) -> bytes:
    """The 16-byte MAC of ``body`` under a session key."""
    return hashlib.blake2b(body, key=session_key, digest_size=MAC_BYTES).digest()


def encode(
    kind: int,
    txid: int,
    method: str,
    payload: Any,
    identity: Identity,
    seq: int,
    session_key: bytes,
    max_size: int = MAX_DATAGRAM,
) -> bytes:
    """A datagram MAC'd under ``session_key``, in one step: what
    ``seal(body, mac(body, session_key), max_size)`` makes of
    :func:`encode_body`'s body."""
    body = encode_body(kind, txid, method, payload, identity, seq)
    n = len(body)
    data = b"".join(
        (
            b"\x82",
            _BYTES_HEADS[n] if n < 0x100 else _bytes_head(n),
            body,
            _MAC_HEAD,
            _blake2b(body, key=session_key, digest_size=MAC_BYTES).digest(),
        )
    )
    if len(data) > max_size:
        raise MessageTooLarge(
            "datagram of {} bytes exceeds the limit of {}".format(len(data), max_size)
        )
    return data


def sign(body: bytes, identity: Identity) -> bytes:
    """The Ed25519 signature of ``body``, domain-separated."""
    return identity.sign(_SIGNATURE_CONTEXT + body)


def session_key(identity: Identity, peer_public_key: bytes) -> bytes:
    """The symmetric key two nodes share: X25519 over their converted keys.

    Both sides compute the same value; hashing in both public keys (in a fixed
    order) binds the key to the pair. The latest keys are remembered by pair,
    so that where both nodes live in one process (a simulation) the second
    one's agreement, as costly as the first's, is not done again.

    :raises BadAuthenticator: the peer's key is not a usable curve point.
    """
    low, high = (
        (identity.public_key, peer_public_key)
        if identity.public_key < peer_public_key
        else (peer_public_key, identity.public_key)
    )
    # Only an agreement made with one of the two secret keys ever fills an
    # entry: a pair's key is the same whichever side made it.
    key = _SESSION_KEYS.get((low, high))
    if key is not None:
        return key
    try:
        peer_curve = _curve25519_public(peer_public_key)
        shared = crypto_scalarmult(identity.curve25519_secret(), peer_curve)
    except Exception as e:  # libsodium refuses low-order and invalid points
        raise BadAuthenticator("unusable public key: {}".format(e)) from e
    key = hashlib.blake2b(
        shared + low + high, digest_size=SESSION_KEY_BYTES, person=_SESSION_PERSON
    ).digest()
    _SESSION_KEYS.remember((low, high), key)
    return key


#: (lower public key, higher public key) -> their session key, oldest first.
_SESSION_KEYS: BoundedDict[tuple[bytes, bytes], bytes] = BoundedDict(_MAX_SESSION_KEYS)


@lru_cache(maxsize=65536)
def _curve25519_public(ed25519_public_key: bytes) -> bytes:
    # A pure function of the key, as costly as the agreement itself; the nodes
    # of a simulation all share this process and meet the same keys.
    return crypto_sign_ed25519_pk_to_curve25519(ed25519_public_key)  # type: ignore[no-any-return]


def _string_span(data: bytes, at: int) -> tuple[int, int] | None:
    """Where the content of the byte string whose CBOR head is at
    ``data[at]`` starts and ends (a head of 1-3 bytes, so under 65,536
    bytes), read without a decoder; None for any other head, or one cut
    short. The end may lie beyond ``data``: the caller compares it."""
    n = len(data)
    if at >= n:
        return None
    head = data[at]
    if 0x40 <= head < 0x58:
        return at + 1, at + 1 + head - 0x40
    if head == 0x58 and n > at + 1:
        return at + 2, at + 2 + data[at + 1]
    if head == 0x59 and n > at + 2:
        return at + 3, at + 3 + (data[at + 1] << 8 | data[at + 2])
    return None


def _split(data: bytes) -> tuple[bytes, bytes] | None:
    """The body and authenticator of a datagram in the form :func:`seal`
    writes (a MAC'd body, maybe :func:`pad`-ded), read without a CBOR
    decoder; None for any other form, which then goes through the full
    decoder."""
    first = data[0]
    if first != 0x82 and first != 0x83:
        return None
    body = _string_span(data, 1)
    if body is None:
        return None
    start, end = body
    stop = end + 1 + MAC_BYTES
    if len(data) < stop or data[end] != 0x40 | MAC_BYTES:
        return None
    if first == 0x83:  # the padding: a byte string up to the datagram's end
        padding = _string_span(data, stop)
        if padding is None or len(data) != padding[1]:
            return None
    elif len(data) != stop:
        return None
    return data[start:end], data[end + 1 : stop]


#: The head of a body in the usual shape: array(8), version, kind, the
#: uint32 head and the transaction id, the method's text head.
_USUAL_HEAD = struct.Struct(">BBBBIB").unpack_from
#: Its last 64 bytes: the key's head and the key, the id's head and the id,
#: the sequence number's uint64 head and value.
_USUAL_TAIL = struct.Struct(">H32sB20sBQ").unpack_from
_TAIL_BYTES = 64


def _read_usual_body(body: bytes) -> tuple[int, int, str, Any, bytes, bytes, int] | None:
    """The fields of a body in the shape :func:`encode_body` writes by hand
    (a uint32 transaction id, an ASCII method name under 24 bytes, no payload
    or a byte string, a 32-byte key, a 20-byte id, a uint64 sequence number),
    read without a CBOR decoder; None for any other form, which then goes
    through the full decoder.

    Whatever it accepts, the full decoder reads as the same fields, and
    they pass its checks by their form (tests compare the two): the
    version is 1, the kind a known one, the numbers in range.
    """
    n = len(body)
    if n < 10 + _TAIL_BYTES:
        return None
    array, version, kind, uint32, txid, text = _USUAL_HEAD(body)
    if (
        array != 0x88
        or version != VERSION
        or kind > PROOF
        or uint32 != 0x1A
        or not (0x60 <= text < 0x78)
    ):
        return None
    start = 9 + text - 0x60  # the payload's first byte
    end = n - _TAIL_BYTES  # one past its last
    head = body[start]
    if head == 0xF6:
        if start + 1 != end:
            return None
        payload = None
    elif 0x40 <= head < 0x58:
        if start + 1 + head - 0x40 != end:
            return None
        payload = body[start + 1 : end]
    elif head == 0x58:
        if start + 2 + body[start + 1] != end:
            return None
        payload = body[start + 2 : end]
    else:
        return None
    key_head, sender_key, id_head, sender_id, seq_head, seq = _USUAL_TAIL(body, end)
    if key_head != 0x5820 or id_head != 0x54 or seq_head != 0x1B:
        return None
    method = body[9:start]
    if not method.isascii():
        return None
    return kind, txid, method.decode("ascii"), payload, sender_key, sender_id, seq


def decode(data: bytes, max_size: int = MAX_DATAGRAM) -> Message:
    """Parse and validate a datagram, without checking its authenticator.

    Any input either returns a :class:`Message` or raises :class:`WireError`.
    """
    if len(data) > max_size:
        raise MessageTooLarge(
            "datagram of {} bytes exceeds the limit of {}".format(len(data), max_size)
        )
    try:
        parts = _split(data) if len(data) > 3 + MAC_BYTES else None
        if parts is not None:
            usual = _read_usual_body(parts[0])
            if usual is not None:  # the checks below hold by its form
                if node_id_for(usual[4]) != usual[5]:
                    raise BadNodeId("node id is not the hash of the sender's key")
                return _new_message(Message, (*usual, *parts))
        if parts is None:
            outer = _loads(data, 1)
            if type(outer) is not list or not 2 <= len(outer) <= 3:
                raise MalformedMessage("the envelope is not a two- or three-item array")
            body, auth = outer[0], outer[1]
            if type(body) is not bytes or type(auth) is not bytes:
                raise MalformedMessage("the envelope holds no body and authenticator")
            if len(outer) == 3 and type(outer[2]) is not bytes:
                raise MalformedMessage("the padding is not a byte string")
        else:
            body, auth = parts
        fields = _load_body(body)
    except WireError:
        raise
    except Exception as e:  # cbor2 raises many types on hostile input
        if isinstance(e.__cause__, _TagRefused):
            raise MalformedMessage("CBOR tags are not part of the wire format") from None
        raise MalformedMessage("undecodable CBOR: {}".format(type(e).__name__)) from None
    if type(fields) is not list or len(fields) != 8:
        raise MalformedMessage("the body is not an eight-item array")
    version, kind, txid, method, payload, sender_key, sender_id, seq = fields
    if version != VERSION or type(version) is not int:
        raise MalformedMessage("unsupported version {!r}".format(version))
    if type(kind) is not int or kind not in KINDS:
        raise MalformedMessage("unknown kind")
    if type(txid) is not int or not 0 <= txid < MAX_TXID:
        raise MalformedMessage("bad transaction id")
    if type(method) is not str or len(method) > MAX_METHOD_LENGTH:
        raise MalformedMessage("bad method name")
    if type(seq) is not int or not 0 <= seq < MAX_SEQ:
        raise MalformedMessage("bad sequence number")
    if type(sender_key) is not bytes or len(sender_key) != PUBLIC_KEY_BYTES:
        raise MalformedMessage("bad sender key")
    if type(sender_id) is not bytes or len(sender_id) != ID_BYTES:
        raise MalformedMessage("bad sender id")
    if len(auth) not in (MAC_BYTES, SIGNATURE_BYTES):
        raise MalformedMessage("bad authenticator length")
    if kind != QUERY and len(auth) != MAC_BYTES:
        raise MalformedMessage("replies are authenticated by MAC")
    if type(payload) not in _PLAIN_SCALARS:
        check_plain(payload)
    if node_id_for(sender_key) != sender_id:
        raise BadNodeId("node id is not the hash of the sender's key")
    return _new_message(
        Message, (kind, txid, method, payload, sender_key, sender_id, seq, body, auth)
    )


# Message(...) without the Python-level __new__ a named tuple has.
_new_message = tuple.__new__


class _TagRefused(Exception):
    pass


def _refuse_tag(*_: Any) -> None:
    raise _TagRefused()


#: Every semantic tag cbor2 knows (and the rest of the low range, should a
#: release add one) is refused as soon as it is met, before its value is
#: turned into an object: a regular expression (35) or a MIME message (36)
#: costs a millisecond to build, and none belongs in a datagram.
_NO_SEMANTICS = dict.fromkeys([*range(1100), 55799], _refuse_tag)


def _loads(data: bytes, max_depth: int) -> Any:
    """CBOR of the wire format's types only: no tags, bounded nesting, no
    bytes after the item.

    Unknown tags reach ``tag_hook`` (refused too); the container depth limit
    is checked by the decoder itself, so deep input costs no recursion.
    """
    stream = io.BytesIO(data)
    item = cbor2.CBORDecoder(
        stream, semantic_decoders=_NO_SEMANTICS, tag_hook=_refuse_tag, max_depth=max_depth
    ).decode()
    if stream.tell() != len(data):
        raise MalformedMessage("bytes after the CBOR item")
    return item


_load_body = partial(
    cbor2.loads,
    semantic_decoders=_NO_SEMANTICS,
    tag_hook=_refuse_tag,
    max_depth=MAX_PAYLOAD_DEPTH + 2,
)


def verify(message: Message, session_key: bytes | None) -> None:
    """Check the authenticator: the MAC under ``session_key``, or the signature.

    :raises BadAuthenticator: it does not match.
    """
    if len(message.auth) == SIGNATURE_BYTES:
        try:
            crypto_sign_open(message.auth + _SIGNATURE_CONTEXT + message.body, message.sender_key)
        except (BadSignatureError, ValueError, TypeError) as e:
            raise BadAuthenticator("bad signature") from e
        return
    if session_key is None or not hmac.compare_digest(
        _blake2b(message.body, key=session_key, digest_size=MAC_BYTES).digest(), message.auth
    ):  # mac(), written out: this runs for every datagram
        raise BadAuthenticator("bad MAC")


_PLAIN_SCALARS = frozenset((bytes, str, int, float, bool, type(None)))
_MAP_KEYS = frozenset((str, bytes, int))


def check_plain(value: Any, depth: int = 0) -> None:
    """Accept only plain CBOR data: no tags, no shared references, bounded depth.

    cbor2 turns semantic tags into datetimes, sets, regular expressions and
    even cyclic structures; none of them belongs in a payload.
    """
    if depth > MAX_PAYLOAD_DEPTH:
        raise MalformedMessage("payload nested too deeply")
    t = type(value)
    if t in _PLAIN_SCALARS:
        return
    if t is list:
        items = value
    elif t is dict:
        if not set(map(type, value)) <= _MAP_KEYS:
            raise MalformedMessage("map keys are text, bytes or integers")
        items = value.values()
    else:
        raise MalformedMessage("payload holds a {}".format(t.__name__))
    # The types are collected in C: a long array of numbers costs little.
    if set(map(type, items)) <= _PLAIN_SCALARS:
        return
    for item in items:
        if type(item) not in _PLAIN_SCALARS:
            check_plain(item, depth + 1)


def _pack_ip(host: str) -> bytes:
    # inet_pton is C and an order of magnitude faster than the ipaddress module,
    # which matters for the twenty contacts of every FIND_NODE reply.
    try:
        return socket.inet_pton(socket.AF_INET6 if ":" in host else socket.AF_INET, host)
    except (OSError, ValueError) as e:
        raise MalformedMessage("{!r} is not an IP address".format(host)) from e


@lru_cache(maxsize=4096)
def encode_address(address: Address) -> bytes:
    """An address as packed IP and big-endian port: 6 bytes, or 18 for IPv6."""
    return _pack_ip(address[0]) + address[1].to_bytes(2, "big")


def decode_address(value: Any) -> Address:
    """The address of :func:`encode_address`'s bytes, or MalformedMessage."""
    if type(value) is bytes:
        if len(value) == 6:
            host = socket.inet_ntop(socket.AF_INET, value[:4])
        elif len(value) == 18:
            host = socket.inet_ntop(socket.AF_INET6, value[:16])
        else:
            raise MalformedMessage("an address is 6 or 18 bytes")
        port = int.from_bytes(value[-2:], "big")
        if port:
            return (host, port)
    raise MalformedMessage("bad address")


@lru_cache(maxsize=65536)
def encode_contact(contact: Contact) -> bytes:
    """A contact as public key + :func:`encode_address`: 38 or 50 bytes.

    The node id does not travel: the receiver derives it from the key. One
    byte string per contact keeps a FIND_NODE reply small and cheap to
    encode, check and decode.
    """
    return contact.public_key + encode_address(contact.address)


def encode_contacts(contacts: list[Contact]) -> list[bytes]:
    """Contacts for a payload."""
    return [encode_contact(c) for c in contacts]


@lru_cache(maxsize=65536)
def _decode_contact(value: bytes) -> Contact:
    # The same contacts come back in reply after reply; the bytes are the key.
    if len(value) not in (PUBLIC_KEY_BYTES + 6, PUBLIC_KEY_BYTES + 18):
        raise MalformedMessage("a contact is 38 or 50 bytes")
    return contact_at(value[:PUBLIC_KEY_BYTES], decode_address(value[PUBLIC_KEY_BYTES:]))


def decode_contact(value: Any) -> Contact:
    """The contact of :func:`encode_contact`'s bytes, or MalformedMessage.

    The node id is computed from the key, never taken from the sender.
    """
    if type(value) is not bytes:
        raise MalformedMessage("a contact is a byte string")
    return _decode_contact(value)


def decode_contacts(value: Any, limit: int = 64) -> list[Contact]:
    """A list of contacts from a payload, or MalformedMessage."""
    if type(value) is not list or len(value) > limit:
        raise MalformedMessage("a contact list is an array of at most {}".format(limit))
    return [decode_contact(item) for item in value]


#: The format tag of a saved contact list (:func:`dump_contacts`).
CONTACTS_FORMAT = "dhtkit-contacts-1"


def dump_contacts(contacts: list[Contact]) -> bytes:
    """A list of contacts as bytes for a file: a tag, then compact contacts."""
    return cbor2.dumps([CONTACTS_FORMAT, encode_contacts(contacts)])


def load_contacts(data: bytes, limit: int = 100_000) -> list[Contact]:
    """The contacts of :func:`dump_contacts`'s bytes, or MalformedMessage."""
    try:
        outer = _loads(data, 2)
    except Exception as e:  # cbor2 raises many types on garbage
        raise MalformedMessage("not a saved contact list: {}".format(e)) from None
    if type(outer) is not list or len(outer) != 2 or outer[0] != CONTACTS_FORMAT:
        raise MalformedMessage("not a saved contact list")
    return decode_contacts(outer[1], limit)
