from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from factories import make_payment
from sqlmodel import Session, col, select

from payments_core.models import AuditEntry, Payment, PaymentEvent
from payments_core.services.payments import apply_status
from payments_core.services.risk import (
    AMOUNT_POINTS,
    FAILURES_POINTS,
    FLAG_POINTS,
    VELOCITY_POINTS,
    apply_risk,
    assess,
    risky_payments,
)
from payments_core.status import MappedStatus, PaymentStatus

T0 = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)
EMAIL = "kim@example.com"


def _pay(session: Session, at: datetime, **overrides: Any) -> Payment:
    values: dict[str, Any] = {"customer_email": EMAIL, "created_at": at, "status_changed_at": at}
    if overrides.get("status") == "succeeded":
        values |= {"captured_minor": overrides.get("amount_minor", 4990), "paid_at": at}
    return make_payment(session, **(values | overrides))


def _history(session: Session, amounts: list[int], currency: str = "CHF") -> None:
    for days, amount in enumerate(amounts, start=2):
        _pay(
            session,
            T0 - timedelta(days=days),
            status="succeeded",
            amount_minor=amount,
            currency=currency,
        )


def test_a_normal_customer_scores_zero(session: Session) -> None:
    with session.begin():
        _history(session, [4000, 5000, 4500, 6000])
        _pay(session, T0 - timedelta(hours=3), status="failed")  # one failed try is normal
        payment = _pay(session, T0, status="succeeded", amount_minor=5200)
        assessment = assess(session=session, payment=payment)
    assert (assessment.score, assessment.reasons) == (0, [])


def test_many_attempts_in_an_hour_by_email(session: Session) -> None:
    with session.begin():
        _pay(session, T0 - timedelta(minutes=50))
        _pay(session, T0 - timedelta(minutes=20))
        payment = _pay(session, T0)
        _pay(session, T0 + timedelta(minutes=5))  # after it: not part of its history
        assessment = assess(session=session, payment=payment)
    assert assessment.score == VELOCITY_POINTS
    assert assessment.reasons == [f"3 payments from {EMAIL} within 60 minutes"]


def test_many_attempts_by_phone_with_different_emails(session: Session) -> None:
    with session.begin():
        for n in range(2):
            _pay(
                session,
                T0 - timedelta(minutes=10 * (n + 1)),
                customer_email=f"alias{n}@example.com",
                customer_phone="+254700000001",
            )
        payment = _pay(session, T0, customer_phone="+254700000001")
        assessment = assess(session=session, payment=payment)
    assert assessment.reasons == ["3 payments from +254700000001 within 60 minutes"]


def test_attempts_spread_out_do_not_count(session: Session) -> None:
    with session.begin():
        _pay(session, T0 - timedelta(minutes=61))
        _pay(session, T0 - timedelta(minutes=30))
        payment = _pay(session, T0)
        assert assess(session=session, payment=payment).score == 0


def test_amount_far_above_the_customers_median(session: Session) -> None:
    with session.begin():
        _history(session, [1000, 1200, 1100])
        _history(session, [10, 10, 10], currency="EUR")  # another currency is not compared
        above = _pay(session, T0, amount_minor=5501)
        at_limit = _pay(session, T0 + timedelta(hours=2), amount_minor=5500)
        above_score = assess(session=session, payment=above)
        at_limit_score = assess(session=session, payment=at_limit)
    assert above_score.score == AMOUNT_POINTS
    assert above_score.reasons == [
        f"55.01 CHF is more than 5x the median 11.00 CHF of {EMAIL}'s 3 earlier payments"
    ]
    assert at_limit_score.score == 0


def test_amount_rule_needs_three_succeeded_payments(session: Session) -> None:
    with session.begin():
        _history(session, [1000, 1000])
        _pay(session, T0 - timedelta(days=9), status="failed", amount_minor=1000)
        payment = _pay(session, T0, amount_minor=100000)
        assert assess(session=session, payment=payment).score == 0


