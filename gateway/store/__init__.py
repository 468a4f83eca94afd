"""Durable state on SQLAlchemy 2 async: SQLite (aiosqlite, WAL) embedded, PostgreSQL by URL."""

from gateway.store.history import AccountHistory
from gateway.store.store import (
    AccountInUse,
    CommittedFill,
    DuplicateClientOrderId,
    FillEncoder,
    FillFilter,
    Store,
    UnfinishedChild,
)

__all__ = [
    "AccountHistory",
    "AccountInUse",
    "CommittedFill",
    "DuplicateClientOrderId",
    "FillEncoder",
    "FillFilter",
    "Store",
    "UnfinishedChild",
]
