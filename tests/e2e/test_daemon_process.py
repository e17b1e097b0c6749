"""The real `levbot run` process on a paper account, checked through its journal.

The paper account replays real Binance BTC candles of the 2021-05-19 crash, sped up
(0.1 s a minute), from a position opened above the band, so the daemon acts within its
first cycle and again as the price falls. The test process reads the same SQLite file
the daemon writes (WAL mode), through the public Journal API.
"""

from __future__ import annotations

import asyncio
import csv
import json
import os
import signal
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import IO, Any

import pytest

from bot.store.journal import Journal
from bot.store.records import ActionStatus, CycleRecord, CycleStatus

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]
PRICES = REPO / "tests" / "fixtures" / "prices" / "btc_1m_2021-05-19.csv"
# 12:00-14:00 UTC: BTC falls from ~38,600 to ~30,000 between 12:40 and 13:10.
SLICE = (datetime(2021, 5, 19, 12, 0, tzinfo=UTC), datetime(2021, 5, 19, 14, 0, tzinfo=UTC))
STOP_TIMEOUT = 15.0


@dataclass(frozen=True)
class PaperSetup:
    root: Path
    config: Path
    database: Path
    feed: Path

    @property
    def db_url(self) -> str:
        return f"sqlite:///{self.database}"

    @property
    def state_file(self) -> Path:
        # Beside the database (bot.entrypoints.bootstrap.state_dir), named after the account.
        return self.database.parent / "paper-paper.json"

    def config_copy(self, name: str, *, interval: int, database: Path | None = None) -> Path:
        path = self.root / name
        write_config(path, database or self.database, self.feed, interval)
        return path


def write_feed(path: Path) -> None:
    start, end = (int(t.timestamp() * 1000) for t in SLICE)
    with PRICES.open(newline="") as source, path.open("w", newline="") as target:
        rows = csv.reader(source)
        writer = csv.writer(target)
        writer.writerow(next(rows))
        writer.writerows(row for row in rows if start <= int(row[0]) < end)


def write_config(path: Path, database: Path, feed: Path, interval: int) -> None:
    path.write_text(
        f"""\
[database]
url = "sqlite:///{database}"

[log]
level = "INFO"

[[accounts]]
name = "paper"
exchange = "sim"
interval_seconds = {interval}

[accounts.target]
leverage = 3
min = 2.5
max = 3.5

[accounts.policy]
cooldown_seconds = 1
max_snapshot_age_seconds = 30

[accounts.sim]
feed = "{feed.name}"
symbol = "BTC/USDT:USDT"
side = "long"
equity = 10000
reserve = 2000
leverage = 5
bar_seconds = 0.1
loop = false
"""
    )


@pytest.fixture
def paper(tmp_path: Path) -> PaperSetup:
    feed = tmp_path / "btc_crash.csv"
    write_feed(feed)
    setup = PaperSetup(
        tmp_path, tmp_path / "levbot.toml", tmp_path / "data" / "levbot.sqlite", feed
    )
    write_config(setup.config, setup.database, feed, interval=1)
    return setup


@pytest.fixture
async def journal(paper: PaperSetup) -> AsyncIterator[Journal]:
    # Created (and migrated) before the daemon starts, so the two never race to migrate.
    opened = await Journal.open(paper.db_url)
    try:
        yield opened
    finally:
        await opened.close()


def _env() -> dict[str, str]:
    path = os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH")) if p)
    return {**os.environ, "PYTHONPATH": path, "PYTHONUNBUFFERED": "1"}


def _append(path: Path) -> IO[bytes]:
    return path.open("ab")


def _read_text(path: Path) -> str:
    return path.read_text(errors="replace") if path.exists() else ""


def _read_json(path: Path) -> Any:
    return json.loads(path.read_text())


async def _daemon_runs(database: Path) -> list[tuple[datetime | None, str | None]]:
    """(stopped_at, exit_reason) of every daemon start, oldest first."""
    journal = await Journal.open(f"sqlite:///{database}")
    try:
        return [(run.stopped_at, run.exit_reason) for run in await journal.runs()]
    finally:
        await journal.close()


