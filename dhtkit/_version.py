"""dhtkit's version: one place, read by the package metadata and ``--version``."""

__version__ = "0.1.0"
