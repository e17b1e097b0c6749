"""The real `levbot run` against the real `levbot paper-exchange`, and the end check.

Both are separate processes, as in production: the venue keeps its own record of every
order and transfer it executed (client id, exchange id, time); the daemon keeps its
journal. After the run, with faults switched off and a clean reconciliation, the two
must tell the same story. `Verdict` lists every way they do not.
"""

from __future__ import annotations

import asyncio
import csv
import json
import os
import signal
import socket
import sys
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import aiohttp

from bot.domain.actions import ActionKind
from bot.domain.outcomes import ActionStatus
from bot.store.journal import Journal
from bot.store.records import (
    ActionRecord,
    CycleRecord,
    CycleStatus,
    RestingStopRecord,
    SnapshotRecord,
)

REPO = Path(__file__).resolve().parents[2]
PRICES = REPO / "tests" / "fixtures" / "prices" / "btc_1m_2021-05-19.csv"
# 12:00-14:00 UTC: BTC falls from ~38,600 to ~30,000 between 12:40 and 13:10.
SLICE = (datetime(2021, 5, 19, 12, 0, tzinfo=UTC), datetime(2021, 5, 19, 14, 0, tzinfo=UTC))
ACCOUNT = "chaos"
API_KEY, SECRET = "chaos-api-key", "chaos-secret"
RESERVE = Decimal(6000)
ORDER_KINDS = {ActionKind.REDUCE_ORDER, ActionKind.INCREASE_ORDER}
TRANSFER_KINDS = {ActionKind.TRANSFER_IN: "MAIN_UMFUTURE", ActionKind.TRANSFER_OUT: "UMFUTURE_MAIN"}


def env() -> dict[str, str]:
    path = os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH")) if p)
    return {
        **os.environ, "PYTHONPATH": path, "PYTHONUNBUFFERED": "1",
        "PAPER_EXCHANGE_API_KEY": API_KEY, "PAPER_EXCHANGE_SECRET": SECRET,
        "CHAOS_API_KEY": API_KEY, "CHAOS_SECRET": SECRET,
    }  # fmt: skip


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def write_feed(path: Path) -> Path:
    start, end = (int(t.timestamp() * 1000) for t in SLICE)
    with PRICES.open(newline="") as source, path.open("w", newline="") as target:
        rows = csv.reader(source)
        writer = csv.writer(target)
        writer.writerow(next(rows))
        writer.writerows(row for row in rows if start <= int(row[0]) < end)
    return path


def write_config(path: Path, database: Path, venue_url: str) -> Path:
    path.write_text(
        f"""\
[database]
url = "sqlite:///{database}"

[log]
level = "INFO"

[[accounts]]
name = "{ACCOUNT}"
exchange = "binanceusdm"
environment = "live"
api_key = "${{CHAOS_API_KEY}}"
secret = "${{CHAOS_SECRET}}"
api_base_url = "{venue_url}"
symbols = ["BTC/USDT:USDT"]
interval_seconds = 1
unreachable_alert_after = 3

[accounts.target]
leverage = 3
min = 2.8
max = 3.2

[accounts.policy]
release_excess = true
cooldown_seconds = 1
max_order_notional = 4000
daily_transfer_cap = 1000000
max_snapshot_age_seconds = 30
"""
    )
    return path


async def _spawn(args: list[str], cwd: Path, log: Path) -> asyncio.subprocess.Process:
    with log.open("ab") as output:
        return await asyncio.create_subprocess_exec(
            sys.executable, "-m", "bot", *args, cwd=cwd, env=env(),
            stdin=asyncio.subprocess.DEVNULL, stdout=output, stderr=output,
        )  # fmt: skip


