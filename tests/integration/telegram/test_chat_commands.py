"""Every chat command through real python-telegram-bot, a fake Bot API on loopback, a real
SQLite journal and the simulated exchange: what the owner sees, and what it changes."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest

from bot.app.config import LevbotConfig, load_config
from bot.app.control import Controls
from bot.app.service import AccountService
from bot.domain.models import AccountSnapshot, Side
from bot.domain.stops import StopOrder
from bot.entrypoints.bootstrap import build_runtime
from bot.exchange.port import (
    MarginResult,
    OrderRequest,
    OrderResult,
    OrderStatus,
    StopRequest,
    TransferResult,
)
from bot.exchange.sim.exchange import SimulatedExchange
from bot.exchange.sim.markets import binance_usdm_markets
from bot.store.journal import Journal
from bot.telegram.channel import TelegramChannel
from bot.telegram.runner import TelegramRunner
from tests.support.fake_bot_api import FakeBotApi

OWNER = 4242
STRANGER = 666
BTC = "BTC/USDT:USDT"


class Clock:
    def __init__(self) -> None:
        self.now = datetime.now(UTC)

    def __call__(self) -> datetime:
        return self.now


@dataclass
class World:
    api: FakeBotApi
    config: LevbotConfig
    journal: Journal
    exchanges: dict[str, SimulatedExchange]
    services: dict[str, AccountService]
    runner: TelegramRunner
    clock: Clock

    async def say(self, text: str, chat: int = OWNER) -> None:
        self.api.push_message(chat, text)

    async def reply(self, contains: str, chat: int = OWNER) -> str:
        message = await self.api.wait_for_message(chat_id=chat, contains=contains)
        return message.plain_text

    def buttons(self) -> tuple[int, str, str]:
        """The newest confirmation: (message id, confirm data, cancel data)."""
        message = [m for m in self.api.sent_messages(OWNER) if m.reply_markup][-1]
        row = message.reply_markup["inline_keyboard"][0]  # type: ignore[index]
        return message.message_id, row[0]["callback_data"], row[1]["callback_data"]


def write_config(tmp_path: Path, api: FakeBotApi) -> Path:
    path = tmp_path / "levbot.toml"
    account = """
