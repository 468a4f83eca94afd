"""Durable state on SQLAlchemy 2 async: SQLite (aiosqlite, WAL) embedded, PostgreSQL by URL."""

from gateway.store.store import FillFilter, Store

__all__ = ["FillFilter", "Store"]
