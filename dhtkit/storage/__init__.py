"""Value stores: the interface, a memory store and the SQLite store."""

from dhtkit.storage.interface import SELF, IValueStore, Quota, StorageError, StoredRecord
from dhtkit.storage.memory import MemoryStore
from dhtkit.storage.sqlite import SQLiteStore

__all__ = [
    "SELF",
    "IValueStore",
    "MemoryStore",
    "Quota",
    "SQLiteStore",
    "StorageError",
    "StoredRecord",
]
