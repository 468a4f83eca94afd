"""MamClient: the asyncio client (grpc.aio) of the mam.v1 API.

The blocking client, sync_client.py, is generated from this module by clients/gen_clients.py
(`make clients`; `make check-clients` fails when it is stale): edit this one.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Iterable
from datetime import datetime, timedelta
from decimal import Decimal
from types import TracebackType
from typing import BinaryIO, Self, TypeVar

import grpc

from mam_client import _convert
from mam_client._channel import CHANNEL_OPTIONS, TlsConfig, call_metadata, first_connection
from mam_client._fills import RESUMABLE_CODES, FillCursor, RetryPolicy
from mam_client._proto.mam.v1 import (
    account_service_pb2 as acc,
)
from mam_client._proto.mam.v1 import (
    account_service_pb2_grpc,
    reporting_service_pb2_grpc,
    trading_service_pb2_grpc,
)
from mam_client._proto.mam.v1 import reporting_service_pb2 as rpt
from mam_client._proto.mam.v1 import (
    trading_service_pb2 as trd,
)
from mam_client.errors import MamError
from mam_client.reporting import (
    AccountPerformance,
    StatementFile,
    StatementFormat,
    performance_from_wire,
    period_to_wire,
    statement_format_to_wire,
)
from mam_client.symbols import Symbol, symbol_from_wire
from mam_client.types import (
    Account,
    Allocation,
    AllocationSettings,
    Fill,
    FillEvent,
    Group,
    GroupMember,
    MasterOrder,
    NewAccount,
    NewGroup,
    OrderSpec,
    Page,
    Signal,
    Submission,
)

Request = TypeVar("Request")
Response = TypeVar("Response")

DEFAULT_TIMEOUT_S = 30.0
DEFAULT_CONNECT_TIMEOUT_S = 10.0


def new_client_order_id() -> str:
    """A fresh idempotency key for a submission."""
    return f"mam-client-{uuid.uuid4().hex}"


class MamClient:
    """The gateway's AccountService and TradingService over one grpc.aio channel.

    Create it with `await MamClient.connect(target)`; close it with `await client.close()` or
    `async with`. Every call raises MamError on failure. The generated stubs stay reachable as
    `accounts_stub` and `trading_stub` for anything this wrapper does not cover.
    """

    def __init__(
        self,
        channel: grpc.aio.Channel,
        *,
        api_key: str | None = None,
        timeout_s: float | None = DEFAULT_TIMEOUT_S,
    ) -> None:
        self.channel = channel
        self.accounts_stub = account_service_pb2_grpc.AccountServiceStub(channel)
        self.trading_stub = trading_service_pb2_grpc.TradingServiceStub(channel)
        self.metadata = call_metadata(api_key)
        self.timeout_s = timeout_s

    @classmethod
    async def connect(
        cls,
        target: str,
        *,
        api_key: str | None = None,
        tls: TlsConfig | None = None,
        timeout_s: float | None = DEFAULT_TIMEOUT_S,
        connect_timeout_s: float | None = DEFAULT_CONNECT_TIMEOUT_S,
    ) -> MamClient:
        """A client of the gateway at target (HOST:PORT). With connect_timeout_s, waits that
        long for the connection and raises MamError(UNAVAILABLE) if there is none; with None,
        connects on the first call."""
        if tls is None:
            channel = grpc.aio.insecure_channel(target, options=CHANNEL_OPTIONS)
        else:
            channel = grpc.aio.secure_channel(target, tls.credentials(), options=CHANNEL_OPTIONS)
        if connect_timeout_s is not None:
            problem = await first_connection(channel, connect_timeout_s)
            if problem:
                await channel.close(None)
                raise MamError(
                    grpc.StatusCode.UNAVAILABLE, f"cannot reach the gateway at {target}: {problem}"
                )
        return cls(channel, api_key=api_key, timeout_s=timeout_s)

    async def close(self) -> None:
        await self.channel.close(None)

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.close()

    async def _call(self, method: Callable[..., Awaitable[Response]], request: Request) -> Response:
        try:
            return await method(request, metadata=self.metadata, timeout=self.timeout_s)
        except grpc.aio.AioRpcError as error:
            raise MamError.from_rpc_error(error) from None

    # Accounts

    async def create_account(self, account: NewAccount) -> Account:
        request = acc.CreateAccountRequest(account=_convert.new_account_to_wire(account))
        response = await self._call(self.accounts_stub.CreateAccount, request)
        return _convert.account_from_wire(response.account)

    async def get_account(self, account_id: str) -> Account:
        request = acc.GetAccountRequest(account_id=account_id)
        response = await self._call(self.accounts_stub.GetAccount, request)
        return _convert.account_from_wire(response.account)

    async def delete_account(self, account_id: str) -> None:
        """Retires a flat account (admins); its history stays readable through reporting.
        Raises MamError with reason ACCOUNT_NOT_FLAT (the message names what is still open),
        TERMINAL_UNAVAILABLE or ACCOUNT_NOT_FOUND."""
        request = acc.DeleteAccountRequest(account_id=account_id)
        await self._call(self.accounts_stub.DeleteAccount, request)

    async def list_accounts_page(
        self, *, page_size: int = 0, page_token: str = "", group_id: str = ""
    ) -> Page[Account]:
        request = acc.ListAccountsRequest(
            page_size=page_size, page_token=page_token, group_id=group_id
        )
        response = await self._call(self.accounts_stub.ListAccounts, request)
        return Page(
            tuple(_convert.account_from_wire(a) for a in response.accounts),
            response.next_page_token,
        )

    async def list_accounts(
        self, *, group_id: str = "", page_size: int = 0
    ) -> AsyncIterator[Account]:
        """Every account (of group_id, when set), fetching page after page as it goes."""
        token = ""
        while True:
            page = await self.list_accounts_page(
                page_size=page_size, page_token=token, group_id=group_id
            )
            for account in page.items:
                yield account
            if not page.next_page_token:
                return
            token = page.next_page_token

    # Groups

    async def create_group(self, group: NewGroup) -> Group:
        request = acc.CreateGroupRequest(group=_convert.new_group_to_wire(group))
        response = await self._call(self.accounts_stub.CreateGroup, request)
        return _convert.group_from_wire(response.group)

    async def get_group(self, group_id: str) -> Group:
        request = acc.GetGroupRequest(group_id=group_id)
        response = await self._call(self.accounts_stub.GetGroup, request)
        return _convert.group_from_wire(response.group)

    async def list_groups_page(self, *, page_size: int = 0, page_token: str = "") -> Page[Group]:
        request = acc.ListGroupsRequest(page_size=page_size, page_token=page_token)
        response = await self._call(self.accounts_stub.ListGroups, request)
        return Page(
            tuple(_convert.group_from_wire(g) for g in response.groups), response.next_page_token
        )

    async def list_groups(self, *, page_size: int = 0) -> AsyncIterator[Group]:
        token = ""
        while True:
            page = await self.list_groups_page(page_size=page_size, page_token=token)
            for group in page.items:
                yield group
            if not page.next_page_token:
                return
            token = page.next_page_token

    async def update_group(
        self,
        group_id: str,
        *,
        name: str | None = None,
        allocation: AllocationSettings | None = None,
        members: Iterable[GroupMember] | None = None,
    ) -> Group:
        """Changes what is given (members replace the whole list); the rest stays."""
        request = _convert.update_group_request(
            group_id,
            name=name,
            allocation=allocation,
            members=tuple(members) if members is not None else None,
        )
        response = await self._call(self.accounts_stub.UpdateGroup, request)
        return _convert.group_from_wire(response.group)

    # Mirroring

    async def set_group_source(
        self,
        group_id: str,
        *,
        account_id: str | None = None,
        paused: bool | None = None,
        max_signal_age: timedelta | None = None,
    ) -> Group:
        """Sets the group's source account, whose trades the group mirrors, or changes what is
        given of it (paused, max_signal_age); the rest stays. A group without a source needs
        account_id. Returns the group with its source."""
        request = _convert.set_group_source_request(
            group_id, account_id=account_id, paused=paused, max_signal_age=max_signal_age
        )
        response = await self._call(self.accounts_stub.SetGroupSource, request)
        return _convert.group_from_wire(response.group)

    async def remove_group_source(self, group_id: str) -> Group:
        """Ends the group's mirroring; what was copied stays open. Returns the group."""
        request = acc.RemoveGroupSourceRequest(group_id=group_id)
        response = await self._call(self.accounts_stub.RemoveGroupSource, request)
        return _convert.group_from_wire(response.group)

    async def list_signals_page(
        self,
        *,
        group_id: str = "",
        after_sequence: int = 0,
        page_size: int = 0,
        page_token: str = "",
    ) -> Page[Signal]:
        request = trd.ListSignalsRequest(
            group_id=group_id,
            after_sequence=after_sequence,
            page_size=page_size,
            page_token=page_token,
        )
        response = await self._call(self.trading_stub.ListSignals, request)
        return Page(
            tuple(_convert.signal_from_wire(s) for s in response.signals),
            response.next_page_token,
        )

    async def list_signals(
        self, *, group_id: str = "", after_sequence: int = 0, page_size: int = 0
    ) -> AsyncIterator[Signal]:
        """The stored signals after after_sequence (of group_id, when set), oldest change
        first, each in its latest state."""
        token = ""
        while True:
            page = await self.list_signals_page(
                group_id=group_id,
                after_sequence=after_sequence,
                page_size=page_size,
                page_token=token,
            )
            for signal in page.items:
                yield signal
            if not page.next_page_token:
                return
            token = page.next_page_token

    async def signals(
        self,
        *,
        group_id: str = "",
        after_sequence: int = 0,
        retry: RetryPolicy | None = None,
    ) -> AsyncGenerator[Signal, None]:
        """Signals in sequence order until the caller stops: the stored ones after
        after_sequence, then each one as it is stored or settled (a signal comes again, with
        a new sequence, when its state changes). A broken stream (UNAVAILABLE,
        RESOURCE_EXHAUSTED, or an end) is resumed after a backoff from the last signal
        delivered. Other failures raise MamError."""
        policy = retry or RetryPolicy()
        last = after_sequence
        failures = 0
        while True:
            request = trd.StreamSignalsRequest(group_id=group_id, after_sequence=last)
            call = self.trading_stub.StreamSignals(request, metadata=self.metadata)
            error: MamError | None = None
            try:
                async for response in call:
                    failures = 0
                    for message in response.signals:
                        if message.sequence > last:
                            last = message.sequence
                            yield _convert.signal_from_wire(message)
            except grpc.aio.AioRpcError as rpc_error:
                error = MamError.from_rpc_error(rpc_error)
            finally:
                call.cancel()
            if error is not None and error.code not in RESUMABLE_CODES:
                raise error
            failures += 1
            if policy.max_attempts is not None and failures > policy.max_attempts:
                raise error or MamError(grpc.StatusCode.UNAVAILABLE, "the signal stream ended")
            await asyncio.sleep(policy.backoff_s(failures))

    # Master orders

    async def preview_allocation(self, spec: OrderSpec) -> Allocation:
        """What each account would get for spec; sends and stores nothing."""
        request = trd.PreviewAllocationRequest(order=_convert.spec_to_wire(spec))
        response = await self._call(self.trading_stub.PreviewAllocation, request)
        return _convert.allocation_from_wire(response.allocation)

    async def submit_master_order(self, spec: OrderSpec) -> Submission:
        """Submits spec under its client_order_id (a fresh one when empty): resubmitting the
        same spec is harmless."""
        message = _convert.spec_to_wire(spec)
        message.client_order_id = message.client_order_id or new_client_order_id()
        request = trd.SubmitMasterOrderRequest(order=message)
        response = await self._call(self.trading_stub.SubmitMasterOrder, request)
        return _convert.submission_from_wire(response)

    async def get_master_order(self, master_order_id: str) -> MasterOrder:
        """The master order with its allocation and child orders."""
        request = trd.GetMasterOrderRequest(master_order_id=master_order_id)
        response = await self._call(self.trading_stub.GetMasterOrder, request)
        return _convert.master_order_from_wire(response.master_order)

    async def list_master_orders_page(
        self, *, page_size: int = 0, page_token: str = "", group_id: str = ""
    ) -> Page[MasterOrder]:
        request = trd.ListMasterOrdersRequest(
            page_size=page_size, page_token=page_token, group_id=group_id
        )
        response = await self._call(self.trading_stub.ListMasterOrders, request)
        return Page(
            tuple(_convert.master_order_from_wire(m) for m in response.master_orders),
            response.next_page_token,
        )

    async def list_master_orders(
        self, *, group_id: str = "", page_size: int = 0
    ) -> AsyncIterator[MasterOrder]:
        """Master orders, newest first, without their children."""
        token = ""
        while True:
            page = await self.list_master_orders_page(
                page_size=page_size, page_token=token, group_id=group_id
            )
            for order in page.items:
                yield order
            if not page.next_page_token:
                return
            token = page.next_page_token

    async def cancel_master_order(self, master_order_id: str) -> MasterOrder:
        request = trd.CancelMasterOrderRequest(master_order_id=master_order_id)
        response = await self._call(self.trading_stub.CancelMasterOrder, request)
        return _convert.master_order_from_wire(response.master_order)

    async def close_master_position(
        self,
        master_order_id: str,
        *,
        fraction: Decimal | None = None,
        volume: Decimal | None = None,
        client_order_id: str = "",
    ) -> MasterOrder:
        """Closes a fraction in (0, 1] or a volume of what master_order_id opened."""
        request = _convert.close_request(
            master_order_id,
            fraction=fraction,
            volume=volume,
            client_order_id=client_order_id or new_client_order_id(),
        )
        response = await self._call(self.trading_stub.CloseMasterPosition, request)
        return _convert.master_order_from_wire(response.master_order)

    # Fills

    async def fill_events(
        self,
        *,
        after_sequence: int = 0,
        account_ids: Iterable[str] = (),
        master_order_id: str = "",
        live_only: bool = False,
        retry: RetryPolicy | None = None,
    ) -> AsyncGenerator[FillEvent, None]:
        """Fills in sequence order, and the stream's heartbeats, until the caller stops.

        Replays the stored fills after after_sequence (or none with live_only), then follows
        live ones. A broken stream (UNAVAILABLE, RESOURCE_EXHAUSTED, or an end) is resumed
        after a backoff from the last fill delivered: no fill is missed or delivered twice.
        Other failures raise MamError.
        """
        cursor = FillCursor(
            after_sequence=after_sequence,
            account_ids=account_ids,
            master_order_id=master_order_id,
            live_only=live_only,
            retry=retry or RetryPolicy(),
        )
        while True:
            call = self.trading_stub.SubscribeFills(cursor.request(), metadata=self.metadata)
            error: MamError | None = None
            try:
                async for response in call:
                    for event in cursor.accept(response):
                        yield event
            except grpc.aio.AioRpcError as rpc_error:
                error = MamError.from_rpc_error(rpc_error)
            finally:
                call.cancel()
            await asyncio.sleep(cursor.backoff_after(error))

    async def fills(
        self,
        *,
        after_sequence: int = 0,
        account_ids: Iterable[str] = (),
        master_order_id: str = "",
        live_only: bool = False,
        retry: RetryPolicy | None = None,
    ) -> AsyncGenerator[Fill, None]:
        """The fills of fill_events, without the heartbeats."""
        events = self.fill_events(
            after_sequence=after_sequence,
            account_ids=account_ids,
            master_order_id=master_order_id,
            live_only=live_only,
            retry=retry,
        )
        try:
            async for event in events:
                if isinstance(event, Fill):
                    yield event
        finally:
            await events.aclose()

    # Symbols

    async def list_symbols_page(self, *, page_size: int = 0, page_token: str = "") -> Page[Symbol]:
        request = trd.ListSymbolsRequest(page_size=page_size, page_token=page_token)
        response = await self._call(self.trading_stub.ListSymbols, request)
        return Page(tuple(symbol_from_wire(s) for s in response.symbols), response.next_page_token)

    async def list_symbols(self, *, page_size: int = 0) -> AsyncIterator[Symbol]:
        """The gateway's symbols by name, with their volume step and digits."""
        token = ""
        while True:
            page = await self.list_symbols_page(page_size=page_size, page_token=token)
            for symbol in page.items:
                yield symbol
            if not page.next_page_token:
                return
            token = page.next_page_token

    # Reporting

    @property
    def reporting_stub(self) -> reporting_service_pb2_grpc.ReportingServiceAsyncStub:
        return reporting_service_pb2_grpc.ReportingServiceStub(self.channel)

    async def account_performance(
        self, account_id: str, *, start: datetime, end: datetime
    ) -> AccountPerformance:
        """The account's performance over [start, end) (aware datetimes)."""
        start_time, end_time = period_to_wire(start, end)
        request = rpt.GetAccountPerformanceRequest(
            account_id=account_id, start_time=start_time, end_time=end_time
        )
        response = await self._call(self.reporting_stub.GetAccountPerformance, request)
        return performance_from_wire(account_id, response)

    async def download_account_statement(
        self,
        account_id: str,
        out: BinaryIO,
        *,
        start: datetime,
        end: datetime,
        format: StatementFormat = StatementFormat.PDF,
    ) -> StatementFile:
        """Writes the account's statement over [start, end) to out, chunk by chunk as the
        gateway streams it."""
        start_time, end_time = period_to_wire(start, end)
        request = rpt.GetAccountStatementRequest(
            account_id=account_id,
            format=statement_format_to_wire(format),
            start_time=start_time,
            end_time=end_time,
        )
        file = StatementFile("", "", 0)
        written = 0
        try:
            call = self.reporting_stub.GetAccountStatement(
                request, metadata=self.metadata, timeout=self.timeout_s
            )
            async for chunk in call:
                if written == 0 and chunk.content_type:
                    file = StatementFile(chunk.file_name, chunk.content_type, chunk.total_size)
                out.write(chunk.data)
                written += len(chunk.data)
        except grpc.aio.AioRpcError as error:
            raise MamError.from_rpc_error(error) from None
        return StatementFile(file.file_name, file.content_type, written)
