"""TLS and mutual TLS on the API endpoint, and the plaintext health-only probe endpoint.

Certificates are made by the openssl command line for each test session: a CA, a server
certificate for 127.0.0.1/localhost and a client certificate, all signed by the CA.
"""

from __future__ import annotations

import asyncio
import dataclasses
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from gateway._proto.mam.v1 import account_service_pb2, account_service_pb2_grpc
from gateway.api.server import RunningGateway, start_gateway
from gateway.cli import probe
from gateway.config import GatewayConfig, TlsConfig
from tests.support import make_config


def _openssl(directory: Path, *args: str) -> None:
    subprocess.run(["openssl", *args], cwd=directory, check=True, capture_output=True)


def _signed(directory: Path, name: str, extensions: str) -> None:
    _openssl(directory, "req", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{name}.key",
             "-subj", f"/CN={name}", "-out", f"{name}.csr")  # fmt: skip
    (directory / f"{name}.ext").write_text(extensions)
    _openssl(directory, "x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey",
             "ca.key", "-CAcreateserial", "-days", "2", "-extfile", f"{name}.ext",
             "-out", f"{name}.pem")  # fmt: skip


@pytest.fixture(scope="session")
def certificates(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("tls")
    _openssl(directory, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key",
             "-subj", "/CN=mam-test-ca", "-days", "2", "-out", "ca.pem")  # fmt: skip
    _signed(directory, "server", "subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    _signed(directory, "client", "extendedKeyUsage=clientAuth\n")
    return directory


def _with_tls(config: GatewayConfig, tls: TlsConfig) -> GatewayConfig:
    server = dataclasses.replace(config.server, tls=tls, health_listen="127.0.0.1:0")
    return dataclasses.replace(config, server=server)


@pytest.fixture
async def tls_gateway(tmp_path: Path, certificates: Path) -> AsyncIterator[RunningGateway]:
    tls = TlsConfig(certificates / "server.pem", certificates / "server.key")
    running = await start_gateway(_with_tls(make_config(tmp_path), tls))
    try:
        yield running
    finally:
        await running.stop(0.5)


async def _list_accounts(channel: grpc.aio.Channel) -> None:
    stub = account_service_pb2_grpc.AccountServiceStub(channel)
    await stub.ListAccounts(account_service_pb2.ListAccountsRequest(), timeout=5)


async def test_the_api_is_served_over_tls_and_not_in_plaintext(
    tls_gateway: RunningGateway, certificates: Path
) -> None:
    credentials = grpc.ssl_channel_credentials((certificates / "ca.pem").read_bytes())
    async with grpc.aio.secure_channel(tls_gateway.address, credentials) as channel:
        await _list_accounts(channel)
    async with grpc.aio.insecure_channel(tls_gateway.address) as channel:
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await _list_accounts(channel)
    assert caught.value.code() is grpc.StatusCode.UNAVAILABLE


async def test_mutual_tls_refuses_a_client_without_a_certificate(
    tmp_path: Path, certificates: Path
) -> None:
    tls = TlsConfig(
        certificates / "server.pem", certificates / "server.key", certificates / "ca.pem"
    )
    gateway = await start_gateway(_with_tls(make_config(tmp_path), tls))
    try:
        root = (certificates / "ca.pem").read_bytes()
        anonymous = grpc.ssl_channel_credentials(root)
        async with grpc.aio.secure_channel(gateway.address, anonymous) as channel:
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await _list_accounts(channel)
        assert caught.value.code() is grpc.StatusCode.UNAVAILABLE
        known = grpc.ssl_channel_credentials(
            root,
            private_key=(certificates / "client.key").read_bytes(),
            certificate_chain=(certificates / "client.pem").read_bytes(),
        )
        async with grpc.aio.secure_channel(gateway.address, known) as channel:
            await _list_accounts(channel)
    finally:
        await gateway.stop(0.5)


async def test_the_probe_endpoint_answers_health_in_plaintext_on_loopback(
    tls_gateway: RunningGateway,
) -> None:
    address = f"127.0.0.1:{tls_gateway.health_port}"
    async with grpc.aio.insecure_channel(address) as channel:
        response = await health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(service="mam.v1.TradingService"), timeout=5
        )
        assert response.status == health_pb2.HealthCheckResponse.SERVING
        # Only health there: the API is not reachable without TLS.
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await _list_accounts(channel)
        assert caught.value.code() is grpc.StatusCode.UNIMPLEMENTED
    server = dataclasses.replace(tls_gateway.config.server, health_listen=address)
    config = dataclasses.replace(tls_gateway.config, server=server)
    assert await asyncio.to_thread(probe, config) == 0
    await tls_gateway.health.enter_graceful_shutdown()
    assert await asyncio.to_thread(probe, config) == 1
