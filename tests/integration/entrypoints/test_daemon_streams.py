"""The daemon starts one mark watcher per account with [accounts.stream] enabled, and
stops it (stream closed, no triggered cycle left running) before it exits."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from bot.app.config import load_config
from bot.entrypoints.daemon import Daemon


def write_config(path: Path, stream: str) -> Path:
    path.write_text(
        f"""\
[database]
url = "sqlite:///{path.parent / "levbot.sqlite"}"

[[accounts]]
name = "paper"
exchange = "sim"
interval_seconds = 60

[accounts.target]
leverage = 3
min = 2.5
max = 3.5

[accounts.sim]
feed = "builtin"
symbol = "BTC/USDT:USDT"
side = "long"
equity = 10000
reserve = 5000
leverage = 3
bar_seconds = 0.2
loop = true
{stream}
"""
    )
    return path


async def test_daemon_when_stream_enabled_then_a_watcher_reads_marks_and_stops_with_it(
    tmp_path: Path,
) -> None:
    daemon = Daemon(load_config(write_config(tmp_path / "levbot.toml", "")))
    task = asyncio.create_task(daemon.run())
    try:
        deadline = time.monotonic() + 15
        while not (daemon.watchers and daemon.watchers[0].stats.ticks >= 2):
            assert time.monotonic() < deadline, "no marks streamed"
            assert not task.done(), task
            await asyncio.sleep(0.05)
    finally:
        daemon.stop.set()
        assert await asyncio.wait_for(task, 20) == 0
    watcher = daemon.watchers[0]
    assert watcher.name == "paper"
    assert watcher.stats.drops == 0


async def test_daemon_when_stream_disabled_then_no_watcher(tmp_path: Path) -> None:
    config = load_config(
        write_config(tmp_path / "levbot.toml", "[accounts.stream]\nenabled = false")
    )
    daemon = Daemon(config)
    task = asyncio.create_task(daemon.run())
    try:
        deadline = time.monotonic() + 15
        while not daemon.services or daemon.services[0].last_report is None:
            assert time.monotonic() < deadline, "no cycle ran"
            assert not task.done(), task
            await asyncio.sleep(0.05)
    finally:
        daemon.stop.set()
        assert await asyncio.wait_for(task, 20) == 0
    assert daemon.watchers == []
