"""The side of an order, a deal or a position: BUY (long) or SELL (short).

Its own module, below everything that names it: orders (whose records hold an allocation),
and the account exposure and pre-trade risk that an allocation's lines record decisions of.
"""

from __future__ import annotations

import enum


class Side(enum.Enum):
    BUY = "BUY"
    SELL = "SELL"

    @property
    def opposite(self) -> Side:
        return Side.SELL if self is Side.BUY else Side.BUY