def test_a_review_flag_counts(session: Session) -> None:
    with session.begin():
        payment = _pay(session, T0, review_reason="paid 10.00 CHF, expected 49.90 CHF")
        assessment = assess(session=session, payment=payment)
    assert assessment.score == FLAG_POINTS
    assert assessment.reasons == ["flagged: paid 10.00 CHF, expected 49.90 CHF"]


def test_failed_attempts_before_success_on_the_payment_itself(session: Session) -> None:
    with session.begin():
        payment = _pay(session, T0)
        for reason in ("card declined", "insufficient funds"):
            apply_status(
                session=session,
                payment=payment,
                mapped=MappedStatus(PaymentStatus.PENDING, "requires_payment_method", reason),
                actor="test",
                source="webhook",
                at=T0,
            )
        before_success = assess(session=session, payment=payment)
        apply_status(
            session=session,
            payment=payment,
            mapped=MappedStatus(PaymentStatus.SUCCEEDED, "succeeded"),
            actor="test",
            source="webhook",
            at=T0,
        )
        session.flush()
        assessment = assess(session=session, payment=payment)
    assert before_success.score == 0  # not a success yet
    assert assessment.score == FAILURES_POINTS
    assert assessment.reasons == ["succeeded after 2 failed attempts"]


def test_failed_payments_before_success_from_the_same_customer(session: Session) -> None:
    with session.begin():
        _pay(session, T0 - timedelta(hours=5), status="failed")
        _pay(session, T0 - timedelta(hours=3), status="failed")
        _pay(session, T0 - timedelta(days=3), status="failed")  # outside the window
        payment = _pay(session, T0, status="succeeded")
        assessment = assess(session=session, payment=payment)
    assert assessment.reasons == ["succeeded after 2 failed attempts"]


def test_apply_risk_stores_and_tells_only_changes(session: Session) -> None:
    def notes() -> list[str]:
        return list(
            session.exec(select(PaymentEvent.summary).where(col(PaymentEvent.kind) == "note")).all()
        )

    with session.begin():
        _history(session, [1000, 1000, 1000])
        _pay(session, T0 - timedelta(minutes=30))
        _pay(session, T0 - timedelta(minutes=20))
        payment = _pay(session, T0, amount_minor=9000, review_reason="currency mismatch")
        assessment = apply_risk(session=session, payment=payment, now=T0)
        assert assessment.score == VELOCITY_POINTS + AMOUNT_POINTS + FLAG_POINTS
        assert payment.risk_score == assessment.score
        assert payment.risk_reasons == assessment.reasons and len(assessment.reasons) == 3
        assert len(notes()) == 1 and notes()[0].startswith("Risk score 0 -> 100")

        apply_risk(session=session, payment=payment, now=T0)  # same answer: nothing written
        assert len(notes()) == 1

        payment.review_reason = None
        session.add(payment)
        assert apply_risk(session=session, payment=payment, now=T0).score == 60
        assert len(notes()) == 2
        entries = session.exec(
            select(AuditEntry).where(col(AuditEntry.action) == "payment.risk_changed")
        ).all()
    assert [(e.before, e.after) for e in entries][1] == (
        {"risk_score": 100, "risk_reasons": assessment.reasons},
        {"risk_score": 60, "risk_reasons": assessment.reasons[:2]},
    )
    assert all(e.actor == "system:risk" and e.entity_id == payment.id for e in entries)


def test_risky_payments_filters_by_score(session: Session) -> None:
    with session.begin():
        flagged = _pay(session, T0, review_reason="amount mismatch", customer_email="a@example.com")
        _pay(session, T0, customer_email="b@example.com")
        for payment in session.exec(select(Payment)).all():
            apply_risk(session=session, payment=payment, now=T0)
        assert [p.id for p in risky_payments(session=session, min_score=30, limit=10)] == [
            flagged.id
        ]
        assert len(risky_payments(session=session, min_score=0, limit=10)) == 2