@dataclass
class VenueProcess:
    """`levbot paper-exchange` in its own process."""

    process: asyncio.subprocess.Process
    url: str
    state: Path
    log: Path

    @classmethod
    async def start(
        cls, root: Path, *, faults: str, seed: int, bar_seconds: float, hold_seconds: float
    ) -> VenueProcess:
        port = free_port()
        state = root / "venue" / "record.json"
        state.parent.mkdir(parents=True, exist_ok=True)
        log = root / "venue.log"
        feed = write_feed(root / "feed.csv")
        process = await _spawn(
            [
                "paper-exchange", "--port", str(port), "--prices", str(feed),
                "--faults", faults, "--seed", str(seed), "--state", str(state),
                "--equity", "10000", "--reserve", str(RESERVE), "--leverage", "4",
                "--bar-seconds", str(bar_seconds), "--loop", "--hold-seconds", str(hold_seconds),
                "--max-latency", "0.5",
            ],
            root, log,
        )  # fmt: skip
        venue = cls(process, f"http://127.0.0.1:{port}", state, log)
        await venue._ready()
        return venue

    async def _ready(self, within: float = 60.0) -> None:
        # A deadline, not a count of tries: on a loaded machine the venue's imports alone
        # took over 15 s.
        deadline = asyncio.get_running_loop().time() + within
        while asyncio.get_running_loop().time() < deadline:
            if self.process.returncode is not None:
                raise RuntimeError(f"paper exchange exited:\n{self.log.read_text()}")
            try:
                await self.record()
                return
            except aiohttp.ClientError:
                await asyncio.sleep(0.05)
        raise RuntimeError(f"paper exchange not ready:\n{self.log.read_text()}")

    async def record(self) -> dict[str, Any]:
        async with (
            aiohttp.ClientSession() as session,
            session.get(self.url + "/paper/record") as reply,
        ):
            document: dict[str, Any] = await reply.json()
            return document

    async def set_faults(self, spec: str) -> None:
        async with (
            aiohttp.ClientSession() as session,
            session.post(self.url + "/paper/faults", json={"spec": spec}) as reply,
        ):
            reply.raise_for_status()

    def account(self) -> dict[str, Any]:
        document: dict[str, Any] = json.loads(
            self.state.with_name(self.state.name + ".account.json").read_text()
        )
        return document

    async def stop(self) -> None:
        if self.process.returncode is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(self.process.wait(), 10)
            except TimeoutError:
                self.process.kill()
                await self.process.wait()


@dataclass
class DaemonProcess:
    process: asyncio.subprocess.Process
    log: Path

    @classmethod
    async def start(cls, root: Path, config: Path) -> DaemonProcess:
        log = root / "daemon.log"
        return cls(await _spawn(["run", "--config", str(config)], root, log), log)

    @property
    def alive(self) -> bool:
        return self.process.returncode is None

    async def terminate(self, within: float = 20) -> int:
        self.process.send_signal(signal.SIGTERM)
        return await asyncio.wait_for(self.process.wait(), within)

    async def kill(self) -> int:
        self.process.kill()
        return await self.process.wait()

    async def reap(self) -> None:
        if self.process.returncode is None:
            self.process.kill()
            await self.process.wait()


