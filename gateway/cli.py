"""`mam-gateway`: runs the gateway from a configuration file."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
import sys
from datetime import UTC, datetime
from pathlib import Path

from gateway.api import fill_wire
from gateway.api.server import start_gateway
from gateway.config import ConfigError, GatewayConfig, load_config
from gateway.domain.access import ApiKey, Role, issue_key
from gateway.garbage_collection import tune_for_serving
from gateway.memory_return import HeapTrimmer, map_large_blocks_apart
from gateway.observability.log_format import configure_logging
from gateway.probe import check_health
from gateway.slow_stop import report_if_slow
from gateway.store import Store
from gateway.store.writer_lock import WriterLockHeld
from gateway.tls_files import TlsFileError, read_server_tls

try:
    import uvloop
except ImportError:  # Windows: the default event loop
    uvloop = None  # type: ignore[assignment]

log = logging.getLogger("gateway")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="mam-gateway",
        description="Multi-Account Manager gateway for MetaTrader 4 and 5 (gRPC API mam.v1).",
    )
    parser.add_argument(
        "--config",
        type=Path,
        default=Path("deploy/config/demo.toml"),
        help="TOML configuration file (default: %(default)s); MAM__SECTION__KEY overrides",
    )
    parser.add_argument(
        "--check-config", action="store_true", help="validate the configuration and exit"
    )
    parser.add_argument(
        "--probe",
        action="store_true",
        help="ask the running gateway's server.health_listen endpoint; exit 0 if SERVING "
        "(container healthchecks run the lighter mam-probe)",
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    keys = commands.add_parser(
        "keys",
        help="API keys, straight in the configured database (the first admin key, recovery)",
    )
    key_commands = keys.add_subparsers(dest="key_command", metavar="ACTION", required=True)
    create = key_commands.add_parser("create", help="create a key and print it (shown once)")
    create.add_argument("--name", required=True, help="who or what uses the key")
    create.add_argument("--role", required=True, choices=[r.name.lower() for r in Role])
    create.add_argument("--group", action="append", default=[], help="a manager's group id")
    create.add_argument("--account", action="append", default=[], help="an investor's account")
    key_commands.add_parser("list", help="list the keys that are not revoked")
    revoke = key_commands.add_parser("revoke", help="revoke a key at once")
    revoke.add_argument("key_id")
    args = parser.parse_args(argv)
    try:
        config = load_config(args.config)
    except ConfigError as error:
        print(f"mam-gateway: configuration error: {error}", file=sys.stderr)
        return 2
    if args.check_config:
        for warning in configuration_warnings(config):
            print(f"mam-gateway: warning: {warning}", file=sys.stderr)
        print(f"{args.config}: ok")
        return 0
    if args.probe:
        return probe(config)
    if args.command == "keys":
        return asyncio.run(manage_keys(config, args))
    configure_logging(config.log_level, config.log_format)
    runner = asyncio.run if uvloop is None else uvloop.run
    with contextlib.suppress(KeyboardInterrupt):
        return runner(serve(config))
    return 0


def probe(config: GatewayConfig, timeout_s: float = 3.0) -> int:
    """`--probe`: what `mam-probe` (gateway/probe.py) does, after validating the whole
    configuration; the container's healthcheck runs the lighter `mam-probe`."""
    if not config.server.health_listen:
        print("mam-gateway: --probe needs server.health_listen", file=sys.stderr)
        return 2
    serving, status = check_health(config.server.health_listen, timeout_s=timeout_s)
    if not serving:
        print(f"mam-gateway: not serving: {status}", file=sys.stderr)
        return 1
    print(status)
    return 0 if serving else 1


def configuration_warnings(config: GatewayConfig) -> tuple[str, ...]:
    """What a valid configuration should have changed soon (a certificate near its end)."""
    tls = config.server.tls
    if tls is None:
        return ()
    try:
        files = read_server_tls(
            tls.cert_file, tls.key_file, tls.client_ca_file, now=datetime.now(UTC)
        )
    except TlsFileError as error:  # changed since the configuration was loaded
        return (str(error),)
    return files.warnings


