"""Snapshots: exact Decimals and positions, UTC timestamps, latest/since, and pruning."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal

import pytest
from sqlalchemy import text

from bot.store.journal import Journal
from tests.integration.store.builders import T0, snapshot

AWKWARD = [
    Decimal("12345678901234567890.123456789012345678"),
    Decimal("0.1"),
    Decimal("1.10"),
    Decimal("-0.000000000000000001"),
    Decimal("1E+3"),
    Decimal("0E-8"),
]


async def test_record_snapshot_when_read_back_then_every_decimal_exact(journal: Journal) -> None:
    for i, value in enumerate(AWKWARD):
        taken = snapshot(taken_at=T0 + timedelta(minutes=i), wallet=str(value))
        await journal.record_snapshot("main", taken, value, value, value, value)

    records = await journal.snapshots_since("main", T0)

    for value, record in zip(AWKWARD, records, strict=True):
        assert (record.wallet, record.equity, record.notional) == (value, value, value)
        assert (record.leverage, record.margin_ratio) == (value, value)
        # Same digits and exponent, not just equal: 1.10 stays 1.10.
        assert str(record.wallet) == str(value)


async def test_record_snapshot_when_read_back_then_positions_and_balances_identical(
    journal: Journal,
) -> None:
    taken = snapshot()
    snapshot_id = await journal.record_snapshot(
        "main",
        taken,
        Decimal("1075.5"),
        Decimal("7532.14335"),
        Decimal("7.003"),
        None,
        cycle_id=None,
    )

    [record] = await journal.snapshots_since("main", T0)

    assert record.id == snapshot_id
    assert record.positions == taken.positions
    assert (record.wallet, record.wallet_free) == (Decimal("1000.123456789"), Decimal("400.5"))
    assert (record.source_balance, record.source_free) == (Decimal("5000"), Decimal("4999.99"))
    assert (record.settle, record.margin_ratio) == ("USDT", None)


async def test_record_snapshot_when_positions_then_position_rows_with_notional(
    journal: Journal,
) -> None:
    snapshot_id = await journal.record_snapshot(
        "main", snapshot(), Decimal(1), Decimal(1), Decimal(1), Decimal(0)
    )
    async with journal.engine.connect() as connection:
        rows = (
            await connection.execute(
                text(
                    "SELECT symbol, side, margin_mode, notional FROM position_snapshots "
                    "WHERE snapshot_id = :id ORDER BY symbol"
                ),
                {"id": snapshot_id},
            )
        ).all()

    assert [tuple(r) for r in rows] == [
        ("BTC/USDT:USDT", "long", "cross", "7531.84350"),
        ("ETH/USDT:USDT", "short", "isolated", None),
    ]


async def test_snapshots_when_taken_in_other_timezone_then_come_back_utc_aware(
    journal: Journal,
) -> None:
    local = datetime(2024, 5, 19, 14, 0, tzinfo=timezone(timedelta(hours=2)))
    await journal.record_snapshot(
        "main", snapshot(taken_at=local), Decimal(1), Decimal(1), None, None
    )

    [record] = await journal.snapshots_since("main", datetime(2024, 5, 19, 11, 59, tzinfo=UTC))
    latest = (await journal.latest_snapshots())["main"]

    assert record.taken_at == local
    assert record.taken_at.tzinfo is UTC
    assert record.taken_at == datetime(2024, 5, 19, 12, 0, tzinfo=UTC)
    assert latest.taken_at.tzinfo is UTC


async def test_record_snapshot_when_naive_datetime_then_rejected(journal: Journal) -> None:
    naive = snapshot(taken_at=datetime(2024, 5, 19, 12, 0))
    with pytest.raises(ValueError, match="naive"):
        await journal.record_snapshot("main", naive, Decimal(1), Decimal(1), None, None)


async def test_latest_snapshots_when_several_accounts_then_newest_of_each(
    journal: Journal,
) -> None:
    for account, minutes in [("main", 0), ("main", 5), ("alt", 3), ("main", 2), ("alt", 1)]:
        taken = snapshot(account=account, taken_at=T0 + timedelta(minutes=minutes))
        await journal.record_snapshot(account, taken, Decimal(minutes), Decimal(1), None, None)

    latest = await journal.latest_snapshots()

    assert {a: r.taken_at for a, r in latest.items()} == {
        "main": T0 + timedelta(minutes=5),
        "alt": T0 + timedelta(minutes=3),
    }
    assert latest["main"].equity == Decimal(5)


async def test_snapshots_since_when_asked_then_window_in_time_order(journal: Journal) -> None:
    for minutes in (10, 0, 5, 20):
        taken = snapshot(taken_at=T0 + timedelta(minutes=minutes))
        await journal.record_snapshot("main", taken, Decimal(minutes), Decimal(1), None, None)
    await journal.record_snapshot(
        "alt", snapshot(account="alt"), Decimal(1), Decimal(1), None, None
    )

    window = await journal.snapshots_since("main", T0 + timedelta(minutes=5))

    assert [r.equity for r in window] == [Decimal(5), Decimal(10), Decimal(20)]


async def test_prune_snapshots_when_old_then_deleted_with_positions_but_newest_kept(
    journal: Journal,
) -> None:
    for minutes in (0, 10, 20, 30):
        taken = snapshot(taken_at=T0 + timedelta(minutes=minutes))
        await journal.record_snapshot("main", taken, Decimal(minutes), Decimal(1), None, None)
    # An idle account whose only snapshot is old keeps it: status still has something to show.
    await journal.record_snapshot(
        "idle", snapshot(account="idle"), Decimal(1), Decimal(1), None, None
    )

    pruned = await journal.prune_snapshots(T0 + timedelta(minutes=20))

    assert pruned == 2
    assert [r.equity for r in await journal.snapshots_since("main", T0)] == [
        Decimal(20),
        Decimal(30),
    ]
    assert "idle" in await journal.latest_snapshots()
    async with journal.engine.connect() as connection:
        orphans = (
            await connection.execute(
                text(
                    "SELECT count(*) FROM position_snapshots WHERE snapshot_id NOT IN "
                    "(SELECT id FROM account_snapshots)"
                )
            )
        ).scalar_one()
        positions = (
            await connection.execute(text("SELECT count(*) FROM position_snapshots"))
        ).scalar_one()
    assert (orphans, positions) == (0, 6)


async def test_prune_snapshots_when_nothing_old_then_zero(journal: Journal) -> None:
    await journal.record_snapshot("main", snapshot(), Decimal(1), Decimal(1), None, None)

    assert await journal.prune_snapshots(T0 - timedelta(days=30)) == 0