async def wait_for(
    what: str, check: Callable[[], Awaitable[bool]], within: float, alive: DaemonProcess
) -> bool:
    """Poll `check` until true; False after `within` seconds. Fails if the daemon died."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while not await check():
        if not alive.alive:
            raise AssertionError(f"daemon exited before {what}:\n{alive.log.read_text()[-4000:]}")
        if loop.time() > deadline:
            return False
        await asyncio.sleep(0.1)
    return True


async def actions_of(journal: Journal) -> list[ActionRecord]:
    return await journal.recent_actions(ACCOUNT, limit=1_000_000)


async def cycles_of(journal: Journal) -> list[CycleRecord]:
    return await journal.history(ACCOUNT, limit=1_000_000)


async def settled(journal: Journal, since: datetime, clean_cycles: int = 3) -> bool:
    """`clean_cycles` ok cycles started after `since`, and nothing pending or unknown."""
    actions = await actions_of(journal)
    if any(a.status in (ActionStatus.PENDING, ActionStatus.UNKNOWN) for a in actions):
        return False
    fresh = [
        c for c in await cycles_of(journal) if c.started_at >= since and c.status is CycleStatus.OK
    ]
    return len(fresh) >= clean_cycles


def _ms(at: datetime) -> int:
    return int(at.timestamp() * 1000)


@dataclass
class Verdict:
    """Everything the end check found, and the figures of the run."""

    mismatches: list[str] = field(default_factory=list)
    figures: dict[str, Any] = field(default_factory=dict)

    def report(self, title: str) -> str:
        lines = [f"== {title} =="]
        lines += [f"{key}: {value}" for key, value in self.figures.items()]
        lines.append(f"mismatches: {len(self.mismatches)}")
        lines += [f"  - {m}" for m in self.mismatches]
        return "\n".join(lines)


async def settle_and_judge(
    journal: Journal, venue: VenueProcess, daemon: DaemonProcess, seconds: float, after: str
) -> tuple[int | None, Verdict]:
    """Wait (up to `seconds`) for a settled journal from now on, stop the daemon with
    SIGTERM and judge; a journal that never settles is a mismatch. Returns the exit code."""
    clean_from = datetime.now(UTC)

    async def reconciled() -> bool:
        return await settled(journal, clean_from)

    was_settled = await wait_for("a clean reconciliation", reconciled, seconds, daemon)
    code = await daemon.terminate()
    verdict = await judge(journal, venue)
    if not was_settled:
        verdict.mismatches.append(
            f"no settled journal within {seconds:.0f}s of {after} "
            "(pending or unknown actions left, or no clean cycles)"
        )
    return code, verdict


async def judge(journal: Journal, venue: VenueProcess) -> Verdict:
    """Compare the journal with the venue's record (see the module docstring)."""
    record = await venue.record()
    actions = await actions_of(journal)
    cycles = await cycles_of(journal)
    verdict = Verdict()
    _check_orders(actions, record["orders"], verdict)
    _check_transfers(actions, record["transfers"], verdict)
    _check_unique(actions, verdict)
    _check_stops(actions, record["stops"], await journal.resting_stops(ACCOUNT), verdict)
    snapshots = await journal.snapshots_since(ACCOUNT, datetime(2000, 1, 1, tzinfo=UTC))
    _check_snapshots(actions, snapshots, record, venue.account(), verdict)
    by_status = Counter(f"{a.kind.value}:{a.status.value}" for a in actions)
    verdict.figures.update(
        {
            "cycles": dict(Counter(c.status.value for c in cycles)),
            "actions": dict(sorted(by_status.items())),
            "venue orders": len(record["orders"]),
            "venue transfers": len(record["transfers"]),
            "venue stops": dict(Counter(_stop_state(s) for s in record["stops"])),
            "faults injected": dict(sorted(record["faults"].items())),
            "faults total": sum(record["faults"].values()),
            "longest failure streak": _longest_streak(cycles),
        }
    )
    return verdict


def _check_orders(actions: list[ActionRecord], orders: list[dict[str, Any]], v: Verdict) -> None:
    journaled = {a.client_id: a for a in actions if a.kind in ORDER_KINDS}
    executed = {o["client_id"]: o for o in orders}
    for client_id, order in executed.items():
        action = journaled.get(client_id)
        if action is None:
            v.mismatches.append(
                f"order {client_id} (#{order['exchange_id']}) executed, not journaled"
            )
        elif action.status is not ActionStatus.OK:
            v.mismatches.append(
                f"order {client_id} (#{order['exchange_id']}) executed, journaled "
                f"{action.status.value}: {action.error}"
            )
        elif action.exchange_id != order["exchange_id"]:
            v.mismatches.append(
                f"order {client_id}: journaled exchange id {action.exchange_id}, "
                f"venue {order['exchange_id']}"
            )
    for client_id, action in journaled.items():
        if action.status is ActionStatus.OK and client_id not in executed:
            v.mismatches.append(f"order {client_id} journaled ok, never executed")


