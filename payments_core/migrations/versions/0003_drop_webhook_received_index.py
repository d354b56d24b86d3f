"""webhook inbox: drop the received_at index (ids give arrival order; cheaper intake)

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-29 22:20:00
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.drop_index("ix_webhook_event_received", table_name="webhook_event")


def downgrade() -> None:
    op.create_index("ix_webhook_event_received", "webhook_event", ["received_at"], unique=False)
