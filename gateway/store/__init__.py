"""Durable state on SQLAlchemy 2 async: SQLite (aiosqlite, WAL) embedded, PostgreSQL by URL."""

from gateway.store.store import DuplicateClientOrderId, FillFilter, Store

__all__ = ["DuplicateClientOrderId", "FillFilter", "Store"]
