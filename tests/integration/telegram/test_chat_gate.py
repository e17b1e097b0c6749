"""The gate in front of every command, through real python-telegram-bot and the fake Bot API:
edited messages pass it exactly like new ones, and `allowed_user_ids` narrows a group chat
to its owners. Every command and button press is audited, allowed or not."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import pytest

from bot.app.config import load_config
from bot.app.config.problems import ConfigError
from bot.app.control import Controls
from bot.app.service import AccountService
from bot.domain.models import Side
from bot.entrypoints.bootstrap import build_runtime
from bot.exchange.sim.exchange import SimulatedExchange
from bot.exchange.sim.markets import binance_usdm_markets
from bot.store.journal import Journal
from bot.store.records import AuditRecord
from bot.telegram.channel import TelegramChannel
from bot.telegram.runner import TelegramRunner
from tests.support.fake_bot_api import FakeBotApi

OWNER = 4242
STRANGER = 666
DESK = -100200  # a group chat the bot is allowed in
INTRUDER = 777  # a member of that group who is not an owner
BTC = "BTC/USDT:USDT"


class Clock:
    def __init__(self) -> None:
        self.now = datetime.now(UTC)

    def __call__(self) -> datetime:
        return self.now


@dataclass
class Gate:
    api: FakeBotApi
    journal: Journal
    exchange: SimulatedExchange

    async def texts(self, chat: int, contains: str) -> str:
        return (await self.api.wait_for_message(chat_id=chat, contains=contains)).plain_text

    async def audit(self) -> list[tuple[int, str | None, str, str, bool]]:
        """Audit rows oldest first, as (chat, user, command, args, allowed)."""
        rows: list[AuditRecord] = await self.journal.audit_entries(limit=50)
        return [(a.chat_id, a.user, a.command, a.args, a.allowed) for a in reversed(rows)]

    def confirmation(self, chat: int) -> tuple[int, str]:
        """The newest confirmation in `chat`: (message id, confirm data)."""
        message = [m for m in self.api.sent_messages(chat) if m.reply_markup][-1]
        row = message.reply_markup["inline_keyboard"][0]  # type: ignore[index]
        return message.message_id, row[0]["callback_data"]


@asynccontextmanager
async def running(tmp_path: Path, api: FakeBotApi, telegram: str) -> AsyncIterator[Gate]:
    path = tmp_path / "levbot.toml"
    path.write_text(
        f'[database]\nurl = "sqlite:///{tmp_path}/journal.sqlite"\n'
        f'[telegram]\ntoken = "{api.token}"\napi_base_url = "{api.url}"\n{telegram}\n'
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
    exchange.set_mark(BTC, Decimal(50000))
    exchange.open_position(BTC, Side.LONG, Decimal("0.8"))
    account = config.accounts[0]
    services = {"paper": AccountService(build_runtime(account, exchange), journal, clock)}
    channel = TelegramChannel(config.telegram.allowed_chat_ids)
    runner = TelegramRunner(
        config.telegram, Controls(config, journal, services, clock), channel, clock
    )
    runner.start()
    await api.wait_for(lambda: "getUpdates" in api.calls)
    try:
        yield Gate(api, journal, exchange)
    finally:
        await runner.stop()
        await journal.close()


@pytest.fixture
async def owner_chat(tmp_path: Path, fake_bot_api: FakeBotApi) -> AsyncIterator[Gate]:
    async with running(tmp_path, fake_bot_api, f"allowed_chat_ids = [{OWNER}]") as gate:
        yield gate


@pytest.fixture
async def desk(tmp_path: Path, fake_bot_api: FakeBotApi) -> AsyncIterator[Gate]:
    telegram = f"allowed_chat_ids = [{DESK}]\nallowed_user_ids = [{OWNER}]"
    async with running(tmp_path, fake_bot_api, telegram) as gate:
        yield gate


# -- edited messages ---------------------------------------------------------------------


async def test_gate_when_owner_edits_a_message_into_a_command_then_audited_and_run(
    owner_chat: Gate,
) -> None:
    api = owner_chat.api
    typo = api.push_message(OWNER, "/pasue paper")
    api.push_edited_message(OWNER, typo["message"]["message_id"], "/pause paper")

    await owner_chat.texts(OWNER, "paused")
    assert await owner_chat.journal.paused_accounts() == {"paper"}
    audit = await owner_chat.audit()
    assert audit[-1] == (OWNER, str(OWNER), "/pause", "paper", True)
    assert [row[2] for row in audit] == ["/pasue", "/pause"]


async def test_gate_when_stranger_edits_a_message_into_a_command_then_refused_and_audited(
    owner_chat: Gate,
) -> None:
    api = owner_chat.api
    hello = api.push_message(STRANGER, "hello")
    api.push_edited_message(STRANGER, hello["message"]["message_id"], "/pause paper")
    api.push_message(OWNER, "/help")  # the owner's reply shows the edit was processed
    await owner_chat.texts(OWNER, "Commands")

    assert api.sent_messages(STRANGER) == []
    assert await owner_chat.journal.paused_accounts() == set()
    refused = [row for row in await owner_chat.audit() if not row[4]]
    assert [(r[0], r[2], r[3]) for r in refused] == [
        (STRANGER, "hello", ""),
        (STRANGER, "/pause", "paper"),
    ]


# -- allowed_user_ids ------------------------------------------------------------------


async def test_gate_when_group_member_is_not_an_owner_then_refused_with_a_reply_and_audited(
    desk: Gate,
) -> None:
    desk.api.push_message(DESK, "/pause paper", user_id=INTRUDER)
    text = await desk.texts(DESK, "not allowed")

    assert "\n" not in text
    assert await desk.journal.paused_accounts() == set()
    assert (DESK, str(INTRUDER), "/pause", "paper", False) in await desk.audit()


async def test_gate_when_group_member_chats_without_a_command_then_silent_and_not_audited(
    desk: Gate,
) -> None:
    desk.api.push_message(DESK, "gm everyone", user_id=INTRUDER)
    desk.api.push_message(DESK, "/help", user_id=OWNER)
    await desk.texts(DESK, "Commands")

    assert [m.plain_text.split()[0] for m in desk.api.sent_messages(DESK)] == ["levbot"]
    assert [row[2] for row in await desk.audit()] == ["/help"]


async def test_gate_when_owner_writes_in_the_group_then_the_command_runs(desk: Gate) -> None:
    desk.api.push_message(DESK, "/pause paper", user_id=OWNER)
    await desk.texts(DESK, "paused")

    assert await desk.journal.paused_accounts() == {"paper"}
    assert (DESK, str(OWNER), "/pause", "paper", True) in await desk.audit()


async def test_gate_when_non_owner_presses_confirm_then_refused_and_owner_can_still_confirm(
    desk: Gate,
) -> None:
    api = desk.api
    api.push_message(DESK, "/rebalance paper", user_id=OWNER)
    await desk.texts(DESK, "Confirm within 60 s")
    message_id, confirm = desk.confirmation(DESK)

    api.push_callback(DESK, confirm, message_id, user_id=INTRUDER)
    await api.wait_for(lambda: api.answered_callbacks)
    assert "not allowed" in (api.answered_callbacks[-1].text or "")
    assert desk.exchange.source == Decimal(5000)  # nothing moved
    assert (DESK, str(INTRUDER), "[button]", confirm, False) in await desk.audit()

    api.push_callback(DESK, confirm, message_id, user_id=OWNER)
    await api.wait_for(lambda: len(api.answered_callbacks) >= 2)
    assert api.answered_callbacks[-1].text == "On it"


def test_config_when_allowed_user_ids_is_empty_then_one_line_naming_the_field(
    tmp_path: Path,
) -> None:
    path = tmp_path / "levbot.toml"
    path.write_text(
        '[telegram]\ntoken = "1:x"\nallowed_chat_ids = [1]\nallowed_user_ids = []\n'
        '[[accounts]]\nname = "paper"\nexchange = "sim"\n'
        "[accounts.target]\nleverage = 3\nmin = 2.5\nmax = 3.5\n"
    )
    with pytest.raises(ConfigError) as error:
        load_config(path)
    assert "telegram.allowed_user_ids: " in str(error.value)
    assert "at least one user id" in str(error.value)
