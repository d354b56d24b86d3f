from __future__ import annotations

import json
from datetime import date, datetime, timedelta
from typing import Any

from factories import make_payment
from sqlmodel import Session

from payments_core.models import (
    Dispute,
    ManualProof,
    Payment,
    Refund,
    Role,
    StatementLine,
    WebhookEvent,
    new_id,
    utcnow,
)
from payments_core.services.attention import AttentionKind, attention_queue
from payments_core.services.permissions import Actor

ANALYST = Actor(name="ana@example.com", role=Role.ANALYST)


def _paid(session: Session, at: datetime, **overrides: Any) -> Payment:
    values: dict[str, Any] = {
        "status": "succeeded",
        "captured_minor": 4990,
        "created_at": at,
        "status_changed_at": at,
        "paid_at": at,
    }
    return make_payment(session, **(values | overrides))


def _refund(session: Session, payment: Payment, status: str, at: datetime) -> Refund:
    refund = Refund(
        id=new_id("re"),
        payment_id=payment.id,
        amount_minor=123456,
        currency="CHF",
        status=status,
        reason="requested_by_customer",
        requested_by="fin@example.com",
        idempotency_key=new_id("idem"),
        failure_reason="provider timed out" if status == "needs_attention" else None,
        created_at=at,
    )
    session.add(refund)
    return refund


def _proof(session: Session, payment: Payment, status: str, at: datetime) -> ManualProof:
    proof = ManualProof(
        id=new_id("pf"),
        payment_id=payment.id,
        kind="bank_transfer",
        reference="PD-1234",
        amount_minor=25000,
        currency="EUR",
        status=status,
        recorded_by="fin@example.com",
        created_at=at,
    )
    session.add(proof)
    return proof


def _dispute(
    session: Session, payment: Payment, status: str, at: datetime, due: datetime | None
) -> Dispute:
    dispute = Dispute(
        id=new_id("dp"),
        payment_id=payment.id,
        provider_dispute_id=new_id("du"),
        amount_minor=4990,
        currency="CHF",
        status=status,
        reason="fraudulent",
        evidence_due_at=due,
        created_at=at,
    )
    session.add(dispute)
    return dispute


def _event(session: Session, status: str, at: datetime, **overrides: Any) -> WebhookEvent:
    values: dict[str, Any] = {
        "provider": "stripe",
        "event_id": new_id("evt"),
        "event_type": "payment_intent.succeeded",
        "payload": b"{}",
        "status": status,
        "received_at": at,
        "attempts": 10 if status == "dead" else 0,
        "last_error": "KeyError: 'amount'\nTraceback ..." if status == "dead" else None,
    }
    event = WebhookEvent(**(values | overrides))
    session.add(event)
    return event


def _line(session: Session, status: str, at: datetime) -> StatementLine:
    line = StatementLine(
        import_id=new_id("imp"),
        line_hash=new_id("h"),
        booked_on=date(2026, 3, 1),
        amount_minor=1500000,
        currency="JPY",
        reference="invoice 77",
        counterparty="Tanaka K.K.",
        status=status,
        imported_by="fin@example.com",
        created_at=at,
    )
    session.add(line)
    return line


