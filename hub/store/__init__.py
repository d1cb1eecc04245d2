"""The hub's durable buffer and outbox. See buffer.py for what "committed" means."""

from hub.store.buffer import Store, StoreLimits, StoreStatus, StoreWriteError, inspect
from hub.store.groupcommit import GroupCommitter
from hub.store.quota import PruneReport

__all__ = [
    "GroupCommitter",
    "PruneReport",
    "Store",
    "StoreLimits",
    "StoreStatus",
    "StoreWriteError",
    "inspect",
]
