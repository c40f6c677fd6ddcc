"""The 160-bit id space shared by node ids and keys.

Kademlia measures it with XOR, Chord reads it as a ring, Pastry as a string of
base-16 digits; the arithmetic for all three lives here.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable

ID_BITS = 160
ID_BYTES = ID_BITS // 8
RING_SIZE = 1 << ID_BITS
DIGIT_BITS = 4
DIGITS = ID_BITS // DIGIT_BITS


def key_for(name: str | bytes) -> bytes:
    """The key of a name: BLAKE2b-160 of its bytes (UTF-8 for text).

    This is the public name-to-key rule (``/v1/values/{name}``, ``dhtkit put
    NAME``) and stays unpersonalised. Keys derived from anything else, such
    as an immutable value's content or a signed value's public key and salt,
    use :func:`domain_key` with their own domain, so that no name can be
    made to collide with them, nor they with a name.
    """
    if isinstance(name, str):
        name = name.encode("utf-8")
    elif not isinstance(name, bytes):
        raise TypeError("a name is str or bytes, not {}".format(type(name).__name__))
    return hashlib.blake2b(name, digest_size=ID_BYTES).digest()


#: BLAKE2b personalisations (at most 16 bytes each) of the derived keys.
IMMUTABLE_DOMAIN = b"dhtkit:immut:v1"
SIGNED_DOMAIN = b"dhtkit:signed:v1"


def domain_key(domain: bytes, data: bytes) -> bytes:
    """BLAKE2b-160 of ``data`` personalised with ``domain``.

    Two domains never share a key unless BLAKE2b collides, and no domain
    shares one with :func:`key_for` (which uses no personalisation).
    """
    if not isinstance(data, bytes):
        raise TypeError("key material is bytes, not {}".format(type(data).__name__))
    return hashlib.blake2b(data, digest_size=ID_BYTES, person=domain).digest()


def check_id(value: bytes) -> bytes:
    """Return ``value`` if it is a 160-bit id, else raise ValueError."""
    if not isinstance(value, bytes) or len(value) != ID_BYTES:
        raise ValueError("an id is {} bytes".format(ID_BYTES))
    return value


def to_int(value: bytes) -> int:
    """An id as a non-negative integer (big-endian)."""
    return int.from_bytes(value, "big")


def from_int(value: int) -> bytes:
    """The id of an integer in [0, 2**160)."""
    return value.to_bytes(ID_BYTES, "big")


def distance(a: bytes, b: bytes) -> int:
    """Kademlia's XOR distance between two ids."""
    return int.from_bytes(a, "big") ^ int.from_bytes(b, "big")


def bucket_index(a: bytes, b: bytes) -> int:
    """The index of the highest differing bit (0..159), -1 for equal ids.

    Contacts at distance in [2**i, 2**(i+1)) share bucket i.
    """
    return distance(a, b).bit_length() - 1


def ring_add(a: bytes, offset: int) -> bytes:
    """``a + offset`` on the ring of size 2**160."""
    return from_int((to_int(a) + offset) % RING_SIZE)


def ring_distance(a: bytes, b: bytes) -> int:
    """Clockwise distance from ``a`` to ``b`` on the ring."""
    return (to_int(b) - to_int(a)) % RING_SIZE


def in_interval(
    x: bytes, start: bytes, end: bytes, *, include_start: bool = False, include_end: bool = False
) -> bool:
    """Whether ``x`` lies in the clockwise interval from ``start`` to ``end``.

    The interval wraps around zero when ``end`` precedes ``start``.
    ``start == end`` means the whole ring except the boundary (Chord's
    convention for a one-node ring), with the boundary included if either end
    is inclusive.
    """
    xi, si, ei = to_int(x), to_int(start), to_int(end)
    if si == ei:
        return xi != si or include_start or include_end
    offset = (xi - si) % RING_SIZE
    span = (ei - si) % RING_SIZE
    if offset == 0:
        return include_start
    if offset == span:
        return include_end
    return offset < span


def digit(value: bytes, index: int) -> int:
    """The ``index``-th base-16 digit of an id, most significant first."""
    byte = value[index >> 1]
    return byte >> 4 if index % 2 == 0 else byte & 0x0F


def digits(value: bytes) -> list[int]:
    """All 40 base-16 digits of an id, most significant first."""
    out = []
    for byte in value:
        out.append(byte >> 4)
        out.append(byte & 0x0F)
    return out


def shared_prefix_length(a: bytes, b: bytes) -> int:
    """How many leading base-16 digits two ids share (40 when equal)."""
    d = distance(a, b)
    if d == 0:
        return DIGITS
    return (ID_BITS - d.bit_length()) // DIGIT_BITS


def circular_distance(a: bytes, b: bytes) -> int:
    """Pastry's numeric distance: the shorter way round the ring between two ids."""
    return circular_gap(to_int(a), to_int(b))


def circular_gap(a: int, b: int) -> int:
    """:func:`circular_distance` between two ids read as integers."""
    clockwise = (b - a) % RING_SIZE
    return min(clockwise, RING_SIZE - clockwise)


def numerically_closest_first(key: bytes) -> Callable[[bytes], tuple[int, bytes]]:
    """A sort key over ids: the numerically closest to ``key`` first (lower id on a tie)."""
    return lambda node_id: (circular_distance(node_id, key), node_id)
