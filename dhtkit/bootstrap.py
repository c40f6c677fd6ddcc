"""Bootstrap addresses: ``HOST:PORT`` text, host names, and their resolution at each join.

Nodes find a network through a few well-known nodes, often named in DNS
rather than by address. A name is kept as given and resolved each time the
node joins (a restarted or moved bootstrap node keeps its name, not its
address); a name that does not resolve is skipped with a warning, so the
other bootstrap nodes and the saved contacts still serve.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

from twisted.internet import defer
from twisted.logger import Logger

from dhtkit.contact import Address, normalize_address

_log = Logger()

#: A DNS name: dot-separated labels of letters, digits and inner hyphens.
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_NAME = re.compile(r"(?=.{{1,253}}$){0}(?:\.{0})*\.?".format(_LABEL))


def check_bootstrap(address: tuple[str, int]) -> Address:
    """``(host, port)`` with an IP address made canonical, or a host name lower-cased.

    :raises ValueError: the host is neither an IP address nor a host name,
        or the port is not in 1-65535.
    """
    host, port = address
    try:
        return normalize_address((host, port))
    except ValueError:
        if not isinstance(host, str) or ":" in host or not _NAME.fullmatch(host):
            raise
        if type(port) is not int or not 0 < port < 65536:
            raise
        return (host.lower().rstrip("."), port)


def parse_bootstrap(text: str) -> Address:
    """``HOST:PORT`` (an IPv6 address in brackets, as ``[::1]:4000``) as a checked pair.

    :raises ValueError: with a sentence that says what to write.
    """
    host, sep, port = text.rpartition(":")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    elif ":" in host:
        raise ValueError("write an IPv6 address in brackets, as [::1]:4000")
    if not sep or not host or not port.isdigit():
        raise ValueError("give HOST:PORT, as 10.0.0.1:4000 or node.example.org:4000")
    try:
        return check_bootstrap((host, int(port)))
    except ValueError:
        raise ValueError(
            "the host must be an IP address or a host name, and the port 1-65535"
        ) from None


def is_name(address: Address) -> bool:
    """Whether ``address`` names its host rather than giving its IP address."""
    try:
        normalize_address(address)
    except ValueError:
        return True
    return False


async def _resolve_one(reactor: Any, address: Address) -> Address | None:
    host, port = address
    try:
        ip = await reactor.resolve(host)
    except Exception as e:  # any resolver failure: this name is no help now
        _log.warn("cannot resolve bootstrap host {host}: {error}", host=host, error=str(e))
        return None
    return normalize_address((ip, port))


def resolve(reactor: Any, addresses: Iterable[Address]) -> defer.Deferred[list[Address]]:
    """``addresses`` with every host name resolved by ``reactor`` (IPv4), in order.

    A name that does not resolve is left out, with a warning.
    """

    async def resolve_all() -> list[Address]:
        resolved: list[Address] = []
        for address in addresses:
            found = await _resolve_one(reactor, address) if is_name(address) else address
            if found is not None:
                resolved.append(found)
        return resolved

    return defer.Deferred.fromCoroutine(resolve_all())
