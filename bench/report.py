"""The human summary of a run, its ratios to the floor, and the targets (PASS/MISS, never
asserted)."""

from __future__ import annotations

from typing import Any

from bench.floor import durable_fan_out_floor_ms, floor_ms

E2E_TARGET_ACCOUNTS = 1_000
E2E_FLOOR_FACTOR = 3.0
LATENCY_MS = 50
LATENCY_FACTOR = 1.5
SKEW_P99_MS = 10.0
ALLOCATION_ACCOUNTS = 10_000
ALLOCATION_MS = 10.0
SUSTAINED_FILLS_PER_S = 10_000
REPLAY_FILLS_PER_S = 200_000
MEMORY_ACCOUNTS = 10_000
MEMORY_FILLS = 1_000_000
MEMORY_MB = 300.0


def e2e_ratios(results: dict[str, Any]) -> list[dict[str, Any]]:
    """Per e2e row: its median over the floor of the same fills (unary + commit + stream)."""
    scenarios = results["scenarios"]
    if "floor" not in scenarios or "e2e" not in scenarios:
        return []
    ratios = []
    for row in scenarios["e2e"]["rows"]:
        floor = floor_ms(scenarios["floor"], row["accounts"])
        median = row["submit_to_last_fill"]["median_ms"]
        ratios.append(
            {
                "accounts": row["accounts"],
                "latency_ms": row["latency_ms"],
                "e2e_median_ms": median,
                "floor": floor,
                # At a simulated latency the terminal's own wait is part of the floor.
                "floor_with_latency_ms": round(floor["total_ms"] + row["latency_ms"], 3),
                "ratio": round(median / (floor["total_ms"] + row["latency_ms"]), 2),
            }
        )
    return ratios


def _target(
    name: str,
    value: float | None,
    limit: float,
    unit: str,
    *,
    at_most: bool,
    floor: float | None = None,
) -> dict:
    """`floor`: the platform's least cost for the same work in this run, when measured."""
    if value is None:
        status = "N/A"
    else:
        status = "PASS" if (value <= limit if at_most else value >= limit) else "MISS"
    return {
        "target": name,
        "value": value,
        "limit": limit,
        "unit": unit,
        "kind": "at most" if at_most else "at least",
        "status": status,
        "platform_floor": floor,
    }


