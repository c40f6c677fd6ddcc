"""Contacts: a node's id, its public key and where it listens."""

from __future__ import annotations

import socket
from functools import lru_cache

import attrs

from dhtkit.identity import node_id_for

Address = tuple[str, int]


def normalize_address(address: tuple[str, int]) -> Address:
    """``(host, port)`` with the host in the canonical form sockets report.

    :raises ValueError: the host is not an IP literal or the port is out of range.
    """
    try:
        host, port = address
    except (TypeError, ValueError):
        raise ValueError("an address is a (host, port) pair, not {!r}".format(address)) from None
    if not isinstance(host, str) or type(port) is not int or not 0 < port < 65536:
        raise ValueError("{!r} is not a (host, port) pair with a port in 1-65535".format(address))
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    try:
        return (socket.inet_ntop(family, socket.inet_pton(family, host)), port)
    except OSError:
        raise ValueError("{!r} is not an IP address".format(host)) from None


def _to_address(value: tuple[str, int]) -> Address:
    if type(value) is tuple and len(value) == 2 and type(value[0]) is str and type(value[1]) is int:
        return value  # already one: shared, not copied
    return (str(value[0]), int(value[1]))


@attrs.frozen(slots=True, cache_hash=True)
class Contact:
    """A peer as the routing tables know it.

    ``node_id`` is always the hash of ``public_key``: build contacts with
    :meth:`from_key`, which derives it, so a contact can never carry an id
    its key does not prove.
    """

    node_id: bytes
    public_key: bytes
    address: Address = attrs.field(converter=_to_address)
    #: ``node_id`` as a big-endian integer, for XOR and ring distances:
    #: derived once per contact (contacts are shared, see :func:`contact_at`)
    #: rather than at every comparison.
    number: int = attrs.field(
        init=False,
        eq=False,
        repr=False,
        default=attrs.Factory(lambda self: int.from_bytes(self.node_id, "big"), takes_self=True),
    )

    @classmethod
    def from_key(cls, public_key: bytes, address: Address) -> Contact:
        """The contact for ``public_key`` listening at ``address``."""
        return cls(node_id_for(public_key), public_key, address)

    def __repr__(self) -> str:
        return "Contact({}, {}:{})".format(self.node_id.hex()[:12], *self.address)


#: Peers whose key and contact :func:`shared_key` and :func:`contact_at` keep.
SHARED_CONTACTS = 65536


@lru_cache(maxsize=SHARED_CONTACTS)
def shared_key(public_key: bytes) -> bytes:
    """``public_key`` as the first equal byte string this process kept.

    Every datagram and every contact in an answer brings its own copy of a
    peer's key; the sessions and routing tables that keep it share one
    instead (the nodes of a simulation all live in one process, and each
    meets the same peers).
    """
    return public_key


def contact_at(public_key: bytes, address: Address) -> Contact:
    """The contact for ``public_key`` at ``address``, shared: the same
    object for the same key and address, however many sessions, answers and
    routing tables of this process name it (up to :data:`SHARED_CONTACTS`).

    :param address: a normalised one (:func:`normalize_address`), as sockets
        and the wire give.
    """
    return _contact_at(shared_key(public_key), address)


@lru_cache(maxsize=SHARED_CONTACTS)
def _contact_at(public_key: bytes, address: Address) -> Contact:
    return Contact.from_key(public_key, address)
