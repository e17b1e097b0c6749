"""Leases: several daemons on one PostgreSQL share the accounts, one driver each.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-02 04:40:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | Sequence[str] | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "leases",
        sa.Column("name", sa.String(), nullable=False),
        sa.Column("owner", sa.String(), nullable=True),
        sa.Column("epoch", sa.BigInteger(), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_leases")),
    )
    op.create_index(op.f("ix_leases_owner"), "leases", ["owner"])
    op.create_table(
        "lease_owners",
        sa.Column("owner", sa.String(), nullable=False),
        sa.Column("run_id", sa.Integer(), nullable=True),
        sa.Column("host", sa.String(), nullable=False),
        sa.Column("pid", sa.Integer(), nullable=False),
        sa.Column("heartbeat_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["run_id"],
            ["daemon_runs.id"],
            name=op.f("fk_lease_owners_run_id_daemon_runs"),
        ),
        sa.PrimaryKeyConstraint("owner", name=op.f("pk_lease_owners")),
    )


def downgrade() -> None:
    op.drop_table("lease_owners")
    op.drop_index(op.f("ix_leases_owner"), table_name="leases")
    op.drop_table("leases")