def targets(results: dict[str, Any]) -> list[dict[str, Any]]:
    scenarios = results["scenarios"]
    out = []
    ratios = {(r["accounts"], r["latency_ms"]): r for r in e2e_ratios(results)}
    results["ratios"] = list(ratios.values())
    at_zero = ratios.get((E2E_TARGET_ACCOUNTS, 0))
    out.append(
        _target(
            f"e2e {E2E_TARGET_ACCOUNTS:,} accounts at 0 ms: p50 / floor",
            at_zero["ratio"] if at_zero else None,
            E2E_FLOOR_FACTOR,
            "x floor",
            at_most=True,
        )
    )
    rows = {(r["accounts"], r["latency_ms"]): r for r in scenarios.get("e2e", {}).get("rows", [])}
    at_latency = rows.get((E2E_TARGET_ACCOUNTS, LATENCY_MS))
    out.append(
        _target(
            f"e2e {E2E_TARGET_ACCOUNTS:,} accounts at {LATENCY_MS} ms: p50",
            at_latency["submit_to_last_fill"]["median_ms"] if at_latency else None,
            LATENCY_FACTOR * LATENCY_MS,
            "ms",
            at_most=True,
            floor=(
                durable_fan_out_floor_ms(scenarios["floor"], E2E_TARGET_ACCOUNTS, LATENCY_MS)
                if "floor" in scenarios
                else None
            ),
        )
    )
    out.append(
        _target(
            f"e2e {E2E_TARGET_ACCOUNTS:,} accounts at {LATENCY_MS} ms: dispatch skew p99",
            at_latency["dispatch_skew"]["p99_ms"] if at_latency else None,
            SKEW_P99_MS,
            "ms",
            at_most=True,
        )
    )
    allocation = scenarios.get("allocation", {}).get("largest")
    fits = allocation and allocation["accounts"] == ALLOCATION_ACCOUNTS
    out.append(
        _target(
            f"allocation of {ALLOCATION_ACCOUNTS:,} accounts (EQUITY, median)",
            allocation["equity"]["median_ms"] if fits else None,
            ALLOCATION_MS,
            "ms",
            at_most=True,
        )
    )
    out.append(
        _target(
            f"allocation of {ALLOCATION_ACCOUNTS:,} accounts (slowest method, median)",
            allocation["slowest"]["median_ms"] if fits else None,
            ALLOCATION_MS,
            "ms",
            at_most=True,
        )
    )
    sustained = scenarios.get("sustained", {}).get("rows", {}).get("sqlite")
    full = results["mode"] == "full"
    out.append(
        _target(
            "sustained child fills/s on SQLite",
            sustained["fills_per_s"] if sustained and full else None,
            SUSTAINED_FILLS_PER_S,
            "fills/s",
            at_most=False,
        )
    )
    replay = scenarios.get("subscribers", {}).get("replay")
    out.append(
        _target(
            "replay to one subscriber",
            replay["fills_per_s"] if replay and full else None,
            REPLAY_FILLS_PER_S,
            "fills/s",
            at_most=False,
        )
    )
    memory = scenarios.get("memory")
    fits = memory and (memory["accounts"], memory["stored_fills"]) == (
        MEMORY_ACCOUNTS,
        MEMORY_FILLS,
    )
    out.append(
        _target(
            f"gateway RSS at {MEMORY_ACCOUNTS:,} accounts / {MEMORY_FILLS:,} fills (peak)",
            memory["peak_rss_mb"] if fits else None,
            MEMORY_MB,
            "MB",
            at_most=True,
        )
    )
    return out


def _ms(value: float) -> str:
    return f"{value:,.1f}" if value >= 10 else f"{value:.2f}"


