"""Actions that concern another action: a backstop's cancellation or fill names the stop.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-02 04:05:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | Sequence[str] | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("actions") as batch:
        batch.add_column(sa.Column("ref", sa.String(), nullable=True))
        batch.create_index("ix_actions_ref", ["ref"])


def downgrade() -> None:
    with op.batch_alter_table("actions") as batch:
        batch.drop_index("ix_actions_ref")
        batch.drop_column("ref")
