"""Initial schema: runs, cycles, snapshots, actions, outbox, overrides, pause, audit.

Revision ID: 0001
Revises:
Create Date: 2026-11-21 16:53:01.536945
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "alert_outbox",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("level", sa.String(), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("sent_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_alert_outbox")),
    )
    with op.batch_alter_table("alert_outbox", schema=None) as batch_op:
        batch_op.create_index(
            "ix_alert_outbox_sent_at_next_attempt_at", ["sent_at", "next_attempt_at"], unique=False
        )

    op.create_table(
        "command_audit",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("chat_id", sa.BigInteger(), nullable=False),
        sa.Column("user", sa.String(), nullable=True),
        sa.Column("command", sa.String(), nullable=False),
        sa.Column("args", sa.Text(), nullable=False),
        sa.Column("allowed", sa.Boolean(), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_command_audit")),
    )
    with op.batch_alter_table("command_audit", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_command_audit_at"), ["at"], unique=False)

    op.create_table(
        "daemon_runs",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("pid", sa.Integer(), nullable=False),
        sa.Column("version", sa.String(), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("stopped_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("exit_reason", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_daemon_runs")),
    )
    op.create_table(
        "pause_state",
        sa.Column("account", sa.String(), nullable=False),
        sa.Column("paused", sa.Boolean(), nullable=False),
        sa.Column("set_by", sa.String(), nullable=False),
        sa.Column("set_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("account", name=op.f("pk_pause_state")),
    )
    op.create_table(
        "target_overrides",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("account", sa.String(), nullable=False),
        sa.Column("symbol", sa.String(), nullable=True),
        sa.Column("leverage", sa.String(), nullable=False),
        sa.Column("min", sa.String(), nullable=False),
        sa.Column("max", sa.String(), nullable=False),
        sa.Column("emergency_margin_ratio", sa.String(), nullable=False),
        sa.Column("emergency_liquidation_distance", sa.String(), nullable=True),
        sa.Column("set_by", sa.String(), nullable=False),
        sa.Column("set_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_target_overrides")),
        sa.UniqueConstraint("account", "symbol", name=op.f("uq_target_overrides_account_symbol")),
    )
    op.create_table(
        "cycles",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("run_id", sa.Integer(), nullable=True),
        sa.Column("account", sa.String(), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("status", sa.String(), nullable=False),
        sa.Column("notes", sa.Text(), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(
            ["run_id"], ["daemon_runs.id"], name=op.f("fk_cycles_run_id_daemon_runs")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_cycles")),
    )
    with op.batch_alter_table("cycles", schema=None) as batch_op:
        batch_op.create_index(
            "ix_cycles_account_started_at", ["account", "started_at"], unique=False
        )

    op.create_table(
        "account_snapshots",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("cycle_id", sa.Integer(), nullable=True),
        sa.Column("account", sa.String(), nullable=False),
        sa.Column("settle", sa.String(), nullable=False),
        sa.Column("taken_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("wallet", sa.String(), nullable=False),
        sa.Column("wallet_free", sa.String(), nullable=False),
        sa.Column("equity", sa.String(), nullable=False),
        sa.Column("notional", sa.String(), nullable=False),
        sa.Column("leverage", sa.String(), nullable=True),
        sa.Column("margin_ratio", sa.String(), nullable=True),
        sa.Column("source_balance", sa.String(), nullable=True),
        sa.Column("source_free", sa.String(), nullable=True),
        sa.Column("positions_json", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(
            ["cycle_id"], ["cycles.id"], name=op.f("fk_account_snapshots_cycle_id_cycles")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_account_snapshots")),
    )
    with op.batch_alter_table("account_snapshots", schema=None) as batch_op:
        batch_op.create_index(
            "ix_account_snapshots_account_taken_at", ["account", "taken_at"], unique=False
        )
        batch_op.create_index("ix_account_snapshots_taken_at", ["taken_at"], unique=False)

    op.create_table(
        "actions",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("client_id", sa.String(), nullable=False),
        sa.Column("account", sa.String(), nullable=False),
        sa.Column("cycle_id", sa.Integer(), nullable=True),
        sa.Column("kind", sa.String(), nullable=False),
        sa.Column("symbol", sa.String(), nullable=False),
        sa.Column("side", sa.String(), nullable=True),
        sa.Column("amount", sa.String(), nullable=False),
        sa.Column("expected_price", sa.String(), nullable=True),
        sa.Column("notional", sa.String(), nullable=True),
        sa.Column("reduce_only", sa.Boolean(), nullable=True),
        sa.Column("hedged", sa.Boolean(), nullable=False),
        sa.Column("rule", sa.String(), nullable=False),
        sa.Column("scope", sa.String(), nullable=False),
        sa.Column("leverage_before", sa.String(), nullable=True),
        sa.Column("leverage_after", sa.String(), nullable=True),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("status", sa.String(), nullable=False),
        sa.Column("exchange_id", sa.String(), nullable=True),
        sa.Column("filled", sa.String(), nullable=True),
        sa.Column("fill_price", sa.String(), nullable=True),
        sa.Column("fee", sa.String(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("dry_run", sa.Boolean(), nullable=False),
        sa.ForeignKeyConstraint(
            ["cycle_id"], ["cycles.id"], name=op.f("fk_actions_cycle_id_cycles")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_actions")),
        sa.UniqueConstraint("client_id", name=op.f("uq_actions_client_id")),
    )
    with op.batch_alter_table("actions", schema=None) as batch_op:
        batch_op.create_index(
            "ix_actions_account_created_at", ["account", "created_at"], unique=False
        )
        batch_op.create_index("ix_actions_account_status", ["account", "status"], unique=False)
        batch_op.create_index(batch_op.f("ix_actions_cycle_id"), ["cycle_id"], unique=False)

    op.create_table(
        "position_snapshots",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("snapshot_id", sa.Integer(), nullable=False),
        sa.Column("symbol", sa.String(), nullable=False),
        sa.Column("side", sa.String(), nullable=False),
        sa.Column("margin_mode", sa.String(), nullable=False),
        sa.Column("contracts", sa.String(), nullable=False),
        sa.Column("entry_price", sa.String(), nullable=False),
        sa.Column("mark_price", sa.String(), nullable=True),
        sa.Column("notional", sa.String(), nullable=True),
        sa.Column("isolated_margin", sa.String(), nullable=False),
        sa.Column("maintenance_margin", sa.String(), nullable=True),
        sa.Column("liquidation_price", sa.String(), nullable=True),
        sa.ForeignKeyConstraint(
            ["snapshot_id"],
            ["account_snapshots.id"],
            name=op.f("fk_position_snapshots_snapshot_id_account_snapshots"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_position_snapshots")),
    )
    with op.batch_alter_table("position_snapshots", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_position_snapshots_snapshot_id"), ["snapshot_id"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("position_snapshots", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_position_snapshots_snapshot_id"))

    op.drop_table("position_snapshots")
    with op.batch_alter_table("actions", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_actions_cycle_id"))
        batch_op.drop_index("ix_actions_account_status")
        batch_op.drop_index("ix_actions_account_created_at")

    op.drop_table("actions")
    with op.batch_alter_table("account_snapshots", schema=None) as batch_op:
        batch_op.drop_index("ix_account_snapshots_taken_at")
        batch_op.drop_index("ix_account_snapshots_account_taken_at")

    op.drop_table("account_snapshots")
    with op.batch_alter_table("cycles", schema=None) as batch_op:
        batch_op.drop_index("ix_cycles_account_started_at")

    op.drop_table("cycles")
    op.drop_table("target_overrides")
    op.drop_table("pause_state")
    op.drop_table("daemon_runs")
    with op.batch_alter_table("command_audit", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_command_audit_at"))

    op.drop_table("command_audit")
    with op.batch_alter_table("alert_outbox", schema=None) as batch_op:
        batch_op.drop_index("ix_alert_outbox_sent_at_next_attempt_at")

    op.drop_table("alert_outbox")
