"""The journal's tables. Only `bot.store` knows these classes; callers get records.

Money and leverage are `DecimalText` (exact), timestamps `UtcDateTime` (aware UTC).
Status and kind columns are plain strings holding the values of the enums in
`bot.store.records` and `bot.domain.actions`, so adding a value needs no migration.
Changing anything here needs a new revision in `bot/store/migrations/versions/`
(a test fails on drift).
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from sqlalchemy import BigInteger, Index, MetaData, Text, UniqueConstraint
from sqlalchemy.orm import registry
from sqlmodel import Field, SQLModel

from bot.store.columns import DecimalText, UtcDateTime

# Named constraints, so later SQLite batch migrations can find and drop them.
NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


_registry = registry(metadata=MetaData(naming_convention=NAMING_CONVENTION))


class StoreTable(SQLModel, registry=_registry):
    """Base of the journal's tables, with its own metadata (not SQLModel's global one)."""


metadata = StoreTable.metadata


class DaemonRunRow(StoreTable, table=True):
    """One start of the daemon, until it stops (a missing `stopped_at` means it crashed)."""

    __tablename__ = "daemon_runs"

    id: int | None = Field(default=None, primary_key=True)
    pid: int
    version: str
    started_at: datetime = Field(sa_type=UtcDateTime)
    stopped_at: datetime | None = Field(default=None, sa_type=UtcDateTime)
    exit_reason: str | None = Field(default=None, sa_type=Text)


class CycleRow(StoreTable, table=True):
    """One cycle of one account: snapshot, plan, gate, execute, verify."""

    __tablename__ = "cycles"
    __table_args__ = (Index("ix_cycles_account_started_at", "account", "started_at"),)

    id: int | None = Field(default=None, primary_key=True)
    run_id: int | None = Field(default=None, foreign_key="daemon_runs.id")
    account: str
    started_at: datetime = Field(sa_type=UtcDateTime)
    finished_at: datetime | None = Field(default=None, sa_type=UtcDateTime)
    status: str = "running"
    # The plan's notes as a JSON list of strings.
    notes: str = Field(default="[]", sa_type=Text)
    error: str | None = Field(default=None, sa_type=Text)


class AccountSnapshotRow(StoreTable, table=True):
    """What one account looked like, with the numbers computed from it."""

    __tablename__ = "account_snapshots"
    __table_args__ = (
        Index("ix_account_snapshots_account_taken_at", "account", "taken_at"),
        Index("ix_account_snapshots_taken_at", "taken_at"),
    )

    id: int | None = Field(default=None, primary_key=True)
    cycle_id: int | None = Field(default=None, foreign_key="cycles.id")
    account: str
    settle: str
    taken_at: datetime = Field(sa_type=UtcDateTime)
    wallet: Decimal = Field(sa_type=DecimalText)
    wallet_free: Decimal = Field(sa_type=DecimalText)
    equity: Decimal = Field(sa_type=DecimalText)
    notional: Decimal = Field(sa_type=DecimalText)
    leverage: Decimal | None = Field(default=None, sa_type=DecimalText)
    margin_ratio: Decimal | None = Field(default=None, sa_type=DecimalText)
    source_balance: Decimal | None = Field(default=None, sa_type=DecimalText)
    source_free: Decimal | None = Field(default=None, sa_type=DecimalText)
    # Every Position field, as JSON with Decimals as strings: the exact picture.
    positions_json: str = Field(default="[]", sa_type=Text)


class PositionSnapshotRow(StoreTable, table=True):
    """One position inside an account snapshot, as columns for per-symbol queries."""

    __tablename__ = "position_snapshots"

    id: int | None = Field(default=None, primary_key=True)
    snapshot_id: int = Field(foreign_key="account_snapshots.id", ondelete="CASCADE", index=True)
    symbol: str
    side: str
    margin_mode: str
    contracts: Decimal = Field(sa_type=DecimalText)
    entry_price: Decimal = Field(sa_type=DecimalText)
    mark_price: Decimal | None = Field(default=None, sa_type=DecimalText)
    notional: Decimal | None = Field(default=None, sa_type=DecimalText)
    isolated_margin: Decimal = Field(sa_type=DecimalText)
    maintenance_margin: Decimal | None = Field(default=None, sa_type=DecimalText)
    liquidation_price: Decimal | None = Field(default=None, sa_type=DecimalText)


class ActionRow(StoreTable, table=True):
    """One planned action: written as an intent before the exchange call, then resolved.

    `symbol` is the market symbol, or the currency for a transfer. `side` is the order
    side (buy/sell) for orders and the position side (long/short) for margin changes.
    """

    __tablename__ = "actions"
    __table_args__ = (
        Index("ix_actions_account_status", "account", "status"),
        Index("ix_actions_account_created_at", "account", "created_at"),
    )

    id: int | None = Field(default=None, primary_key=True)
    client_id: str = Field(unique=True)
    account: str
    cycle_id: int | None = Field(default=None, foreign_key="cycles.id", index=True)
    kind: str
    symbol: str
    side: str | None = None
    amount: Decimal = Field(sa_type=DecimalText)
    expected_price: Decimal | None = Field(default=None, sa_type=DecimalText)
    notional: Decimal | None = Field(default=None, sa_type=DecimalText)
    reduce_only: bool | None = None
    hedged: bool = False
    rule: str
    scope: str
    leverage_before: Decimal | None = Field(default=None, sa_type=DecimalText)
    leverage_after: Decimal | None = Field(default=None, sa_type=DecimalText)
    reason: str = Field(sa_type=Text)
    status: str
    exchange_id: str | None = None
    filled: Decimal | None = Field(default=None, sa_type=DecimalText)
    fill_price: Decimal | None = Field(default=None, sa_type=DecimalText)
    fee: Decimal | None = Field(default=None, sa_type=DecimalText)
    error: str | None = Field(default=None, sa_type=Text)
    created_at: datetime = Field(sa_type=UtcDateTime)
    updated_at: datetime = Field(sa_type=UtcDateTime)
    dry_run: bool = False
    # The client id of the backstop a cancellation or a fill concerns.
    ref: str | None = Field(default=None, index=True)


class AlertRow(StoreTable, table=True):
    """An alert waiting to be (or already) sent; Telegram being down only delays it."""

    __tablename__ = "alert_outbox"
    __table_args__ = (
        Index("ix_alert_outbox_sent_at_next_attempt_at", "sent_at", "next_attempt_at"),
    )

    id: int | None = Field(default=None, primary_key=True)
    level: str
    text: str = Field(sa_type=Text)
    created_at: datetime = Field(sa_type=UtcDateTime)
    attempts: int = 0
    next_attempt_at: datetime = Field(sa_type=UtcDateTime)
    sent_at: datetime | None = Field(default=None, sa_type=UtcDateTime)
    last_error: str | None = Field(default=None, sa_type=Text)


class AlertDeliveryRow(StoreTable, table=True):
    """One alert delivered to one chat (the log channel is chat 0).

    An alert leaves the outbox once every chat has it; a retry after a partial failure
    goes only to the chats without a row here, so nobody gets the same alert twice.
    """

    __tablename__ = "alert_deliveries"

    alert_id: int = Field(foreign_key="alert_outbox.id", ondelete="CASCADE", primary_key=True)
    chat_id: int = Field(sa_type=BigInteger, primary_key=True)
    delivered_at: datetime = Field(sa_type=UtcDateTime)


class TargetOverrideRow(StoreTable, table=True):
    """A target set at run time (Telegram) over the config: `symbol` None is the account."""

    __tablename__ = "target_overrides"
    __table_args__ = (UniqueConstraint("account", "symbol"),)

    id: int | None = Field(default=None, primary_key=True)
    account: str
    symbol: str | None = None
    leverage: Decimal = Field(sa_type=DecimalText)
    min: Decimal = Field(sa_type=DecimalText)
    max: Decimal = Field(sa_type=DecimalText)
    emergency_margin_ratio: Decimal = Field(sa_type=DecimalText)
    emergency_liquidation_distance: Decimal | None = Field(default=None, sa_type=DecimalText)
    set_by: str
    set_at: datetime = Field(sa_type=UtcDateTime)


class PauseRow(StoreTable, table=True):
    """Whether an account (or `*`, every account) is paused, and who said so."""

    __tablename__ = "pause_state"

    account: str = Field(primary_key=True)
    paused: bool
    set_by: str
    set_at: datetime = Field(sa_type=UtcDateTime)


class CommandAuditRow(StoreTable, table=True):
    """Every command received, allowed or not."""

    __tablename__ = "command_audit"

    id: int | None = Field(default=None, primary_key=True)
    chat_id: int = Field(sa_type=BigInteger)
    user: str | None = None
    command: str
    args: str = Field(default="", sa_type=Text)
    allowed: bool
    at: datetime = Field(sa_type=UtcDateTime, index=True)


class LeaseRow(StoreTable, table=True):
    """Who drives an account (or holds a role, e.g. `@telegram`) and until when.

    Only used on PostgreSQL, where several daemons share the accounts (DESIGN.md §12).
    `epoch` grows by one at every claim: the fencing token an intent is checked against.
    `expires_at` is in the database's clock, so the hosts' clocks never have to agree.
    """

    __tablename__ = "leases"

    name: str = Field(primary_key=True)
    # Indexed: every heartbeat renews what one owner holds, among thousands of rows.
    owner: str | None = Field(default=None, index=True)
    epoch: int = Field(default=0, sa_type=BigInteger)
    expires_at: datetime = Field(sa_type=UtcDateTime)


class LeaseOwnerRow(StoreTable, table=True):
    """A daemon taking part in the lease round; live while `expires_at` is ahead.

    The live owners decide each one's share of the accounts. `run_id` names the daemon
    run whose cycles (`cycles.run_id`) this owner journaled.
    """

    __tablename__ = "lease_owners"

    owner: str = Field(primary_key=True)
    run_id: int | None = Field(default=None, foreign_key="daemon_runs.id")
    host: str
    pid: int
    heartbeat_at: datetime = Field(sa_type=UtcDateTime)
    expires_at: datetime = Field(sa_type=UtcDateTime)
