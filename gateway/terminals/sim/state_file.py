"""The simulated broker's books in a SQLite file, so that they outlive the process.

The file is a log of change sets: each trade request appends one row holding the rows it
changed (account, positions, pending orders as full images or deletions; new deals) and the
ticket counter, in one transaction committed before the answer leaves the broker. One append
per request keeps the cost per order low; loading replays the log in order. Whatever the
broker executed is in the file even if the process is killed the next instant: WAL with
synchronous=NORMAL makes a commit survive a process crash (SIGKILL), since the WAL is written
before COMMIT returns and the OS keeps it. It is not power-loss safe (no fsync per commit),
which a simulator does not need.

At load, a long log is compacted into one snapshot row per account, in one transaction.
Decimals are stored as text (exact), times as ISO 8601 text, enums by name.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

from gateway.domain.account_history import DealEntry
from gateway.domain.accounts import MarginMode
from gateway.domain.orders import FillingPolicy, OrderType, Side, TimeInForce
from gateway.terminals.protocol import Deal, PendingOrder, Position
from gateway.terminals.sim.book import Journal, SimAccount

SCHEMA_VERSION = 1
# Past this many change sets (and more than a few per account), loading compacts the log.
COMPACT_AFTER = 20_000

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS changes (
    seq INTEGER PRIMARY KEY, login INTEGER NOT NULL, next_ticket INTEGER NOT NULL,
    body TEXT NOT NULL
);
"""
_APPEND = "INSERT INTO changes (login, next_ticket, body) VALUES (?, ?, ?)"
# One encoder for every change set (json.dumps with options builds a new one per call).
_encode = json.JSONEncoder(separators=(",", ":"), check_circular=False).encode


class BrokerStateError(Exception):
    """The state file could not be read or written; the request was not executed."""


@dataclass(slots=True)
class BrokerState:
    accounts: dict[int, SimAccount]
    next_ticket: int


class BrokerStateFile:
    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            # Autocommit mode: each append is its own transaction. One thread uses the broker
            # at a time, not always the one that built it.
            self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
            # One broker per file: the lock, held until close, keeps a second process out,
            # and spares every commit the shared-memory locking of WAL.
            self._db.execute("PRAGMA locking_mode=EXCLUSIVE")
            self._db.execute("PRAGMA journal_mode=WAL")
            # Process-crash safe, not power-loss safe (see the module docstring).
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.executescript(_SCHEMA)
            row = self._db.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
        except (OSError, sqlite3.Error) as error:
            raise BrokerStateError(f"{path}: {error}") from error
        if row is None:
            self._db.execute("INSERT INTO meta VALUES ('schema_version', ?)", (SCHEMA_VERSION,))
        elif int(row[0]) != SCHEMA_VERSION:
            raise BrokerStateError(f"{path}: schema version {row[0]}, expected {SCHEMA_VERSION}")

    def load(self, first_ticket: int) -> BrokerState:
        """The books as the last committed change set left them."""
        try:
            state = self._replay(first_ticket)
            self._compact_if_long(state)
        except sqlite3.Error as error:
            raise BrokerStateError(f"{self.path}: {error}") from error
        return state

    def commit(self, account: SimAccount, next_ticket: int) -> None:
        """Appends the account's journaled changes and the ticket counter as one change set,
        committed when this returns. Clearing the journal is left to the caller."""
        body = _encode(_change_set(account, account.journal))
        try:
            self._db.execute(_APPEND, (account.login, next_ticket, body))
        except sqlite3.Error as error:
            raise BrokerStateError(f"{self.path}: {error}") from error

    def close(self) -> None:
        self._db.close()

    def _replay(self, first_ticket: int) -> BrokerState:
        accounts: dict[int, SimAccount] = {}
        next_ticket = first_ticket
        for login, ticket, body in self._db.execute(
            "SELECT login, next_ticket, body FROM changes ORDER BY seq"
        ):
            _apply(accounts, login, json.loads(body))
            next_ticket = max(next_ticket, ticket)
        return BrokerState(accounts, next_ticket)

    def _compact_if_long(self, state: BrokerState) -> None:
        (count,) = self._db.execute("SELECT count(*) FROM changes").fetchone()
        if count <= max(COMPACT_AFTER, 4 * len(state.accounts)):
            return
        rows = [
            (
                account.login,
                state.next_ticket,
                _encode(_snapshot(account)),
            )
            for account in state.accounts.values()
        ]
        self._db.execute("BEGIN")
        try:
            self._db.execute("DELETE FROM changes")
            self._db.executemany(_APPEND, rows)
            self._db.execute("COMMIT")
        except sqlite3.Error:
            self._db.execute("ROLLBACK")
            raise


# -- change sets ------------------------------------------------------------------------------


