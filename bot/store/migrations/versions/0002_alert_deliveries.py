"""Alert deliveries per chat: a retry after a partial failure skips the chats that have it.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-02 01:12:52.308496
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | Sequence[str] | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "alert_deliveries",
        sa.Column("alert_id", sa.Integer(), nullable=False),
        sa.Column("chat_id", sa.BigInteger(), nullable=False),
        sa.Column("delivered_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["alert_id"],
            ["alert_outbox.id"],
            name=op.f("fk_alert_deliveries_alert_id_alert_outbox"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("alert_id", "chat_id", name=op.f("pk_alert_deliveries")),
    )


def downgrade() -> None:
    op.drop_table("alert_deliveries")
