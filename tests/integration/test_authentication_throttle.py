"""Wrong secrets throttle whoever sends them, never the key's holder (issue 19, item 4).

Key ids are not secret. Guessing secrets for one must neither lock its holder out nor make the
gateway run scrypt for every guess. tests/abuse/test_key_lockout.py runs the same attack on a
gateway subprocess, from several connections at once.
"""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest

from gateway._proto.mam.v1 import account_service_pb2, account_service_pb2_grpc
from gateway.api import authenticator
from gateway.api.server import RunningGateway, start_gateway
from tests.support import error_details, make_config

Metadata = tuple[tuple[str, str], ...]


@dataclass
class Gateway:
    running: RunningGateway
    key: str
    channels: list[grpc.aio.Channel]

    @property
    def key_id(self) -> str:
        return self.key.split("_")[1]

    def connection(self) -> account_service_pb2_grpc.AccountServiceStub:
        """A stub on a TCP connection of its own (a local subchannel pool is not shared)."""
        channel = grpc.aio.insecure_channel(
            self.running.address, options=[("grpc.use_local_subchannel_pool", 1)]
        )
        self.channels.append(channel)
        return account_service_pb2_grpc.AccountServiceStub(channel)


def bearer(key: str) -> Metadata:
    return (("authorization", f"Bearer {key}"),)


def wrong_secret_for(key_id: str) -> str:
    return f"mam_{key_id}_{secrets.token_urlsafe(32)}"


async def refusal(stub: account_service_pb2_grpc.AccountServiceStub, key: str) -> str:
    """The reason ListGroups with `key` is refused for."""
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await stub.ListGroups(account_service_pb2.ListGroupsRequest(), metadata=bearer(key))
    return error_details(refused.value).reason


@pytest.fixture
async def gateway(tmp_path: Path) -> AsyncIterator[Gateway]:
    running = await start_gateway(make_config(tmp_path, auth=True))
    started = Gateway(running, (tmp_path / "admin.key").read_text().strip(), [])
    try:
        yield started
    finally:
        for channel in started.channels:
            await channel.close()
        await running.stop(0.5)


@pytest.fixture
def verifications(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The secrets scrypt is run for, in order."""
    verified: list[str] = []
    verify: Callable[[str, str], bool] = authenticator.verify_secret

    def counted(secret: str, secret_hash: str) -> bool:
        verified.append(secret)
        return verify(secret, secret_hash)

    monkeypatch.setattr(authenticator, "verify_secret", counted)
    return verified


async def test_wrong_secrets_for_a_key_id_never_lock_out_its_holder(gateway: Gateway) -> None:
    attacker = gateway.connection()
    # Before the holder's first call (its key not verified yet), and after it.
    for _ in range(2):
        reasons = {await refusal(attacker, wrong_secret_for(gateway.key_id)) for _ in range(30)}
        assert reasons <= {"API_KEY_INVALID", "AUTHENTICATION_THROTTLED"}
        holder = gateway.connection()
        for _ in range(5):
            await holder.ListGroups(
                account_service_pb2.ListGroupsRequest(), metadata=bearer(gateway.key)
            )


async def test_a_wrong_secret_costs_one_verification_and_none_once_the_key_is_known(
    gateway: Gateway, verifications: list[str]
) -> None:
    attacker = gateway.connection()
    repeated = wrong_secret_for(gateway.key_id)
    for _ in range(4):
        assert await refusal(attacker, repeated) == "API_KEY_INVALID"
    assert len(verifications) == 1  # the same wrong secret again is answered from memory
    await gateway.connection().ListGroups(
        account_service_pb2.ListGroupsRequest(), metadata=bearer(gateway.key)
    )
    assert len(verifications) == 2
    # The key id's right secret is known now: every other one is wrong, without scrypt.
    for _ in range(20):
        assert await refusal(attacker, wrong_secret_for(gateway.key_id)) == "API_KEY_INVALID"
    assert len(verifications) == 2


async def test_a_connection_that_keeps_failing_is_throttled_not_its_neighbours(
    gateway: Gateway,
) -> None:
    guesser = gateway.connection()
    unknown_ids = [wrong_secret_for(secrets.token_hex(8)) for _ in range(6)]
    reasons = [await refusal(guesser, key) for key in unknown_ids]
    # auth.failures_per_connection (5) failures, then the connection waits.
    assert reasons == ["API_KEY_INVALID"] * 5 + ["AUTHENTICATION_THROTTLED"]
    with pytest.raises(grpc.aio.AioRpcError) as throttled:
        await guesser.ListGroups(
            account_service_pb2.ListGroupsRequest(), metadata=bearer(unknown_ids[0])
        )
    details = error_details(throttled.value)
    assert details.code == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "connection" in details.message and details.retry_delay_s > 0
    assert gateway.key_id not in details.message
    # Another connection from the same address is checked as before, and the holder served.
    assert await refusal(gateway.connection(), unknown_ids[0]) == "API_KEY_INVALID"
    await gateway.connection().ListGroups(
        account_service_pb2.ListGroupsRequest(), metadata=bearer(gateway.key)
    )
