"""The data directory is 0700 and the journal, its WAL/SHM and the paper state 0600,
whatever the umask (issue 9 §5 found 0755/0644): they hold the account's history."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import pytest

from bot.domain.models import MarginMode, Side
from bot.exchange.sim.paper import BUILTIN_FEED, PaperExchange, PaperSettings
from bot.store.journal import Journal

NOW = datetime(2026, 1, 1, tzinfo=UTC)


@pytest.fixture(params=[0o022, 0o000], ids=["umask-022", "umask-000"])
def umask(request: pytest.FixtureRequest) -> Iterator[int]:
    previous = os.umask(request.param)
    try:
        yield request.param
    finally:
        os.umask(previous)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


async def test_journal_when_opened_under_any_umask_then_directory_0700_files_0600(
    tmp_path: Path, umask: int
) -> None:
    data = tmp_path / "data"
    database = data / "levbot.sqlite"

    journal = await Journal.open(f"sqlite:///{database}", clock=lambda: NOW)
    try:
        await journal.start_run(pid=1, version="test")
        files = {path.name: mode(path) for path in data.iterdir()}
    finally:
        await journal.close()

    assert mode(data) == 0o700
    assert files["levbot.sqlite"] == 0o600
    assert files["levbot.sqlite-wal"] == 0o600
    assert files["levbot.sqlite-shm"] == 0o600
    assert set(files.values()) == {0o600}


async def test_journal_when_file_exists_world_readable_then_tightened_to_0600(
    tmp_path: Path, umask: int
) -> None:
    database = tmp_path / "levbot.sqlite"
    first = await Journal.open(f"sqlite:///{database}")
    await first.close()
    database.chmod(0o644)

    second = await Journal.open(f"sqlite:///{database}")
    await second.close()

    assert mode(database) == 0o600


def test_paper_state_when_saved_under_any_umask_then_0600(tmp_path: Path, umask: int) -> None:
    state = tmp_path / "data" / "paper-paper.json"
    settings = PaperSettings(
        account="paper", symbol="BTC/USDT:USDT", side=Side.LONG, equity=Decimal(10000),
        reserve=Decimal(5000), leverage=Decimal(3), margin_mode=MarginMode.CROSS,
        bar_seconds=1.0, fee=Decimal("0.0005"), slippage=Decimal("0.0005"), loop=False,
        feed=BUILTIN_FEED, state_file=state,
    )  # fmt: skip

    PaperExchange(settings, lambda: NOW)

    assert mode(state) == 0o600
    assert mode(state.parent) == 0o700
    assert [path.name for path in state.parent.iterdir()] == [state.name]
