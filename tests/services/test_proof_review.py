"""Reviewing manual-payment proofs (maker-checker), on SQLite and PostgreSQL."""

from __future__ import annotations

import pytest
from factories import make_payment
from sqlmodel import Session, col, select

from payments_core.config import get_settings
from payments_core.models import AuditEntry, ManualProof, Payment, PaymentEvent, Role
from payments_core.services import proofs
from payments_core.services.permissions import Actor, PermissionDenied

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 64
CLERK = Actor("clerk@example.com", Role.FINANCE)
MANAGER = Actor("manager@example.com", Role.MANAGER)
OTHER_MANAGER = Actor("boss@example.com", Role.ADMIN)
ANALYST = Actor("analyst@example.com", Role.ANALYST)


def manual_payment(session: Session, **overrides: object) -> Payment:
    values: dict[str, object] = {
        "provider": "manual",
        "provider_reference": None,
        "method": "bank_transfer",
        "amount_minor": 12_500,
        "currency": "CHF",
    }
    return make_payment(session, **(values | overrides))


def recorded(session: Session, payment: Payment, actor: Actor = CLERK, **kw: object) -> ManualProof:
    return proofs.record_proof_by_staff(
        session=session,
        settings=get_settings(),
        actor=actor,
        payment_id=payment.id,
        reference=str(kw.pop("reference", f"transfer for {payment.id}")),
        amount_minor=payment.amount_minor,
        file=proofs.ProofFile("receipt.png", PNG),
        **kw,  # type: ignore[arg-type]
    )


def actions(session: Session, entity_id: str) -> list[str]:
    return list(
        session.exec(select(AuditEntry.action).where(col(AuditEntry.entity_id) == entity_id))
    )


def test_approval_makes_the_payment_succeed_with_its_amount_captured(session: Session) -> None:
    payment = manual_payment(session)
    proof = recorded(session, payment)
    assert proof.recorded_by == CLERK.name
    assert [p.id for p in proofs.proofs_awaiting_review(session=session)] == [proof.id]

    approved = proofs.approve_proof(session=session, actor=MANAGER, proof_id=proof.id)
    session.commit()

    assert approved.status == "approved"
    assert approved.reviewed_by == MANAGER.name and approved.reviewed_at is not None
    session.refresh(payment)
    assert payment.status == "succeeded"
    assert payment.captured_minor == 12_500
    assert proofs.proofs_awaiting_review(session=session) == []
    assert "proof.approved" in actions(session, proof.id)
    assert "payment.status_changed" in actions(session, payment.id)
    with pytest.raises(proofs.ProofError, match="already approved"):
        proofs.approve_proof(session=session, actor=OTHER_MANAGER, proof_id=proof.id)


def test_rejection_needs_a_reason_and_leaves_the_payment_pending(session: Session) -> None:
    payment = manual_payment(session)
    proof = recorded(session, payment)
    for reason in ("", "   "):
        with pytest.raises(proofs.ProofError, match="say why") as caught:
            proofs.reject_proof(session=session, actor=MANAGER, proof_id=proof.id, reason=reason)
        assert caught.value.field == "reason"

    rejected = proofs.reject_proof(
        session=session, actor=MANAGER, proof_id=proof.id, reason="  amount is unreadable "
    )
    session.commit()

    assert rejected.status == "rejected"
    assert rejected.review_reason == "amount is unreadable"
    session.refresh(payment)
    assert payment.status == "pending" and payment.captured_minor == 0
    assert "proof.rejected" in actions(session, proof.id)
    summaries = session.exec(
        select(PaymentEvent.summary).where(col(PaymentEvent.payment_id) == payment.id)
    ).all()
    assert any("rejected" in s and "amount is unreadable" in s for s in summaries)
    # The payment takes another proof, which can then be approved.
    second = recorded(session, payment, reference="second try")
    proofs.approve_proof(session=session, actor=MANAGER, proof_id=second.id)
    assert payment.status == "succeeded"


