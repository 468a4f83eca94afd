"""Durable state on SQLAlchemy 2 async: SQLite (aiosqlite, WAL) embedded, PostgreSQL by URL."""

from gateway.store.history import AccountHistory
from gateway.store.store import DuplicateClientOrderId, FillFilter, Store

__all__ = ["AccountHistory", "DuplicateClientOrderId", "FillFilter", "Store"]
