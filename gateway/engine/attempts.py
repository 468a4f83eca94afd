"""One attempt of a child order at its broker, without the I/O: the request it sends (a deal at
market within its price band, or a pending placement) and what an answer makes of the child
(a fill, PLACED, CANCELLED, UNKNOWN, or given up after its last attempt).

The dispatcher's one attempt loop (`Dispatcher._send_until_settled`) sends, waits as its
OrderRetryPolicy says and searches by tag; the functions here decide. Each is handed the time
it stamps (`now`) rather than a clock.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime
from decimal import Decimal

from gateway.domain import retcodes
from gateway.domain.copying import child_terms
from gateway.domain.field_copies import copier
from gateway.domain.fills import Fill
from gateway.domain.ids import FillId, new_id
from gateway.domain.orders import ChildOrder, ChildOrderState, MasterOrderSpec, Side
from gateway.terminals.protocol import OrderRequest, OrderResult, TradeAction

# The average fill price of a child filled in several deals.
_PRICE_QUANTUM = Decimal("1E-8")

_copy_child = copier(ChildOrder)


def deal_request(
    spec: MasterOrderSpec,
    child: ChildOrder,
    first_price: Decimal | None,
    band: Decimal,
    deviation_points: int,
) -> OrderRequest:
    """The child's (remaining) volume at market. `first_price`: the price its first request
    was sent at, None until known; `band`: how far from it a retry may go, in price."""
    closing = bool(child.closes_child_order_id)
    terms = None if closing else child_terms(spec, child)
    return OrderRequest(
        action=TradeAction.DEAL,
        symbol=child.symbol,
        side=child.side,
        volume=child.volume - child.filled_volume,
        tag=child.tag,
        magic=child.magic,
        # At market: the terminal prices it right before it leaves (terminals.market).
        # A retry chases the market only within the order's maximum deviation of the
        # first price sent: beyond it the manager's price is gone.
        lowest_price=None if first_price is None else first_price - band,
        highest_price=None if first_price is None else first_price + band,
        deviation_points=deviation_points,
        # A closing child names the position it closes (hedging accounts); an opening
        # child carries the master order's stops onto its position (as its copy options say).
        position_ticket=child.position_ticket if closing else 0,
        stop_loss=None if terms is None else terms.stop_loss,
        take_profit=None if terms is None else terms.take_profit,
        filling=spec.filling_policy,
    )


def placement_request(spec: MasterOrderSpec, child: ChildOrder) -> OrderRequest:
    """The child as a pending order of the master order's type, price, stops and expiry (the
    mirror type and stops for a reversed child: gateway/domain/copying.py)."""
    terms = child_terms(spec, child)
    return OrderRequest(
        action=TradeAction.PENDING,
        symbol=child.symbol,
        side=child.side,
        volume=child.volume - child.filled_volume,
        tag=child.tag,
        magic=child.magic,
        price=spec.price,
        order_type=terms.order_type,
        stop_limit_price=spec.stop_limit_price,
        stop_loss=terms.stop_loss,
        take_profit=terms.take_profit,
        time_in_force=spec.time_in_force,
        expires_at=spec.expire_time,
        filling=spec.filling_policy,
    )


def removal_request(child: ChildOrder, order_ticket: int) -> OrderRequest:
    """The removal of the child's order resting at its broker."""
    return OrderRequest(
        action=TradeAction.REMOVE,
        symbol=child.symbol,
        side=child.side,
        volume=Decimal(0),
        tag=child.tag,
        magic=child.magic,
        order_ticket=order_ticket,
    )


def outside_band(request: OrderRequest, result: OrderResult) -> bool:
    """The terminal refused a priced retry unsent: its price had left the band."""
    banded = request.lowest_price is not None or request.highest_price is not None
    return banded and result.retcode == retcodes.PRICE_CHANGED and result.request_price is None


def beyond_the_band(
    side: Side, result: OrderResult, first_price: Decimal, point: Decimal, deviation_points: int
) -> str:
    """Why a retry refused by its terminal for its band was never sent."""
    seen = result.ask if side is Side.BUY else result.bid
    moved = "" if seen is None else f"{abs(seen - first_price) / point:f} points "
    return (
        f"the price moved {moved}from the first price {first_price}, beyond the "
        f"maximum deviation of {deviation_points}"
    )


def leaving(child: ChildOrder, at: datetime) -> ChildOrder:
    """The child as its first request leaves: its sent time is that moment. (It was stored
    SENT with its master order, before any request left, so that a crash from then on has it
    searched for by tag; the request itself may leave much later in a large fan-out.)"""
    return _copy_child(child, {"sent_at": at})


def to_send_again(child: ChildOrder, now: datetime) -> ChildOrder:
    """An UNKNOWN child found (at most partly) absent goes back to SENT to be sent again."""
    if child.state is not ChildOrderState.UNKNOWN:
        return child
    return child.moved_to(ChildOrderState.PENDING, now).moved_to(
        ChildOrderState.SENT, now, sent_at=now
    )


