"""Many daemons, one PostgreSQL (DESIGN.md §12): three real `levbot run` processes share
30 paper accounts by lease; one is killed with -9 and the others take its accounts over.

Judged from the journal and the paper venues' own files (each paper account keeps its
state in `data/paper-<name>.json`, read by whichever process holds the account):
- every account ends up driven, and the killed process's accounts are held by the
  others within two lease periods of the kill;
- no account has two owners' cycles overlapping in time (a killed process's cycles end,
  at the latest, when it was killed);
- no duplicate action: every write a paper venue executed is journaled once as done,
  and every action journaled as done is at its venue;
- one process at a time polls Telegram and the shared outbox reaches the chat once.

Short by default (part of `make test`, lease 5 s); longer with
`MANY_DAEMONS_RUN_SECONDS=120 MANY_DAEMONS_LEASE_SECONDS=15`.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import signal
import sys
from collections import defaultdict
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import text

from bot.clock import utc_now
from bot.domain.actions import ActionKind
from bot.store.journal import Journal
from bot.store.leases import TELEGRAM_LEASE, LeaseBook
from bot.store.records import ActionStatus
from tests.e2e.chaos_harness import env
from tests.e2e.test_daemon_telegram import crash_feed
from tests.support.fake_bot_api import FakeBotApi
from tests.support.postgres import TestPostgres

pytestmark = pytest.mark.e2e

PROCESSES = 3
ACCOUNTS = [f"acct{i:02}" for i in range(30)]
LEASE_SECONDS = float(os.environ.get("MANY_DAEMONS_LEASE_SECONDS", "5"))
# How long all three run before the kill, and the survivors after the takeover.
RUN_SECONDS = float(os.environ.get("MANY_DAEMONS_RUN_SECONDS", "4"))
OWNER = 4242
VENUE_KINDS = {
    ActionKind.REDUCE_ORDER.value,
    ActionKind.INCREASE_ORDER.value,
    ActionKind.TRANSFER_IN.value,
    ActionKind.TRANSFER_OUT.value,
    ActionKind.BACKSTOP_PLACE.value,
}


@dataclass
class Daemon:
    process: asyncio.subprocess.Process
    log: Path

    @property
    def alive(self) -> bool:
        return self.process.returncode is None

    def tail(self) -> str:
        return self.log.read_text()[-3000:]


async def spawn(root: Path, config: Path, index: int) -> Daemon:
    log = root / f"daemon{index}.log"
    with log.open("ab") as output:
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "bot", "run", "--config", str(config), cwd=root, env=env(),
            stdin=asyncio.subprocess.DEVNULL, stdout=output, stderr=output,
        )  # fmt: skip
    return Daemon(process, log)


def write_config(root: Path, url: str, api: FakeBotApi) -> Path:
    feed = crash_feed(root / "crash.csv")
    accounts = "".join(
        f"""
[[accounts]]
name = "{name}"
exchange = "sim"
interval_seconds = 2
[accounts.target]
leverage = 3
min = 2.5
max = 3.5
[accounts.policy]
cooldown_seconds = 0
max_snapshot_age_seconds = 30
[accounts.stream]
enabled = false
[accounts.sim]
feed = "{feed}"
equity = 10000
reserve = 5000
leverage = {4 if index % 2 == 0 else 3}
bar_seconds = 0.5
"""
        for index, name in enumerate(ACCOUNTS)
    )
    path = root / "levbot.toml"
    path.write_text(f"""
