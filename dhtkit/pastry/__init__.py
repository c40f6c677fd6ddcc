"""Pastry: prefix routing on base-2^b digits, leaf sets, proximity (Rowstron and Druschel).

:class:`PastryOverlay` is what services and simulations build; the pieces
are public for tests and tools.
"""

from dhtkit.pastry.digits import Digits
from dhtkit.pastry.leafset import LeafSet
from dhtkit.pastry.lookup import LookupFailed, RouteSearch
from dhtkit.pastry.overlay import PastryOverlay
from dhtkit.pastry.routing import Route, makes_progress, route
from dhtkit.pastry.state import PastryState
from dhtkit.pastry.table import RoutingTable

__all__ = [
    "Digits",
    "LeafSet",
    "LookupFailed",
    "PastryOverlay",
    "PastryState",
    "Route",
    "RouteSearch",
    "RoutingTable",
    "makes_progress",
    "route",
]
