"""Ids read as strings of base-2^b digits, as Pastry routes on them.

A 160-bit id is ``160 / b`` digits of ``b`` bits each, most significant
first (40 hexadecimal digits for the default ``b = 4``). Two ids share a
prefix of ``p`` digits when their first ``p`` digits are equal; a Pastry
routing table has one row per prefix length and one column per digit.
"""

from __future__ import annotations

import attrs

from dhtkit.keyspace import ID_BITS, distance, to_int

#: The digit sizes that divide 160 and keep a table row within one datagram.
DIGIT_BITS_ALLOWED = (1, 2, 4)


@attrs.frozen
class Digits:
    """The digit arithmetic for one digit size ``bits`` (Pastry's ``b``)."""

    bits: int = 4

    def __attrs_post_init__(self) -> None:
        if self.bits not in DIGIT_BITS_ALLOWED:
            raise ValueError("digit_bits is one of {}".format(DIGIT_BITS_ALLOWED))

    @property
    def count(self) -> int:
        """How many digits an id has (the rows of a routing table)."""
        return ID_BITS // self.bits

    @property
    def base(self) -> int:
        """How many values a digit takes (the columns of a routing table)."""
        return 1 << self.bits

    def digit(self, value: bytes, index: int) -> int:
        """The ``index``-th digit of ``value``, most significant first."""
        if not 0 <= index < self.count:
            raise IndexError("digit {} of {}".format(index, self.count))
        shift = ID_BITS - self.bits * (index + 1)
        return (to_int(value) >> shift) & (self.base - 1)

    def digits(self, value: bytes) -> list[int]:
        """Every digit of ``value``, most significant first."""
        return [self.digit(value, i) for i in range(self.count)]

    def prefix(self, a: bytes, b: bytes) -> int:
        """How many leading digits ``a`` and ``b`` share (``count`` when equal)."""
        d = distance(a, b)
        if d == 0:
            return self.count
        return (ID_BITS - d.bit_length()) // self.bits
