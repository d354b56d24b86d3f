"""payment_day_stat (per-day analytics kept by triggers) and indexes for sorting by amount

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-30 02:40:00

The triggers are written out here for each database (the DDL of triggers is not portable): see
``payments_core/models/analytics.py`` for what the table holds.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

KEY = ("day", "provider", "method", "currency", "status", "failure_reason")
SUMS = (
    "payments",
    "amount_minor",
    "captured_payments",
    "captured_minor",
    "refunded_payments",
    "refunded_minor",
    "disputed_payments",
)
# Columns whose change moves a payment between groups or changes its sums.
WATCHED = (
    "created_at",
    "provider",
    "method",
    "currency",
    "status",
    "failure_reason",
    "amount_minor",
    "captured_minor",
    "refunded_minor",
)
ON_CONFLICT = f"ON CONFLICT ({', '.join(KEY)}) DO UPDATE SET " + ", ".join(
    f"{c} = payment_day_stat.{c} + excluded.{c}" for c in SUMS
)


def _day(row: str, dialect: str) -> str:
    if dialect == "postgresql":
        return f"({row}.created_at AT TIME ZONE 'UTC')::date"
    return f"date({row}.created_at)"


def _key_values(row: str, dialect: str) -> list[str]:
    return [
        _day(row, dialect),
        f"{row}.provider",
        f"{row}.method",
        f"{row}.currency",
        f"{row}.status",
        f"coalesce({row}.failure_reason, '')",
    ]


def _contribution(row: str, sign: str, dialect: str) -> str:
    """INSERT .. ON CONFLICT adding (sign '+') or removing (sign '-') one payment row."""

    def flag(condition: str) -> str:
        return f"({condition})::integer" if dialect == "postgresql" else f"({condition})"

    disputed = (
        f"{row}.captured_minor > 0 AND EXISTS "
        f"(SELECT 1 FROM dispute WHERE dispute.payment_id = {row}.id)"
    )
    sums = [
        "1",
        f"{row}.amount_minor",
        flag(f"{row}.captured_minor > 0"),
        f"{row}.captured_minor",
        flag(f"{row}.refunded_minor > 0"),
        f"{row}.refunded_minor",
        flag(disputed),
    ]
    values = _key_values(row, dialect) + [f"{sign}{s}" for s in sums]
    return (
        f"INSERT INTO payment_day_stat ({', '.join(KEY + SUMS)}) "
        f"VALUES ({', '.join(values)}) {ON_CONFLICT}"
    )


def _dispute_step(payment_id: str, step: str, dialect: str) -> str:
    """Adds ``step`` to disputed_payments in the group of payment ``payment_id`` if captured."""
    return (
        f"UPDATE payment_day_stat SET disputed_payments = disputed_payments + ({step}) "
        f"WHERE ({', '.join(KEY)}) = (SELECT {', '.join(_key_values('p', dialect))} "
        f"FROM payment p WHERE p.id = {payment_id} AND p.captured_minor > 0)"
    )


def _changed(dialect: str) -> str:
    op_ = "IS DISTINCT FROM" if dialect == "postgresql" else "IS NOT"
    return " OR ".join(f"OLD.{c} {op_} NEW.{c}" for c in WATCHED)


def _backfill(dialect: str) -> str:
    day = "(created_at AT TIME ZONE 'UTC')::date" if dialect == "postgresql" else "date(created_at)"

    def count(condition: str) -> str:
        return f"sum(CASE WHEN {condition} THEN 1 ELSE 0 END)"

    disputed = "captured_minor > 0 AND EXISTS (SELECT 1 FROM dispute WHERE payment_id = payment.id)"
    return (
        f"INSERT INTO payment_day_stat ({', '.join(KEY + SUMS)}) "
        f"SELECT {day}, provider, method, currency, status, coalesce(failure_reason, ''), "
        f"count(*), sum(amount_minor), {count('captured_minor > 0')}, sum(captured_minor), "
        f"{count('refunded_minor > 0')}, sum(refunded_minor), {count(disputed)} "
        f"FROM payment GROUP BY {day}, provider, method, currency, status, "
        "coalesce(failure_reason, '')"
    )


SQLITE_TRIGGERS = (
    f"""CREATE TRIGGER payment_day_stat_insert AFTER INSERT ON payment BEGIN
        {_contribution("NEW", "+", "sqlite")}; END""",
    f"""CREATE TRIGGER payment_day_stat_delete AFTER DELETE ON payment BEGIN
        {_contribution("OLD", "-", "sqlite")}; END""",
    f"""CREATE TRIGGER payment_day_stat_update AFTER UPDATE OF {", ".join(WATCHED)} ON payment
        WHEN {_changed("sqlite")} BEGIN
        {_contribution("OLD", "-", "sqlite")};
        {_contribution("NEW", "+", "sqlite")}; END""",
    f"""CREATE TRIGGER payment_day_stat_dispute_insert AFTER INSERT ON dispute
        WHEN NOT EXISTS (SELECT 1 FROM dispute d WHERE d.payment_id = NEW.payment_id
                         AND d.id <> NEW.id) BEGIN
        {_dispute_step("NEW.payment_id", "1", "sqlite")}; END""",
    f"""CREATE TRIGGER payment_day_stat_dispute_delete AFTER DELETE ON dispute
        WHEN NOT EXISTS (SELECT 1 FROM dispute d WHERE d.payment_id = OLD.payment_id) BEGIN
        {_dispute_step("OLD.payment_id", "-1", "sqlite")}; END""",
)

_PG_OLD_KEY = ", ".join(_key_values("OLD", "postgresql"))
_PG_NEW_KEY = ", ".join(_key_values("NEW", "postgresql"))
POSTGRESQL_TRIGGERS = (
    f"""CREATE FUNCTION payment_day_stat_payment() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        IF TG_OP = 'INSERT' THEN
            {_contribution("NEW", "+", "postgresql")};
        ELSIF TG_OP = 'DELETE' THEN
            {_contribution("OLD", "-", "postgresql")};
        -- Lock the two group rows in key order: two updates moving payments between the same
        -- two groups in opposite directions then wait for each other instead of deadlocking.
        ELSIF ROW({_PG_OLD_KEY}) <= ROW({_PG_NEW_KEY}) THEN
            {_contribution("OLD", "-", "postgresql")};
            {_contribution("NEW", "+", "postgresql")};
        ELSE
            {_contribution("NEW", "+", "postgresql")};
            {_contribution("OLD", "-", "postgresql")};
        END IF;
        RETURN NULL;
    END $$""",
    """CREATE TRIGGER payment_day_stat_insert_delete AFTER INSERT OR DELETE ON payment
        FOR EACH ROW EXECUTE FUNCTION payment_day_stat_payment()""",
    f"""CREATE TRIGGER payment_day_stat_update AFTER UPDATE OF {", ".join(WATCHED)} ON payment
        FOR EACH ROW WHEN ({_changed("postgresql")})
        EXECUTE FUNCTION payment_day_stat_payment()""",
    f"""CREATE FUNCTION payment_day_stat_dispute() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        -- Disputes are written with their payment row locked, so "first dispute" is exact.
        IF TG_OP = 'INSERT' THEN
            IF NOT EXISTS (SELECT 1 FROM dispute d WHERE d.payment_id = NEW.payment_id
                           AND d.id <> NEW.id) THEN
                {_dispute_step("NEW.payment_id", "1", "postgresql")};
            END IF;
        ELSIF NOT EXISTS (SELECT 1 FROM dispute d WHERE d.payment_id = OLD.payment_id) THEN
            {_dispute_step("OLD.payment_id", "-1", "postgresql")};
        END IF;
        RETURN NULL;
    END $$""",
    """CREATE TRIGGER payment_day_stat_dispute AFTER INSERT OR DELETE ON dispute
        FOR EACH ROW EXECUTE FUNCTION payment_day_stat_dispute()""",
)


def upgrade() -> None:
    op.create_table(
        "payment_day_stat",
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("provider", sa.String(length=20), nullable=False),
        sa.Column("method", sa.String(length=30), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("failure_reason", sa.String(length=500), nullable=False),
        sa.Column("payments", sa.BigInteger(), nullable=False),
        sa.Column("amount_minor", sa.BigInteger(), nullable=False),
        sa.Column("captured_payments", sa.BigInteger(), nullable=False),
        sa.Column("captured_minor", sa.BigInteger(), nullable=False),
        sa.Column("refunded_payments", sa.BigInteger(), nullable=False),
        sa.Column("refunded_minor", sa.BigInteger(), nullable=False),
        sa.Column("disputed_payments", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint(*KEY, name="pk_payment_day_stat"),
    )
    op.create_index("ix_payment_amount", "payment", ["amount_minor", "id"], unique=False)
    op.create_index(
        "ix_payment_currency_amount", "payment", ["currency", "amount_minor", "id"], unique=False
    )
    dialect = op.get_bind().dialect.name
    op.execute(_backfill(dialect))
    for statement in POSTGRESQL_TRIGGERS if dialect == "postgresql" else SQLITE_TRIGGERS:
        op.execute(statement)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TRIGGER IF EXISTS payment_day_stat_dispute ON dispute")
        op.execute("DROP TRIGGER IF EXISTS payment_day_stat_update ON payment")
        op.execute("DROP TRIGGER IF EXISTS payment_day_stat_insert_delete ON payment")
        op.execute("DROP FUNCTION IF EXISTS payment_day_stat_dispute()")
        op.execute("DROP FUNCTION IF EXISTS payment_day_stat_payment()")
    else:
        for name in ("insert", "delete", "update", "dispute_insert", "dispute_delete"):
            op.execute(f"DROP TRIGGER IF EXISTS payment_day_stat_{name}")
    op.drop_index("ix_payment_currency_amount", table_name="payment")
    op.drop_index("ix_payment_amount", table_name="payment")
    op.drop_table("payment_day_stat")