def render(results: dict[str, Any]) -> str:
    scenarios = results["scenarios"]
    m = results["machine"]
    lines = [
        f"mam-gateway benchmarks ({results['mode']}), {results['started_at']}",
        f"machine: {m['nproc']} x {m['cpu_model']}, {m['memory_mb']:,} MB, Python {m['python']}, "
        f"grpcio {m['grpcio']}, protobuf {m['protobuf']}, SQLAlchemy {m['sqlalchemy']}",
        f"command: {results['command']}; PostgreSQL: {results.get('postgresql', '')}",
    ]
    if "floor" in scenarios:
        f = scenarios["floor"]
        u = f["unary"]
        lines += [
            "",
            "FLOOR (the platform's own cost, this run)",
            f"  grpc.aio unary round trip (other process): median {_ms(u['median_ms'])} ms, "
            f"p99 {_ms(u['p99_ms'])} ms; 20 concurrent callers {u['calls_per_s_20_callers']:,} "
            "calls/s",
            "  server stream, 1,000 fills per FillBatch:  "
            + ", ".join(
                f"{s['fills']:,} fills {_ms(s['median_ms'])} ms ({s['fills_per_s']:,}/s)"
                for s in f["stream"].values()
            ),
            "  one 1,000-fill message: build+serialize "
            f"{f['message']['build_and_serialize_1000_fills_ms']} ms, parse "
            f"{f['message']['parse_1000_fills_ms']} ms",
        ]
        for backend, commits in f["commit"].items():
            lines.append(
                f"  commit of N rows, {backend}: "
                + ", ".join(f"{int(n):,} {_ms(c['median_ms'])} ms" for n, c in commits.items())
            )
    if "allocation" in scenarios:
        rows = scenarios["allocation"]["rows"]
        sizes = sorted({r["accounts"] for r in rows})
        lines += ["", "ALLOCATION (median ms per allocate(), by accounts)"]
        lines.append("  " + f"{'method':<15}" + "".join(f"{n:>10,}" for n in sizes))
        for method in dict.fromkeys(r["method"] for r in rows):
            cells = {r["accounts"]: r["median_ms"] for r in rows if r["method"] == method}
            lines.append("  " + f"{method:<15}" + "".join(f"{_ms(cells[n]):>10}" for n in sizes))
    if "store" in scenarios:
        lines += ["", f"GROUP COMMIT (gateway save_progress: {scenarios['store']['batch']})"]
        for backend, row in scenarios["store"]["rows"].items():
            lines.append(
                f"  {backend}: median {_ms(row['median_ms'])} ms, p99 {_ms(row['p99_ms'])} ms"
            )
    if "e2e" in scenarios:
        ratios = {(r["accounts"], r["latency_ms"]): r for r in results.get("ratios", [])}
        lines += [
            "",
            "END TO END (submit -> every fill durable and received by a subscriber; the gateway "
            "in its own process)",
            "  accounts latency  orders    p50 ms    p99 ms    ack p50   skew p50  skew p99   "
            "floor ms   ratio",
        ]
        for row in scenarios["e2e"]["rows"]:
            total, skew = row["submit_to_last_fill"], row["dispatch_skew"]
            ratio = ratios.get((row["accounts"], row["latency_ms"]))
            lines.append(
                f"  {row['accounts']:>8,} {row['latency_ms']:>5} ms {row['orders']:>7} "
                f"{_ms(total['median_ms']):>9} {_ms(total['p99_ms']):>9} "
                f"{_ms(row['ack']['median_ms']):>10} {_ms(skew['median_ms']):>10} "
                f"{_ms(skew['p99_ms']):>9} "
                + (
                    f"{_ms(ratio['floor_with_latency_ms']):>10} {ratio['ratio']:>6}x"
                    if ratio
                    else ""
                )
            )
        lines.append(
            "  floor = unary RTT + SQLite commit of N rows + streaming N fills (+ the simulated "
            "latency); ratio = p50 / floor"
        )
    baseline = scenarios.get("baseline")
    if baseline:
        lines += [
            "",
            "BASELINE (sequential dispatch, one account at a time)",
            f"  {baseline['summary']}",
        ]
        lines.append(f"  method: {baseline['method']}")
    if "remote" in scenarios:
        lines += [
            "",
            "REMOTE WORKERS (the same order over mam-worker processes: every terminal call a "
            "command on WorkerService.Connect)",
            "  accounts workers latency  orders    p50 ms    p99 ms    ack p50   skew p50  "
            "skew p99  gw CPU ms  wk CPU ms  fills",
        ]
        for row in scenarios["remote"]["rows"]:
            total, skew = row["submit_to_last_fill"], row["dispatch_skew"]
            lines.append(
                f"  {row['accounts']:>8,} {row['workers']:>7} {row['latency_ms']:>5} ms "
                f"{row['orders']:>7} {_ms(total['median_ms']):>9} {_ms(total['p99_ms']):>9} "
                f"{_ms(row['ack']['median_ms']):>10} {_ms(skew['median_ms']):>10} "
                f"{_ms(skew['p99_ms']):>9} {_ms(row['gateway_cpu_ms_per_order']):>10} "
                f"{_ms(row['workers_cpu_ms_per_order']):>10}  "
                f"{'all' if row['all_fills_received'] else 'MISSING'}"
            )
        lines.append(
            "  gw / wk CPU ms = CPU time of the gateway / of all workers per timed order; "
            "terminals simulated in the workers (one broker each)"
        )
    if "sustained" in scenarios:
        lines += ["", "SUSTAINED (master orders kept in flight; fills durable and streamed)"]
        for backend, row in scenarios["sustained"]["rows"].items():
            lines.append(
                f"  {backend}: {row['fills_per_s']:,} child fills/s over {row['seconds']} s "
                f"({row['accounts']:,} accounts, {row['window']} orders in flight, "
                f"{row['orders']} orders, order p50 {_ms(row['order_latency']['median_ms'])} ms); "
                f"gateway CPU {row['gateway_cpu']['cpu_cores']} cores, RSS "
                f"{row['gateway_memory']['rss_mb']} MB "
                f"(peak {row['gateway_memory']['peak_rss_mb']} MB)"
            )
    if "subscribers" in scenarios:
        s = scenarios["subscribers"]
        r, live, filt = s["replay"], s["live_one"], s["live_filtered"]
        lines += [
            "",
            "SUBSCRIBERS",
            f"  replay of {r['fills']:,} stored fills to one subscriber: {r['fills_per_s']:,} "
            f"fills/s (median of {r['runs']}, best {r['best_fills_per_s']:,})",
            f"  live, one subscriber: {live['fills_per_s']:,} fills/s (all received: "
            f"{live['all_received']})",
            f"  live, {filt['subscribers']} subscribers filtered by {filt['accounts_each']} "
            f"accounts each: {filt['delivered_per_s']:,} fills/s delivered, gateway producing "
            f"{filt['produced_per_s']:,} fills/s meanwhile",
        ]
    if "memory" in scenarios:
        mem = scenarios["memory"]
        lines += [
            "",
            "MEMORY",
            f"  {mem['summary']}",
            f"  set-up {mem['setup_s']} s (database {mem['database_mb']} MB), gateway start "
            f"{mem['gateway_start_s']} s, order over all accounts "
            f"{_ms(mem['order_over_all_accounts_ms'])} ms, replay "
            f"{mem['replay_fills_per_s']:,} fills/s",
        ]
    if "soak" in scenarios:
        soak = scenarios["soak"]
        states = ", ".join(
            f"{k.removeprefix('CHILD_ORDER_STATE_')} {v:,}" for k, v in soak["child_states"].items()
        )
        lines += [
            "",
            "SOAK (random broker faults under concurrent orders; disagreements must be 0)",
            f"  {soak['orders']} orders over {soak['accounts']:,} accounts: {soak['children']:,} "
            f"children ({states}), {soak['retried_children']:,} retried, {soak['fills']:,} fills "
            f"in {soak['elapsed_s']} s",
            "  rejected by: "
            + (", ".join(f"{k} {v:,}" for k, v in soak["rejected_by"].items()) or "-"),
            f"  disagreements between brokers and store: {len(soak['disagreements'])}"
            + (f" ({'; '.join(soak['disagreements'])})" if soak["disagreements"] else ""),
        ]
    if "tracing" in scenarios:
        tracing = scenarios["tracing"]
        lines += [
            "",
            f"TRACING ({tracing['accounts']:,} accounts, terminals answering at once; "
            f"{tracing['orders_each']} orders each way in {tracing['legs']} alternating legs; "
            f"{tracing['spans_exported']:,} spans exported over OTLP)",
        ]
        for figure in ("submit_to_last_fill", "server_accept_to_last_fill"):
            row = tracing[figure]
            lines.append(
                f"  {figure}: p50 off {_ms(row['off']['median_ms'])} ms, on "
                f"{_ms(row['on']['median_ms'])} ms, difference {row['difference_ms']} ms = "
                f"{row['per_child_us']:+} us per child"
            )
    if "metrics" in scenarios:
        metrics = scenarios["metrics"]
        total, cpu = metrics["submit_to_last_fill"], metrics["gateway_cpu"]
        lines += [
            "",
            f"METRICS ({metrics['accounts']:,} accounts, terminals answering at once; "
            f"{metrics['orders_each']} orders each way in {metrics['legs']} alternating legs; "
            f"a scrape {metrics['scrape_bytes']:,} bytes)",
            f"  submit_to_last_fill: p50 off {_ms(total['off']['median_ms'])} ms, on "
            f"{_ms(total['on']['median_ms'])} ms, difference {total['difference_ms']} ms = "
            f"{total['per_child_us']:+} us per child",
            f"  gateway CPU per child: off {cpu['off_us_per_child']} us, on "
            f"{cpu['on_us_per_child']} us, difference {cpu['per_child_us']:+} us",
            f"  the recording alone (a group commit's children and their terminal requests): "
            f"{metrics['recording_us_per_child']} us per child",
        ]
    if "mirroring" in scenarios:
        lines += _mirroring(scenarios["mirroring"])
    if "cluster" in scenarios:
        lines += _cluster(scenarios["cluster"])
    lines += ["", "TARGETS (reported, never asserted)"]
    for t in results.get("targets", []):
        value = "-" if t["value"] is None else f"{t['value']:,}"
        floor = t.get("platform_floor")
        lines.append(
            f"  [{t['status']:>4}] {t['target']}: {value} {t['unit']} "
            f"({t['kind']} {t['limit']:,} {t['unit']}"
            + (
                f"; the platform's floor for this path in this run: {floor:,} {t['unit']}"
                if floor
                else ""
            )
            + ")"
        )
    if any(t.get("platform_floor") for t in results.get("targets", [])):
        lines.append(
            "  floor of a durable fan-out = unary RTT + 2 x SQLite commit of N rows (the children "
            "before any request leaves, the fills before any is streamed) + latency + streaming "
            "N fills"
        )
    durations = ", ".join(f"{k} {v} s" for k, v in results.get("durations_s", {}).items())
    lines += ["", f"durations: {durations}"]
    return "\n".join(lines)


