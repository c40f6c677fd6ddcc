"""Value stores: the interface, a memory store and the SQLite store."""

from dhtkit.storage.interface import SELF, IValueStore, Quota, StorageError, StoredRecord
from dhtkit.storage.memory import MemoryStore

__all__ = ["SELF", "IValueStore", "MemoryStore", "Quota", "StorageError", "StoredRecord"]
