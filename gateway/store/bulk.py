"""The store's large batches as plain SQL handed to the driver in one call.

Why: through SQLAlchemy Core every row of a batch costs a parameter set built by the compiler
and a DecimalText/UtcMicros processor call per value, which is most of a group commit's time.
Here the rows arrive as tuples already encoded by records.py (`fill_row`, `child_row`, ...),
and `AsyncConnection.exec_driver_sql` passes them through untouched to the driver's
executemany, inside the connection's transaction (for asyncpg, SQLAlchemy's adapter begins it
before the first statement, as for any other).

The dialects differ only in placeholders (SQLite `?`, asyncpg `$1..$n`), so both live here.
On PostgreSQL, one UPDATE joined to the children sent as arrays (unnest) was measured against
the executemany of one-row UPDATEs used here and was no faster (asyncpg pipelines executemany),
nor was an INSERT from unnest arrays.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import Table
from sqlalchemy.engine import Dialect
from sqlalchemy.ext.asyncio import AsyncConnection

from gateway.store import records, tables

_statements: dict[tuple[str, ...], str] = {}


def _placeholders(dialect: Dialect, count: int) -> str:
    if dialect.paramstyle == "qmark":
        return ", ".join("?" * count)
    if dialect.paramstyle == "numeric_dollar":
        return ", ".join(f"${n}" for n in range(1, count + 1))
    # The URL check (engines.create_engine) admits only these two drivers.
    raise ValueError(f"unsupported driver paramstyle {dialect.paramstyle!r}")


def _insert_sql(dialect: Dialect, table: Table, columns: Sequence[str]) -> str:
    key = (dialect.name, f"insert {table.name}", *columns)
    sql = _statements.get(key)
    if sql is None:
        quote = dialect.identifier_preparer.quote
        sql = (
            f"INSERT INTO {quote(table.name)} ({', '.join(quote(c) for c in columns)}) "
            f"VALUES ({_placeholders(dialect, len(columns))})"
        )
        _statements[key] = sql
    return sql


async def insert_rows(
    conn: AsyncConnection, table: Table, columns: Sequence[str], rows: Sequence[tuple[Any, ...]]
) -> None:
    """INSERTs `rows` (tuples in the order of `columns`) in one executemany."""
    if rows:
        await conn.exec_driver_sql(_insert_sql(conn.dialect, table, columns), list(rows))


def _update_children_sql(dialect: Dialect) -> str:
    key = (dialect.name, "update child_orders")
    sql = _statements.get(key)
    if sql is None:
        quote = dialect.identifier_preparer.quote
        *changed, key_column = records.CHILD_UPDATE_COLUMNS
        placeholders = _placeholders(dialect, len(records.CHILD_UPDATE_COLUMNS)).split(", ")
        sql = (
            f"UPDATE {quote(tables.child_orders.name)} SET "
            + ", ".join(f"{quote(c)} = {p}" for c, p in zip(changed, placeholders, strict=False))
            + f" WHERE {quote(key_column)} = {placeholders[-1]}"
        )
        _statements[key] = sql
    return sql


async def update_children(conn: AsyncConnection, rows: Sequence[tuple[Any, ...]]) -> None:
    """UPDATEs child orders from rows of records.CHILD_UPDATE_COLUMNS (the key last), one
    executemany: a child given twice ends as its last row."""
    if rows:
        await conn.exec_driver_sql(_update_children_sql(conn.dialect), list(rows))
