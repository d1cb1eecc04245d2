"""The hub's durable buffer and outbox. See buffer.py for what "committed" means."""

from hub.store.buffer import Store, StoreLimits, StoreStatus, StoreWriteError, inspect
from hub.store.groupcommit import GroupCommitter
from hub.store.quota import PruneReport
from hub.store.recovery import StoreOpenError

__all__ = [
    "GroupCommitter",
    "PruneReport",
    "Store",
    "StoreLimits",
    "StoreOpenError",
    "StoreStatus",
    "StoreWriteError",
    "inspect",
]
