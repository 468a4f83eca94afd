"""A group's members as the allocation reads them: field by field in account id order, each
either unable to trade (and why), or sized with the others of its kind: the members whose
methods split the master volume, and those whose methods size each one on its own."""

from __future__ import annotations

import operator
from collections.abc import Sequence
from decimal import Decimal
from itertools import islice, repeat
from typing import NamedTuple, TypeVar, cast

from gateway.domain.accounts import AccountSnapshot, AllocationMethod, GroupMember
from gateway.domain.allocation.methods import SPLIT_METHODS
from gateway.domain.allocation.records import AllocationReason, AllocationRequest, MemberInput
from gateway.domain.ids import AccountId
from gateway.domain.symbols import SymbolSpec

_T = TypeVar("_T")


def _field(name: str) -> operator.itemgetter[int]:
    """A MemberInput field by its index (the cheaper way to read a named tuple's field)."""
    return operator.itemgetter(MemberInput._fields.index(name))


_account_id_of = _field("account_id")
_symbol_of = _field("symbol")
_spec_of = _field("spec")
_active_of = _field("active")
_snapshot_of = _field("snapshot")
_settings_of = _field("settings")
_entry_price_of = _field("entry_price")


class MemberColumns(NamedTuple):
    """Members field by field, in account id order (an account listed twice keeps the order of
    its listings)."""

    account_ids: tuple[AccountId, ...]
    symbols: tuple[str, ...]
    specs: tuple[SymbolSpec | None, ...]
    active: tuple[bool, ...]
    snapshots: tuple[AccountSnapshot | None, ...]
    settings: tuple[GroupMember, ...]
    entry_prices: tuple[Decimal | None, ...]
    # Each member's place in the listing; None: the listing was in account id order.
    listing: tuple[int, ...] | None
    unique_ids: bool

    @classmethod
    def of(cls, members: Sequence[MemberInput]) -> MemberColumns:
        ids = tuple(map(_account_id_of, members))
        listing = None
        unique = True
        # Strictly ascending: in account id order already, and no id twice.
        if not all(map(operator.lt, ids, islice(ids, 1, None))):
            listing = tuple(sorted(range(len(ids)), key=ids.__getitem__))
            members = tuple(map(members.__getitem__, listing))
            ids = tuple(map(_account_id_of, members))
            unique = all(map(operator.ne, ids, islice(ids, 1, None)))
        return cls(
            ids,
            tuple(map(_symbol_of, members)),
            tuple(map(_spec_of, members)),
            tuple(map(_active_of, members)),
            tuple(map(_snapshot_of, members)),
            tuple(map(_settings_of, members)),
            tuple(map(_entry_price_of, members)),
            listing,
            unique,
        )

    def member(self, position: int) -> MemberInput:
        return MemberInput(
            self.account_ids[position],
            self.symbols[position],
            self.specs[position],
            self.active[position],
            self.snapshots[position],
            self.settings[position],
            self.entry_prices[position],
        )

    def pick(self, positions: Sequence[int]) -> MemberColumns:
        """The members at `positions` (ascending)."""
        return MemberColumns(
            _picked(self.account_ids, positions),
            _picked(self.symbols, positions),
            _picked(self.specs, positions),
            _picked(self.active, positions),
            _picked(self.snapshots, positions),
            _picked(self.settings, positions),
            _picked(self.entry_prices, positions),
            None if self.listing is None else _picked(self.listing, positions),
            self.unique_ids,
        )


class Share(NamedTuple):
    """Members sized together (those that split the master volume, or those each sized on its
    own), with their methods and bases; `positions` are their places in the group's columns."""

    positions: Sequence[int]
    columns: MemberColumns
    methods: tuple[AllocationMethod, ...]
    bases: tuple[Decimal, ...]


class GroupShares(NamedTuple):
    split: Share | None
    independent: Share | None
    # The members that cannot trade, by position, and why.
    unable: tuple[tuple[int, AllocationReason], ...]


