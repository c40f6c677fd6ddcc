"""Which network an address belongs to, for limits against Sybil floods.

One host (or one hosting provider) can mint identities for free, but not
networks: an IPv4 /24 or an IPv6 /64 is what one attacker typically holds.
The routing table and the lookups keep at most a few contacts per network,
so that hundreds of identities from one network take a few places, not the
whole table.

Loopback addresses are never limited: every node of a test or of a
one-machine deployment lives on 127.0.0.1, and a node on the same machine
is trusted as much as the machine. Private and link-local ranges (10/8,
192.168/16, fc00::/7, ...) are not limited either unless ``limit_private``
is set, because a LAN deployment (or the simulator, which puts up to 250
nodes in each 10.x.y.0/24) would otherwise be cut to a few contacts per
subnet.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable

import attrs

from dhtkit.contact import Address, Contact

#: The default number of contacts per network in a bucket, a replacement
#: cache, or a lookup's result.
MAX_PER_NETWORK = 3

#: The most hosts whose network is remembered, per choice of prefixes; a
#: full memory starts afresh (so a flood of new addresses costs parsing
#: them again, never memory).
MAX_HOSTS = 1 << 16

# The hosts' networks, shared by every limit with the same prefixes: lookups
# ask for every candidate at every step, and hosts recur.
_memories: dict[tuple[int, int, bool], dict[str, str | None]] = {}


@attrs.frozen
class NetworkLimit:
    """At most ``per_network`` contacts of one network (0: no limit).

    :param ipv4_prefix: the length of an IPv4 network (24).
    :param ipv6_prefix: the length of an IPv6 network (64).
    :param limit_private: also group private and link-local addresses by
        network (they are counted per address and port by default).
    """

    per_network: int = MAX_PER_NETWORK
    ipv4_prefix: int = 24
    ipv6_prefix: int = 64
    limit_private: bool = False

    _hosts: dict[str, str | None] = attrs.field(init=False, repr=False, eq=False, hash=False)

    def __attrs_post_init__(self) -> None:
        if self.per_network < 0:
            raise ValueError("per_network must not be negative")
        if not (0 <= self.ipv4_prefix <= 32 and 0 <= self.ipv6_prefix <= 128):
            raise ValueError("prefix lengths are 0-32 (IPv4) and 0-128 (IPv6)")
        prefixes = (self.ipv4_prefix, self.ipv6_prefix, self.limit_private)
        object.__setattr__(self, "_hosts", _memories.setdefault(prefixes, {}))

    def network_of(self, address: Address) -> str | None:
        """The network ``address`` counts against (None: it is not limited)."""
        host = address[0]
        hosts = self._hosts
        try:
            return hosts[host]
        except KeyError:
            pass
        network = _network(host, self.ipv4_prefix, self.ipv6_prefix, self.limit_private)
        if len(hosts) >= MAX_HOSTS:
            hosts.clear()
        hosts[host] = network
        return network

    def allows(self, contact: Contact, others: Iterable[Contact]) -> bool:
        """Whether ``contact`` may join ``others`` (which it is not among)."""
        if self.per_network == 0:
            return True
        network = self.network_of(contact.address)
        if network is None:
            return True
        count = 0
        for other in others:
            if other.node_id != contact.node_id and self.network_of(other.address) == network:
                count += 1
                if count >= self.per_network:
                    return False
        return True

    def select(self, contacts: Iterable[Contact], count: int) -> list[Contact]:
        """The first ``count`` of ``contacts`` keeping at most ``per_network`` per network.

        ``contacts`` is read no further than the last contact chosen.
        """
        selection = Selection(self, count)
        selection.offer(contacts)
        return selection.chosen


class Selection:
    """What :meth:`NetworkLimit.select` picks, built as contacts come.

    After offering contacts in several batches, :attr:`chosen` is what
    ``select`` would return for all of them in one list: the first
    ``count``, keeping at most ``per_network`` per network.
    """

    __slots__ = ("_count", "_limit", "_taken", "chosen")

    def __init__(self, limit: NetworkLimit, count: int) -> None:
        self._limit = limit
        self._count = count
        self._taken: dict[str, int] = {}
        #: The contacts picked so far, in the order offered.
        self.chosen: list[Contact] = []

    def is_full(self) -> bool:
        """Whether ``count`` contacts are chosen (nothing more is taken)."""
        return len(self.chosen) >= self._count

    def offer(self, contacts: Iterable[Contact]) -> None:
        """Consider ``contacts`` in order, until ``count`` are chosen."""
        chosen = self.chosen
        count = self._count
        if len(chosen) >= count:
            return
        per_network = self._limit.per_network
        if not per_network:
            for contact in contacts:
                chosen.append(contact)
                if len(chosen) >= count:
                    return
            return
        network_of = self._limit.network_of
        hosts = self._limit._hosts
        taken = self._taken
        for contact in contacts:
            address = contact.address
            try:
                network = hosts[address[0]]  # network_of(address), when remembered
            except KeyError:
                network = network_of(address)
            if network is not None:
                held = taken.get(network, 0)
                if held >= per_network:
                    continue
                taken[network] = held + 1
            chosen.append(contact)
            if len(chosen) >= count:
                return


def _network(host: str, ipv4_prefix: int, ipv6_prefix: int, limit_private: bool) -> str | None:
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return None  # not an IP literal: contacts always carry one
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    if ip.is_loopback or (not limit_private and (ip.is_private or ip.is_link_local)):
        return None
    prefix = ipv4_prefix if ip.version == 4 else ipv6_prefix
    return str(ipaddress.ip_network((ip, prefix), strict=False))


#: No limit at all (what the table did before the limits existed).
UNLIMITED = NetworkLimit(per_network=0)