def _change_set(account: SimAccount, journal: Journal) -> dict[str, Any]:
    body: dict[str, Any] = {}
    if journal.account:
        body["a"] = _account_fields(account)
    if journal.positions:
        body["p"] = [
            [ticket, None if p is None else _position_row(p)]
            for ticket, p in journal.positions.items()
        ]
    if journal.orders:
        body["o"] = [
            [ticket, None if o is None else _order_row(o)] for ticket, o in journal.orders.items()
        ]
    if journal.deals:
        body["d"] = [_deal_row(d) for d in journal.deals]
    return body


def _snapshot(account: SimAccount) -> dict[str, Any]:
    return {
        "a": _account_fields(account),
        "p": [[t, _position_row(p)] for t, p in account.positions.items()],
        "o": [[t, _order_row(o)] for t, o in account.orders.items()],
        "d": [_deal_row(d) for d in account.deals],
    }


def _apply(accounts: dict[int, SimAccount], login: int, body: dict[str, Any]) -> None:
    if "a" in body:
        currency, leverage, margin_mode, balance = body["a"]
        if login in accounts:
            accounts[login].balance = Decimal(balance)
        else:
            accounts[login] = SimAccount(
                login, currency, leverage, MarginMode[margin_mode], Decimal(balance)
            )
    account = accounts[login]
    for ticket, row in body.get("p", ()):
        if row is None:
            account.drop_position(ticket)
        else:
            account.restore_position(_position(ticket, row))
    for ticket, row in body.get("o", ()):
        if row is None:
            del account.orders[ticket]
        else:
            account.orders[ticket] = _order(ticket, row)
    for row in body.get("d", ()):
        account.remember_deal(_deal(row))
    # Replaying is not a change: nothing of it is to be written again.
    account.journal.clear()


def _account_fields(account: SimAccount) -> list[Any]:
    return [account.currency, account.leverage, account.margin_mode.name, str(account.balance)]


def _text(value: Decimal | None) -> str | None:
    return None if value is None else str(value)


def _decimal(value: str | None) -> Decimal | None:
    return None if value is None else Decimal(value)


def _time(value: str | None) -> datetime | None:
    return None if value is None else datetime.fromisoformat(value)


def _position_row(p: Position) -> list[Any]:
    return [
        p.symbol,
        p.side.name,
        str(p.volume),
        str(p.price_open),
        p.magic,
        p.comment,
        p.opened_at.isoformat(),
        _text(p.stop_loss),
        _text(p.take_profit),
    ]


def _position(ticket: int, row: list[Any]) -> Position:
    symbol, side, volume, price_open, magic, comment, opened_at, sl, tp = row
    return Position(
        ticket=ticket,
        symbol=symbol,
        side=Side[side],
        volume=Decimal(volume),
        price_open=Decimal(price_open),
        magic=magic,
        comment=comment,
        opened_at=datetime.fromisoformat(opened_at),
        stop_loss=_decimal(sl),
        take_profit=_decimal(tp),
    )


def _order_row(o: PendingOrder) -> list[Any]:
    return [
        o.symbol,
        o.side.name,
        str(o.volume),
        str(o.price),
        o.magic,
        o.comment,
        o.placed_at.isoformat(),
        o.order_type.name,
        _text(o.stop_limit_price),
        _text(o.stop_loss),
        _text(o.take_profit),
        o.time_in_force.name,
        None if o.expires_at is None else o.expires_at.isoformat(),
        o.filling.name,
        _text(o.volume_initial),
    ]


def _order(ticket: int, row: list[Any]) -> PendingOrder:
    (symbol, side, volume, price, magic, comment, placed_at, order_type, stop_limit) = row[:9]
    (sl, tp, time_in_force, expires_at, filling, volume_initial) = row[9:]
    return PendingOrder(
        ticket=ticket,
        symbol=symbol,
        side=Side[side],
        volume=Decimal(volume),
        price=Decimal(price),
        magic=magic,
        comment=comment,
        placed_at=datetime.fromisoformat(placed_at),
        order_type=OrderType[order_type],
        stop_limit_price=_decimal(stop_limit),
        stop_loss=_decimal(sl),
        take_profit=_decimal(tp),
        time_in_force=TimeInForce[time_in_force],
        expires_at=_time(expires_at),
        filling=FillingPolicy[filling],
        volume_initial=_decimal(volume_initial),
    )


def _deal_row(d: Deal) -> list[Any]:
    return [
        d.ticket,
        d.order_ticket,
        d.position_ticket,
        d.symbol,
        d.side.name,
        str(d.volume),
        str(d.price),
        d.magic,
        d.comment,
        d.executed_at.isoformat(),
        d.entry.name,
        str(d.profit),
    ]


def _deal(row: Iterable[Any]) -> Deal:
    ticket, order, position, symbol, side, volume, price, magic, comment, at, entry, profit = row
    return Deal(
        ticket=ticket,
        order_ticket=order,
        position_ticket=position,
        symbol=symbol,
        side=Side[side],
        volume=Decimal(volume),
        price=Decimal(price),
        magic=magic,
        comment=comment,
        executed_at=datetime.fromisoformat(at),
        entry=DealEntry[entry],
        profit=Decimal(profit),
    )
