"""The equity curve's geometry: its daily points scaled into a drawing box, shared by the SVG of
the HTML page and the PDF. Coordinates are floats: they place ink on a page and are never
money; the figures shown as text stay exact decimals."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal

from gateway.domain.performance import CurvePoint


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


def equity_curve_drawing(curve: Sequence[CurvePoint], box: Box) -> CurveDrawing:
    """The curve's polyline: x by UTC day (a day without a point leaves a straight segment), y
    from the lowest equity at the bottom to the highest at the top. A single point is drawn as a
    level line across the box; a flat curve runs through the middle."""
    if not curve:
        return CurveDrawing(points=(), lowest=None, highest=None)
    lowest = min(p.equity for p in curve)
    highest = max(p.equity for p in curve)
    span_days = (curve[-1].day - curve[0].day).days
    span_money = highest - lowest

    def y_of(equity: Decimal) -> float:
        if span_money == 0:
            return box.top + box.height / 2
        return box.top + float((highest - equity) / span_money) * box.height

    if span_days == 0:
        y = y_of(curve[-1].equity)
        return CurveDrawing(
            points=((box.left, y), (box.left + box.width, y)), lowest=lowest, highest=highest
        )
    points = tuple(
        (box.left + (p.day - curve[0].day).days / span_days * box.width, y_of(p.equity))
        for p in curve
    )
    return CurveDrawing(points=points, lowest=lowest, highest=highest)