[database]
url = "{url}"
lease_seconds = {LEASE_SECONDS}
[log]
level = "INFO"
[telegram]
token = "{api.token}"
allowed_chat_ids = [{OWNER}]
api_base_url = "{api.url}"
{accounts}""")
    return path


@pytest.fixture
async def fake_bot_api() -> AsyncIterator[FakeBotApi]:
    async with FakeBotApi() as api:
        yield api


@pytest.fixture
async def journal(postgres: TestPostgres) -> AsyncIterator[Journal]:
    # A database of its own: three other processes connect to it.
    opened = await Journal.open(postgres.url(postgres.create_database()))
    try:
        yield opened
    finally:
        await opened.close()


async def until(
    what: str, check: Callable[[], Awaitable[bool]], within: float, daemons: list[Daemon]
) -> float:
    """Poll `check`; the seconds it took. Fails when it times out or a daemon died."""
    loop = asyncio.get_running_loop()
    start = loop.time()
    while not await check():
        for daemon in daemons:
            assert daemon.alive, f"a daemon exited before {what}:\n{daemon.tail()}"
        assert loop.time() - start < within, f"not within {within}s: {what}"
        await asyncio.sleep(0.1)
    return loop.time() - start


async def holders(book: LeaseBook) -> dict[str, str | None]:
    now = await _db_now(book)
    return {
        lease.name: lease.owner if lease.expires_at > now else None for lease in await book.leases()
    }


async def _db_now(book: LeaseBook) -> datetime:
    async with book.engine.connect() as connection:
        now = (await connection.execute(text("SELECT now()"))).scalar_one()
    assert isinstance(now, datetime)
    return now.astimezone(UTC)


def owner_pid(owner: str) -> int:
    return int(owner.split(":")[1])


async def test_daemons_when_one_is_killed_then_others_take_over_and_nothing_is_done_twice(
    tmp_path: Path, journal: Journal, fake_bot_api: FakeBotApi
) -> None:
    url = journal.engine.url.render_as_string(hide_password=False)
    url = url.replace("postgresql+asyncpg://", "postgresql://")
    config = write_config(tmp_path, url, fake_bot_api)
    book = LeaseBook(journal.engine)
    daemons = [await spawn(tmp_path, config, i) for i in range(PROCESSES)]
    try:

        async def balanced() -> bool:
            held = await holders(book)
            counts = defaultdict(int)
            for name in ACCOUNTS:
                if held.get(name) is not None:
                    counts[held[name]] += 1
            return sorted(counts.values()) == [10, 10, 10]

        await until("three shares of ten", balanced, 120, daemons)
        await asyncio.sleep(RUN_SECONDS)

        # Kill the Telegram leader: its accounts and its role must both move.
        held = await holders(book)
        leader = held[TELEGRAM_LEASE]
        assert leader is not None
        victim = next(d for d in daemons if d.process.pid == owner_pid(leader))
        victims_accounts = sorted(n for n in ACCOUNTS if held[n] == leader)
        victim.process.send_signal(signal.SIGKILL)
        await victim.process.wait()
        killed_at = utc_now()
        survivors = [d for d in daemons if d is not victim]

        async def taken_over() -> bool:
            now = await holders(book)
            return all(now.get(n) not in (None, leader) for n in ACCOUNTS) and now.get(
                TELEGRAM_LEASE
            ) not in (None, leader)

        took = await until("the takeover", taken_over, 4 * LEASE_SECONDS, survivors)
        assert took <= 2 * LEASE_SECONDS, f"takeover took {took:.1f}s"

        async def reconciled() -> bool:
            after = {a for a, _, s, f in await cycles(journal) if s > killed_at and f}
            return set(victims_accounts) <= after

        await until("a cycle of each taken account", reconciled, 30, survivors)
        await asyncio.sleep(RUN_SECONDS)
        for daemon in survivors:
            daemon.process.send_signal(signal.SIGTERM)
        for daemon in survivors:
            assert await asyncio.wait_for(daemon.process.wait(), 30) == 0, daemon.tail()
    finally:
        for daemon in daemons:
            if daemon.alive:
                daemon.process.kill()
                await daemon.process.wait()

    await _judge_cycles(journal, victim.process.pid, killed_at)
    await _judge_actions(journal, tmp_path / "data")
    await _judge_telegram(journal, fake_bot_api)


async def cycles(journal: Journal) -> list[tuple[str, int, datetime, datetime | None]]:
    """Every cycle as (account, run id, started, finished): the run names the owner."""
    async with journal.engine.connect() as connection:
        rows = await connection.execute(
            text("SELECT account, run_id, started_at, finished_at FROM cycles ORDER BY id")
        )
        return [(a, r, s, f) for a, r, s, f in rows]


async def _judge_cycles(journal: Journal, killed_pid: int, killed_at: datetime) -> None:
    runs = {run.id: run for run in await journal.runs()}
    assert len(runs) == PROCESSES
    by_account: dict[str, list[tuple[datetime, datetime, int]]] = defaultdict(list)
    for account, run_id, started, finished in await cycles(journal):
        end = finished or killed_at
        if runs[run_id].pid == killed_pid:
            # Closed as interrupted by its successor: it really ended by the kill.
            end = min(end, killed_at)
        by_account[account].append((started, end, run_id))
    assert set(by_account) == set(ACCOUNTS)
    for account, spans in by_account.items():
        spans.sort()
        for (_, end, run), (start, _, next_run) in itertools.pairwise(spans):
            if run != next_run:
                assert end <= start, f"{account}: runs {run} and {next_run} overlap"
    moved = [a for a, spans in by_account.items() if len({run for *_, run in spans}) > 1]
    assert moved  # accounts did change hands


async def _judge_actions(journal: Journal, data: Path) -> None:
    actions = await journal.recent_actions(limit=1_000_000)
    assert all(a.status not in (ActionStatus.PENDING, ActionStatus.UNKNOWN) for a in actions)
    done: dict[str, set[str]] = defaultdict(set)
    for action in actions:
        if action.kind.value in VENUE_KINDS and action.status is ActionStatus.OK:
            done[action.account].add(action.client_id)
    assert sum(len(ids) for ids in done.values()) >= len(ACCOUNTS) // 2  # they did act
    for account in ACCOUNTS:
        document = json.loads((data / f"paper-{account}.json").read_text())
        state = document["state"]
        at_venue = (
            {cid for cid in state["orders"] if cid.startswith("lb")}
            | set(state["stops"])
            | set(document["transfers"])
        )
        assert at_venue == done[account], f"{account}: venue and journal differ"


async def _judge_telegram(journal: Journal, api: FakeBotApi) -> None:
    # One poller at a time: the first leader, then the one that took its lease.
    assert len(api.calls_to("getMe")) == 2
    async with journal.engine.connect() as connection:
        delivered = (
            await connection.execute(
                text("SELECT count(*) FROM alert_deliveries WHERE chat_id = :chat"),
                {"chat": OWNER},
            )
        ).scalar_one()
    sent = len(api.sent_messages(OWNER))
    # Each alert once; the killed leader may have sent one whose delivery it never wrote.
    assert delivered <= sent <= delivered + 1
    assert delivered > 0
