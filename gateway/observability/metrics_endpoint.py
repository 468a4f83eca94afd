"""The HTTP endpoint Prometheus scrapes: GET /metrics from one registry, served in the event loop.

Served by the process's own event loop (asyncio.start_server), not prometheus_client's thread
server: the collectors that read the gateway's state at scrape time (subscriber buffers,
terminals, kill switches) then read it on the loop that changes it, with no lock and no torn
read, and the metrics the engine records are plain loop-owned state. `refresh`, awaited before
each scrape, reads what needs a question of its own first (each terminal's health).

One request per connection (Connection: close), a small request only: a scraper's GET, or
HEAD. Both text formats (Prometheus 0.0.4 and OpenMetrics) by the Accept header, gzipped when
asked. Used by the gateway (gateway/api/server.py) and by mam-worker (gateway/worker/cli.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from prometheus_client import CollectorRegistry
from prometheus_client.exposition import choose_encoder

log = logging.getLogger(__name__)

# The most a request's line and headers may hold, and how long they may take to arrive.
MAX_REQUEST_BYTES = 16 * 1024
REQUEST_TIMEOUT_S = 10.0
# How long a scrape waits for `refresh` before answering with what it has.
REFRESH_TIMEOUT_S = 3.0
PATH = "/metrics"

Refresh = Callable[[], Awaitable[None]]


class MetricsEndpoint:
    """A listening endpoint; `port` is the one bound (listen on port 0 picks a free one)."""

    def __init__(
        self, server: asyncio.Server, registry: CollectorRegistry, refresh: Refresh | None
    ) -> None:
        self._server = server
        self._registry = registry
        self._refresh = refresh
        sockets = server.sockets
        self.host = str(sockets[0].getsockname()[0]) if sockets else ""
        self.port = int(sockets[0].getsockname()[1]) if sockets else 0

    @classmethod
    async def start(
        cls, listen: str, registry: CollectorRegistry, *, refresh: Refresh | None = None
    ) -> MetricsEndpoint:
        """Listens on `listen` (HOST:PORT); OSError when the port cannot be had."""
        host, _, port = listen.rpartition(":")
        holder: list[MetricsEndpoint] = []

        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await holder[0]._serve(reader, writer)

        server = await asyncio.start_server(
            handle, host.strip("[]"), int(port), limit=MAX_REQUEST_BYTES, reuse_address=True
        )
        endpoint = cls(server, registry, refresh)
        holder.append(endpoint)
        return endpoint

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}{PATH}"

    async def close(self) -> None:
        self._server.close()
        with contextlib.suppress(Exception):
            async with asyncio.timeout(2.0):
                await self._server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            async with asyncio.timeout(REQUEST_TIMEOUT_S):
                head = await reader.readuntil(b"\r\n\r\n")
            response = await self._answer(head)
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError):
            response = _Response("400 Bad Request", {}, b"bad request\n")
        except ConnectionError:
            writer.close()
            return
        try:
            lines = [f"HTTP/1.1 {response.status}", "Connection: close"]
            lines += [f"{name}: {value}" for name, value in response.headers.items()]
            lines.append(f"Content-Length: {len(response.body)}")
            writer.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))
            if response.with_body:
                writer.write(response.body)
            await writer.drain()
        except ConnectionError:
            pass
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()

    async def _answer(self, head: bytes) -> _Response:
        request_line, *header_lines = head.decode("latin-1").split("\r\n")
        parts = request_line.split(" ")
        if len(parts) != 3:
            return _Response("400 Bad Request", {}, b"bad request\n")
        method, target, _ = parts
        headers = {}
        for line in header_lines:
            name, sep, value = line.partition(":")
            if sep:
                headers[name.strip().lower()] = value.strip()
        if target.split("?", 1)[0] != PATH:
            return _Response("404 Not Found", {"Content-Type": "text/plain"}, b"see /metrics\n")
        if method not in ("GET", "HEAD"):
            return _Response("405 Method Not Allowed", {"Allow": "GET, HEAD"}, b"")
        if self._refresh is not None:
            try:
                async with asyncio.timeout(REFRESH_TIMEOUT_S):
                    await self._refresh()
            except TimeoutError:
                log.warning("metrics: reading state took over %s s; answered", REFRESH_TIMEOUT_S)
            except Exception:  # a scrape answers with what it has
                log.exception("metrics: reading state before a scrape failed")
        encoder, content_type = choose_encoder(headers.get("accept", ""))
        body = encoder(self._registry)
        answer = {"Content-Type": content_type}
        if "gzip" in headers.get("accept-encoding", ""):
            body = gzip.compress(body, compresslevel=1)
            answer["Content-Encoding"] = "gzip"
        return _Response("200 OK", answer, body, with_body=method == "GET")


@dataclass(frozen=True, slots=True)
class _Response:
    status: str
    headers: dict[str, str]
    body: bytes
    with_body: bool = True
