"""SyncMamClient: the blocking client (grpc) of the mam.v1 API, for scripts and mamctl."""

from __future__ import annotations

import queue
import time
from collections.abc import Callable, Generator, Iterable, Iterator
from datetime import datetime
from decimal import Decimal
from types import TracebackType
from typing import BinaryIO, Self, TypeVar

import grpc

from mam_client import _convert
from mam_client._channel import CHANNEL_OPTIONS, TlsConfig, call_metadata
from mam_client._fills import FillCursor, RetryPolicy
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
from mam_client.client import (
    DEFAULT_CONNECT_TIMEOUT_S,
    DEFAULT_TIMEOUT_S,
    new_client_order_id,
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
    Submission,
)

Request = TypeVar("Request")
Response = TypeVar("Response")


def _first_connection(channel: grpc.Channel, timeout_s: float) -> str:
    """Waits for the channel's first connection: "" when it is up, else what went wrong."""
    connectivity = grpc.ChannelConnectivity
    states: queue.SimpleQueue[grpc.ChannelConnectivity] = queue.SimpleQueue()
    channel.subscribe(states.put, try_to_connect=True)
    deadline = time.monotonic() + timeout_s
    try:
        while True:
            try:
                state = states.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                return f"no connection within {timeout_s:g} s"
            if state is connectivity.READY:
                return ""
            if state is connectivity.TRANSIENT_FAILURE:
                return "connection failed"
    finally:
        channel.unsubscribe(states.put)


