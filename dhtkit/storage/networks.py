"""Who pays for a stored record: the source network of the peer that sent it.

A signing key or a node id costs nothing to make, so a quota keyed on
either is no bound at all. What an attacker cannot make for free is
addresses in many networks, so every record a peer stores is charged to
the network its ``store`` came from, whatever key signed the record:

- a public IPv4 address: its /24 (``net:198.51.100.0/24``);
- any IPv6 address (a host holds a whole /64 for free): its /64;
- a private IPv4 address (10/8, 172.16/12, 192.168/16, 169.254/16): the
  address itself, since the hosts of one LAN or one test bed share a /24
  and a LAN is not where strangers come from;
- loopback (127/8, ::1): the address and the port, since every node of one
  machine shares the address; whoever runs processes on the machine is
  already trusted with it;
- anything that is not an IP address (a name in a test): the host as given.

An IPv4 address mapped into IPv6 (``::ffff:a.b.c.d``) counts as IPv4.
Records this node published itself are charged to no one (:data:`SELF`).
"""

from __future__ import annotations

import functools
import ipaddress

from dhtkit.storage.interface import SELF

#: IPv4 ranges charged per address rather than per /24.
PRIVATE_IPV4 = tuple(
    ipaddress.IPv4Network(net)
    for net in ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "169.254.0.0/16")
)
#: The prefix lengths public addresses are grouped by.
IPV4_PREFIX = 24
IPV6_PREFIX = 64


# Every store asks, and peers recur: the latest answers are remembered
# (a bounded number, so a flood of new addresses costs parsing, not memory).
@functools.lru_cache(maxsize=1 << 12)
def source_network(host: str, port: int) -> str:
    """The publisher name that a ``store`` from ``(host, port)`` is charged to."""
    try:
        address = ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return "host:" + host
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    if address.is_loopback:
        shown = str(address) if address.version == 4 else "[{}]".format(address)
        return "net:{}:{}".format(shown, port)
    if isinstance(address, ipaddress.IPv4Address):
        if any(address in net for net in PRIVATE_IPV4):
            return "net:{}".format(address)
        return "net:{}".format(ipaddress.IPv4Network((address, IPV4_PREFIX), strict=False))
    return "net:{}".format(ipaddress.IPv6Network((address, IPV6_PREFIX), strict=False))


__all__ = ["IPV4_PREFIX", "IPV6_PREFIX", "PRIVATE_IPV4", "SELF", "source_network"]
