"""Looking payments up by any reference, and moving their status with timeline and audit."""

from __future__ import annotations

import itertools

import pytest
from factories import make_payment
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from payments_core.models import AuditEntry, PaymentEvent
from payments_core.services.audit import verify_chain
from payments_core.services.payments import (
    AmbiguousReferenceError,
    PaymentNotFoundError,
    apply_status,
    get_payment_by_reference,
    lock_payment,
)
from payments_core.status import MappedStatus, PaymentStatus

PS = PaymentStatus


def test_found_by_id_provider_reference_or_host_reference(session: Session) -> None:
    with session.begin():
        payment = make_payment(session, provider_reference="pi_abc", host_reference="order-9")
    for reference in (payment.id, "pi_abc", "order-9", "  order-9 "):
        assert get_payment_by_reference(session=session, reference=reference).id == payment.id


def test_unknown_reference_says_what_was_tried(session: Session) -> None:
    with pytest.raises(PaymentNotFoundError, match="payment id, provider reference and host"):
        get_payment_by_reference(session=session, reference="nope")


def test_shared_host_reference_is_ambiguous_and_lists_payments(session: Session) -> None:
    with session.begin():
        first = make_payment(session, host_reference="order-retry")
        second = make_payment(session, host_reference="order-retry")
    with pytest.raises(AmbiguousReferenceError) as excinfo:
        get_payment_by_reference(session=session, reference="order-retry")
    assert excinfo.value.payment_ids == [first.id, second.id]


def _apply(engine: Engine, payment_id: str, status: PaymentStatus, state: str = "x") -> None:
    with Session(engine) as session, session.begin():
        payment = lock_payment(session=session, payment_id=payment_id)
        apply_status(
            session=session,
            payment=payment,
            mapped=MappedStatus(status, state),
            actor="provider:stripe",
            source="test",
        )


def test_applied_change_writes_timeline_and_audit(engine: Engine) -> None:
    with Session(engine) as session, session.begin():
        payment_id = make_payment(session, status="pending").id
    _apply(engine, payment_id, PS.SUCCEEDED, "succeeded")
    with Session(engine) as session:
        payment = get_payment_by_reference(session=session, reference=payment_id)
        assert payment.status == "succeeded"
        assert payment.captured_minor == payment.amount_minor
        assert payment.paid_at is not None
        events = session.exec(
            select(PaymentEvent).where(col(PaymentEvent.payment_id) == payment_id)
        ).all()
        assert [(e.from_status, e.to_status) for e in events] == [("pending", "succeeded")]
        audit = session.exec(select(AuditEntry)).all()
        assert [(a.action, a.entity_id) for a in audit] == [("payment.status_changed", payment_id)]
        assert audit[0].before == {
            "status": "pending",
            "captured_minor": 0,
            "failure_reason": None,
            "review_reason": None,
        }
        assert verify_chain(session=session).ok


def test_stale_event_is_explained_not_applied(engine: Engine) -> None:
    with Session(engine) as session, session.begin():
        payment_id = make_payment(session, status="succeeded", captured_minor=4990).id
    _apply(engine, payment_id, PS.FAILED, "payment_failed")
    _apply(engine, payment_id, PS.SUCCEEDED, "succeeded")  # duplicate: nothing at all
    with Session(engine) as session:
        payment = get_payment_by_reference(session=session, reference=payment_id)
        assert payment.status == "succeeded"
        events = session.exec(select(PaymentEvent)).all()
        assert len(events) == 1 and "Ignored failed" in events[0].summary
        assert session.exec(select(AuditEntry)).all() == []


def test_late_capture_after_failure_is_recorded_and_flagged(engine: Engine) -> None:
    with Session(engine) as session, session.begin():
        payment_id = make_payment(session, status="failed", failure_reason="card declined").id
    _apply(engine, payment_id, PS.SUCCEEDED)
    with Session(engine) as session:
        payment = get_payment_by_reference(session=session, reference=payment_id)
        assert payment.status == "succeeded" and payment.failure_reason is None
        assert payment.review_reason and "charged twice" in payment.review_reason


@pytest.mark.parametrize(
    "order",
    list(itertools.permutations([PS.PENDING, PS.PROCESSING, PS.AUTHORIZED, PS.SUCCEEDED])),
)
def test_any_order_ends_in_the_same_state(
    session: Session, order: tuple[PaymentStatus, ...]
) -> None:
    with session.begin():
        payment = make_payment(session, status="created")
        for status in order + order:
            apply_status(
                session=session,
                payment=payment,
                mapped=MappedStatus(status, "x"),
                actor="provider:stripe",
                source="test",
            )
    assert payment.status == "succeeded" and payment.captured_minor == 4990


def test_failed_attempt_keeps_payment_pending_and_records_why(engine: Engine) -> None:
    with Session(engine) as session, session.begin():
        payment_id = make_payment(session, status="pending").id
    for _ in range(2):  # a redelivered failure is recorded once
        with Session(engine) as session, session.begin():
            payment = lock_payment(session=session, payment_id=payment_id)
            apply_status(
                session=session,
                payment=payment,
                mapped=MappedStatus(PS.PENDING, "requires_payment_method", "card_declined"),
                actor="provider:stripe",
                source="webhook evt_1",
            )
    _apply(engine, payment_id, PS.SUCCEEDED)
    with Session(engine) as session:
        payment = get_payment_by_reference(session=session, reference=payment_id)
        assert payment.status == "succeeded" and payment.review_reason is None
        actions = [a.action for a in session.exec(select(AuditEntry).order_by(col(AuditEntry.seq)))]
        assert actions == ["payment.attempt_failed", "payment.status_changed"]
