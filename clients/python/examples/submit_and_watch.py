"""Submit one master order to a running gateway and watch its fills arrive.

    make run                                                    # in one terminal
    uv run python clients/python/examples/submit_and_watch.py   # in another

Options: --target HOST:PORT (default 127.0.0.1:50051), --group NAME (default demo),
--symbol, --side, --volume. The API key comes from MAM_API_KEY, else from var/admin.key (the
admin key `make run` creates on first start).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from decimal import Decimal
from pathlib import Path

from mam_client import Fill, Heartbeat, MamClient, MamError, OrderSpec, Side


async def run(args: argparse.Namespace) -> int:
    async with await MamClient.connect(args.target, api_key=api_key()) as client:
        group = None
        async for candidate in client.list_groups():
            if candidate.name == args.group:
                group = candidate
        if group is None:
            print(f"no group named {args.group!r}", file=sys.stderr)
            return 1

        # Subscribe first; the first heartbeat says the stream is live.
        events = client.fill_events(live_only=True)
        await anext(events)

        try:
            submission = await client.submit_master_order(
                OrderSpec(
                    group_id=group.group_id,
                    symbol=args.symbol,
                    side=Side(args.side.upper()),
                    volume=Decimal(args.volume),
                )
            )
        except MamError as error:
            print(f"rejected: {error}", file=sys.stderr)
            return 1
        master = submission.master_order
        print(
            f"master order {master.master_order_id}: {args.volume} {args.symbol} "
            f"over {master.child_count} child orders"
        )
        for line in master.allocation.lines if master.allocation else ():
            reasons = ",".join(r.value for r in line.reasons)
            print(
                f"  {line.account_id}  equity {line.basis!s:>10}  target {line.target_volume:>13}"
                f"  -> {line.volume!s:>6}  {reasons}"
            )

        received = 0
        async for event in events:
            if isinstance(event, Fill) and event.master_order_id == master.master_order_id:
                received += 1
                print(
                    f"fill #{event.sequence}: {event.account_id} {event.volume} @ {event.price} "
                    f"(slippage {event.slippage_points} points)"
                )
            if received >= master.child_count:
                break
            # A quiet stream: stop once the order has ended (some children may be rejected).
            if (
                isinstance(event, Heartbeat)
                and (await client.get_master_order(master.master_order_id)).state.is_final
            ):
                break
        await events.aclose()

        final = await client.get_master_order(master.master_order_id)
        skew = final.execution.dispatch_skew if final.execution else None
        print(
            f"{final.state.value}: filled {final.filled_volume} lots at {final.average_fill_price}"
            f" average, {final.filled_child_count} filled / {final.rejected_child_count} rejected,"
            f" dispatch skew {skew.total_seconds() * 1000 if skew else 0:.0f} ms"
        )
    return 0


def api_key() -> str | None:
    key = os.environ.get("MAM_API_KEY")
    if key:
        return key
    demo_key = Path(__file__).resolve().parents[3] / "var" / "admin.key"
    return demo_key.read_text().strip() if demo_key.exists() else None


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
