"""Channel settings shared by both clients: TLS, the API key, message limits; and the wait for
a channel's first connection, in each client's way (the one part of `connect` that differs)."""

from __future__ import annotations

import asyncio
import queue
import time
from dataclasses import dataclass
from pathlib import Path

import grpc

# The gateway's own limit (server.max_message_bytes in its configuration).
MAX_MESSAGE_BYTES = 16 * 1024 * 1024
CHANNEL_OPTIONS: tuple[tuple[str, int], ...] = (
    ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
    ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
    # Connections of its own: a new client does not inherit the failure backoff of another
    # channel to the same gateway (grpc's default pool is shared by the whole process).
    ("grpc.use_local_subchannel_pool", 1),
)


@dataclass(frozen=True, slots=True, kw_only=True)
class TlsConfig:
    """TLS to the gateway: the CA that signed its certificate (None: the system roots) and, for
    mutual TLS, the client's certificate chain and private key (PEM)."""

    root_certificates: bytes | None = None
    certificate_chain: bytes | None = None
    private_key: bytes | None = None

    @classmethod
    def from_files(
        cls,
        *,
        ca: str | Path | None = None,
        cert: str | Path | None = None,
        key: str | Path | None = None,
    ) -> TlsConfig:
        if (cert is None) != (key is None):
            raise ValueError("a client certificate needs its private key, and the other way round")
        return cls(
            root_certificates=Path(ca).read_bytes() if ca is not None else None,
            certificate_chain=Path(cert).read_bytes() if cert is not None else None,
            private_key=Path(key).read_bytes() if key is not None else None,
        )

    def credentials(self) -> grpc.ChannelCredentials:
        return grpc.ssl_channel_credentials(
            root_certificates=self.root_certificates,
            private_key=self.private_key,
            certificate_chain=self.certificate_chain,
        )


def call_metadata(api_key: str | None) -> tuple[tuple[str, str], ...]:
    """Sent with every call: the API key as a bearer token, when there is one."""
    return (("authorization", f"Bearer {api_key}"),) if api_key else ()


async def first_connection(channel: grpc.aio.Channel, timeout_s: float) -> str:
    """Waits for the channel's first connection: "" when it is up, else what went wrong."""
    connectivity = grpc.ChannelConnectivity
    try:
        async with asyncio.timeout(timeout_s):
            state = channel.get_state(try_to_connect=True)
            while state not in (connectivity.READY, connectivity.TRANSIENT_FAILURE):
                await channel.wait_for_state_change(state)
                state = channel.get_state(try_to_connect=True)
    except TimeoutError:
        return f"no connection within {timeout_s:g} s"
    return "" if state is connectivity.READY else "connection failed"


def first_connection_blocking(channel: grpc.Channel, timeout_s: float) -> str:
    """first_connection, blocking, for a grpc (not grpc.aio) channel."""
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
