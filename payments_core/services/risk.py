"""Payment risk: a few simple rules a person can check by hand, each adding points and a reason.

Rules (thresholds are the module constants named in brackets):

* **Many attempts** - ``VELOCITY_MIN_ATTEMPTS`` (3) or more payments from the same customer email,
  or the same phone, created within ``VELOCITY_WINDOW`` (1 hour) up to this one, this one
  included: ``VELOCITY_POINTS`` (30).
* **Unusual amount** - more than ``AMOUNT_FACTOR`` (5) times the median of the customer's
  earlier succeeded payments in the same currency, when there are at least
  ``AMOUNT_MIN_HISTORY`` (3) of them (the last ``AMOUNT_HISTORY`` (50) are looked at):
  ``AMOUNT_POINTS`` (30). The comparison is exact integer arithmetic.
* **Flagged** - the payment carries a review flag (amount or currency mismatch, late capture, ...,
  ``Payment.review_reason``): ``FLAG_POINTS`` (40).
* **Failures before success** - a captured payment preceded by ``FAILURES_MIN`` (2) or more
  failed attempts: failed attempts recorded on its own timeline plus the customer's failed
  payments created within ``FAILURES_WINDOW`` (24 hours) before it: ``FAILURES_POINTS`` (25).

The score is the sum, capped at 100; a customer with nothing unusual scores 0. The customer is
identified by email when the payment has one, otherwise by phone. ``assess`` only reads;
``apply_risk`` stores the score and reasons on the payment and, when the score changes, tells it
on the payment's timeline and in the audit log.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Final

from sqlalchemy import func
from sqlmodel import Session, col, select

from payments_core.models import Payment, PaymentEvent, utcnow
from payments_core.money import format_amount
from payments_core.services.payments import record_change
from payments_core.status import CAPTURED_PAYMENT_STATUSES, PaymentStatus

ACTOR: Final = "system:risk"
MAX_SCORE: Final = 100

VELOCITY_WINDOW: Final = timedelta(hours=1)
VELOCITY_MIN_ATTEMPTS: Final = 3
VELOCITY_POINTS: Final = 30

AMOUNT_FACTOR: Final = 5
AMOUNT_MIN_HISTORY: Final = 3
AMOUNT_HISTORY: Final = 50
AMOUNT_POINTS: Final = 30

FLAG_POINTS: Final = 40

FAILURES_WINDOW: Final = timedelta(hours=24)
FAILURES_MIN: Final = 2
FAILURES_POINTS: Final = 25

# How processing writes a failed attempt that leaves the status as it is (services.payments).
_FAILED_ATTEMPT_PREFIX: Final = "Attempt failed"


@dataclass(frozen=True, slots=True)
class Assessment:
    score: int
    reasons: list[str] = field(default_factory=list)


def _customer_filter(payment: Payment) -> tuple[Any, str] | None:
    """The condition that finds this customer's payments (indexed column), and how to name it."""
    if payment.customer_email:
        return col(Payment.customer_email) == payment.customer_email, payment.customer_email
    if payment.customer_phone:
        return col(Payment.customer_phone) == payment.customer_phone, payment.customer_phone
    return None


def _velocity(session: Session, payment: Payment) -> str | None:
    window_start = payment.created_at - VELOCITY_WINDOW
    for column, value in (
        (Payment.customer_email, payment.customer_email),
        (Payment.customer_phone, payment.customer_phone),
    ):
        if not value:
            continue
        attempts = session.exec(
            select(func.count())
            .select_from(Payment)
            .where(
                col(column) == value,
                col(Payment.created_at) >= window_start,
                col(Payment.created_at) <= payment.created_at,
            )
        ).one()
        if attempts >= VELOCITY_MIN_ATTEMPTS:
            minutes = int(VELOCITY_WINDOW.total_seconds()) // 60
            return f"{attempts} payments from {value} within {minutes} minutes"
    return None


def _twice_median(amounts: list[int]) -> int:
    """Two times the median, so an even count needs no division (and no float)."""
    ordered = sorted(amounts)
    middle = len(ordered) // 2
    if len(ordered) % 2:
        return 2 * ordered[middle]
    return ordered[middle - 1] + ordered[middle]


