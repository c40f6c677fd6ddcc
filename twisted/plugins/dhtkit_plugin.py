"""The ``twistd dhtkit`` plugin: its options and service live in :mod:`dhtkit.tap`."""

from twisted.application.service import ServiceMaker

dhtkit = ServiceMaker(
    "dhtkit", "dhtkit.tap", "a dhtkit DHT node (Kademlia, Chord or Pastry) with its HTTP API", "dhtkit"
)
