"""operations: refund execution claim and attempts, payment risk reasons, user sessions, bank
statement lines

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-30 00:20:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from payments_core.models._types import UTCDateTime

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("refund") as batch:
        batch.add_column(sa.Column("execution_started_at", UTCDateTime(), nullable=True))
        batch.add_column(
            sa.Column("attempts", sa.Integer(), nullable=False, server_default=sa.text("0"))
        )
    with op.batch_alter_table("payment") as batch:
        batch.add_column(
            sa.Column("risk_reasons", sa.JSON(), nullable=False, server_default=sa.text("'[]'"))
        )
    op.create_index(
        "ix_payment_risky",
        "payment",
        ["risk_score", "created_at"],
        unique=False,
        sqlite_where=sa.text("risk_score > 0"),
        postgresql_where=sa.text("risk_score > 0"),
    )
    op.create_table(
        "user_session",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("expires_at", UTCDateTime(), nullable=False),
        sa.Column("last_seen_at", UTCDateTime(), nullable=True),
        sa.Column("revoked_at", UTCDateTime(), nullable=True),
        sa.ForeignKeyConstraint(
            ["user_id"], ["app_user.id"], name="fk_user_session_user_id_app_user"
        ),
        sa.PrimaryKeyConstraint("id", name="pk_user_session"),
        sa.UniqueConstraint("token_hash", name="uq_user_session_token_hash"),
    )
    op.create_index("ix_user_session_user", "user_session", ["user_id"], unique=False)
    op.create_table(
        "statement_line",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("import_id", sa.String(length=40), nullable=False),
        sa.Column("line_hash", sa.String(length=64), nullable=False),
        sa.Column("booked_on", sa.Date(), nullable=True),
        sa.Column("amount_minor", sa.BigInteger(), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("reference", sa.String(length=500), nullable=True),
        sa.Column("counterparty", sa.String(length=200), nullable=True),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("payment_id", sa.String(length=40), nullable=True),
        sa.Column("proof_id", sa.String(length=40), nullable=True),
        sa.Column("candidates", sa.JSON(), nullable=False),
        sa.Column("imported_by", sa.String(length=200), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.CheckConstraint("amount_minor > 0", name="ck_statement_line_amount_positive"),
        sa.PrimaryKeyConstraint("id", name="pk_statement_line"),
        sa.UniqueConstraint("line_hash", name="uq_statement_line_hash"),
    )
    op.create_index("ix_statement_line_import", "statement_line", ["import_id"], unique=False)
    op.create_index(
        "ix_statement_line_status", "statement_line", ["status", "booked_on"], unique=False
    )


def downgrade() -> None:
    op.drop_index("ix_statement_line_status", table_name="statement_line")
    op.drop_index("ix_statement_line_import", table_name="statement_line")
    op.drop_table("statement_line")
    op.drop_index("ix_user_session_user", table_name="user_session")
    op.drop_table("user_session")
    op.drop_index("ix_payment_risky", table_name="payment")
    with op.batch_alter_table("payment") as batch:
        batch.drop_column("risk_reasons")
    with op.batch_alter_table("refund") as batch:
        batch.drop_column("attempts")
        batch.drop_column("execution_started_at")