def _unusual_amount(session: Session, payment: Payment) -> str | None:
    customer = _customer_filter(payment)
    if customer is None:
        return None
    condition, who = customer
    history = list(
        session.exec(
            select(Payment.amount_minor)
            .where(
                condition,
                col(Payment.id) != payment.id,
                col(Payment.currency) == payment.currency,
                col(Payment.status) == PaymentStatus.SUCCEEDED.value,
                col(Payment.created_at) <= payment.created_at,
            )
            .order_by(col(Payment.created_at).desc())
            .limit(AMOUNT_HISTORY)
        ).all()
    )
    if len(history) < AMOUNT_MIN_HISTORY:
        return None
    twice_median = _twice_median(history)
    # amount > FACTOR * median  <=>  2 * amount > FACTOR * (2 * median)
    if 2 * payment.amount_minor <= AMOUNT_FACTOR * twice_median:
        return None
    median = (
        format_amount(twice_median // 2, payment.currency)
        if twice_median % 2 == 0
        else f"about {format_amount(twice_median // 2, payment.currency)}"
    )
    return (
        f"{format_amount(payment.amount_minor, payment.currency)} is more than {AMOUNT_FACTOR}x "
        f"the median {median} of {who}'s {len(history)} earlier payments"
    )


def _failures_before_success(session: Session, payment: Payment) -> str | None:
    if payment.status_enum not in CAPTURED_PAYMENT_STATUSES:
        return None
    own = session.exec(
        select(PaymentEvent.summary, PaymentEvent.to_status).where(
            col(PaymentEvent.payment_id) == payment.id, col(PaymentEvent.kind) == "status"
        )
    ).all()
    own_failures = sum(
        1
        for summary, to_status in own
        if summary.startswith(_FAILED_ATTEMPT_PREFIX) or to_status == PaymentStatus.FAILED.value
    )
    earlier_failures = 0
    customer = _customer_filter(payment)
    if customer is not None:
        earlier_failures = session.exec(
            select(func.count())
            .select_from(Payment)
            .where(
                customer[0],
                col(Payment.id) != payment.id,
                col(Payment.status) == PaymentStatus.FAILED.value,
                col(Payment.created_at) >= payment.created_at - FAILURES_WINDOW,
                col(Payment.created_at) <= payment.created_at,
            )
        ).one()
    failures = own_failures + earlier_failures
    if failures < FAILURES_MIN:
        return None
    return f"succeeded after {failures} failed attempts"


def assess(*, session: Session, payment: Payment) -> Assessment:
    """The score and the reason for every rule that fired; reads only."""
    fired = [
        (VELOCITY_POINTS, _velocity(session, payment)),
        (AMOUNT_POINTS, _unusual_amount(session, payment)),
        (FLAG_POINTS, f"flagged: {payment.review_reason}" if payment.review_reason else None),
        (FAILURES_POINTS, _failures_before_success(session, payment)),
    ]
    score = sum(points for points, reason in fired if reason)
    return Assessment(min(score, MAX_SCORE), [reason for _, reason in fired if reason])


def apply_risk(
    *, session: Session, payment: Payment, actor: str = ACTOR, now: datetime | None = None
) -> Assessment:
    """Assess ``payment`` and store the result on it; a changed score is also written to the
    payment's timeline and the audit log (changed reasons at the same score are only stored)."""
    assessment = assess(session=session, payment=payment)
    before = {"risk_score": payment.risk_score, "risk_reasons": list(payment.risk_reasons)}
    if assessment.score == payment.risk_score and assessment.reasons == payment.risk_reasons:
        return assessment
    payment.risk_score = assessment.score
    payment.risk_reasons = list(assessment.reasons)
    session.add(payment)
    if before["risk_score"] != assessment.score:
        why = "; ".join(assessment.reasons) if assessment.reasons else "no rule fires"
        record_change(
            session=session,
            payment=payment,
            actor=actor,
            at=now or utcnow(),
            kind="note",
            summary=f"Risk score {before['risk_score']} -> {assessment.score}: {why}",
            action="payment.risk_changed",
            entity_type="payment",
            entity_id=payment.id,
            before=before,
            after={"risk_score": assessment.score, "risk_reasons": assessment.reasons},
        )
    session.flush()
    return assessment


def risky_payments(*, session: Session, min_score: int, limit: int = 100) -> list[Payment]:
    """Payments scoring at least ``min_score``, highest score first, then newest."""
    return list(
        session.exec(
            select(Payment)
            .where(col(Payment.risk_score) >= min_score)
            .order_by(col(Payment.risk_score).desc(), col(Payment.created_at).desc())
            .limit(limit)
        ).all()
    )