def test_the_recorder_cannot_review_their_own_proof(session: Session) -> None:
    payment = manual_payment(session)
    proof = recorded(session, payment, actor=MANAGER)
    with pytest.raises(proofs.ProofError, match="cannot review") as caught:
        proofs.approve_proof(session=session, actor=MANAGER, proof_id=proof.id)
    assert caught.value.field == "reviewer"
    same_person = Actor(MANAGER.name.upper(), Role.ADMIN)
    with pytest.raises(proofs.ProofError, match="cannot review"):
        proofs.reject_proof(session=session, actor=same_person, proof_id=proof.id, reason="no")
    session.refresh(proof)
    assert proof.status == "pending_review"
    proofs.approve_proof(session=session, actor=OTHER_MANAGER, proof_id=proof.id)
    session.commit()
    assert proof.reviewed_by == OTHER_MANAGER.name


@pytest.mark.parametrize("reviewer", [ANALYST, CLERK], ids=["analyst", "finance"])
def test_analysts_and_finance_cannot_review(session: Session, reviewer: Actor) -> None:
    payment = manual_payment(session)
    proof = recorded(session, payment, actor=OTHER_MANAGER)
    with pytest.raises(PermissionDenied):
        proofs.approve_proof(session=session, actor=reviewer, proof_id=proof.id)
    with pytest.raises(PermissionDenied):
        proofs.reject_proof(session=session, actor=reviewer, proof_id=proof.id, reason="x")
    session.refresh(proof)
    assert proof.status == "pending_review"


def test_analysts_cannot_record_proofs(session: Session) -> None:
    payment = manual_payment(session)
    with pytest.raises(PermissionDenied):
        recorded(session, payment, actor=ANALYST)


def test_a_duplicate_needs_explicit_approval_and_says_so(session: Session) -> None:
    first = manual_payment(session)
    second = manual_payment(session)
    recorded(session, first)
    duplicate = recorded(session, second)  # the same receipt file on another payment
    assert duplicate.duplicate_of_payment_id == first.id
    assert second.status == "pending"

    proofs.approve_proof(session=session, actor=MANAGER, proof_id=duplicate.id)
    session.commit()

    session.refresh(duplicate)
    assert duplicate.status == "approved"
    assert duplicate.duplicate_of_payment_id == first.id  # the flag is kept
    summaries = session.exec(
        select(PaymentEvent.summary).where(
            col(PaymentEvent.payment_id) == second.id, col(PaymentEvent.kind) == "proof"
        )
    ).all()
    assert any(f"already used on {first.id}" in s and "approved" in s for s in summaries)


def test_a_paid_payment_is_not_paid_twice(session: Session) -> None:
    payment = manual_payment(session)
    one = recorded(session, payment, reference="first")
    two = recorded(session, payment, reference="second")
    proofs.approve_proof(session=session, actor=MANAGER, proof_id=one.id)
    with pytest.raises(proofs.ProofError, match="twice"):
        proofs.approve_proof(session=session, actor=MANAGER, proof_id=two.id)
    proofs.reject_proof(session=session, actor=MANAGER, proof_id=two.id, reason="duplicate")
    assert payment.captured_minor == 12_500


def test_the_timeline_says_a_different_amount_in_the_payment_currency(session: Session) -> None:
    payment = manual_payment(session, amount_minor=20_000)
    proof = proofs.record_proof_by_staff(
        session=session,
        settings=get_settings(),
        actor=CLERK,
        payment_id=payment.id,
        reference="transfer BR-9002",
        amount_minor=12_500,
    )
    summary = session.exec(
        select(PaymentEvent.summary).where(col(PaymentEvent.payment_id) == payment.id)
    ).one()
    assert summary == (
        f"Proof {proof.id} recorded (bank_transfer, reference transfer BR-9002); "
        "amount 125.00 CHF differs from the payment's 200.00 CHF"
    )