class Daemon:
    """One `levbot run` process, its output appended to `log`."""

    def __init__(self, process: asyncio.subprocess.Process, log: Path) -> None:
        self.process = process
        self.log = log

    @classmethod
    async def start(cls, setup: PaperSetup, config: Path | None = None) -> Daemon:
        log = setup.root / "daemon.log"
        with _append(log) as output:
            process = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "bot", "run", "--config", str(config or setup.config),
                cwd=setup.root, env=_env(), stdin=asyncio.subprocess.DEVNULL,
                stdout=output, stderr=output,
            )  # fmt: skip
        return cls(process, log)

    @property
    def output(self) -> str:
        return _read_text(self.log)

    async def terminate(self) -> int:
        self.process.send_signal(signal.SIGTERM)
        return await asyncio.wait_for(self.process.wait(), STOP_TIMEOUT)

    async def kill(self) -> int:
        self.process.kill()
        return await self.process.wait()

    async def reap(self) -> None:
        """Never leave a daemon behind, whatever the test did."""
        if self.process.returncode is None:
            self.process.kill()
            await self.process.wait()

    async def until(self, what: str, check: Callable[[], Awaitable[bool]], within: float) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + within
        while not await check():
            if self.process.returncode is not None:
                pytest.fail(
                    f"daemon exited ({self.process.returncode}) before {what}:\n{self.output}"
                )
            if loop.time() > deadline:
                pytest.fail(f"no {what} after {within:.0f}s; daemon log:\n{self.output[-4000:]}")
            await asyncio.sleep(0.02)


async def levbot(setup: PaperSetup, *args: str) -> tuple[int, str]:
    """Run one `levbot` command to the end; its exit code and output."""
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bot", *args,
        cwd=setup.root, env=_env(), stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    try:
        output, _ = await asyncio.wait_for(process.communicate(), 30)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    assert process.returncode is not None
    return process.returncode, output.decode()


async def all_cycles(journal: Journal) -> list[CycleRecord]:
    return await journal.history("paper", limit=100_000)


async def test_levbot_run_when_sigterm_then_exits_zero_leaving_a_complete_journal(
    paper: PaperSetup, journal: Journal
) -> None:
    daemon = await Daemon.start(paper)
    try:

        async def acted_twice() -> bool:
            cycles = [c for c in await all_cycles(journal) if c.status is CycleStatus.OK]
            acting = [c for c in cycles if any(a.status is ActionStatus.OK for a in c.actions)]
            return len(acting) >= 2 and "paper" in await journal.latest_snapshots()

        await daemon.until("two cycles with executed actions", acted_twice, within=35)
        code = await daemon.terminate()
    finally:
        await daemon.reap()

    assert code == 0, daemon.output
    assert "levbot stopped" in daemon.output
    cycles = await all_cycles(journal)
    actions = await journal.recent_actions(None, limit=100_000)
    assert [c for c in cycles if c.status is CycleStatus.RUNNING] == []
    assert [a for a in actions if a.status is ActionStatus.PENDING] == []
    assert {a.status for a in actions} == {ActionStatus.OK}
    assert {a.kind.value for a in actions} >= {"transfer_in", "reduce_order"}
    assert len({a.client_id for a in actions}) == len(actions)
    snapshot = (await journal.latest_snapshots())["paper"]
    assert snapshot.leverage is not None and snapshot.leverage < 4
    ((stopped_at, reason),) = await _daemon_runs(paper.database)
    assert stopped_at is not None and reason == "stopped"

    status_code, status = await levbot(paper, "status", "--config", str(paper.config))
    assert status_code == 0, status
    assert "paper" in status and "2.5–3–3.5" in status
    history_code, history = await levbot(paper, "history", "--config", str(paper.config))
    assert history_code == 0, history
    assert "reduce_order" in history and "transfer_in" in history
    assert "de-lever paper: leverage" in history

    # Health: fine within 3 intervals of the last good cycle (a 60 s interval here) ...
    relaxed = paper.config_copy("relaxed.toml", interval=60)
    healthy_code, healthy = await levbot(paper, "health", "--config", str(relaxed))
    assert healthy_code == 0, healthy
    assert "paper: ok" in healthy
    # ... stale once 3 intervals (3 s at 1 s) have passed with no cycle ...
    last = await journal.last_successful_cycle("paper")
    assert last is not None
    wait = (last + timedelta(seconds=3.5) - datetime.now(UTC)).total_seconds()
    await asyncio.sleep(max(0.0, wait))
    stale_code, stale = await levbot(paper, "health", "--config", str(paper.config))
    assert stale_code == 1, stale
    assert "paper: STALE" in stale
    # ... and never healthy where no journal is (nor is an empty one made there).
    fresh = paper.config_copy("fresh.toml", interval=1, database=paper.root / "fresh" / "x.sqlite")
    never_code, never = await levbot(paper, "health", "--config", str(fresh))
    assert never_code == 1, never
    assert f"no journal at {paper.root / 'fresh' / 'x.sqlite'}" in never
    assert not (paper.root / "fresh" / "x.sqlite").exists()


