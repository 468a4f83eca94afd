"""Submit one master order to a running gateway and watch its fills arrive.

    make run                                   # in one terminal
    uv run python clients/python/examples/submit_and_watch.py   # in another

Options: --target HOST:PORT (default 127.0.0.1:50051), --group NAME (default demo),
--symbol, --side, --volume.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import uuid

import grpc
from grpc_status import rpc_status

from gateway._proto.mam.v1 import (
    account_service_pb2,
    account_service_pb2_grpc,
    common_pb2,
    order_pb2,
    trading_service_pb2,
    trading_service_pb2_grpc,
)


async def find_group(accounts: account_service_pb2_grpc.AccountServiceStub, name: str) -> str:
    token = ""
    while True:
        page = await accounts.ListGroups(account_service_pb2.ListGroupsRequest(page_token=token))
        for group in page.groups:
            if group.name == name:
                return group.group_id
        if not page.next_page_token:
            raise SystemExit(f"no group named {name!r}")
        token = page.next_page_token


async def run(args: argparse.Namespace) -> int:
    async with grpc.aio.insecure_channel(args.target) as channel:
        accounts = account_service_pb2_grpc.AccountServiceStub(channel)
        trading = trading_service_pb2_grpc.TradingServiceStub(channel)
        group_id = await find_group(accounts, args.group)

        # Subscribe first; the first message (a heartbeat) says the stream is live.
        fills = trading.SubscribeFills(trading_service_pb2.SubscribeFillsRequest(live_only=True))
        await fills.read()

        side = common_pb2.SIDE_BUY if args.side == "buy" else common_pb2.SIDE_SELL
        try:
            submitted = await trading.SubmitMasterOrder(
                trading_service_pb2.SubmitMasterOrderRequest(
                    order=order_pb2.MasterOrderSpec(
                        client_order_id=f"example-{uuid.uuid4().hex[:12]}",
                        group_id=group_id,
                        symbol=args.symbol,
                        side=side,
                        type=common_pb2.ORDER_TYPE_MARKET,
                        volume=args.volume,
                    )
                )
            )
        except grpc.aio.AioRpcError as error:
            status = rpc_status.from_call(error)
            print(f"rejected: {error.code().name}: {error.details()}", file=sys.stderr)
            if status is not None:
                for detail in status.details:
                    print(f"  {detail.TypeName()}", file=sys.stderr)
            return 1
        master = submitted.master_order
        print(
            f"master order {master.master_order_id}: {args.volume} {args.symbol} "
            f"over {master.child_count} child orders"
        )
        for line in master.allocation.lines:
            reasons = ",".join(order_pb2.AllocationReason.Name(r)[18:] for r in line.reasons)
            print(
                f"  {line.account_id}  equity {line.basis:>10}  target {line.target_volume:>13}"
                f"  -> {line.volume or '0':>6}  {reasons}"
            )

        received = 0
        while received < master.child_count:
            message = await fills.read()
            if message is grpc.aio.EOF:
                break
            for fill in message.batch.fills:
                if fill.master_order_id != master.master_order_id:
                    continue
                received += 1
                print(
                    f"fill #{fill.sequence}: {fill.account_id} {fill.volume} @ {fill.price} "
                    f"(slippage {fill.slippage_points} points)"
                )
            if message.heartbeat_sequence:
                # A quiet stream: stop once the order has ended (some children may be rejected).
                order = (
                    await trading.GetMasterOrder(
                        trading_service_pb2.GetMasterOrderRequest(
                            master_order_id=master.master_order_id
                        )
                    )
                ).master_order
                if order.state >= order_pb2.MASTER_ORDER_STATE_FILLED:
                    break
        fills.cancel()

        final = (
            await trading.GetMasterOrder(
                trading_service_pb2.GetMasterOrderRequest(master_order_id=master.master_order_id)
            )
        ).master_order
        print(
            f"{order_pb2.MasterOrderState.Name(final.state)}: filled {final.filled_volume} lots "
            f"at {final.average_fill_price} average, {final.filled_child_count} filled / "
            f"{final.rejected_child_count} rejected, dispatch skew "
            f"{final.execution.dispatch_skew.ToMilliseconds()} ms"
        )
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--target", default="127.0.0.1:50051")
    parser.add_argument("--group", default="demo")
    parser.add_argument("--symbol", default="EURUSD")
    parser.add_argument("--side", choices=["buy", "sell"], default="buy")
    parser.add_argument("--volume", default="1.00")
    return asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    sys.exit(main())