def shares_of(
    request: AllocationRequest,
    columns: MemberColumns,
    methods: tuple[AllocationMethod, ...],
    bases: tuple[Decimal | None, ...],
) -> GroupShares:
    """The members that split, those sized on their own, and those that cannot trade."""
    count = len(columns.account_ids)
    able: Sequence[int] = range(count)
    unable: tuple[tuple[int, AllocationReason], ...] = ()
    if not _all_can_trade(request, columns, methods, bases):
        reasons = tuple(
            map(
                ineligibility,
                columns.active,
                columns.snapshots,
                columns.specs,
                methods,
                bases,
                columns.entry_prices,
                repeat(request.stop_loss),
            )
        )
        able = [position for position, reason in enumerate(reasons) if reason is None]
        unable = tuple(
            (position, reason) for position, reason in enumerate(reasons) if reason is not None
        )
    if methods.count(methods[0]) == count:
        split, independent = (able, ()) if methods[0] in SPLIT_METHODS else ((), able)
    else:
        split = [position for position in able if methods[position] in SPLIT_METHODS]
        independent = [position for position in able if methods[position] not in SPLIT_METHODS]
    able_bases = cast("tuple[Decimal, ...]", bases)  # every able member has a basis
    return GroupShares(
        _share(columns, methods, able_bases, split),
        _share(columns, methods, able_bases, independent),
        unable,
    )


def ineligibility(
    active: bool,
    snapshot: AccountSnapshot | None,
    spec: SymbolSpec | None,
    method: AllocationMethod,
    basis: Decimal | None,
    entry_price: Decimal | None,
    stop_loss: Decimal | None,
) -> AllocationReason | None:
    """Why a member cannot trade, or None when it can."""
    if not active:
        return AllocationReason.INACTIVE
    if snapshot is None:
        # Whatever the method: a terminal that cannot report its account cannot trade either.
        return AllocationReason.TERMINAL_UNAVAILABLE
    if spec is None:
        return AllocationReason.SYMBOL_UNAVAILABLE
    if method is AllocationMethod.PERCENT_RISK and entry_price is None:
        return AllocationReason.TERMINAL_UNAVAILABLE
    if basis is None or basis <= 0:
        return AllocationReason.NO_BASIS
    if method is AllocationMethod.PERCENT_RISK and entry_price == stop_loss:
        return AllocationReason.NO_BASIS  # no distance to the stop: no risk per lot
    return None


def _all_can_trade(
    request: AllocationRequest,
    columns: MemberColumns,
    methods: tuple[AllocationMethod, ...],
    bases: tuple[Decimal | None, ...],
) -> bool:
    """Whether ineligibility finds nothing for any member (asked column by column)."""
    if not (
        all(columns.active)
        and all(map(operator.is_not, columns.snapshots, repeat(None)))
        and all(map(operator.is_not, columns.specs, repeat(None)))
    ):
        return False
    try:
        if not min(bases) > 0:  # type: ignore[type-var, operator]
            return False
    except TypeError:  # a None, which does not compare
        return False
    if AllocationMethod.PERCENT_RISK not in methods:
        return True
    stop_loss = request.stop_loss
    return not any(
        method is AllocationMethod.PERCENT_RISK and (entry is None or entry == stop_loss)
        for method, entry in zip(methods, columns.entry_prices, strict=True)
    )


def _share(
    columns: MemberColumns,
    methods: tuple[AllocationMethod, ...],
    bases: tuple[Decimal, ...],
    positions: Sequence[int],
) -> Share | None:
    if not positions:
        return None
    if len(positions) == len(methods):
        return Share(positions, columns, methods, bases)
    picked_methods, picked_bases = _picked(methods, positions), _picked(bases, positions)
    return Share(positions, columns.pick(positions), picked_methods, picked_bases)


def _picked(values: tuple[_T, ...], positions: Sequence[int]) -> tuple[_T, ...]:
    return tuple(map(values.__getitem__, positions))
