"""The equity chart's geometry: its points scaled into a drawing box, shared by the SVG of the
HTML page and the PDF. Coordinates are floats: they place ink on a page and are never money;
the figures shown as text stay exact decimals."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC
from decimal import Decimal

from gateway.domain.statement import ChartPoint, EquityChart


@dataclass(frozen=True, slots=True)
class Box:
    """A drawing area; y grows downwards (as in SVG and in the PDF library's page units)."""

    left: float
    top: float
    width: float
    height: float


@dataclass(frozen=True, slots=True)
class CurveDrawing:
    points: tuple[tuple[float, float], ...]
    lowest: Decimal | None
    highest: Decimal | None
    # The times of the first and last points, as the axis labels them.
    first: str = ""
    last: str = ""


def equity_curve_drawing(chart: EquityChart | Sequence[ChartPoint], box: Box) -> CurveDrawing:
    """The chart's polyline: x by time (a gap in the readings leaves a straight segment), y
    from the lowest equity at the bottom to the highest at the top. A single point is drawn as
    a level line across the box; a flat curve runs through the middle."""
    points = chart.points if isinstance(chart, EquityChart) else tuple(chart)
    intraday = isinstance(chart, EquityChart) and chart.intraday
    if not points:
        return CurveDrawing(points=(), lowest=None, highest=None)
    lowest = min(p.equity for p in points)
    highest = max(p.equity for p in points)
    span_seconds = (points[-1].time - points[0].time).total_seconds()
    span_money = highest - lowest
    label = "%Y-%m-%d %H:%M" if intraday else "%Y-%m-%d"
    first = points[0].time.astimezone(UTC).strftime(label)
    last = points[-1].time.astimezone(UTC).strftime(label)

    def y_of(equity: Decimal) -> float:
        if span_money == 0:
            return box.top + box.height / 2
        return box.top + float((highest - equity) / span_money) * box.height

    if span_seconds <= 0:
        y = y_of(points[-1].equity)
        return CurveDrawing(
            points=((box.left, y), (box.left + box.width, y)),
            lowest=lowest,
            highest=highest,
            first=first,
            last=last,
        )
    drawn = tuple(
        (
            box.left + (p.time - points[0].time).total_seconds() / span_seconds * box.width,
            y_of(p.equity),
        )
        for p in points
    )
    return CurveDrawing(points=drawn, lowest=lowest, highest=highest, first=first, last=last)
