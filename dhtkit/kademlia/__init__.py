"""Kademlia: the XOR metric, k-buckets and iterative lookups."""

from dhtkit.kademlia.diversity import NetworkLimit
from dhtkit.kademlia.overlay import KademliaOverlay
from dhtkit.kademlia.table import RoutingTable

__all__ = ["KademliaOverlay", "NetworkLimit", "RoutingTable"]
