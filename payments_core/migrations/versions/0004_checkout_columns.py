"""payment: checkout (URL, redirect URLs, line items, instructions, idempotency key, last error),
expiry, last reconciliation and the API key that created it

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-30 00:10:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from payments_core.models._types import UTCDateTime

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_COLUMNS = (
    ("checkout_url", lambda: sa.String(length=2000), True),
    ("success_url", lambda: sa.String(length=2000), True),
    ("cancel_url", lambda: sa.String(length=2000), True),
    ("instructions", lambda: sa.JSON(), True),
    ("checkout_idempotency_key", lambda: sa.String(length=255), True),
    ("checkout_error", lambda: sa.String(length=500), True),
    ("expires_at", lambda: UTCDateTime(), True),
    ("reconciled_at", lambda: UTCDateTime(), True),
    ("api_key_id", lambda: sa.Integer(), True),
)


def upgrade() -> None:
    with op.batch_alter_table("payment") as batch:
        for name, kind, nullable in _COLUMNS:
            batch.add_column(sa.Column(name, kind(), nullable=nullable))
        batch.add_column(
            sa.Column("line_items", sa.JSON(), nullable=False, server_default=sa.text("'[]'"))
        )
    # Reconciliation looks for open payments by age.
    op.create_index(
        "ix_payment_open_status_changed",
        "payment",
        ["status", "status_changed_at"],
        unique=False,
        sqlite_where=sa.text("status IN ('created', 'pending', 'processing', 'authorized')"),
        postgresql_where=sa.text("status IN ('created', 'pending', 'processing', 'authorized')"),
    )


def downgrade() -> None:
    op.drop_index("ix_payment_open_status_changed", table_name="payment")
    with op.batch_alter_table("payment") as batch:
        batch.drop_column("line_items")
        for name, _, _ in reversed(_COLUMNS):
            batch.drop_column(name)
