"""Whether a simulation fits in memory, asked before it starts.

Every simulated node is a real protocol stack (an identity, an RPC layer
with its sessions, the protocol's state), tens of kilobytes each; a size
typed with one zero too many would otherwise run until the operating system
kills the process. The figures per node are measured (see ``benchmarks/``).
"""

from __future__ import annotations

from pathlib import Path

GIB = 1 << 30

#: Peak bytes per node of a gossip simulation: 3.5 GB at 100,000 nodes
#: (``dhtkit sim gossip --nodes 100000``, maximum resident set), rounded up.
GOSSIP_BYTES_PER_NODE = 38_000
# An overlay simulation's bytes per node is its registry entry's
# ``bytes_per_node`` (dhtkit.overlays): each node keeps sessions with the
# hundreds of peers its lookups met.


def available_memory(meminfo: str = "/proc/meminfo") -> int | None:
    """Bytes of memory the system can give without swapping; None if unknown.

    Linux reports it as ``MemAvailable``; elsewhere there is no such figure
    and no check is made.
    """
    try:
        text = Path(meminfo).read_text()
    except OSError:
        return None
    for line in text.splitlines():
        name, _, rest = line.partition(":")
        if name == "MemAvailable":
            fields = rest.split()
            if fields and fields[0].isdigit():
                return int(fields[0]) * 1024
    return None


def check_fits(nodes: int, bytes_per_node: int, available: int | None) -> None:
    """Raise ValueError, saying what it needs, if ``nodes`` nodes would not fit.

    :param available: bytes free (:func:`available_memory`); None skips the check.
    """
    needed = nodes * bytes_per_node
    if available is not None and needed > available:
        raise ValueError(
            "{:,} nodes need about {:.1f} GiB of memory and {:.1f} GiB is available".format(
                nodes, needed / GIB, available / GIB
            )
        )
