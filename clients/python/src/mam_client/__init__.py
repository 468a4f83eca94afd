"""Python client for the mam-gateway gRPC API (mam.v1): MamClient (asyncio), SyncMamClient.

async with await MamClient.connect("127.0.0.1:50051") as client:
    async for account in client.list_accounts():
        print(account.name)
"""

from mam_client._channel import TlsConfig
from mam_client._fills import RetryPolicy
from mam_client.client import MamClient, new_client_order_id
from mam_client.errors import FieldViolation, MamError
from mam_client.sync_client import SyncMamClient
from mam_client.types import (
    Account,
    AccountSnapshot,
    AccountState,
    Allocation,
    AllocationLine,
    AllocationMethod,
    AllocationReason,
    AllocationSettings,
    BelowMinPolicy,
    ChildOrder,
    ChildOrderState,
    ExecutionStats,
    Fill,
    FillEvent,
    FillingPolicy,
    Group,
    GroupMember,
    Heartbeat,
    MarginMode,
    MasterOrder,
    MasterOrderState,
    NewAccount,
    NewGroup,
    OrderSpec,
    OrderType,
    Page,
    Platform,
    Side,
    Submission,
    SymbolMapping,
    TimeInForce,
)

__all__ = [
    "Account",
    "AccountSnapshot",
    "AccountState",
    "Allocation",
    "AllocationLine",
    "AllocationMethod",
    "AllocationReason",
    "AllocationSettings",
    "BelowMinPolicy",
    "ChildOrder",
    "ChildOrderState",
    "ExecutionStats",
    "FieldViolation",
    "Fill",
    "FillEvent",
    "FillingPolicy",
    "Group",
    "GroupMember",
    "Heartbeat",
    "MamClient",
    "MamError",
    "MarginMode",
    "MasterOrder",
    "MasterOrderState",
    "NewAccount",
    "NewGroup",
    "OrderSpec",
    "OrderType",
    "Page",
    "Platform",
    "RetryPolicy",
    "Side",
    "Submission",
    "SymbolMapping",
    "SyncMamClient",
    "TimeInForce",
    "TlsConfig",
    "new_client_order_id",
]