def _check_transfers(
    actions: list[ActionRecord], transfers: list[dict[str, Any]], v: Verdict
) -> None:
    """By exchange id (tranId) where the journal has one; the rest by direction and amount."""
    executed = {t["tran_id"]: t for t in transfers}
    journaled = [a for a in actions if a.kind in TRANSFER_KINDS]
    unmatched_executed = dict(executed)
    loose: list[ActionRecord] = []
    for action in journaled:
        if action.status is not ActionStatus.OK:
            continue
        if action.exchange_id in unmatched_executed:
            found = unmatched_executed.pop(action.exchange_id)
            if (found["type"], Decimal(found["amount"])) != (
                TRANSFER_KINDS[action.kind],
                action.amount,
            ):
                v.mismatches.append(
                    f"transfer {action.client_id}: journaled {action.kind.value} {action.amount}, "
                    f"venue #{found['tran_id']} {found['type']} {found['amount']}"
                )
        else:
            loose.append(action)
    for action in loose:
        key = (TRANSFER_KINDS[action.kind], action.amount)
        match = next(
            (i for i, t in unmatched_executed.items() if (t["type"], Decimal(t["amount"])) == key),
            None,
        )
        if match is None:
            v.mismatches.append(
                f"transfer {action.client_id} ({action.kind.value} {action.amount}, exchange id "
                f"{action.exchange_id}) journaled ok, never executed"
            )
        else:
            unmatched_executed.pop(match)
    not_ok = Counter(
        (TRANSFER_KINDS[a.kind], a.amount, a.status.value)
        for a in journaled
        if a.status is not ActionStatus.OK
    )
    for tran_id, found in unmatched_executed.items():
        statuses = [
            s
            for (kind, amount, s) in not_ok
            if (kind, amount) == (found["type"], Decimal(found["amount"]))
        ]
        seen = f"journaled {'/'.join(statuses)}" if statuses else "not journaled"
        v.mismatches.append(
            f"transfer #{tran_id} {found['type']} {found['amount']} executed, {seen}"
        )


def _stop_state(stop: dict[str, Any]) -> str:
    if "fired_at" in stop:
        return "fired"
    return "canceled" if "canceled_at" in stop else "resting"


def _check_stops(
    actions: list[ActionRecord],
    stops: list[dict[str, Any]],
    believed: tuple[RestingStopRecord, ...],
    v: Verdict,
) -> None:
    """Every backstop the venue took is journaled placed (ok, with its algo id), nothing
    journaled placed that the venue never took, every fired stop is journaled as a fill,
    and what the journal believes rests is exactly what rests at the venue."""
    placed = {a.client_id: a for a in actions if a.kind is ActionKind.BACKSTOP_PLACE}
    fills = {a.ref for a in actions if a.kind is ActionKind.BACKSTOP_FILL}
    at_venue = {s["client_id"]: s for s in stops}
    for client_id, stop in at_venue.items():
        action = placed.get(client_id)
        if action is None or action.status is not ActionStatus.OK:
            seen = "not journaled" if action is None else f"journaled {action.status.value}"
            v.mismatches.append(f"stop {client_id} (algo {stop['algo_id']}) placed, {seen}")
        elif action.exchange_id != stop["algo_id"]:
            v.mismatches.append(
                f"stop {client_id}: journaled id {action.exchange_id}, venue {stop['algo_id']}"
            )
        if "fired_at" in stop and Decimal(stop.get("filled") or 0) > 0 and client_id not in fills:
            v.mismatches.append(f"stop {client_id} fired at the venue, no fill journaled")
    for client_id, action in placed.items():
        if action.status is ActionStatus.OK and client_id not in at_venue:
            v.mismatches.append(f"stop {client_id} journaled placed, the venue never took it")
    resting = {c for c, s in at_venue.items() if _stop_state(s) == "resting"}
    journal_resting = {r.client_id for r in believed}
    for client_id in sorted(resting ^ journal_resting):
        where = "the venue" if client_id in resting else "the journal"
        v.mismatches.append(f"stop {client_id} rests only per {where}")


