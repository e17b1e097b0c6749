"""`[metrics] listen`: the real daemon, in this process, on the simulated exchange, scraped
over real HTTP and read with prometheus_client's own parser.

The daemon's clock is the wall clock plus an offset the test moves, so "stale" is reached
without waiting three intervals.
"""

from __future__ import annotations

import asyncio
import socket
import urllib.error
import urllib.request
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from bot.app.config import ConfigError, LevbotConfig, load_config
from bot.app.metrics import LevbotMetrics
from bot.clock import utc_now
from bot.domain.vocabulary import CycleStatus
from bot.entrypoints.daemon import Daemon
from bot.store.journal import Journal

INTERVAL = 60  # seconds: the scheduler runs the first cycle only; the test runs the next


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def write_config(path: Path, listen: str) -> Path:
    path.write_text(
        f"""\
[database]
url = "sqlite:///{path.parent / "levbot.sqlite"}"

[metrics]
listen = "{listen}"

[[accounts]]
name = "paper"
exchange = "sim"
interval_seconds = {INTERVAL}

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
leverage = 4
loop = true
"""
    )
    return path


@dataclass
class OffsetClock:
    offset: timedelta = timedelta(0)

    def __call__(self) -> datetime:
        return utc_now() + self.offset


@dataclass
class Running:
    daemon: Daemon
    clock: OffsetClock
    base: str


def get(url: str) -> tuple[int, str]:
    return send(urllib.request.Request(url))


def send(request: urllib.request.Request) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(request, timeout=5) as reply:
            return reply.status, reply.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


async def fetch(url: str) -> tuple[int, str]:
    # urllib blocks: in a thread, so the daemon's loop (this loop) keeps serving.
    return await asyncio.to_thread(get, url)