async def manage_keys(config: GatewayConfig, args: argparse.Namespace) -> int:
    # Beside a running gateway too: keys are not numbered, so no writer lock is needed.
    store = await Store.open(config.database_url, fill_encoder=fill_wire.encode, writer=False)
    try:
        if args.key_command == "create":
            issued = issue_key()
            role = Role[args.role.upper()]
            group_ids, account_ids = frozenset(args.group), frozenset(args.account)
            if (role is Role.MANAGER and not group_ids) or (
                role is Role.INVESTOR and not account_ids
            ):
                print(
                    "mam-gateway: a manager key needs --group, an investor key --account",
                    file=sys.stderr,
                )
                return 2
            missing = [g for g in sorted(group_ids) if await store.get_group(g) is None]
            missing += sorted(account_ids - (await store.get_accounts(account_ids)).keys())
            if missing:
                print(f"mam-gateway: no such group or account: {missing[0]}", file=sys.stderr)
                return 2
            await store.access.insert_api_key(
                ApiKey(
                    key_id=issued.key_id,
                    name=args.name,
                    role=role,
                    secret_hash=issued.secret_hash,
                    created_at=datetime.now(UTC),
                    created_by="mam-gateway keys create",
                    group_ids=group_ids if role is Role.MANAGER else frozenset(),
                    account_ids=account_ids if role is Role.INVESTOR else frozenset(),
                )
            )
            print(issued.key)
        elif args.key_command == "list":
            after = ""
            while page := await store.access.list_api_keys(after=after, limit=500):
                for key in page:
                    scope = ",".join(sorted(key.group_ids | key.account_ids))
                    print(f"{key.key_id}  {key.role.name.lower():8}  {key.name}  {scope}")
                after = page[-1].key_id
                if len(page) < 500:
                    break
        else:
            revoked = await store.access.revoke_api_key(
                args.key_id, datetime.now(UTC), "mam-gateway keys revoke"
            )
            if revoked is None:
                print(f"mam-gateway: no API key {args.key_id}", file=sys.stderr)
                return 1
            # A running gateway that verified the key drops it within its cache time (60 s);
            # RevokeApiKey through the gateway takes effect at once.
            print(f"revoked {args.key_id}")
    finally:
        await store.close()
    return 0


# Exit codes: the start was refused (another gateway holds the database, a port is taken), or
# the gateway stopped because another process took its database's writer lock.
EXIT_START_REFUSED = 2
EXIT_LOST_WRITER_LOCK = 3


async def serve(config: GatewayConfig) -> int:
    # Before the server allocates: large request buffers go back to the system when freed.
    map_large_blocks_apart()
    loop = asyncio.get_running_loop()
    # SIGHUP's default action ends the process; while starting, every file is read anyway.
    loop.add_signal_handler(signal.SIGHUP, log.info, "SIGHUP while starting: nothing to re-read")
    try:
        gateway = await start_gateway(config)
    except ConfigError as error:  # a file changed since the configuration was checked
        print(f"mam-gateway: configuration error: {error}", file=sys.stderr, flush=True)
        return EXIT_START_REFUSED
    except (WriterLockHeld, OSError) as error:
        print(f"mam-gateway: cannot start: {error}", file=sys.stderr, flush=True)
        return EXIT_START_REFUSED
    # The operator's "read your files again": certificates and token files, without a restart.
    loop.add_signal_handler(signal.SIGHUP, gateway.reload)
    tune_for_serving()
    heap = HeapTrimmer()
    heap.start()
    # Tools and tests read this line to find the port (listen on port 0 picks a free one).
    if gateway.metrics_endpoint is not None:
        print(f"mam-gateway metrics on {gateway.metrics_endpoint.url}", flush=True)
    print(f"mam-gateway listening on {gateway.address}", flush=True)
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    stopping = asyncio.create_task(stop.wait())
    lost = asyncio.create_task(gateway.lost_writer.wait())
    await asyncio.wait([stopping, lost], return_when=asyncio.FIRST_COMPLETED)
    stopping.cancel()
    lost.cancel()
    if gateway.lost_writer.is_set():
        log.critical(
            "another process took this gateway's database: stopping without storing more; "
            "that process finds this one's orders by tag"
        )
    log.info("stopping: finishing running calls and dispatches")
    # The calls' grace, then the dispatches': past both, say what it still waits for.
    watchdog = asyncio.create_task(report_if_slow(2 * config.server.grace_seconds + 1))
    try:
        await gateway.stop()
    finally:
        watchdog.cancel()
        await heap.stop()
    log.info("stopped")
    return EXIT_LOST_WRITER_LOCK if gateway.lost_writer.is_set() else 0


if __name__ == "__main__":
    sys.exit(main())
