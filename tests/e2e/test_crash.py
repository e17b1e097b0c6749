"""Crash: the daemon killed with SIGKILL at random moments, the paper exchange carrying on.

Some trials kill at a random time after start (booting, reading, planning, writing);
the others poll the journal and kill the moment an intent is journaled and its result
is not (the write may be in flight). Then one clean run reconciles, and the journal
must equal the venue's record exactly (tests/e2e/chaos_harness.py, `judge`).

Short by default (part of `make test`); `make crash` runs CRASH_TRIALS=100.
"""

from __future__ import annotations

import asyncio
import os
import random
import signal
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from bot.store.journal import Journal
from tests.e2e.chaos_harness import (
    ACCOUNT,
    DaemonProcess,
    VenueProcess,
    settle_and_judge,
    wait_for,
    write_config,
)

pytestmark = pytest.mark.e2e

TRIALS = int(os.environ.get("CRASH_TRIALS", "4"))
SEED = int(os.environ.get("CRASH_SEED", "9"))
FAULTS = os.environ.get("CRASH_FAULTS", "")
SETTLE_SECONDS = 40.0


@pytest.fixture
async def journal(tmp_path: Path) -> AsyncIterator[Journal]:
    opened = await Journal.open(f"sqlite:///{tmp_path / 'data' / 'levbot.sqlite'}")
    try:
        yield opened
    finally:
        await opened.close()


async def _client_ids(journal: Journal) -> set[str]:
    return {a.client_id for a in await journal.recent_actions(ACCOUNT, limit=1_000_000)}


async def test_daemon_when_killed_at_random_moments_then_journal_equals_venue(
    tmp_path: Path, journal: Journal
) -> None:
    rng = random.Random(SEED)
    database = tmp_path / "data" / "levbot.sqlite"
    venue = await VenueProcess.start(
        tmp_path, faults=FAULTS, seed=SEED, bar_seconds=0.25, hold_seconds=0.0
    )
    config = write_config(tmp_path / "levbot.toml", database, venue.url)
    kills: Counter[str] = Counter()
    daemon: DaemonProcess | None = None
    try:
        for trial in range(TRIALS):
            daemon = await DaemonProcess.start(tmp_path, config)
            if trial % 2 == 0:
                # Right after this process journals a new intent (its write about to go out,
                # or out): not one an earlier, killed process left pending.
                known = await _client_ids(journal)

                async def new_intent(known: set[str] = known) -> bool:
                    pending = await journal.pending_intents(ACCOUNT)
                    return any(p.client_id not in known for p in pending)

                caught = await wait_for("a new pending intent", new_intent, 12, daemon)
                kills["at a pending intent" if caught else "after 12 s, no intent seen"] += 1
            else:
                await wait_for("a random moment", _never, rng.uniform(1.5, 7.0), daemon)
                kills["at a random moment"] += 1
            assert await daemon.kill() == -signal.SIGKILL
        daemon = await DaemonProcess.start(tmp_path, config)
        code, verdict = await settle_and_judge(
            journal, venue, daemon, SETTLE_SECONDS, "the last restart"
        )
    finally:
        if daemon is not None:
            await daemon.reap()
        await venue.stop()

    verdict.figures = {"trials": TRIALS, "kills": dict(kills), **verdict.figures}
    print(verdict.report(f"crash x{TRIALS}"))  # `make crash` shows the figures

    assert code == 0, daemon.log.read_text()[-4000:]
    assert verdict.figures["venue orders"] + verdict.figures["venue transfers"] > 0
    assert verdict.mismatches == [], verdict.report("crash")


async def _never() -> bool:
    await asyncio.sleep(0)
    return False
