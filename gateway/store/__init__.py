"""Durable state on SQLAlchemy 2 async: SQLite (aiosqlite, WAL) embedded, PostgreSQL by URL."""

from gateway.store.history import AccountHistory
from gateway.store.store import (
    CommittedFill,
    DuplicateClientOrderId,
    FillEncoder,
    FillFilter,
    Store,
)

__all__ = [
    "AccountHistory",
    "CommittedFill",
    "DuplicateClientOrderId",
    "FillEncoder",
    "FillFilter",
    "Store",
]