def _mirroring(mirroring: dict[str, Any]) -> list[str]:
    lines = [
        "",
        f"MIRRORING (a source deal -> every child of the group's copy filled and received; "
        f"{mirroring['accounts']:,} accounts; the source on a worker's terminal in the bench "
        "process)",
        "  look s latency  deals  deal p50  deal p99  direct p50  direct p99  +p50 ms  "
        "->look p50  look->accept  accept->fill",
    ]
    for row in mirroring["rows"]:
        deal, direct = row["mirrored"], row["direct"]
        lines.append(
            f"  {row['look_interval_s']:>6} {row['latency_ms']:>4} ms {row['deals']:>6} "
            f"{_ms(deal['median_ms']):>9} {_ms(deal['p99_ms']):>9} "
            f"{_ms(direct['median_ms']):>11} {_ms(direct['p99_ms']):>11} "
            f"{row['difference_p50_ms']:>8.1f} {_ms(row['deal_to_look']['median_ms']):>11} "
            f"{_ms(row['look_to_accept']['median_ms']):>13} "
            f"{_ms(row['accept_to_last_fill']['median_ms']):>13}"
        )
    lines.append(
        "  deal = the source's deal sent -> last fill of its copy; direct = SubmitMasterOrder -> "
        "last fill, interleaved in the same gateway; p50 splits at the look's and the copy's times"
    )
    for w in mirroring["watching"]:
        looks = w["looks_per_s"][f"idle_and_{w['sources']}_holding"]
        lines.append(
            f"  watching at {w['look_interval_s']} s: {w['cpu_ms_per_source_per_s']} gateway CPU "
            f"ms per source per s ({w['cpu_ms_per_look']} ms a look; {w['sources']} sources with "
            f"{w['positions_each']} positions + {w['orders_each']} order each, {looks} looks/s "
            f"of {(w['sources'] + 1) / w['look_interval_s']:g} asked); an idle source "
            f"{w['idle_source_cpu_ms_per_s']} ms/s; the worker's side "
            f"{w['worker_cpu_ms_per_source_per_s']} ms/s per source"
        )
    observed = mirroring["observe"]
    lines.append(
        f"  a look's pure part (observe, {observed['positions']} positions + {observed['orders']} "
        f"orders): {observed['unchanged_us']} us unchanged, {observed['one_opened_us']} us with "
        "one opened"
    )
    return lines


