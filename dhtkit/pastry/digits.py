"""Ids read as strings of base-2^b digits, as Pastry routes on them.

A 160-bit id is ``160 / b`` digits of ``b`` bits each, most significant
first (40 hexadecimal digits for the default ``b = 4``). Two ids share a
prefix of ``p`` digits when their first ``p`` digits are equal; a Pastry
routing table has one row per prefix length and one column per digit.
"""

from __future__ import annotations

import attrs

from dhtkit.keyspace import ID_BITS, to_int

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

    def place(self, own: int, other: int) -> tuple[int, int] | None:
        """Where ``other`` goes in the routing table of ``own`` (both ids
        read as integers): the digits they share, and ``other``'s digit
        after them; None when they are equal."""
        row = self.shared(own, other)
        if row == self.count:
            return None
        return row, (other >> (ID_BITS - self.bits * (row + 1))) & ((1 << self.bits) - 1)

    def prefix(self, a: bytes, b: bytes) -> int:
        """How many leading digits ``a`` and ``b`` share (``count`` when equal)."""
        return self.shared(to_int(a), to_int(b))

    def shared(self, a: int, b: int) -> int:
        """:meth:`prefix` of two ids read as integers."""
        d = a ^ b
        if d == 0:
            return self.count
        return (ID_BITS - d.bit_length()) // self.bits
