"""Pause state, target overrides and the command audit, across restarts."""

from __future__ import annotations

from decimal import Decimal

from sqlalchemy import text

from bot.domain.targets import Target
from bot.domain.vocabulary import ALL_ACCOUNTS
from bot.store.journal import Journal
from tests.integration.store.builders import T0, FakeClock

ACCOUNT_BAND = Target(Decimal("5"), Decimal("4.5"), Decimal("5.5"), Decimal("0.75"))
BTC_BAND = Target(Decimal("3.25"), Decimal("3"), Decimal("3.5"), Decimal("0.8"), Decimal("0.05"))


async def test_set_paused_when_reopened_then_pause_state_kept(
    db_url: str, clock: FakeClock
) -> None:
    first = await Journal.open(db_url, clock=clock)
    await first.set_paused("main", True, "telegram:alice")
    await first.set_paused("alt", True, "telegram:alice")
    await first.set_paused("alt", False, "telegram:bob")
    await first.close()

    second = await Journal.open(db_url, clock=clock)
    try:
        paused = await second.paused_accounts()
        await second.set_paused(ALL_ACCOUNTS, True, "cli")
        everything = await second.paused_accounts()
    finally:
        await second.close()

    assert paused == {"main"}
    assert everything == {"main", ALL_ACCOUNTS}


async def test_set_target_override_when_reopened_then_targets_identical(
    db_url: str, clock: FakeClock
) -> None:
    first = await Journal.open(db_url, clock=clock)
    await first.set_target_override("main", None, Target(Decimal(9), Decimal(8), Decimal(10)), "a")
    await first.set_target_override("main", None, ACCOUNT_BAND, "telegram:alice")
    await first.set_target_override("main", "BTC/USDT:USDT", BTC_BAND, "telegram:alice")
    await first.set_target_override("alt", None, BTC_BAND, "cli")
    await first.close()

    second = await Journal.open(db_url, clock=clock)
    try:
        overrides = await second.target_overrides("main")
        async with second.engine.connect() as connection:
            rows = (
                await connection.execute(text("SELECT count(*) FROM target_overrides"))
            ).scalar_one()
    finally:
        await second.close()

    assert overrides == {None: ACCOUNT_BAND, "BTC/USDT:USDT": BTC_BAND}
    assert rows == 3


async def test_set_target_override_when_cleared_then_config_applies_again(
    journal: Journal,
) -> None:
    await journal.set_target_override("main", None, ACCOUNT_BAND, "a")
    await journal.set_target_override("main", "BTC/USDT:USDT", BTC_BAND, "a")

    await journal.set_target_override("main", None, None, "a")

    assert await journal.target_overrides("main") == {"BTC/USDT:USDT": BTC_BAND}


async def test_audit_when_commands_received_then_every_one_recorded(journal: Journal) -> None:
    await journal.audit(-1001234567890123, "alice", "/pause", "main", True)
    await journal.audit(99, None, "/target", "main 10 9 11", False)

    async with journal.engine.connect() as connection:
        rows = (
            await connection.execute(
                text(
                    'SELECT chat_id, "user", command, args, allowed, at '
                    "FROM command_audit ORDER BY id"
                )
            )
        ).all()

    assert [tuple(r)[:5] for r in rows] == [
        (-1001234567890123, "alice", "/pause", "main", 1),
        (99, None, "/target", "main 10 9 11", 0),
    ]
    # SQLite returns the stored text, PostgreSQL a datetime: both print as UTC.
    assert str(rows[0].at).startswith(T0.strftime("%Y-%m-%d %H:%M:%S"))