def samples(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(found: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str,
          **labels: str) -> float | None:  # fmt: skip
    return found.get((name, frozenset(labels.items())))


def cycles(found: dict[tuple[str, frozenset[tuple[str, str]]], float]) -> float:
    return sum(
        v for (name, labels), v in found.items()
        if name == "levbot_cycles_total" and ("account", "paper") in labels
    )  # fmt: skip


@pytest.fixture
async def running(tmp_path: Path) -> AsyncIterator[Running]:
    config = load_config(write_config(tmp_path / "levbot.toml", f"127.0.0.1:{free_port()}"))
    assert config.metrics is not None
    clock = OffsetClock()
    daemon = Daemon(config, clock=clock)
    task = asyncio.create_task(daemon.run())
    base = f"http://{config.metrics.listen}"
    try:
        yield Running(daemon, clock, base)
    finally:
        daemon.stop.set()
        assert await asyncio.wait_for(task, 20) == 0


async def until_first_cycle(base: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 15
    while True:
        try:
            status, text = await fetch(f"{base}/metrics")
        except OSError:
            status, text = 0, ""  # not listening yet
        if status == 200 and cycles(found := samples(text)) >= 1:
            return found
        assert loop.time() < deadline, f"no cycle on /metrics: {status} {text[:2000]}"
        await asyncio.sleep(0.05)


async def test_metrics_when_a_cycle_ran_then_the_endpoint_shows_the_account(
    running: Running,
) -> None:
    found = await until_first_cycle(running.base)

    assert value(found, "levbot_leverage_target", account="paper") == 3
    assert value(found, "levbot_leverage_band_min", account="paper") == 2.5
    assert value(found, "levbot_leverage_band_max", account="paper") == 3.5
    leverage = value(found, "levbot_leverage", account="paper")
    equity = value(found, "levbot_equity", account="paper")
    assert leverage is not None and 0 < leverage < 10
    assert equity is not None and equity > 0
    assert value(found, "levbot_margin_ratio", account="paper") is not None
    assert value(found, "levbot_trading_state", account="paper", state="active") == 1
    assert value(found, "levbot_trading_state", account="paper", state="paused") == 0
    last = value(found, "levbot_last_successful_cycle_timestamp_seconds", account="paper")
    assert last is not None and abs(last - utc_now().timestamp()) < 60
    assert value(found, "levbot_cycles_total", account="paper", status="ok") == 1
    # The paper position opens at 4x, above the band: the first cycle moved collateral in.
    assert value(found, "levbot_actions_total", account="paper", kind="transfer_in",
                 status="ok") == 1  # fmt: skip
    assert value(found, "levbot_alerts_queued_total", level="action") == 1


async def test_metrics_when_another_cycle_runs_then_the_cycle_counter_grows(
    running: Running,
) -> None:
    before = cycles(await until_first_cycle(running.base))

    await running.daemon.services[0].run_cycle()

    status, text = await fetch(f"{running.base}/metrics")
    assert status == 200
    assert cycles(samples(text)) == before + 1


async def test_healthz_when_the_last_success_is_older_than_three_intervals_then_503(
    running: Running,
) -> None:
    await until_first_cycle(running.base)
    assert await fetch(f"{running.base}/healthz") == (200, "ok\n")

    running.clock.offset = timedelta(seconds=3 * INTERVAL + 5)

    status, body = await fetch(f"{running.base}/healthz")
    assert status == 503
    assert "paper: last success too old" in body
    _, text = await fetch(f"{running.base}/metrics")
    assert value(samples(text), "levbot_healthy", account="paper") == 0


async def test_metrics_server_when_the_path_or_method_is_unknown_then_404_or_405(
    running: Running,
) -> None:
    await until_first_cycle(running.base)

    assert (await fetch(f"{running.base}/nothing"))[0] == 404
    post = urllib.request.Request(f"{running.base}/metrics", method="POST")
    assert (await asyncio.to_thread(send, post))[0] == 405


@pytest.mark.parametrize("listen", ["9108", "127.0.0.1", "127.0.0.1:0", "host:99999", ":9108"])
def test_metrics_config_when_listen_is_not_host_port_then_one_line_names_it(
    tmp_path: Path, listen: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(write_config(tmp_path / "levbot.toml", listen))

    lines = [line for line in str(caught.value).splitlines() if "metrics.listen" in line]
    assert len(lines) == 1, str(caught.value)
    assert "host:port" in lines[0]


def test_metrics_config_when_absent_then_no_metrics(tmp_path: Path) -> None:
    path = write_config(tmp_path / "levbot.toml", "127.0.0.1:9108")
    path.write_text(path.read_text().replace('[metrics]\nlisten = "127.0.0.1:9108"\n', ""))

    config: LevbotConfig = load_config(path)

    assert config.metrics is None


async def test_daemon_when_the_metrics_port_is_taken_then_it_still_cycles_and_warns(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        config = load_config(write_config(tmp_path / "levbot.toml", f"127.0.0.1:{port}"))
        daemon = Daemon(config)
        task = asyncio.create_task(daemon.run())
        try:
            loop = asyncio.get_running_loop()
            deadline = loop.time() + 15
            while not daemon.services or daemon.services[0].last_report is None:
                assert not task.done(), task
                assert loop.time() < deadline, "no cycle"
                await asyncio.sleep(0.05)
        finally:
            daemon.stop.set()
            assert await asyncio.wait_for(task, 20) == 0

    assert daemon.metrics_server is None
    assert f"metrics: cannot listen on 127.0.0.1:{port}" in caplog.text


async def test_metrics_page_when_a_cycle_ends_during_the_scrape_then_count_and_time_agree(
    tmp_path: Path,
) -> None:
    """A scrape reads the gauges from the journal, then renders the counters: a cycle that
    ends in between must not show in the count without its finish time (seen in CI)."""
    config = load_config(write_config(tmp_path / "levbot.toml", "127.0.0.1:1"))
    for delay in range(40):  # ms: every point in the scrape at which the cycle can end
        metrics = LevbotMetrics()
        async with await Journal.open(f"sqlite:///{tmp_path / f'{delay}.sqlite'}") as journal:
            metered = metrics.journal(journal)
            at = utc_now()
            cycle_id = await metered.start_cycle("paper", at)
            scrape = asyncio.create_task(metrics.page(journal, config, [], at))
            await asyncio.sleep(delay / 1000)
            await metered.finish_cycle(cycle_id, CycleStatus.OK, at)
            page = (await scrape).decode()
            found = samples(page)
        counted = value(found, "levbot_cycles_total", account="paper", status="ok")
        last = value(found, "levbot_last_successful_cycle_timestamp_seconds", account="paper")
        if counted:
            assert last is not None, f"ended {delay} ms into the scrape: counted, no finish time"
    families = {family.name for family in text_string_to_metric_families(page)}
    assert {family.name for family in metrics.registry.collect()} <= families  # none left out
