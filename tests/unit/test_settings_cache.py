"""SettingsCache: what a read overlapping a write brings back is not kept."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

from gateway.domain.accounts import (
    Account,
    AccountSnapshot,
    AccountState,
    AllocationSettings,
    Group,
    MarginMode,
    Platform,
)
from gateway.store.settings_cache import SettingsCache

T0 = datetime(2026, 1, 5, tzinfo=UTC)


def account(account_id: str, name: str = "a") -> Account:
    return Account(
        account_id=account_id,
        name=name,
        platform=Platform.SIMULATED,
        login=1,
        server="mam-sim",
        currency="USD",
        state=AccountState.ACTIVE,
        margin_mode=MarginMode.HEDGING,
        leverage=100,
        created_at=T0,
        updated_at=T0,
        snapshot=AccountSnapshot(Decimal(1), Decimal(1), Decimal(0), Decimal(1), T0),
    )


def group(group_id: str, name: str) -> Group:
    return Group(
        group_id=group_id,
        name=name,
        allocation=AllocationSettings(),
        members=(),
        magic=700_001,
        created_at=T0,
        updated_at=T0,
    )


def test_a_read_overlapping_a_write_is_handed_back_but_not_kept() -> None:
    cache = SettingsCache()
    before = cache.generation
    cache.changed(account_ids=["acc_1"], group_ids=["grp_1"])  # a write while reading
    handed = cache.keep_accounts(before, [account("acc_1", "old")])
    cache.keep_group(before, group("grp_1", "old"))
    assert handed["acc_1"].name == "old" and handed["acc_1"].snapshot is None
    assert cache.accounts(["acc_1"]) == ({}, ["acc_1"])
    assert cache.group("grp_1") is None

    now = cache.generation
    cache.keep_accounts(now, [account("acc_1", "new")])
    cache.keep_group(now, group("grp_1", "new"))
    found, missing = cache.accounts(["acc_1", "acc_2"])
    assert found["acc_1"].name == "new" and missing == ["acc_2"]
    kept = cache.group("grp_1")
    assert kept is not None and kept.name == "new"

    cache.changed(group_ids=["grp_1"])
    assert cache.group("grp_1") is None
    assert cache.accounts(["acc_1"])[0]["acc_1"].name == "new"  # only what was written goes