class SyncMamClient:
    """MamClient's calls, blocking, over one grpc channel.

    Create it with `SyncMamClient.connect(target)`; close it with `client.close()` or `with`.
    Every call raises MamError on failure; the generated stubs are `accounts_stub` and
    `trading_stub`.
    """

    def __init__(
        self,
        channel: grpc.Channel,
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
    def connect(
        cls,
        target: str,
        *,
        api_key: str | None = None,
        tls: TlsConfig | None = None,
        timeout_s: float | None = DEFAULT_TIMEOUT_S,
        connect_timeout_s: float | None = DEFAULT_CONNECT_TIMEOUT_S,
    ) -> SyncMamClient:
        """A client of the gateway at target (HOST:PORT). With connect_timeout_s, waits that
        long for the connection and raises MamError(UNAVAILABLE) if there is none; with None,
        connects on the first call."""
        if tls is None:
            channel = grpc.insecure_channel(target, options=CHANNEL_OPTIONS)
        else:
            channel = grpc.secure_channel(target, tls.credentials(), options=CHANNEL_OPTIONS)
        if connect_timeout_s is not None:
            problem = _first_connection(channel, connect_timeout_s)
            if problem:
                channel.close()
                raise MamError(
                    grpc.StatusCode.UNAVAILABLE, f"cannot reach the gateway at {target}: {problem}"
                )
        return cls(channel, api_key=api_key, timeout_s=timeout_s)

    def close(self) -> None:
        self.channel.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def _call(self, method: Callable[..., Response], request: Request) -> Response:
        try:
            return method(request, metadata=self.metadata, timeout=self.timeout_s)
        except grpc.RpcError as error:
            raise MamError.from_rpc_error(error) from None

    # Accounts

    def create_account(self, account: NewAccount) -> Account:
        request = acc.CreateAccountRequest(account=_convert.new_account_to_wire(account))
        response = self._call(self.accounts_stub.CreateAccount, request)
        return _convert.account_from_wire(response.account)

    def get_account(self, account_id: str) -> Account:
        request = acc.GetAccountRequest(account_id=account_id)
        response = self._call(self.accounts_stub.GetAccount, request)
        return _convert.account_from_wire(response.account)

    def delete_account(self, account_id: str) -> None:
        """See MamClient.delete_account."""
        request = acc.DeleteAccountRequest(account_id=account_id)
        self._call(self.accounts_stub.DeleteAccount, request)

    def list_accounts_page(
        self, *, page_size: int = 0, page_token: str = "", group_id: str = ""
    ) -> Page[Account]:
        request = acc.ListAccountsRequest(
            page_size=page_size, page_token=page_token, group_id=group_id
        )
        response = self._call(self.accounts_stub.ListAccounts, request)
        return Page(
            tuple(_convert.account_from_wire(a) for a in response.accounts),
            response.next_page_token,
        )

    def list_accounts(self, *, group_id: str = "", page_size: int = 0) -> Iterator[Account]:
        """Every account (of group_id, when set), fetching page after page as it goes."""
        token = ""
        while True:
            page = self.list_accounts_page(page_size=page_size, page_token=token, group_id=group_id)
            yield from page.items
            if not page.next_page_token:
                return
            token = page.next_page_token

    # Groups

    def create_group(self, group: NewGroup) -> Group:
        request = acc.CreateGroupRequest(group=_convert.new_group_to_wire(group))
        response = self._call(self.accounts_stub.CreateGroup, request)
        return _convert.group_from_wire(response.group)

    def get_group(self, group_id: str) -> Group:
        request = acc.GetGroupRequest(group_id=group_id)
        response = self._call(self.accounts_stub.GetGroup, request)
        return _convert.group_from_wire(response.group)

    def list_groups_page(self, *, page_size: int = 0, page_token: str = "") -> Page[Group]:
        request = acc.ListGroupsRequest(page_size=page_size, page_token=page_token)
        response = self._call(self.accounts_stub.ListGroups, request)
        return Page(
            tuple(_convert.group_from_wire(g) for g in response.groups), response.next_page_token
        )

    def list_groups(self, *, page_size: int = 0) -> Iterator[Group]:
        token = ""
        while True:
            page = self.list_groups_page(page_size=page_size, page_token=token)
            yield from page.items
            if not page.next_page_token:
                return
            token = page.next_page_token

    def update_group(
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
        response = self._call(self.accounts_stub.UpdateGroup, request)
        return _convert.group_from_wire(response.group)

    # Master orders

    def preview_allocation(self, spec: OrderSpec) -> Allocation:
        """What each account would get for spec; sends and stores nothing."""
        request = trd.PreviewAllocationRequest(order=_convert.spec_to_wire(spec))
        response = self._call(self.trading_stub.PreviewAllocation, request)
        return _convert.allocation_from_wire(response.allocation)

    def submit_master_order(self, spec: OrderSpec) -> Submission:
        """Submits spec under its client_order_id (a fresh one when empty): resubmitting the
        same spec is harmless."""
        message = _convert.spec_to_wire(spec)
        message.client_order_id = message.client_order_id or new_client_order_id()
        request = trd.SubmitMasterOrderRequest(order=message)
        response = self._call(self.trading_stub.SubmitMasterOrder, request)
        return _convert.submission_from_wire(response)

    def get_master_order(self, master_order_id: str) -> MasterOrder:
        """The master order with its allocation and child orders."""
        request = trd.GetMasterOrderRequest(master_order_id=master_order_id)
        response = self._call(self.trading_stub.GetMasterOrder, request)
        return _convert.master_order_from_wire(response.master_order)

    def list_master_orders_page(
        self, *, page_size: int = 0, page_token: str = "", group_id: str = ""
    ) -> Page[MasterOrder]:
        request = trd.ListMasterOrdersRequest(
            page_size=page_size, page_token=page_token, group_id=group_id
        )
        response = self._call(self.trading_stub.ListMasterOrders, request)
        return Page(
            tuple(_convert.master_order_from_wire(m) for m in response.master_orders),
            response.next_page_token,
        )

    def list_master_orders(
        self, *, group_id: str = "", page_size: int = 0
    ) -> Iterator[MasterOrder]:
        """Master orders, newest first, without their children."""
        token = ""
        while True:
            page = self.list_master_orders_page(
                page_size=page_size, page_token=token, group_id=group_id
            )
            yield from page.items
            if not page.next_page_token:
                return
            token = page.next_page_token

    def cancel_master_order(self, master_order_id: str) -> MasterOrder:
        request = trd.CancelMasterOrderRequest(master_order_id=master_order_id)
        response = self._call(self.trading_stub.CancelMasterOrder, request)
        return _convert.master_order_from_wire(response.master_order)

    def close_master_position(
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
        response = self._call(self.trading_stub.CloseMasterPosition, request)
        return _convert.master_order_from_wire(response.master_order)

    # Fills

    def fill_events(
        self,
        *,
        after_sequence: int = 0,
        account_ids: Iterable[str] = (),
        master_order_id: str = "",
        live_only: bool = False,
        retry: RetryPolicy | None = None,
    ) -> Generator[FillEvent, None]:
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
                for response in call:
                    yield from cursor.accept(response)
            except grpc.RpcError as rpc_error:
                error = MamError.from_rpc_error(rpc_error)
            finally:
                call.cancel()  # type: ignore[no-untyped-call]  # grpc-stubs lacks it
            time.sleep(cursor.backoff_after(error))

    def fills(
        self,
        *,
        after_sequence: int = 0,
        account_ids: Iterable[str] = (),
        master_order_id: str = "",
        live_only: bool = False,
        retry: RetryPolicy | None = None,
    ) -> Generator[Fill, None]:
        """The fills of fill_events, without the heartbeats."""
        events = self.fill_events(
            after_sequence=after_sequence,
            account_ids=account_ids,
            master_order_id=master_order_id,
            live_only=live_only,
            retry=retry,
        )
        try:
            for event in events:
                if isinstance(event, Fill):
                    yield event
        finally:
            events.close()

    # Reporting

    @property
    def reporting_stub(self) -> reporting_service_pb2_grpc.ReportingServiceStub:
        return reporting_service_pb2_grpc.ReportingServiceStub(self.channel)

    def account_performance(
        self, account_id: str, *, start: datetime, end: datetime
    ) -> AccountPerformance:
        """The account's performance over [start, end) (aware datetimes)."""
        start_time, end_time = period_to_wire(start, end)
        request = rpt.GetAccountPerformanceRequest(
            account_id=account_id, start_time=start_time, end_time=end_time
        )
        response = self._call(self.reporting_stub.GetAccountPerformance, request)
        return performance_from_wire(account_id, response)

    def download_account_statement(
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
            for chunk in self.reporting_stub.GetAccountStatement(
                request, metadata=self.metadata, timeout=self.timeout_s
            ):
                if written == 0 and chunk.content_type:
                    file = StatementFile(chunk.file_name, chunk.content_type, chunk.total_size)
                out.write(chunk.data)
                written += len(chunk.data)
        except grpc.RpcError as error:
            raise MamError.from_rpc_error(error) from None
        return StatementFile(file.file_name, file.content_type, written)