def _check_unique(actions: list[ActionRecord], v: Verdict) -> None:
    for client_id, count in Counter(a.client_id for a in actions).items():
        if count > 1:
            v.mismatches.append(f"client id {client_id} journaled {count} times")


def _check_snapshots(
    actions: list[ActionRecord],
    snapshots: list[SnapshotRecord],
    record: dict[str, Any],
    account: dict[str, Any],
    v: Verdict,
) -> None:
    """Every journaled snapshot shows what the venue really held then: its spot wallet and
    position size match the venue's, rebuilt from its record. The first snapshot of a
    cycle is the one the cycle planned on: a wrong one there means it acted on garbage."""
    # Contracts leave the position by the bot's orders and by the stops the venue fired.
    taken = [(Decimal(o["amount"]), o["time"]) for o in record["orders"]] + [
        (Decimal(s.get("filled") or 0), s["fired_at"]) for s in record["stops"] if "fired_at" in s
    ]
    reduced = sum((amount for amount, _ in taken), Decimal(0))
    positions = account["state"]["positions"]
    initial_contracts = reduced + sum((Decimal(p["contracts"]) for p in positions), Decimal(0))
    acting = {a.cycle_id for a in actions if a.cycle_id is not None}
    planned_on: dict[int, SnapshotRecord] = {}
    for snapshot in sorted(snapshots, key=lambda s: s.taken_at):
        if snapshot.cycle_id is not None:
            planned_on.setdefault(snapshot.cycle_id, snapshot)
    v.figures["acting cycles checked against the venue"] = len(acting & planned_on.keys())
    v.figures["snapshots checked against the venue"] = len(snapshots)
    for cycle_id in sorted(acting - planned_on.keys()):
        v.mismatches.append(f"cycle {cycle_id} acted without a journaled snapshot")
    for snapshot in snapshots:
        at = _ms(snapshot.taken_at)
        spot = RESERVE + sum(
            (
                Decimal(t["amount"]) * (-1 if t["type"] == "MAIN_UMFUTURE" else 1)
                for t in record["transfers"]
                if t["time"] < at
            ),
            Decimal(0),
        )
        contracts = initial_contracts - sum(
            (amount for amount, time in taken if time < at), Decimal(0)
        )
        seen = sum((p.contracts for p in snapshot.positions), Decimal(0))
        wrong = []
        if snapshot.source_balance is not None and abs(snapshot.source_balance - spot) > 1:
            wrong.append(f"a spot wallet of {snapshot.source_balance} (the venue held {spot})")
        if seen != contracts:
            wrong.append(f"{seen} contracts (the venue held {contracts})")
        if not wrong:
            continue
        cycle = snapshot.cycle_id
        acted = cycle in acting and planned_on.get(cycle) is snapshot
        verb = "acted on" if acted else "journaled"
        v.mismatches.append(f"cycle {cycle} {verb} {' and '.join(wrong)}")


def _longest_streak(cycles: list[CycleRecord]) -> int:
    """The longest run of cycles that did not run to their end (failed with an error).

    A cycle that ran to its end but whose action failed or went unknown is journaled
    failed too, without an error; it ends a streak, as in the service.
    """
    longest = streak = 0
    for cycle in sorted(cycles, key=lambda c: c.started_at):
        streak = streak + 1 if cycle.status is CycleStatus.FAILED and cycle.error else 0
        longest = max(longest, streak)
    return longest


def streak_alerts(database: Path) -> list[str]:
    """Warning texts in the alert outbox about failing cycles (read-only, raw SQL)."""
    import sqlite3

    with sqlite3.connect(f"file:{database}?mode=ro", uri=True) as connection:
        rows = connection.execute("SELECT text FROM alert_outbox").fetchall()
    return [text for (text,) in rows if "cycles:" in text or "unreachable" in text]


def since(seconds: float) -> datetime:
    return datetime.now(UTC) - timedelta(seconds=seconds)