def unknown(child: ChildOrder, attempts: int, retcode: int, text: str, now: datetime) -> ChildOrder:
    """Its outcome cannot be told now: searched for by its tag again later."""
    if child.state is ChildOrderState.UNKNOWN:
        return child
    return child.moved_to(
        ChildOrderState.UNKNOWN, now, attempts=attempts, retcode=retcode, status_text=text
    )


def cancelled(child: ChildOrder, attempts: int, why: str, now: datetime) -> ChildOrder:
    # Only ever before a request leaves, or once the broker is proven not to have it.
    if child.filled_volume > 0:
        return child.moved_to(
            ChildOrderState.PARTIALLY_FILLED,
            now,
            attempts=attempts,
            status_text=f"{child.filled_volume} of {child.volume} filled; rest cancelled {why}",
        )
    return child.moved_to(
        ChildOrderState.CANCELLED,
        now,
        attempts=attempts,
        status_text=f"cancelled {why} before it reached the broker",
    )


def given_up(
    child: ChildOrder, attempts: int, retcode: int, text: str, now: datetime
) -> ChildOrder:
    """Refused for good, or still refused after its last attempt: REJECTED with the last
    retcode, or PARTIALLY_FILLED with what its deals filled."""
    why = f"{retcodes.name_of(retcode)}: {text}"
    if child.filled_volume > 0:
        return child.moved_to(
            ChildOrderState.PARTIALLY_FILLED,
            now,
            attempts=attempts,
            retcode=retcode,
            status_text=f"{child.filled_volume} of {child.volume} filled; rest: {why}",
        )
    return child.moved_to(
        ChildOrderState.REJECTED, now, attempts=attempts, retcode=retcode, status_text=why
    )


def placed(
    child: ChildOrder, order_ticket: int, attempts: int, result: OrderResult | None, now: datetime
) -> ChildOrder:
    """Resting at its broker (`result`: the placement's answer; None when found by tag)."""
    return child.moved_to(
        ChildOrderState.PLACED,
        now,
        attempts=attempts,
        broker_order_ticket=order_ticket,
        retcode=result.retcode if result is not None else retcodes.PLACED,
        status_text=result.text if result is not None else "found resting by its tag",
    )


def with_answered_deal(
    child: ChildOrder,
    result: OrderResult,
    requested: Decimal | None,
    point: Decimal,
    attempts: int,
    now: datetime,
) -> tuple[ChildOrder, Fill]:
    """The deal a broker answered with. `requested`: None when the price it was sent at is
    unknown (no slippage then)."""
    assert result.price is not None
    return with_deal(
        child,
        now,
        volume=result.volume,
        price=result.price,
        requested=result.price if requested is None else requested,
        point=point,
        attempts=attempts,
        retcode=result.retcode,
        text=result.text,
        deal_ticket=result.deal_ticket,
        order_ticket=result.order_ticket,
        position_ticket=result.position_ticket,
        executed_at=result.executed_at or now,
    )


def with_deal(
    child: ChildOrder,
    now: datetime,
    *,
    volume: Decimal,
    price: Decimal,
    requested: Decimal,
    point: Decimal,
    attempts: int,
    retcode: int,
    text: str,
    deal_ticket: int,
    order_ticket: int,
    position_ticket: int,
    executed_at: datetime,
) -> tuple[ChildOrder, Fill]:
    """One deal of the child as a fill, and the child with it added: FILLED once its deals
    reach its volume, else still SENT (the rest to be sent) with the average price."""
    if child.state not in (
        ChildOrderState.SENT,
        ChildOrderState.UNKNOWN,
        ChildOrderState.PLACED,
    ):
        raise AssertionError(f"child {child.child_order_id} filled from {child.state.name}")
    direction = 1 if child.side is Side.BUY else -1
    slippage = ((price - requested) * direction / point).quantize(Decimal("0.1"))
    total = child.filled_volume + volume
    average = price
    if child.filled_volume and child.fill_price is not None:
        average = ((child.fill_price * child.filled_volume + price * volume) / total).quantize(
            _PRICE_QUANTUM
        )
    changes: dict[str, object] = {
        "filled_volume": total,
        "requested_price": child.requested_price or requested,
        "fill_price": average,
        "slippage_points": slippage,
        "retcode": retcode,
        "status_text": text,
        "broker_order_ticket": order_ticket,
        "broker_deal_ticket": deal_ticket,
        "position_ticket": position_ticket,
        "attempts": attempts,
        "filled_at": executed_at,
    }
    if total >= child.volume:
        updated = child.moved_to(ChildOrderState.FILLED, now, **changes)
    else:
        updated = replace(to_send_again(child, now), updated_at=now, **changes)  # type: ignore[arg-type]
    fill = Fill(
        sequence=0,
        fill_id=FillId(new_id("fl")),
        master_order_id=child.master_order_id,
        child_order_id=child.child_order_id,
        account_id=child.account_id,
        symbol=child.symbol,
        side=child.side,
        volume=volume,
        price=price,
        requested_price=requested,
        slippage_points=slippage,
        deal_ticket=deal_ticket,
        order_ticket=order_ticket,
        position_ticket=position_ticket,
        executed_at=executed_at,
    )
    return updated, fill
