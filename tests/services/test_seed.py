"""Demo data: deterministic, covering every provider and situation, and consistent."""

from __future__ import annotations

from collections import Counter
from datetime import date, timedelta
from typing import Any

import pytest
from sqlalchemy import func, text
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from payments_core.models import (
    AuditEntry,
    Dispute,
    ManualProof,
    Payment,
    PaymentEvent,
    Refund,
    WebhookEvent,
)
from payments_core.services.audit import verify_chain
from payments_core.services.seed import seed_demo_data

UNTIL = date(2026, 11, 20)
N = 2500


@pytest.fixture
def seeded(engine: Engine) -> Engine:
    seed_demo_data(engine=engine, payments=N, days=60, seed=42, until=UNTIL, batch_size=700)
    return engine


def _payment_rows(engine: Engine) -> list[tuple[Any, ...]]:
    with Session(engine) as session:
        return [
            (
                p.id,
                p.provider,
                p.provider_reference,
                p.amount_minor,
                p.currency,
                p.status,
                p.refunded_minor,
                p.created_at,
            )
            for p in session.exec(select(Payment).order_by(col(Payment.id)))
        ]


def test_same_parameters_same_rows(seeded: Engine, tmp_path: Any, sqlite_template: Any) -> None:
    import shutil

    from payments_core.db import make_engine

    shutil.copy(sqlite_template, tmp_path / "again.sqlite3")
    again = make_engine(f"sqlite:///{tmp_path / 'again.sqlite3'}")
    seed_demo_data(engine=again, payments=N, days=60, seed=42, until=UNTIL, batch_size=1000)
    assert _payment_rows(again) == _payment_rows(seeded)

    shutil.copy(sqlite_template, tmp_path / "other.sqlite3")
    other = make_engine(f"sqlite:///{tmp_path / 'other.sqlite3'}")
    seed_demo_data(engine=other, payments=50, days=60, seed=43, until=UNTIL)
    assert _payment_rows(other)[0] != _payment_rows(seeded)[0]


def test_covers_every_provider_status_and_currency(seeded: Engine) -> None:
    with Session(seeded) as session:
        payments = session.exec(select(Payment)).all()
    assert len(payments) == N
    providers = Counter(p.provider for p in payments)
    assert set(providers) == {"stripe", "postfinance", "paystack", "mpesa", "manual", "dummy"}
    statuses = {p.status for p in payments}
    assert {"succeeded", "failed", "pending", "canceled", "expired"} <= statuses
    assert {"JPY", "KWD", "CHF", "KES", "NGN", "EUR", "USD"} <= {p.currency for p in payments}
    methods = {p.method for p in payments}
    assert {"card", "twint", "mobile_money", "bank_transfer", "cash_on_delivery"} <= methods
    failures = [p for p in payments if p.status == "failed"]
    assert failures and all(p.failure_reason for p in failures)
    assert all(UNTIL - timedelta(days=60) < p.created_at.date() <= UNTIL for p in payments)
    kwd = [p.amount_minor for p in payments if p.currency == "KWD"]
    assert any(a % 1000 for a in kwd), "KWD amounts use their three decimals"


def test_money_is_consistent(seeded: Engine) -> None:
    with Session(seeded) as session:
        for p in session.exec(select(Payment)):
            assert 0 <= p.refunded_minor + p.refund_pending_minor <= p.captured_minor
            assert (p.captured_minor == p.amount_minor) == (p.status in {"succeeded", "declined"})
            if p.provider == "mpesa":
                assert p.currency == "KES" and p.amount_minor % 100 == 0, "whole shillings"
        refunds = session.exec(select(Refund)).all()
        by_payment: Counter[str] = Counter()
        for r in refunds:
            assert r.decided_by is None or r.decided_by != r.requested_by
            if r.status == "succeeded":
                by_payment[r.payment_id] += r.amount_minor
        for payment_id, total in by_payment.items():
            assert session.get(Payment, payment_id).refunded_minor == total  # type: ignore[union-attr]


def test_has_the_situations_people_work_on(seeded: Engine) -> None:
    with Session(seeded) as session:
        refunds = session.exec(select(Refund)).all()
        payments = {p.id: p for p in session.exec(select(Payment))}
        full = [r for r in refunds if r.amount_minor == payments[r.payment_id].captured_minor]
        assert full and len(full) < len(refunds), "full and partial refunds"
        assert {"succeeded", "pending_approval"} <= {r.status for r in refunds}
        assert any(r.offline for r in refunds) or not any(
            p.provider == "manual" and p.refunded_minor for p in payments.values()
        )
        disputes = session.exec(select(Dispute)).all()
        assert disputes
        end = max(p.created_at for p in payments.values())
        assert any(
            d.status == "needs_response"
            and d.evidence_due_at is not None
            and d.evidence_due_at - end < timedelta(hours=72) + timedelta(days=1)
            for d in disputes
        )
        proofs = session.exec(select(ManualProof)).all()
        assert {"pending_review", "approved"} <= {p.status for p in proofs}
        assert all(p.reviewed_by != p.recorded_by for p in proofs)
        inbox = Counter(w.status for w in session.exec(select(WebhookEvent)))
        assert inbox["processed"] > 0 and inbox["failed"] > 0 and inbox["dead"] > 0


def test_every_payment_has_a_timeline(seeded: Engine) -> None:
    with Session(seeded) as session:
        created = session.exec(
            select(func.count(func.distinct(PaymentEvent.payment_id))).where(
                col(PaymentEvent.kind) == "created"
            )
        ).one()
    assert created == N


def test_webhook_ids_unique_and_payloads_are_json(seeded: Engine) -> None:
    import json

    with Session(seeded) as session:
        events = session.exec(select(WebhookEvent)).all()
    assert len({(w.provider, w.event_id) for w in events}) == len(events)
    assert all(isinstance(json.loads(w.payload), dict) for w in events[:200])


def test_seeding_is_audited_once(seeded: Engine) -> None:
    with Session(seeded) as session:
        entries = session.exec(select(AuditEntry)).all()
        assert [(e.actor, e.action) for e in entries] == [("system:seed", "demo.seeded")]
        assert entries[0].after is not None and entries[0].after["payments"] == N
        assert verify_chain(session=session).ok


def test_datetimes_read_back_the_same_on_both_paths(seeded: Engine) -> None:
    """Bulk-written datetimes compare correctly with values written through SQLAlchemy."""
    with Session(seeded) as session:
        newest = session.exec(select(Payment).order_by(col(Payment.created_at).desc())).first()
        assert newest is not None and newest.created_at.tzinfo is not None
        later = session.exec(
            select(func.count())
            .select_from(Payment)
            .where(col(Payment.created_at) > newest.created_at)
        ).one()
        assert later == 0
        assert session.execute(text("SELECT count(*) FROM payment")).scalar() == N


@pytest.mark.parametrize(("payments", "days"), [(-1, 10), (10, 0)])
def test_bad_parameters_are_refused(engine: Engine, payments: int, days: int) -> None:
    with pytest.raises(ValueError, match="must be"):
        seed_demo_data(engine=engine, payments=payments, days=days, seed=1)
