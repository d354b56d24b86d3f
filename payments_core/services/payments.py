"""Finding payments and moving their status, with the timeline and audit written alongside.

Operators paste whatever id they have, so ``find_payments`` accepts a Paydesk payment id, a
provider reference or a host reference. ``apply_status`` is the one place a payment's status
changes: it asks ``payments_core.status`` whether the move is allowed (monotonic rules), and
records the outcome on the payment's timeline; applied moves are also audited.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import or_
from sqlmodel import Session, col, select

from payments_core.models import Payment, PaymentEvent, utcnow
from payments_core.services.audit import record_audit
from payments_core.status import (
    CAPTURED_PAYMENT_STATUSES,
    Decision,
    MappedStatus,
    PaymentStatus,
    Transition,
    decide_payment,
    is_late_success,
)


class PaymentNotFoundError(LookupError):
    def __init__(self, reference: str) -> None:
        super().__init__(
            f"no payment matches {reference!r} (tried payment id, provider reference and host "
            "reference)"
        )
        self.reference = reference


class AmbiguousReferenceError(LookupError):
    def __init__(self, reference: str, payment_ids: list[str]) -> None:
        super().__init__(
            f"{reference!r} matches {len(payment_ids)} payments: {', '.join(payment_ids)}; "
            "use one of these payment ids"
        )
        self.reference = reference
        self.payment_ids = payment_ids


def find_payments(*, session: Session, reference: str, limit: int = 20) -> list[Payment]:
    """Every payment whose id, provider reference or host reference equals ``reference``."""
    reference = reference.strip()
    if not reference:
        return []
    statement = (
        select(Payment)
        .where(
            or_(
                col(Payment.id) == reference,
                col(Payment.provider_reference) == reference,
                col(Payment.host_reference) == reference,
            )
        )
        .order_by(col(Payment.created_at), col(Payment.id))
        .limit(limit)
    )
    return list(session.exec(statement))


def get_payment_by_reference(*, session: Session, reference: str) -> Payment:
    """Exactly one payment for ``reference``; a payment id always wins over other matches."""
    matches = find_payments(session=session, reference=reference)
    exact = [p for p in matches if p.id == reference.strip()]
    if exact:
        return exact[0]
    if not matches:
        raise PaymentNotFoundError(reference)
    if len(matches) > 1:
        raise AmbiguousReferenceError(reference, [p.id for p in matches])
    return matches[0]


def lock_payment(*, session: Session, payment_id: str) -> Payment:
    """The payment row, locked for the rest of the transaction (SQLite: the write lock)."""
    payment = session.exec(
        select(Payment).where(col(Payment.id) == payment_id).with_for_update()
    ).one_or_none()
    if payment is None:
        raise PaymentNotFoundError(payment_id)
    return payment


def add_timeline_event(
    *,
    session: Session,
    payment: Payment,
    kind: str,
    actor: str,
    summary: str,
    from_status: str | None = None,
    to_status: str | None = None,
    data: dict[str, Any] | None = None,
    at: datetime | None = None,
) -> PaymentEvent:
    event = PaymentEvent(
        payment_id=payment.id,
        at=at or utcnow(),
        kind=kind,
        actor=actor,
        summary=summary[:500],
        from_status=from_status,
        to_status=to_status,
        data=data or {},
    )
    session.add(event)
    return event


def record_change(
    *,
    session: Session,
    payment: Payment,
    actor: str,
    at: datetime,
    kind: str,
    summary: str,
    action: str,
    entity_type: str,
    entity_id: str,
    data: dict[str, Any] | None = None,
    from_status: str | None = None,
    to_status: str | None = None,
    before: dict[str, Any] | None = None,
    after: dict[str, Any] | None = None,
) -> None:
    """One change told twice, in the same transaction: on the payment's timeline and in the audit
    log."""
    add_timeline_event(
        session=session,
        payment=payment,
        kind=kind,
        actor=actor,
        summary=summary,
        from_status=from_status,
        to_status=to_status,
        data=data,
        at=at,
    )
    record_audit(
        session=session,
        actor=actor,
        action=action,
        entity_type=entity_type,
        entity_id=entity_id,
        before=before,
        after=after,
        at=at,
    )


@dataclass(frozen=True, slots=True)
class StatusChange:
    transition: Transition[PaymentStatus]
    flagged: bool = False


def _snapshot(payment: Payment) -> dict[str, Any]:
    return {
        "status": payment.status,
        "captured_minor": payment.captured_minor,
        "failure_reason": payment.failure_reason,
        "review_reason": payment.review_reason,
    }


def _record_failed_attempt(
    session: Session,
    payment: Payment,
    mapped: MappedStatus,
    *,
    actor: str,
    source: str,
    at: datetime,
) -> None:
    """A failed attempt that leaves the status as it is (the customer may still retry)."""
    before = _snapshot(payment)
    payment.failure_reason = (mapped.failure_reason or "")[:500]
    payment.updated_at = at
    session.add(payment)
    record_change(
        session=session,
        payment=payment,
        actor=actor,
        at=at,
        kind="status",
        summary=f"Attempt failed ({mapped.provider_state}) from {source}: {mapped.failure_reason}",
        from_status=payment.status,
        to_status=payment.status,
        data={"provider_state": mapped.provider_state, "source": source},
        action="payment.attempt_failed",
        entity_type="payment",
        entity_id=payment.id,
        before=before,
        after=_snapshot(payment) | {"source": source},
    )


def apply_status(
    *,
    session: Session,
    payment: Payment,
    mapped: MappedStatus,
    actor: str,
    source: str,
    captured_minor: int | None = None,
    at: datetime | None = None,
) -> StatusChange:
    """Move ``payment`` to ``mapped.status`` if the rules allow it, and explain either way.

    ``source`` says what caused it (e.g. "webhook evt_123", "reconcile", "proof pf_…").
    A capture reaching a captured status sets ``captured_minor`` (default: the full amount).
    """
    current = payment.status_enum
    transition = decide_payment(current, mapped.status)
    now = at or utcnow()
    if transition.decision is Decision.DUPLICATE:
        if mapped.failure_reason and mapped.failure_reason[:500] != payment.failure_reason:
            _record_failed_attempt(session, payment, mapped, actor=actor, source=source, at=now)
        return StatusChange(transition)
    if transition.decision is Decision.STALE:
        add_timeline_event(
            session=session,
            payment=payment,
            kind="status",
            actor=actor,
            summary=f"Ignored {mapped.status} ({mapped.provider_state}) from {source}: "
            f"payment is already {current}",
            from_status=current.value,
            to_status=current.value,
            data={"ignored": mapped.status.value, "provider_state": mapped.provider_state},
            at=now,
        )
        return StatusChange(transition)

    before = _snapshot(payment)
    flagged = is_late_success(current, mapped.status)
    payment.status = mapped.status.value
    payment.status_changed_at = now
    payment.updated_at = now
    if mapped.status in CAPTURED_PAYMENT_STATUSES:
        payment.captured_minor = payment.amount_minor if captured_minor is None else captured_minor
        payment.paid_at = payment.paid_at or now
        payment.failure_code = None
        payment.failure_reason = None
    if mapped.failure_reason:
        payment.failure_reason = mapped.failure_reason[:500]
    if flagged:
        payment.review_reason = (
            f"captured after the payment was {current}: check the customer was not charged twice"
        )
    if mapped.status is PaymentStatus.DECLINED:
        payment.review_reason = "captured but the provider declined delivery: do not fulfil"
    session.add(payment)
    record_change(
        session=session,
        payment=payment,
        actor=actor,
        at=now,
        kind="status",
        summary=f"{current} -> {mapped.status} ({mapped.provider_state}) from {source}",
        from_status=current.value,
        to_status=mapped.status.value,
        data={"provider_state": mapped.provider_state, "source": source},
        action="payment.status_changed",
        entity_type="payment",
        entity_id=payment.id,
        before=before,
        after=_snapshot(payment) | {"source": source},
    )
    return StatusChange(transition, flagged=flagged)
