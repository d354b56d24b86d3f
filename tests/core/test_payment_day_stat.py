"""payment_day_stat, kept by triggers: after any mix of inserts, updates (through the ORM and in
raw SQL), disputes and deletes, it sums to exactly what grouping the payments gives, on SQLite
and PostgreSQL; and migration 0006 fills it for payments written before it existed."""

from __future__ import annotations

import random
from datetime import UTC, date, datetime, timedelta
from typing import Any

from alembic import command
from factories import make_payment
from sqlalchemy import text
from sqlalchemy.engine import Connection, Engine
from sqlmodel import Session

from payments_core import migrations
from payments_core.db import make_engine
from payments_core.models import Dispute, Payment, new_id
from payments_core.services.seed import seed_demo_data

SUMS = (
    "payments",
    "amount_minor",
    "captured_payments",
    "captured_minor",
    "refunded_payments",
    "refunded_minor",
    "disputed_payments",
)
BASE = datetime(2026, 3, 1, tzinfo=UTC)


def _day_sql(connection: Connection) -> str:
    if connection.dialect.name == "postgresql":
        return "(created_at AT TIME ZONE 'UTC')::date"
    return "date(created_at)"


def _key(row: Any) -> tuple[str, ...]:
    day = row[0]
    return (day.isoformat() if isinstance(day, date) else str(day), *row[1:6])


def expected(connection: Connection) -> dict[tuple[str, ...], tuple[int, ...]]:
    """Grouping the payments directly: the oracle the stat table must match."""
    day = _day_sql(connection)
    rows = connection.execute(
        text(
            f"SELECT {day}, provider, method, currency, status, coalesce(failure_reason, ''), "
            "count(*), sum(amount_minor), "
            "sum(CASE WHEN captured_minor > 0 THEN 1 ELSE 0 END), sum(captured_minor), "
            "sum(CASE WHEN refunded_minor > 0 THEN 1 ELSE 0 END), sum(refunded_minor), "
            "sum(CASE WHEN captured_minor > 0 AND EXISTS "
            "(SELECT 1 FROM dispute WHERE dispute.payment_id = payment.id) THEN 1 ELSE 0 END) "
            f"FROM payment GROUP BY {day}, provider, method, currency, status, "
            "coalesce(failure_reason, '')"
        )
    )
    return {_key(r): tuple(int(v) for v in r[6:]) for r in rows}


def stats(connection: Connection) -> dict[tuple[str, ...], tuple[int, ...]]:
    rows = connection.execute(
        text(
            "SELECT day, provider, method, currency, status, failure_reason, "
            f"{', '.join(SUMS)} FROM payment_day_stat"
        )
    )
    # Groups that emptied may stay behind as rows of zeros; readers sum, so they are harmless.
    return {_key(r): tuple(int(v) for v in r[6:]) for r in rows if any(r[6:])}


def assert_consistent(engine: Engine) -> None:
    with engine.connect() as connection:
        assert stats(connection) == expected(connection)


def test_every_kind_of_change_keeps_the_stat_table_exact(engine: Engine) -> None:
    rng = random.Random(7)
    providers = [("stripe", "card"), ("paystack", "mobile_money"), ("manual", "bank_transfer")]
    with Session(engine) as session, session.begin():
        ids = []
        for _ in range(60):
            provider, method = rng.choice(providers)
            ids.append(
                make_payment(
                    session,
                    provider=provider,
                    method=method,
                    currency=rng.choice(["CHF", "KES", "JPY"]),
                    amount_minor=rng.randint(100, 9000),
                    created_at=BASE + timedelta(hours=rng.randint(0, 24 * 4)),
                ).id
            )
    assert_consistent(engine)

    # Through the ORM: outcomes, captures, partial refunds, failure reasons (the worker's path).
    with Session(engine) as session, session.begin():
        for payment_id in ids[:40]:
            payment = session.get(Payment, payment_id)
            assert payment is not None
            if rng.random() < 0.7:
                payment.status = "succeeded"
                payment.captured_minor = payment.amount_minor
                if rng.random() < 0.4:
                    payment.refunded_minor = rng.randint(1, payment.amount_minor)
            else:
                payment.status = "failed"
                payment.failure_reason = rng.choice(["Insufficient funds", "Card declined"])
    assert_consistent(engine)

    # Disputes: the first one of a captured payment counts it, a second one does not.
    with Session(engine) as session, session.begin():
        captured = [
            p.id for p in (session.get(Payment, i) for i in ids[:40]) if p and p.captured_minor
        ]
        for payment_id in captured[:6] + captured[:2]:
            session.add(
                Dispute(
                    id=new_id("dsp"),
                    payment_id=payment_id,
                    provider_dispute_id=new_id("dp"),
                    amount_minor=100,
                    currency="CHF",
                    status="needs_response",
                )
            )
    assert_consistent(engine)

    # Raw SQL, as an operator or a data fix would: moves between days, currencies, methods.
    with engine.begin() as connection:
        connection.execute(
            text("UPDATE payment SET created_at = :at WHERE id IN (:a, :b)"),
            {"at": BASE + timedelta(days=9, hours=3), "a": captured[0], "b": ids[45]},
        )
        connection.execute(
            text("UPDATE payment SET currency = 'EUR' WHERE id = :i"), {"i": ids[50]}
        )
        connection.execute(
            text("UPDATE payment SET method = 'wallet', status = 'canceled' WHERE id = :i"),
            {"i": ids[51]},
        )
        # A change of an unwatched column leaves the table alone (and must not break it).
        connection.execute(
            text("UPDATE payment SET description = 'x' WHERE id = :i"), {"i": ids[1]}
        )
    assert_consistent(engine)

    # Deletes: a dispute (the payment's last one uncounts it), then payments.
    with engine.begin() as connection:
        connection.execute(text("DELETE FROM dispute WHERE payment_id = :i"), {"i": captured[3]})
        connection.execute(
            text("DELETE FROM payment WHERE id IN (:a, :b)"), {"a": ids[55], "b": ids[56]}
        )
    assert_consistent(engine)


def test_migration_fills_the_table_from_existing_payments(db_url: str) -> None:
    engine = make_engine(db_url)
    try:
        command.downgrade(migrations.alembic_config(engine), "0005")
        seed_demo_data(engine=engine, payments=2000, days=10, seed=3, until=date(2026, 3, 10))
        migrations.upgrade(engine)
        with engine.connect() as connection:
            found = stats(connection)
            assert found == expected(connection)
            assert sum(v[0] for v in found.values()) == 2000
            assert any(v[-1] for v in found.values())  # the seed has disputed payments
    finally:
        engine.dispose()


def test_seeding_keeps_the_table_exact(engine: Engine) -> None:
    seed_demo_data(engine=engine, payments=400, days=12, seed=5, until=date(2026, 4, 1))
    assert_consistent(engine)