def test_one_of_each_kind_oldest_first_and_nothing_else(session: Session) -> None:
    now = utcnow()

    def hours(n: int) -> datetime:
        return now - timedelta(hours=n)

    with session.begin():
        old = _paid(session, now - timedelta(days=30))
        # What needs a person, oldest first.
        approval = _refund(session, old, "pending_approval", hours(12))
        problem = _refund(session, old, "needs_attention", hours(11))
        proof = _proof(session, old, "pending_review", hours(10))
        soon = _dispute(session, old, "needs_response", hours(9), now + timedelta(hours=30))
        overdue = _dispute(session, old, "needs_response", hours(8), hours(1))
        undated = _dispute(session, old, "needs_response", hours(7), None)
        stuck = make_payment(session, status="authorized", status_changed_at=hours(6))
        flagged = _paid(
            session, hours(5), currency="EUR", review_reason="paid 49.00 EUR, expected 49.90 EUR"
        )
        dead = _event(session, "dead", hours(4), payment_id=old.id)
        unmatched = _event(session, "unmatched", hours(3), provider="mpesa")
        line = _line(session, "unmatched", hours(2))
        stuck_mpesa = make_payment(
            session,
            provider="mpesa",
            status="pending",
            status_changed_at=now - timedelta(minutes=4),
        )

        # What does not (yet) need anyone.
        _refund(session, old, "processing", hours(20))
        _refund(session, old, "succeeded", hours(20))
        _proof(session, old, "approved", hours(20))
        _dispute(session, old, "needs_response", hours(20), now + timedelta(days=10))
        _dispute(session, old, "under_review", hours(20), hours(19))
        _dispute(session, old, "won", hours(20), hours(19))
        make_payment(session, status="pending", status_changed_at=now - timedelta(minutes=5))
        make_payment(
            session,
            provider="mpesa",
            status="pending",
            status_changed_at=now - timedelta(minutes=2),
        )
        make_payment(
            session,
            provider="manual",
            method="bank_transfer",
            provider_reference=None,
            status="pending",
            status_changed_at=now - timedelta(days=3),
        )
        make_payment(session, status="created", status_changed_at=hours(20))
        make_payment(session, status="failed", status_changed_at=hours(20))
        _paid(session, hours(20))
        _event(session, "processed", hours(20))
        _event(session, "failed", hours(20))
        _event(session, "ignored", hours(20))
        _line(session, "matched", hours(20))

    with session.begin():
        items = attention_queue(session=session, actor=ANALYST, now=now)

    assert [(item.kind, item.entity_id) for item in items] == [
        (AttentionKind.REFUND_APPROVAL, approval.id),
        (AttentionKind.REFUND_PROBLEM, problem.id),
        (AttentionKind.PROOF_REVIEW, proof.id),
        (AttentionKind.DISPUTE_RESPONSE, soon.id),
        (AttentionKind.DISPUTE_RESPONSE, overdue.id),
        (AttentionKind.DISPUTE_RESPONSE, undated.id),
        (AttentionKind.STUCK_PAYMENT, stuck.id),
        (AttentionKind.PAYMENT_REVIEW, flagged.id),
        (AttentionKind.DEAD_WEBHOOK, str(dead.id)),
        (AttentionKind.UNMATCHED_CALLBACK, str(unmatched.id)),
        (AttentionKind.UNMATCHED_STATEMENT_LINE, str(line.id)),
        (AttentionKind.STUCK_PAYMENT, stuck_mpesa.id),
    ]
    assert [item.since for item in items] == sorted(item.since for item in items)
    titles = {item.entity_id: item.title for item in items if item.entity_type != "webhook_event"}
    hooks = {item.entity_id: item.title for item in items if item.entity_type == "webhook_event"}
    assert "1,234.56 CHF" in titles[approval.id] and "fin@example.com" in titles[approval.id]
    assert "provider timed out" in titles[problem.id]
    assert "250.00 EUR" in titles[proof.id] and "PD-1234" in titles[proof.id]
    assert "due in 30 h" in titles[soon.id] and "overdue by 1 h" in titles[overdue.id]
    assert "no due date" in titles[undated.id]
    assert "49.90 CHF" in titles[stuck.id] and "authorized for 6 h" in titles[stuck.id]
    assert "expected 49.90 EUR" in titles[flagged.id]
    assert "dead" in hooks[str(dead.id)] and "KeyError" in hooks[str(dead.id)]
    assert "does not know" in hooks[str(unmatched.id)]
    assert "1,500,000 JPY" in titles[str(line.id)]
    assert all("\n" not in item.title for item in items)
    by_id = {(item.entity_type, item.entity_id): item for item in items}
    assert by_id["refund", approval.id].payment_id == old.id
    assert by_id["payment", stuck.id].payment_id == stuck.id
    assert by_id["webhook_event", str(dead.id)].payment_id == old.id
    assert by_id["statement_line", str(line.id)].payment_id is None

    exported = json.loads(json.dumps([item.to_json() for item in items]))
    assert exported[0] == {
        "kind": "refund_approval",
        "since": approval.created_at.isoformat(),
        "title": titles[approval.id],
        "entity_type": "refund",
        "entity_id": approval.id,
        "payment_id": old.id,
        "due_at": None,
    }
    assert exported[3]["due_at"] == soon.evidence_due_at.isoformat()  # type: ignore[union-attr]


def test_limit_keeps_the_oldest(session: Session) -> None:
    now = utcnow()
    with session.begin():
        old = _paid(session, now - timedelta(days=30))
        refunds = [
            _refund(session, old, "pending_approval", now - timedelta(hours=n)) for n in (1, 3, 5)
        ]
        proofs = [_proof(session, old, "pending_review", now - timedelta(hours=n)) for n in (2, 4)]
    with session.begin():
        items = attention_queue(session=session, actor=ANALYST, now=now, limit=3)
    assert [item.entity_id for item in items] == [refunds[2].id, proofs[1].id, refunds[1].id]


def test_empty_database_needs_nobody(session: Session) -> None:
    with session.begin():
        assert attention_queue(session=session, actor=ANALYST) == []