def _cluster(cluster: dict[str, Any]) -> list[str]:
    if "skipped" in cluster:
        return ["", f"CLUSTER: {cluster['summary']}"]
    lines = [
        "",
        f"CLUSTER (gateway processes on one PostgreSQL; {cluster['groups']} groups x "
        f"{cluster['accounts_per_group']} accounts, {cluster['orders_in_flight_per_group']} "
        f"orders in flight per group; lease {cluster['lease_seconds']:g} s renewed every "
        f"{cluster['renew_interval_seconds']:g} s)",
        "  processes    fills/s  streamed  x 1 node  order p50  fills/commit  gw CPU us/fill  "
        "PG us/fill  ours us/fill  gw cores  busy cores  idle gw ms/s  lock waits  all streamed",
    ]
    for row in cluster["throughput"]:
        cpu = row["cpu"]
        name = f"{row['mode']} {row['nodes']}"
        pg = cpu["postgres_us_per_fill"]
        lines.append(
            f"  {name:<10} {row['durable_fills_per_s']:>9,} {row['streamed_fills_per_s']:>9,} "
            f"{row['fills_per_s_vs_one_node']:>9} {_ms(row['order_latency']['median_ms']):>10} "
            f"{row.get('fills_per_commit', '-'):>13} {cpu['gateway_us_per_fill']:>15} "
            f"{'-' if pg is None else pg:>11} {cpu['ours_us_per_fill']:>13} "
            f"{cpu['gateway_cores']:>9} {cpu['machine_busy_cores']:>11} "
            f"{row['idle_gateway_cpu_ms_per_s']:>13} "
            f"{row['lock_waits']['mean_sessions_waiting']:>11}  "
            f"{'yes' if row['streamed_every_fill'] and row['database_gap_free'] else 'NO'}"
        )
    lines.append(
        "  ours = the gateways + PostgreSQL + the bench client; busy cores = the whole machine's "
        "(other work included); lock waits = sessions waiting on a row lock, mean of samples "
        "every 50 ms"
    )
    floor = cluster.get("postgres_commit_floor")
    if floor:
        lines.append(
            "  floor, this run: a commit of 1 / 100 fill rows on this PostgreSQL: "
            f"{_ms(floor['1']['median_ms'])} / {_ms(floor['100']['median_ms'])} ms"
        )
    t = cluster["takeover"]
    lines += [
        f"  takeover after SIGKILL ({t['kills']} kills, {t['nodes']} processes, terminals "
        f"answering after {t['latency_ms']} ms): kill -> lease names another p50 "
        f"{_ms(t['kill_to_lease']['median_ms'])} ms, p99 {_ms(t['kill_to_lease']['p99_ms'])} ms; "
        f"-> first resumed fill p50 {_ms(t['kill_to_first_resumed_fill']['median_ms'])} ms; "
        f"-> a new order acknowledged p50 {_ms(t['kill_to_new_order_ack']['median_ms'])} ms",
        f"  taken over {t['taken_over']}/{t['kills']}, resumed orders complete "
        f"{t['resumed_complete']}, new orders complete {t['new_orders_complete']}, children "
        f"filled twice {t['children_filled_twice']}, new orders refused first: "
        + (", ".join(f"{k} x{v}" for k, v in t["new_order_refusals"].items()) or "none"),
    ]
    lag = cluster["lag"]
    same, other = lag["notice_to_same_node_subscriber"], lag["notice_to_other_node_subscriber"]
    execution = lag["execution_to_notice"]
    lines.append(
        f"  NOTIFY seen by the bench -> subscriber: same process p50 {_ms(same['median_ms'])} / "
        f"p99 {_ms(same['p99_ms'])} ms, other process p50 {_ms(other['median_ms'])} / p99 "
        f"{_ms(other['p99_ms'])} ms; broker execution -> NOTIFY p50 "
        f"{_ms(execution['median_ms'])} / p99 {_ms(execution['p99_ms'])} ms "
        f"({lag['orders']} orders of {lag['accounts']} one at a time)"
    )
    for row in cluster["throughput"]:
        loaded = row.get("lag_under_load")
        if loaded:
            lines.append(
                f"  under load, {row['nodes']} processes: NOTIFY -> subscriber same p50 "
                f"{_ms(loaded['same_node']['median_ms'])} / p99 "
                f"{_ms(loaded['same_node']['p99_ms'])} ms, other p50 "
                f"{_ms(loaded['other_node']['median_ms'])} / p99 "
                f"{_ms(loaded['other_node']['p99_ms'])} ms"
            )
    return lines
