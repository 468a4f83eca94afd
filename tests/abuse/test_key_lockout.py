"""An attacker who knows a key id (key ids are not secret) sends wrong secrets for it while the
key's holder calls: the holder must keep being served (issue 19, item 4).

The attack starts before the holder's first call, so that the holder's key is not verified yet
when it arrives: the case the code before issue 19 lost (after 10 wrong secrets for a key id,
even the right one was AUTHENTICATION_THROTTLED; ~17 wrong secrets a second failed 22 of 40 of
the holder's calls). The attacker sends ATTACK_PER_SECOND wrong secrets a second on each of its
connections, from the holder's own address (loopback): the throttles count per connection and
per address, never per key id.

The bound: every one of the holder's HOLDER_CALLS calls succeeds (100 %). A key verified once is
answered from memory, whatever anyone else sends; the holder's first call is refused only when
its own address has spent `auth.failures_per_address` (40) failed authentications, more than 4
attacking connections spend in a burst (5 each, then one per 2 s each, below the address's
refill of 5 a second). Each test prints the figures: the attacker's calls and how they were
refused, the holder's success rate, and the gateway's CPU time over the attack.
"""

from __future__ import annotations

import asyncio
import collections
import secrets
import time
from pathlib import Path

import grpc
import pytest

from gateway._proto.mam.v1 import account_service_pb2, account_service_pb2_grpc
from tests.abuse.gateway_process import abused_gateway
from tests.support import error_details

ATTACK_PER_SECOND = 17.0
HOLDER_CALLS = 40
HOLDER_PER_SECOND = 10.0


def own_connection(
    address: str,
) -> tuple[grpc.aio.Channel, account_service_pb2_grpc.AccountServiceStub]:
    channel = grpc.aio.insecure_channel(address, options=[("grpc.use_local_subchannel_pool", 1)])
    return channel, account_service_pb2_grpc.AccountServiceStub(channel)


@pytest.mark.parametrize("attacker_connections", [1, 4])
async def test_wrong_secrets_for_a_key_id_do_not_lock_out_its_holder(
    tmp_path: Path, attacker_connections: int
) -> None:
    with abused_gateway(tmp_path) as gateway:
        assert gateway.address.startswith("127.0.0.1:"), "the abuse suite runs on loopback only"
        request = account_service_pb2.ListGroupsRequest()
        attacker_refusals: collections.Counter[str] = collections.Counter()
        attacker_answered = 0
        stop = asyncio.Event()

        async def attack() -> None:
            nonlocal attacker_answered
            channel, stub = own_connection(gateway.address)
            try:
                while not stop.is_set():
                    guess = f"mam_{gateway.key_id}_{secrets.token_urlsafe(32)}"
                    try:
                        await stub.ListGroups(
                            request, metadata=(("authorization", f"Bearer {guess}"),), timeout=10
                        )
                        attacker_answered += 1
                    except grpc.aio.AioRpcError as error:
                        attacker_refusals[error_details(error).reason or error.code().name] += 1
                    await asyncio.sleep(1 / ATTACK_PER_SECOND)
            finally:
                await channel.close()

        attackers = [asyncio.create_task(attack()) for _ in range(attacker_connections)]
        await asyncio.sleep(1.0)  # under way before the holder's first call
        cpu_before, started = gateway.cpu_seconds(), time.monotonic()
        holder_failures: collections.Counter[str] = collections.Counter()
        holder_served = 0
        channel, holder = own_connection(gateway.address)
        try:
            for _ in range(HOLDER_CALLS):
                try:
                    await holder.ListGroups(
                        request, metadata=(("authorization", f"Bearer {gateway.key}"),), timeout=10
                    )
                    holder_served += 1
                except grpc.aio.AioRpcError as error:
                    holder_failures[error_details(error).reason or error.code().name] += 1
                await asyncio.sleep(1 / HOLDER_PER_SECOND)
        finally:
            await channel.close()
            stop.set()
            await asyncio.gather(*attackers)
        cpu_s, elapsed_s = gateway.cpu_seconds() - cpu_before, time.monotonic() - started
        print(
            f"\n[abuse] key-id lock-out, {attacker_connections} attacking connection(s) at "
            f"~{ATTACK_PER_SECOND:g} wrong secrets/s each: attacker sent "
            f"{sum(attacker_refusals.values()) + attacker_answered} calls, refused "
            f"{dict(attacker_refusals)}, answered {attacker_answered}; the holder's success "
            f"rate {holder_served}/{HOLDER_CALLS} ({100 * holder_served / HOLDER_CALLS:.0f} %)"
            f"{f', failures {dict(holder_failures)}' if holder_failures else ''}; gateway CPU "
            f"{cpu_s:.2f} s over the holder's {elapsed_s:.1f} s"
        )
        assert attacker_answered == 0
        assert holder_served == HOLDER_CALLS, dict(holder_failures)