[[accounts]]
name = "{name}"
exchange = "sim"
interval_seconds = 60
[accounts.target]
leverage = 3
min = 2.5
max = 3.5
[accounts.sim]
leverage = 4
"""
    # The owner keeps a backstop ladder on "paper" only.
    alt = account.format(name="alt") + "[accounts.backstop]\nenabled = false\n"
    path.write_text(
        f'[database]\nurl = "sqlite:///{tmp_path}/journal.sqlite"\n'
        f'[telegram]\ntoken = "{api.token}"\nallowed_chat_ids = [{OWNER}]\n'
        f'api_base_url = "{api.url}"\n' + account.format(name="paper") + alt
    )
    return path


def sim_exchange(name: str, clock: Clock, source: Decimal = Decimal(5000)) -> SimulatedExchange:
    exchange = SimulatedExchange(
        markets=binance_usdm_markets(), clock=clock, derivatives=Decimal(10000),
        source=source, account=name,
    )  # fmt: skip
    exchange.set_mark(BTC, Decimal(50000))
    exchange.open_position(BTC, Side.LONG, Decimal("0.8"))  # 40k notional on 10k: 4x
    return exchange


@pytest.fixture
async def world(tmp_path: Path, fake_bot_api: FakeBotApi) -> AsyncIterator[World]:
    config = load_config(write_config(tmp_path, fake_bot_api))
    clock = Clock()
    journal = await Journal.open(config.database.url, clock=clock)
    exchanges = {a.name: sim_exchange(a.name, clock) for a in config.accounts}
    services = {
        a.name: AccountService(build_runtime(a, exchanges[a.name]), journal, clock)
        for a in config.accounts
    }
    assert config.telegram is not None
    channel = TelegramChannel(config.telegram.allowed_chat_ids)
    controls = Controls(config, journal, services, clock)
    runner = TelegramRunner(config.telegram, controls, channel, clock)
    runner.start()
    await fake_bot_api.wait_for(lambda: "getUpdates" in fake_bot_api.calls)
    try:
        yield World(fake_bot_api, config, journal, exchanges, services, runner, clock)
    finally:
        await runner.stop()
        await journal.close()


async def test_runner_when_started_then_connects_by_hand_and_publishes_commands(
    world: World,
) -> None:
    calls = world.api.calls
    assert calls.index("getMe") < calls.index("deleteWebhook") < calls.index("getUpdates")
    published = {name for name, _ in world.api.commands}
    assert published >= {"help", "status", "positions", "plan", "rebalance", "pause", "resume",
                         "target", "history", "chart"}  # fmt: skip


async def test_help_when_asked_then_lists_every_command(world: World) -> None:
    await world.say("/help")
    text = await world.reply("Commands")
    for command in ("/status", "/positions", "/plan", "/rebalance", "/pause", "/resume",
                    "/target", "/history", "/chart"):  # fmt: skip
        assert command in text


async def test_status_when_a_cycle_ran_then_shows_leverage_band_and_state(world: World) -> None:
    await world.services["paper"].run_cycle()
    await world.say("/status")
    text = await world.reply("paper")
    assert "paper — active" in text
    assert "leverage 3.00 (band 2.5 / 3 / 3.5)" in text
    assert "alt — active" in text and "no snapshot yet" in text
    assert "margin ratio" in text and "last cycle" in text


async def test_positions_when_snapshot_exists_then_shows_each_position(world: World) -> None:
    await world.services["alt"].run_cycle()
    await world.say("/positions alt")
    text = await world.reply("alt")
    assert "BTC/USDT:USDT long 0.8" in text
    assert "cross" in text and "liq" in text


async def test_plan_when_above_band_then_says_what_and_why_without_acting(world: World) -> None:
    await world.say("/plan paper")
    text = await world.api.wait_for(
        lambda: next((e.plain_text for e in world.api.edited_messages
                      if e.plain_text and "Would do" in e.plain_text), None)
    )  # fmt: skip
    assert "transfer_in" in text and "de-lever" in text
    assert world.exchanges["paper"].source == Decimal(5000)  # nothing was moved


async def test_rebalance_when_confirmed_then_runs_a_cycle_and_reports(world: World) -> None:
    await world.say("/rebalance paper")
    await world.reply("Confirm within 60 s")
    message_id, confirm, _ = world.buttons()
    world.api.push_callback(OWNER, confirm, message_id)
    edited = await world.api.wait_for(
        lambda: next((e.plain_text for e in world.api.edited_messages
                      if e.plain_text and "cycle: ok" in e.plain_text), None)
    )  # fmt: skip
    assert "transfer in" in edited
    assert world.exchanges["paper"].source < Decimal(5000)
    assert world.api.answered_callbacks[-1].text == "On it"


async def test_rebalance_when_cancelled_then_nothing_happens(world: World) -> None:
    await world.say("/rebalance paper")
    await world.reply("Confirm within 60 s")
    message_id, _, cancel = world.buttons()
    world.api.push_callback(OWNER, cancel, message_id)
    await world.api.wait_for(lambda: world.api.answered_callbacks)
    assert world.api.answered_callbacks[-1].text == "Cancelled"
    assert world.exchanges["paper"].source == Decimal(5000)


async def test_rebalance_when_confirmed_after_60s_then_expired_and_nothing_done(
    world: World,
) -> None:
    await world.say("/rebalance paper")
    await world.reply("Confirm within 60 s")
    message_id, confirm, _ = world.buttons()
    world.clock.now += timedelta(seconds=61)
    world.api.push_callback(OWNER, confirm, message_id)
    edited = await world.api.wait_for(
        lambda: next((e.plain_text for e in world.api.edited_messages
                      if e.plain_text and "expired" in e.plain_text), None)
    )  # fmt: skip
    assert "nothing done" in edited
    assert world.exchanges["paper"].source == Decimal(5000)
    # The same button again: no longer open, and no error from an unchanged edit.
    world.api.push_callback(OWNER, confirm, message_id)
    await world.api.wait_for(lambda: len(world.api.answered_callbacks) >= 2)
    assert world.api.answered_callbacks[-1].text == "This request is no longer open."


async def test_pause_when_paused_then_cycles_hold_back_and_state_survives(world: World) -> None:
    await world.say("/pause paper")
    await world.reply("paused")
    assert await world.journal.paused_accounts() == {"paper"}
    report = await world.services["paper"].run_cycle()
    assert report.status == "paused"
    assert world.exchanges["paper"].source == Decimal(5000)
    assert any(n.startswith("held back") for n in report.notes)
    await world.say("/resume")
    await world.reply("active again")
    assert await world.journal.paused_accounts() == set()


async def test_target_when_confirmed_then_persisted_audited_and_used(world: World) -> None:
    await world.say("/target paper 4")
    text = await world.reply("Confirm within 60 s")
    assert "target 4, band 3.33–4.67 (now 3, 2.5–3.5)" in text
    message_id, confirm, _ = world.buttons()
    world.api.push_callback(OWNER, confirm, message_id)
    await world.api.wait_for(
        lambda: any(e.plain_text and "saved" in e.plain_text for e in world.api.edited_messages)
    )
    overrides = await world.journal.target_overrides("paper")
    assert overrides[None].leverage == Decimal(4)
    assert overrides[None].min == Decimal("3.33")
    # 4x is now inside the band 3.33-4.67: a cycle does nothing.
    report = await world.services["paper"].run_cycle()
    assert report.outcomes == ()


@pytest.mark.parametrize(
    ("command", "expected"),
    [
        ("/target paper 3 3.5 4", "min=3.5: must be below leverage (3)"),
        ("/target paper", "Usage: /target <account> [symbol] <leverage> [min] [max]"),
        ("/target paper abc", "'abc' is not a number"),
        ("/history x", "Usage: /history [n]"),
        ("/chart paper 1y extra", "Usage: /chart [account] [24h|7d]"),
        ("/rebalance", "name one of: paper, alt"),
        ("/positions nope", "Unknown account nope. Accounts: paper, alt"),
    ],
)
async def test_commands_when_arguments_are_wrong_then_one_line_reply(
    world: World, command: str, expected: str
) -> None:
    await world.say(command)
    text = await world.api.wait_for(
        lambda: next((m.plain_text for m in world.api.sent_messages(OWNER)), None)
    )
    assert expected in text
    assert "\n" not in text and "Traceback" not in text


async def test_replies_when_user_text_has_html_then_it_is_escaped(world: World) -> None:
    await world.say("/positions <b>x</b>")
    text = await world.reply("Unknown account")
    assert "Unknown account <b>x</b>." in text  # shown literally: it was escaped


async def test_history_when_actions_ran_then_lists_reason_and_result(world: World) -> None:
    await world.services["paper"].run_cycle()
    await world.say("/history 5")
    text = await world.reply("transfer_in")
    assert "ok" in text and "de-lever paper: leverage 4.00 -> 3.00" in text


async def test_chart_when_snapshots_exist_then_sends_a_png(world: World) -> None:
    service = world.services["paper"]
    for _ in range(3):
        await service.run_cycle()
        world.clock.now += timedelta(minutes=1)
    await world.say("/chart paper 24h")
    photo = await world.api.wait_for(lambda: next(iter(world.api.sent_photos(OWNER)), None))
    assert photo.is_png and photo.size > 5_000
    assert photo.caption is not None and "paper" in photo.caption


async def test_gate_when_stranger_writes_then_no_reply_and_audited(world: World) -> None:
    await world.say("/status", chat=STRANGER)
    await world.say("/help")  # the owner's message shows the stranger's was processed
    await world.reply("Commands")
    assert world.api.sent_messages(STRANGER) == []
    audit = await world.journal.audit_entries(limit=10)
    denied = [a for a in audit if not a.allowed]
    assert [(a.chat_id, a.command) for a in denied] == [(STRANGER, "/status")]


async def test_gate_when_stranger_presses_a_button_then_ignored(world: World) -> None:
    await world.say("/rebalance paper")
    await world.reply("Confirm within 60 s")
    _, confirm, _ = world.buttons()
    # A bot message in the stranger's chat lets the fake deliver a press from there.
    bait = await world.runner.application.bot.send_message(STRANGER, "hello")
    world.api.push_callback(STRANGER, confirm, bait.message_id)
    await world.say("/help")
    await world.reply("Commands")
    assert world.api.answered_callbacks == []
    assert world.exchanges["paper"].source == Decimal(5000)
    audit = await world.journal.audit_entries(limit=10)
    assert any(a.chat_id == STRANGER and not a.allowed for a in audit)
    # The owner's confirmation is still open.
    message_id, confirm, _ = world.buttons()
    world.api.push_callback(OWNER, confirm, message_id)
    await world.api.wait_for(lambda: world.api.answered_callbacks)
    assert world.api.answered_callbacks[-1].text == "On it"


class CancellingExchange:
    """The simulated venue, except that it kills every new order unfilled (canceled)."""

    def __init__(self, venue: SimulatedExchange) -> None:
        self.venue = venue
        self.name = venue.name

    async def fetch_snapshot(self, include_source: bool = True) -> AccountSnapshot:
        return await self.venue.fetch_snapshot(include_source)

    async def fetch_source(self, snapshot: AccountSnapshot) -> AccountSnapshot:
        return await self.venue.fetch_source(snapshot)

    async def transfer(
        self, currency: str, amount: Decimal, into_derivatives: bool, client_id: str
    ) -> TransferResult:
        return await self.venue.transfer(currency, amount, into_derivatives, client_id)

    async def adjust_margin(
        self, symbol: str, side: Side, amount: Decimal, add: bool, hedged: bool = False
    ) -> MarginResult:
        return await self.venue.adjust_margin(symbol, side, amount, add, hedged)

    async def create_order(self, request: OrderRequest) -> OrderResult:
        return OrderResult(
            client_order_id=request.client_order_id, exchange_id="C-1", symbol=request.symbol,
            side=request.side, amount=request.amount, filled=Decimal(0), average_price=None,
            fee=Decimal(0), status=OrderStatus.CANCELED,
        )  # fmt: skip

    async def fetch_order_by_client_id(
        self, symbol: str, client_order_id: str
    ) -> OrderResult | None:
        return None

    # Stops (the backstop ladder) rest at the simulated venue as usual.
    async def place_stop(self, request: StopRequest) -> StopOrder:
        return await self.venue.place_stop(request)

    async def cancel_stop(self, order: StopOrder) -> StopOrder:
        return await self.venue.cancel_stop(order)

    async def fetch_stops(self, symbols: Sequence[str]) -> tuple[StopOrder, ...]:
        return await self.venue.fetch_stops(symbols)

    async def fetch_stop(self, symbol: str, client_order_id: str) -> StopOrder | None:
        return await self.venue.fetch_stop(symbol, client_order_id)

    async def close(self) -> None:
        await self.venue.close()


async def test_rebalance_when_venue_cancels_the_order_unfilled_then_reported_failed(
    world: World,
) -> None:
    # No source funds: the cycle must reduce with an order, which the venue cancels.
    account = next(a for a in world.config.accounts if a.name == "alt")
    drained = sim_exchange("alt", world.clock, source=Decimal(0))
    world.services["alt"] = AccountService(
        build_runtime(account, CancellingExchange(drained)), world.journal, world.clock
    )

    await world.say("/rebalance alt")
    await world.reply("Confirm within 60 s")
    message_id, confirm, _ = world.buttons()
    world.api.push_callback(OWNER, confirm, message_id)
    edited = await world.api.wait_for(
        lambda: next((e.plain_text for e in world.api.edited_messages
                      if e.plain_text and "alt cycle:" in e.plain_text), None)
    )  # fmt: skip

    assert "alt cycle: failed" in edited
    assert "❌" in edited and "order canceled with nothing filled" in edited
    assert "✅" not in edited


# -- backstops (issue 10 §1): what rests at the venue, and what /plan would change -------

SHIELD = re.compile(r"🛡 sell \d+\.\d+ BTC/USDT:USDT @ [\d,]+\.\d+")
PLACE = re.compile(r"• place L(\d) sell \d+\.\d+ BTC/USDT:USDT @ [\d,]+\.\d+")
KEEP = re.compile(r"• keep sell \d+\.\d+ BTC/USDT:USDT @ [\d,]+\.\d+")


async def _edited(world: World, contains: str) -> str:
    return await world.api.wait_for(
        lambda: next((e.plain_text for e in world.api.edited_messages
                      if e.plain_text and contains in e.plain_text), None)
    )  # fmt: skip


async def test_status_when_backstops_rest_then_each_trigger_and_size_per_account(
    world: World,
) -> None:
    await world.services["paper"].run_cycle()
    await world.services["alt"].run_cycle()

    await world.say("/status")
    text = await world.reply("paper")

    paper, alt = text.split("\n\n")
    assert "backstops resting: 3" in paper
    shields = [line for line in paper.splitlines() if line.startswith("🛡")]
    assert len(shields) == 3 and all(SHIELD.fullmatch(line) for line in shields), shields
    # Short enough for a phone screen without wrapping the figures.
    assert max(len(line) for line in shields) <= 48
    assert alt.splitlines()[-1] == "backstops: off"


async def test_status_when_no_cycle_yet_then_none_resting(world: World) -> None:
    await world.say("/status")
    text = await world.reply("paper")

    paper, alt = text.split("\n\n")
    assert paper.splitlines()[-1] == "backstops: none resting"
    assert alt.splitlines()[-1] == "backstops: off"


async def test_plan_when_nothing_rests_then_every_level_would_be_placed(world: World) -> None:
    await world.say("/plan paper")
    text = await _edited(world, "Backstops:")

    # Next to the trade plan, after it.
    assert text.index("Would do:") < text.index("Backstops:")
    assert [int(level) for level in PLACE.findall(text)] == [1, 2, 3]
    assert not KEEP.search(text)
    assert await world.journal.resting_stops("paper") == ()  # nothing was placed


async def test_plan_when_ladder_rests_then_keep_lines_and_nothing_to_place(world: World) -> None:
    await world.services["paper"].run_cycle()

    await world.say("/plan paper")
    text = await _edited(world, "Backstops:")

    assert len(KEEP.findall(text)) == 3
    assert not PLACE.search(text)


async def test_plan_when_backstop_off_then_says_so(world: World) -> None:
    await world.say("/plan alt")
    text = await _edited(world, "alt: leverage")

    assert text.splitlines()[-1] == "backstop: off"


async def test_commands_when_another_process_drives_the_account_then_journal_ones_still_work(
    world: World,
) -> None:
    # Several daemons on one PostgreSQL: this process (the one polling Telegram) no longer
    # holds "alt"'s lease, as the daemon drops a service whose lease went elsewhere.
    world.services.pop("alt")

    await world.say("/pause alt")
    await world.reply("paused")
    assert await world.journal.paused_accounts() == {"alt"}
    await world.say("/resume alt")
    await world.reply("active again")

    await world.say("/target alt 4")
    assert "(now 3, 2.5–3.5)" in await world.reply("Confirm within 60 s")

    await world.say("/rebalance alt")
    text = await world.reply("driven by another levbot process")
    assert "/pause" in text and "\n" not in text

    await world.say("/plan")
    text = await world.api.wait_for(
        lambda: next((e.plain_text for e in world.api.edited_messages
                      if e.plain_text and "Would do" in e.plain_text), None)
    )  # fmt: skip
    assert "alt: driven by another levbot process" in text
