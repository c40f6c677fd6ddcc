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

import functools
import ipaddress
from collections import Counter
from collections.abc import Iterable, Iterator

import attrs

from dhtkit.contact import Address, Contact

#: The default number of contacts per network in a bucket, a replacement
#: cache, or a lookup's result.
MAX_PER_NETWORK = 3


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

    def __attrs_post_init__(self) -> None:
        if self.per_network < 0:
            raise ValueError("per_network must not be negative")
        if not (0 <= self.ipv4_prefix <= 32 and 0 <= self.ipv6_prefix <= 128):
            raise ValueError("prefix lengths are 0-32 (IPv4) and 0-128 (IPv6)")

    def network_of(self, address: Address) -> str | None:
        """The network ``address`` counts against (None: it is not limited)."""
        return _network(address[0], self.ipv4_prefix, self.ipv6_prefix, self.limit_private)

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
        """The first ``count`` of ``contacts`` keeping at most ``per_network`` per network."""
        return list(self._diverse(contacts, count))

    def _diverse(self, contacts: Iterable[Contact], count: int) -> Iterator[Contact]:
        taken: Counter[str] = Counter()
        given = 0
        for contact in contacts:
            if given >= count:
                return
            if self.per_network:
                network = self.network_of(contact.address)
                if network is not None:
                    if taken[network] >= self.per_network:
                        continue
                    taken[network] += 1
            given += 1
            yield contact


@functools.lru_cache(maxsize=4096)
def _network(host: str, ipv4_prefix: int, ipv6_prefix: int, limit_private: bool) -> str | None:
    # Cached: lookups ask for every candidate at every step, and hosts recur.
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
