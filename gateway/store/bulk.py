"""The store's large batches as plain SQL handed to the driver in one call.

Why: through SQLAlchemy Core every row of a batch costs a parameter set built by the compiler
and a DecimalText/UtcMicros processor call per value, which is most of a group commit's time.
Here the rows arrive as tuples already encoded by records.py (`fill_row`, `child_row`, ...),
and `AsyncConnection.exec_driver_sql` passes them through untouched to the driver's
executemany, inside the connection's transaction (for asyncpg, SQLAlchemy's adapter begins it
before the first statement, as for any other).

The one large read, a replay's pages of encoded fills (`fill_messages`), goes to the driver's
cursor the same way and takes its rows as the driver returns them: a Row object per row, built
by SQLAlchemy's result, cost as much as the rest of the read (measured on SQLite, 200,000 rows in
pages of 5,000: about 250,000 rows/s through Core or exec_driver_sql, 500,000 from the cursor).

The dialects differ only in placeholders (SQLite `?`, asyncpg `$1..$n`), so both live here.
On PostgreSQL, one UPDATE joined to the children sent as arrays (unnest) was measured against
the executemany of one-row UPDATEs used here and was no faster (asyncpg pipelines executemany),
nor was an INSERT from unnest arrays.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import Table
from sqlalchemy.engine import Connection, Dialect
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


def _update_sql(dialect: Dialect, table: Table, columns: Sequence[str]) -> str:
    """UPDATE table SET columns[:-1] WHERE columns[-1] (the key)."""
    key = (dialect.name, f"update {table.name}", *columns)
    sql = _statements.get(key)
    if sql is None:
        quote = dialect.identifier_preparer.quote
        *changed, key_column = columns
        placeholders = _placeholders(dialect, len(columns)).split(", ")
        sql = (
            f"UPDATE {quote(table.name)} SET "
            + ", ".join(f"{quote(c)} = {p}" for c, p in zip(changed, placeholders, strict=False))
            + f" WHERE {quote(key_column)} = {placeholders[-1]}"
        )
        _statements[key] = sql
    return sql


async def update_rows(
    conn: AsyncConnection, table: Table, columns: Sequence[str], rows: Sequence[tuple[Any, ...]]
) -> None:
    """UPDATEs rows of `table` from tuples in the order of `columns`, the key column last, in
    one executemany: a key given twice ends as its last row."""
    if rows:
        await conn.exec_driver_sql(_update_sql(conn.dialect, table, columns), list(rows))


async def update_children(conn: AsyncConnection, rows: Sequence[tuple[Any, ...]]) -> None:
    """UPDATEs child orders from rows of records.CHILD_UPDATE_COLUMNS (the key last)."""
    await update_rows(conn, tables.child_orders, records.CHILD_UPDATE_COLUMNS, rows)


def _fill_messages_sql(dialect: Dialect, accounts: int, master_order: bool) -> str:
    key = (dialect.name, "fill messages", str(accounts), str(master_order))
    sql = _statements.get(key)
    if sql is None:
        quote = dialect.identifier_preparer.quote
        count = 2 + accounts + int(master_order)
        placeholders = _placeholders(dialect, count).split(", ")
        after, *ids = placeholders[: 1 + accounts]
        conditions = [f"{quote('sequence')} > {after}"]
        if accounts:
            conditions.append(f"{quote('account_id')} IN ({', '.join(ids)})")
        if master_order:
            conditions.append(f"{quote('master_order_id')} = {placeholders[-2]}")
        sql = (
            f"SELECT {quote('sequence')}, {quote('wire')} FROM {quote(tables.fills.name)} "
            f"WHERE {' AND '.join(conditions)} ORDER BY {quote('sequence')} "
            f"LIMIT {placeholders[-1]}"
        )
        _statements[key] = sql
    return sql


async def fill_messages(
    conn: AsyncConnection,
    after: int,
    *,
    limit: int,
    account_ids: Sequence[str] = (),
    master_order_id: str = "",
) -> list[Any]:
    """(sequence, wire) of the first `limit` fills after `after`, in sequence order, of these
    accounts (all if none) and this master order (any if empty): tuples (asyncpg: Records)
    straight from the driver's cursor."""
    sql = _fill_messages_sql(conn.dialect, len(account_ids), bool(master_order_id))
    params = (after, *account_ids, *((master_order_id,) if master_order_id else ()), limit)

    def fetch(sync_conn: Connection) -> list[Any]:
        cursor = sync_conn.connection.cursor()
        try:
            cursor.execute(sql, params)
            return list(cursor.fetchall())
        finally:
            cursor.close()

    return await conn.run_sync(fetch)