async def test_levbot_run_when_killed_and_restarted_then_nothing_lost_or_repeated(
    paper: PaperSetup, journal: Journal
) -> None:
    first = await Daemon.start(paper)
    try:

        async def executed() -> bool:
            actions = await journal.recent_actions(None, limit=1000)
            return any(a.status is ActionStatus.OK for a in actions)

        # Killed as soon as one action has gone out: often mid-cycle, with the next
        # intent written and its result not.
        await first.until("an executed action", executed, within=30)
        assert await first.kill() == -signal.SIGKILL
    finally:
        await first.reap()
    pending_at_kill = {p.client_id for p in await journal.pending_intents("paper")}
    running_at_kill = {c.id for c in await all_cycles(journal) if c.status is CycleStatus.RUNNING}

    restarted_at = datetime.now(UTC)
    second = await Daemon.start(paper)
    try:

        async def cycled() -> bool:
            done = [
                c
                for c in await all_cycles(journal)
                if c.started_at >= restarted_at and c.status is not CycleStatus.RUNNING
            ]
            return len(done) >= 3

        await second.until("three cycles after the restart", cycled, within=30)
        code = await second.terminate()
    finally:
        await second.reap()

    assert code == 0, second.output
    actions = await journal.recent_actions(None, limit=100_000)
    by_id = {a.client_id: a for a in actions}
    assert len(by_id) == len(actions), "a client id was journaled twice"
    assert [a.client_id for a in actions if a.status is ActionStatus.PENDING] == []
    for client_id in pending_at_kill:
        assert by_id[client_id].status in (
            ActionStatus.OK,
            ActionStatus.FAILED,
            ActionStatus.UNKNOWN,
        )
    cycles = {c.id: c for c in await all_cycles(journal)}
    assert [c for c in cycles.values() if c.status is CycleStatus.RUNNING] == []
    for cycle_id in running_at_kill:
        interrupted = cycles[cycle_id]
        assert interrupted.status is CycleStatus.FAILED
        assert interrupted.error is not None and "interrupted" in interrupted.error

    # The paper venue is the other side of the story: every order it filled is journaled
    # as ok under the same ids, and every order the journal calls ok was filled, once.
    orders: dict[str, dict[str, Any]] = _read_json(paper.state_file)["state"]["orders"]
    exchange_ids = [o["exchange_id"] for o in orders.values()]
    assert len(set(exchange_ids)) == len(exchange_ids)
    journaled_ok = {
        a.client_id: a.exchange_id
        for a in actions
        if a.kind.value == "reduce_order" and a.status is ActionStatus.OK
    }
    assert journaled_ok, "no order was executed"
    assert journaled_ok == {cid: o["exchange_id"] for cid, o in orders.items()}

    runs = await _daemon_runs(paper.database)
    assert len(runs) == 2
    assert runs[0] == (None, None)  # killed: it never wrote its stop
    assert runs[1][0] is not None and runs[1][1] == "stopped"
