"""Alerts reach the owner through the journal's outbox: in order, once, whatever Telegram does."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest

from bot.app.alerts import LOG_CHAT, LogChannel, flush_outbox
from bot.app.config import load_config
from bot.app.control import Controls, account_statuses, daily_summary
from bot.app.service import AccountRuntime, AccountService
from bot.domain.models import Side
from bot.domain.targets import Policy, Target, Targets
from bot.domain.vocabulary import AlertLevel
from bot.exchange.sim.exchange import SimulatedExchange
from bot.exchange.sim.markets import binance_usdm_markets
from bot.store.journal import Journal
from bot.telegram.channel import TelegramChannel
from bot.telegram.runner import TelegramRunner
from tests.support.fake_bot_api import FakeBotApi

OWNER = 4242
DESK = -100200  # a group chat, the second place alerts go


class Clock:
    def __init__(self) -> None:
        self.now = datetime.now(UTC)

    def __call__(self) -> datetime:
        return self.now


@dataclass
class Rig:
    api: FakeBotApi
    journal: Journal
    channel: TelegramChannel
    runner: TelegramRunner
    service: AccountService
    exchange: SimulatedExchange
    clock: Clock

    async def flush(self) -> int:
        return await flush_outbox(self.journal, self.channel, self.clock)

    def texts(self) -> list[str]:
        return [m.plain_text for m in self.api.sent_messages(OWNER)]


async def make_rig(
    tmp_path: Path, api: FakeBotApi, mute: str = "[]", chats: tuple[int, ...] = (OWNER,)
) -> Rig:
    path = tmp_path / "levbot.toml"
    path.write_text(
        f'[database]\nurl = "sqlite:///{tmp_path}/journal.sqlite"\n'
        f'[telegram]\ntoken = "{api.token}"\nallowed_chat_ids = {list(chats)}\n'
        f'api_base_url = "{api.url}"\nmute = {mute}\n'
        '[[accounts]]\nname = "paper"\nexchange = "sim"\n'
        "[accounts.target]\nleverage = 3\nmin = 2.5\nmax = 3.5\n[accounts.sim]\nleverage = 4\n"
    )
    config = load_config(path)
    assert config.telegram is not None
    clock = Clock()
    journal = await Journal.open(config.database.url, clock=clock)
    exchange = SimulatedExchange(
        markets=binance_usdm_markets(), clock=clock, derivatives=Decimal(10000),
        source=Decimal(5000), account="paper",
    )  # fmt: skip
    exchange.set_mark("BTC/USDT:USDT", Decimal(50000))
    exchange.open_position("BTC/USDT:USDT", Side.LONG, Decimal("0.8"))
    runtime = AccountRuntime(
        "paper", exchange, Targets(Target(Decimal(3), Decimal("2.5"), Decimal("3.5"))),
        Policy(), timedelta(seconds=60),
    )  # fmt: skip
    service = AccountService(runtime, journal, clock)
    channel = TelegramChannel(config.telegram.allowed_chat_ids, config.telegram.mute)
    controls = Controls(config, journal, {"paper": service}, clock)
    runner = TelegramRunner(config.telegram, controls, channel, clock)
    return Rig(api, journal, channel, runner, service, exchange, clock)


@pytest.fixture
async def rig(tmp_path: Path, fake_bot_api: FakeBotApi) -> AsyncIterator[Rig]:
    rig = await make_rig(tmp_path, fake_bot_api)
    rig.runner.start()
    await fake_bot_api.wait_for(lambda: rig.channel.bot is not None)
    try:
        yield rig
    finally:
        await rig.runner.stop()
        await rig.journal.close()


async def test_alerts_when_a_real_rebalance_runs_then_owner_gets_what_why_and_leverage(
    rig: Rig,
) -> None:
    await rig.service.run_cycle()
    assert await rig.flush() == 1
    [text] = rig.texts()
    assert "[paper] rebalanced" in text
    assert "transfer in" in text and "leverage 4.00 -> 3.00" in text


async def test_alerts_when_several_queued_then_delivered_oldest_first(rig: Rig) -> None:
    for n in range(5):
        await rig.journal.enqueue_alert(AlertLevel.WARNING, f"alert {n}")
    assert await rig.flush() == 5
    assert [t.split()[-1] for t in rig.texts()] == ["0", "1", "2", "3", "4"]


async def test_alerts_when_text_is_long_then_split_under_telegram_limit(rig: Rig) -> None:
    long_text = "\n".join(f"line {n} " + "x" * 80 for n in range(120))  # ~10k characters
    await rig.journal.enqueue_alert(AlertLevel.WARNING, long_text)
    await rig.flush()
    texts = rig.texts()
    assert len(texts) >= 3
    assert all(len(m.text) <= 4096 for m in rig.api.sent_messages(OWNER))
    assert "line 0 " in texts[0] and "line 119 " in texts[-1]


async def test_alerts_when_429_storm_then_retry_after_honoured_and_nothing_lost_or_doubled(
    rig: Rig,
) -> None:
    for n in range(3):
        await rig.journal.enqueue_alert(AlertLevel.WARNING, f"storm {n}")
    rig.api.storm("sendMessage", 4, retry_after=7)
    rounds = 0
    while len(rig.texts()) < 3 and rounds < 20:
        sent = await rig.flush()
        if sent == 0:
            # Nothing is due again before Telegram's retry_after has passed.
            assert await rig.journal.due_alerts(rig.clock(), 10) == []
            due = await rig.journal.due_alerts(rig.clock() + timedelta(seconds=7), 10)
            assert due
        rig.clock.now += timedelta(seconds=7)
        rounds += 1
    assert [t.split()[-1] for t in rig.texts()] == ["0", "1", "2"]
    assert len(rig.api.calls_to("sendMessage")) == 3 + 4  # 4 refused, 3 delivered once each


async def test_alerts_when_bot_is_blocked_then_kept_with_the_error(rig: Rig) -> None:
    await rig.journal.enqueue_alert(AlertLevel.CRITICAL, "margin call")
    rig.api.fail_next("sendMessage", status=403)
    assert await rig.flush() == 0
    [pending] = await rig.journal.due_alerts(rig.clock() + timedelta(hours=1), 10)
    assert pending.attempts == 1 and "Forbidden" in (pending.last_error or "")
    rig.clock.now += timedelta(hours=1)
    assert await rig.flush() == 1
    assert rig.texts()[-1].endswith("margin call")


async def test_alerts_when_level_muted_then_only_logged(
    tmp_path: Path, fake_bot_api: FakeBotApi
) -> None:
    rig = await make_rig(tmp_path, fake_bot_api, mute='["info"]')
    rig.runner.start()
    try:
        await fake_bot_api.wait_for(lambda: rig.channel.bot is not None)
        await rig.journal.enqueue_alert(AlertLevel.INFO, "quiet")
        await rig.journal.enqueue_alert(AlertLevel.CRITICAL, "loud")
        assert await rig.flush() == 2  # both leave the outbox
        assert [t.split()[-1] for t in rig.texts()] == ["loud"]
    finally:
        await rig.runner.stop()
        await rig.journal.close()


async def test_runner_when_telegram_down_at_start_then_cycles_go_on_and_alerts_wait(
    tmp_path: Path, fake_bot_api: FakeBotApi
) -> None:
    rig = await make_rig(tmp_path, fake_bot_api)
    fake_bot_api.set_down(True)
    rig.runner.start()
    try:
        report = await rig.service.run_cycle()  # the exchange side is untouched
        assert report.status == "ok" and report.outcomes
        assert await rig.flush() == 0
        assert rig.channel.bot is None
        fake_bot_api.set_down(False)
        await fake_bot_api.wait_for(lambda: rig.channel.bot is not None, timeout=10)
        rig.clock.now += timedelta(minutes=1)
        assert await rig.flush() == 1
        assert "[paper] rebalanced" in rig.texts()[0]
    finally:
        await rig.runner.stop()
        await rig.journal.close()


async def test_daily_summary_when_accounts_ran_then_one_line_each_reaches_the_owner(
    rig: Rig, tmp_path: Path
) -> None:
    await rig.service.run_cycle()
    config = load_config(tmp_path / "levbot.toml")
    text = daily_summary(await account_statuses(rig.journal, config))
    await rig.journal.enqueue_alert(AlertLevel.INFO, text)
    await rig.flush()
    summary = next(t for t in rig.texts() if "Daily summary" in t)
    assert "paper: active, equity" in summary
    assert "leverage 3.00 (band 2.5–3.5), last cycle ok, backstops 0 resting" in summary


async def test_alerts_when_second_chat_fails_then_retry_goes_to_it_only(
    tmp_path: Path, fake_bot_api: FakeBotApi
) -> None:
    rig = await make_rig(tmp_path, fake_bot_api, chats=(OWNER, DESK))
    rig.runner.start()
    try:
        await fake_bot_api.wait_for(lambda: rig.channel.bot is not None)
        alert = await rig.journal.enqueue_alert(AlertLevel.CRITICAL, "margin call")
        fake_bot_api.fail_next_to_chat(DESK, status=502)
        assert await rig.flush() == 0  # the owner has it, the desk does not yet
        rig.clock.now += timedelta(hours=1)
        assert await rig.flush() == 1
        owner = [m.plain_text for m in fake_bot_api.sent_messages(OWNER)]
        desk = [m.plain_text for m in fake_bot_api.sent_messages(DESK)]
        assert owner == ["🚨 margin call"]  # once, not again with the retry
        assert desk == ["🚨 margin call"]
        assert await rig.journal.alert_deliveries([alert]) == {alert: {OWNER, DESK}}
        assert await rig.journal.due_alerts(rig.clock() + timedelta(days=1)) == []
    finally:
        await rig.runner.stop()
        await rig.journal.close()


async def test_alerts_when_telegram_unreachable_then_every_alert_is_logged_when_queued(
    tmp_path: Path, fake_bot_api: FakeBotApi, caplog: pytest.LogCaptureFixture
) -> None:
    rig = await make_rig(tmp_path, fake_bot_api)
    fake_bot_api.set_down(True)
    rig.runner.start()
    try:
        with caplog.at_level(logging.INFO):
            await rig.journal.enqueue_alert(AlertLevel.INFO, "levbot started: paper")
            await rig.service.run_cycle()
            assert await rig.flush() == 0  # Telegram is down: nothing sent...
            queued = [r.getMessage() for r in caplog.records if "ALERT queued" in r.getMessage()]
            # ...but the log already has both, in order, with their levels.
            assert queued[0] == "ALERT queued [info] levbot started: paper"
            assert queued[1].startswith("ALERT queued [action] [paper] rebalanced")
            fake_bot_api.set_down(False)
            await fake_bot_api.wait_for(lambda: rig.channel.bot is not None, timeout=10)
            rig.clock.now += timedelta(minutes=1)
            assert await rig.flush() == 2
        # Delivery does not log the text a second time: one line per alert carries it.
        ours = [r for r in caplog.records if r.name.startswith("bot.")]
        rebalanced = [r for r in ours if "rebalanced" in r.getMessage()]
        assert len(rebalanced) == 1
    finally:
        await rig.runner.stop()
        await rig.journal.close()


async def test_log_channel_when_flushed_then_counts_as_one_chat_and_text_logged_once(
    tmp_path: Path, fake_bot_api: FakeBotApi, caplog: pytest.LogCaptureFixture
) -> None:
    rig = await make_rig(tmp_path, fake_bot_api)
    try:
        with caplog.at_level(logging.DEBUG):
            alert = await rig.journal.enqueue_alert(AlertLevel.WARNING, "exchange unreachable")
            assert await flush_outbox(rig.journal, LogChannel(), rig.clock) == 1
            assert await flush_outbox(rig.journal, LogChannel(), rig.clock) == 0
        assert await rig.journal.alert_deliveries([alert]) == {alert: {LOG_CHAT}}
        ours = [r for r in caplog.records if r.name.startswith("bot.")]
        texts = [r for r in ours if "exchange unreachable" in r.getMessage()]
        assert len(texts) == 1 and texts[0].levelno == logging.WARNING
    finally:
        await rig.journal.close()
