"""A statement's deals as CSV, exact: every amount as its plain decimal, times in ISO 8601 UTC.

Text cells that a spreadsheet would run as a formula (starting with = + - @, a tab or a carriage
return) are written with a leading apostrophe, and so is text that starts with an apostrophe,
so parse_deals_csv reads back exactly what was written."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable
from datetime import UTC, datetime

from gateway.domain.account_history import DealEntry
from gateway.domain.decimals import format_decimal, parse_decimal
from gateway.domain.orders import Side
from gateway.domain.performance import TradeDeal

DEAL_COLUMNS = (
    "ticket",
    "executed_at",
    "symbol",
    "side",
    "entry",
    "volume",
    "price",
    "profit",
    "commission",
    "swap",
    "net_result",
)
_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r", "'")


def render_deals_csv(deals: Iterable[TradeDeal]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow(DEAL_COLUMNS)
    for deal in deals:
        writer.writerow(
            (
                str(deal.ticket),
                deal.executed_at.astimezone(UTC).isoformat(),
                _text_cell(deal.symbol),
                deal.side.value,
                deal.entry.name,
                format_decimal(deal.volume),
                format_decimal(deal.price),
                format_decimal(deal.profit),
                format_decimal(deal.commission),
                format_decimal(deal.swap),
                format_decimal(deal.net_result),
            )
        )
    return buffer.getvalue()


def parse_deals_csv(text: str) -> list[TradeDeal]:
    """The deals of render_deals_csv's output. Raises ValueError on anything else."""
    reader = csv.DictReader(io.StringIO(text, newline=""))
    if tuple(reader.fieldnames or ()) != DEAL_COLUMNS:
        raise ValueError(f"not a deals CSV: columns {reader.fieldnames}")
    deals: list[TradeDeal] = []
    for row in reader:
        deal = TradeDeal(
            ticket=int(row["ticket"]),
            executed_at=datetime.fromisoformat(row["executed_at"]),
            symbol=_text_value(row["symbol"]),
            side=Side(row["side"]),
            entry=DealEntry[row["entry"]],
            volume=parse_decimal(row["volume"]),
            price=parse_decimal(row["price"]),
            profit=parse_decimal(row["profit"]),
            commission=parse_decimal(row["commission"]),
            swap=parse_decimal(row["swap"]),
        )
        if deal.net_result != parse_decimal(row["net_result"]):
            raise ValueError(f"deal {deal.ticket}: net_result does not add up")
        deals.append(deal)
    return deals


def _text_cell(value: str) -> str:
    return "'" + value if value.startswith(_FORMULA_STARTS) else value


def _text_value(cell: str) -> str:
    return cell[1:] if cell.startswith("'") else cell
