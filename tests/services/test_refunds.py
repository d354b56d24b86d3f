"""Refunds: request, approval (maker-checker), execution through the real Stripe adapter over HTTP
against the fake Stripe server, webhooks finishing them, offline refunds of manual payments, and
concurrent requests that can never refund more than was captured; on SQLite and PostgreSQL."""

from __future__ import annotations

import functools
import json
import threading
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from datetime import timedelta
from typing import Any

import pytest
from factories import make_payment
from fakes.stripe import StripeFake, form_of
from sqlalchemy import Engine, text
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from payments_core.config import Settings, get_settings
from payments_core.db import transaction
from payments_core.models import AuditEntry, Payment, PaymentEvent, Refund, Role, utcnow
from payments_core.providers import stripe as stripe_provider
from payments_core.providers.base import (
    CheckoutRequest,
    EventFacts,
    PaymentFacts,
    RefundFacts,
    RefundRequest,
)
from payments_core.providers.registry import Adapters
from payments_core.services import refunds
from payments_core.services.permissions import Actor, PermissionDenied
from payments_core.services.processing import apply_facts
from payments_core.status import RefundStatus

REFUNDS_PATH = "/v1/refunds"
FINANCE = Actor(name="fin@example.com", role=Role.FINANCE)
FINANCE_2 = Actor(name="fin2@example.com", role=Role.FINANCE)
ANALYST = Actor(name="analyst@example.com", role=Role.ANALYST)
MANAGER = Actor(name="boss@example.com", role=Role.MANAGER)
MANAGER_2 = Actor(name="boss2@example.com", role=Role.MANAGER)
ADMIN = Actor(name="admin@example.com", role=Role.ADMIN)
THRESHOLD = 50_000  # CHF 500.00

Tx = Callable[[], AbstractContextManager[Session]]


@pytest.fixture
def tx(engine: Engine) -> Tx:
    return functools.partial(transaction, engine)


@pytest.fixture
def settings(monkeypatch: pytest.MonkeyPatch) -> Iterator[Settings]:
    monkeypatch.setenv("REFUND_APPROVAL_THRESHOLDS", f"CHF:{THRESHOLD}")
    monkeypatch.setenv("REFUND_WINDOW_DAYS", "120")
    get_settings.cache_clear()
    yield get_settings()
    get_settings.cache_clear()


@pytest.fixture
def stripe_settings(
    settings: Settings, stripe_fake: StripeFake, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Settings]:
    monkeypatch.setenv("STRIPE_API_KEY", stripe_fake.api_key)
    monkeypatch.setenv("STRIPE_API_BASE", stripe_fake.base_url)
    monkeypatch.setenv("STRIPE_TEST_MODE", "true")
    monkeypatch.setenv("PROVIDER_TIMEOUT_SECONDS", "5")
    monkeypatch.setenv("PROVIDER_MAX_RETRIES", "0")
    get_settings.cache_clear()
    yield get_settings()
    assert stripe_fake.errors == []
    get_settings.cache_clear()


def captured_payment(tx: Tx, **overrides: Any) -> Payment:
    amount = overrides.pop("amount_minor", 10_000)
    values: dict[str, Any] = {
        "amount_minor": amount,
        "captured_minor": amount,
        "status": "succeeded",
        "paid_at": utcnow(),
    }
    with tx() as session:
        return make_payment(session, **(values | overrides))


def stripe_payment(tx: Tx, fake: StripeFake, amount: int = 10_000) -> Payment:
    """A payment the customer paid at the fake Stripe (a PaymentIntent that exists there)."""
    result = (
        Adapters()
        .checkout("stripe")
        .create_checkout(
            CheckoutRequest(
                payment_id="pay_refund_test",
                amount_minor=amount,
                currency="CHF",
                idempotency_key=f"checkout-{len(fake.sessions)}",
                description="Order",
                success_url="https://shop.example/ok",
                cancel_url="https://shop.example/cancel",
            )
        )
    )
    assert result.provider_reference is not None
    intent = fake.complete_session(result.provider_reference)
    return captured_payment(tx, amount_minor=amount, provider_reference=intent["id"])


def request(tx: Tx, payment: Payment, amount: int, actor: Actor = FINANCE, **kw: Any) -> Refund:
    with tx() as session:
        return refunds.request_refund(
            session=session,
            actor=actor,
            payment_id=payment.id,
            amount_minor=amount,
            currency=kw.pop("currency", payment.currency),
            reason=kw.pop("reason", "requested_by_customer"),
            **kw,
        )


def refused(tx: Tx, payment: Payment, amount: int, **kw: Any) -> refunds.RefundError:
    with pytest.raises(refunds.RefundError) as caught:
        request(tx, payment, amount, **kw)
    return caught.value


def payment_now(engine: Engine, payment_id: str) -> Payment:
    with Session(engine) as session:
        payment = session.get(Payment, payment_id)
        assert payment is not None
        return payment


def refund_now(engine: Engine, refund_id: str) -> Refund:
    with Session(engine) as session:
        refund = session.get(Refund, refund_id)
        assert refund is not None
        return refund


def refund_rows(engine: Engine, payment_id: str) -> list[Refund]:
    with Session(engine) as session:
        return refunds.refunds_for_payment(session=session, payment_id=payment_id)


def audit_of(engine: Engine, refund_id: str) -> list[tuple[str, str]]:
    with Session(engine) as session:
        rows = session.exec(
            select(AuditEntry.action, AuditEntry.actor)
            .where(col(AuditEntry.entity_type) == "refund", col(AuditEntry.entity_id) == refund_id)
            .order_by(col(AuditEntry.seq))
        ).all()
    return [(action, actor) for action, actor in rows]


def timeline_of(engine: Engine, payment_id: str) -> list[PaymentEvent]:
    with Session(engine) as session:
        return list(
            session.exec(
                select(PaymentEvent)
                .where(
                    col(PaymentEvent.payment_id) == payment_id, col(PaymentEvent.kind) == "refund"
                )
                .order_by(col(PaymentEvent.id))
            )
        )


def refund_posts(fake: StripeFake) -> list[Any]:
    return fake.requests_to(REFUNDS_PATH, "POST")


# --- Refusals ------------------------------------------------------------------------------------


def test_each_refusal_says_why_and_writes_nothing(
    engine: Engine, tx: Tx, settings: Settings
) -> None:
    payment = captured_payment(tx, amount_minor=4990)

    error = refused(tx, payment, 0)
    assert (error.field, error.message) == ("amount", "must be greater than zero")
    assert refused(tx, payment, -100).field == "amount"
    assert refused(tx, payment, True).field == "amount"  # type: ignore[arg-type]

    error = refused(tx, payment, 100, currency="EUR")
    assert error.field == "currency" and "is in CHF" in error.message
    error = refused(tx, payment, 100, currency="XYZ")
    assert error.field == "currency" and "unknown currency" in error.message

    error = refused(tx, payment, 100, reason="  ")
    assert (error.field, error.message) == ("reason", "give a reason for the refund")

    error = refused(tx, payment, 4991)
    assert error.field == "amount"
    assert error.message.startswith("49.91 CHF is more than the 49.90 CHF left to refund")

    pending = captured_payment(tx, status="pending", captured_minor=0, paid_at=None)
    error = refused(tx, pending, 100)
    assert error.field == "payment"
    assert "is pending: only a captured payment can be refunded" in error.message

    mpesa = captured_payment(tx, provider="mpesa", currency="KES", method="mobile_money")
    error = refused(tx, mpesa, 100)
    assert error.message == (
        "mpesa payments cannot be refunded through Paydesk: return the money at mpesa directly"
    )

    old = captured_payment(tx, paid_at=utcnow() - timedelta(days=121))
    error = refused(tx, old, 100)
    assert error.field == "payment"
    assert "outside the 120-day refund window for stripe payments" in error.message

    error = refused(tx, payment, 100, offline_reference="bank transfer 42")
    assert error.field == "offline_reference" and "only for manual payments" in error.message

    with pytest.raises(PermissionDenied, match="may not request refunds"):
        request(tx, payment, 100, actor=ANALYST)

    for each in (payment, pending, mpesa, old):
        assert refund_rows(engine, each.id) == []
        assert payment_now(engine, each.id).refund_pending_minor == 0
    with Session(engine) as session:
        assert (
            session.exec(select(AuditEntry).where(col(AuditEntry.entity_type) == "refund")).all()
            == []
        )


def test_the_refund_window_is_per_provider(
    engine: Engine, tx: Tx, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("REFUND_WINDOW_DAYS_BY_PROVIDER", "stripe:30")
    get_settings.cache_clear()
    recent = captured_payment(tx, paid_at=utcnow() - timedelta(days=29))
    old = captured_payment(tx, paid_at=utcnow() - timedelta(days=31))
    assert request(tx, recent, 100).status == "processing"
    assert "30-day refund window" in refused(tx, old, 100).message


def test_amounts_in_flight_count_so_requests_never_exceed_the_capture(
    engine: Engine, tx: Tx, settings: Settings
) -> None:
    payment = captured_payment(tx, amount_minor=4990)
    first = request(tx, payment, 2000)
    assert first.status == "processing" and first.idempotency_key == refunds.refund_key(first.id)
    assert payment_now(engine, payment.id).refund_pending_minor == 2000
    error = refused(tx, payment, 2991)
    assert error.message == (
        "29.91 CHF is more than the 29.90 CHF left to refund "
        "(captured 49.90 CHF, refunded 0.00 CHF, in flight 20.00 CHF)"
    )
    request(tx, payment, 2990)  # exactly what is left
    state = payment_now(engine, payment.id)
    assert (state.refunded_minor, state.refund_pending_minor) == (0, 4990)
    assert "0.01 CHF is more than the 0.00 CHF" in refused(tx, payment, 1).message
    # The database refuses it too, whatever the code says.
    with pytest.raises(IntegrityError), tx() as session:
        session.execute(
            text("UPDATE payment SET refund_pending_minor = 5000 WHERE id = :id"),
            {"id": payment.id},
        )


def test_money_under_dispute_is_not_refundable_again(
    engine: Engine, tx: Tx, settings: Settings
) -> None:
    from payments_core.models import Dispute

    payment = captured_payment(tx, amount_minor=10_000)
    with tx() as session:
        session.add(
            Dispute(
                id="dp_test_1",
                payment_id=payment.id,
                provider_dispute_id="dp_1",
                amount_minor=6_000,
                currency="CHF",
                status="needs_response",
            )
        )
    error = refused(tx, payment, 4_001)
    assert error.message == (
        "40.01 CHF is more than the 40.00 CHF left to refund (captured 100.00 CHF, refunded "
        "0.00 CHF, in flight 0.00 CHF, disputed 60.00 CHF)"
    )
    assert request(tx, payment, 4_000).status == "processing"


# --- Approval ------------------------------------------------------------------------------------


def test_requests_at_or_above_the_threshold_wait_for_a_manager(
    engine: Engine, tx: Tx, settings: Settings
) -> None:
    payment = captured_payment(tx, amount_minor=200_000)
    below = request(tx, payment, THRESHOLD - 1)
    at = request(tx, payment, THRESHOLD, note="customer called twice")
    assert below.status == "processing" and below.decided_by is None
    assert at.status == "pending_approval" and at.note == "customer called twice"
    assert payment_now(engine, payment.id).refund_pending_minor == 2 * THRESHOLD - 1
    with Session(engine) as session:
        waiting = refunds.refunds_awaiting_approval(session=session)
    assert [r.id for r in waiting] == [at.id]
    [_, waits] = timeline_of(engine, payment.id)
    assert waits.actor == FINANCE.name and "waits for a manager's approval" in waits.summary
    assert audit_of(engine, at.id) == [("refund.requested", FINANCE.name)]


def test_maker_checker_only_another_manager_can_approve(
    engine: Engine, tx: Tx, settings: Settings
) -> None:
    payment = captured_payment(tx, amount_minor=200_000)
    pending = request(tx, payment, 60_000, actor=MANAGER)

    for actor in (ANALYST, FINANCE):
        with pytest.raises(PermissionDenied, match="may not approve or reject refunds"), tx() as s:
            refunds.approve_refund(session=s, actor=actor, refund_id=pending.id)
    with pytest.raises(refunds.RefundError) as own, tx() as session:
        refunds.approve_refund(session=session, actor=MANAGER, refund_id=pending.id)
    assert own.value.message == (
        f"{MANAGER.name} requested refund {pending.id} and cannot approve it: another manager "
        "must decide"
    )
    with pytest.raises(refunds.RefundError, match="cannot reject it"), tx() as session:
        refunds.reject_refund(session=session, actor=MANAGER, refund_id=pending.id, reason="no")
    # The database refuses it as well.
    with pytest.raises(IntegrityError), tx() as session:
        session.execute(
            text("UPDATE refund SET decided_by = requested_by WHERE id = :id"), {"id": pending.id}
        )
    assert refund_now(engine, pending.id).status == "pending_approval"

    with tx() as session:
        approved = refunds.approve_refund(session=session, actor=MANAGER_2, refund_id=pending.id)
    assert (approved.status, approved.decided_by) == ("processing", MANAGER_2.name)
    assert approved.decided_at is not None
    assert audit_of(engine, pending.id) == [
        ("refund.requested", MANAGER.name),
        ("refund.approved", MANAGER_2.name),
    ]
    waiting_only = "is processing: only a refund waiting"
    with pytest.raises(refunds.RefundError, match=waiting_only), tx() as session:
        refunds.approve_refund(session=session, actor=ADMIN, refund_id=pending.id)
    with pytest.raises(refunds.RefundNotFoundError), tx() as session:
        refunds.approve_refund(session=session, actor=ADMIN, refund_id="rf_nope")


def test_rejection_needs_a_reason_and_frees_the_amount(
    engine: Engine, tx: Tx, settings: Settings
) -> None:
    payment = captured_payment(tx, amount_minor=100_000)
    pending = request(tx, payment, 100_000)
    for reason in ("", "   "):
        with pytest.raises(refunds.RefundError) as caught, tx() as session:
            refunds.reject_refund(
                session=session, actor=MANAGER, refund_id=pending.id, reason=reason
            )
        assert (caught.value.field, caught.value.message) == (
            "reason",
            "say why the refund is rejected",
        )
    with tx() as session:
        rejected = refunds.reject_refund(
            session=session, actor=MANAGER, refund_id=pending.id, reason="goods not returned"
        )
    assert (rejected.status, rejected.rejection_reason) == ("rejected", "goods not returned")
    assert rejected.decided_by == MANAGER.name
    assert payment_now(engine, payment.id).refund_pending_minor == 0
    last = timeline_of(engine, payment.id)[-1]
    assert last.actor == MANAGER.name and "goods not returned" in last.summary
    assert (last.data["from"], last.data["status"]) == ("pending_approval", "rejected")
    assert audit_of(engine, pending.id)[-1] == ("refund.rejected", MANAGER.name)
    with pytest.raises(refunds.RefundError, match="is rejected"), tx() as session:
        refunds.approve_refund(session=session, actor=MANAGER_2, refund_id=pending.id)
    assert request(tx, payment, 40_000).status == "processing"  # the whole amount is free again


# --- Execution through the Stripe adapter (fake Stripe over HTTP) --------------------------------


def test_a_refund_below_the_threshold_is_executed_with_its_stored_key(
    engine: Engine, tx: Tx, stripe_fake: StripeFake, stripe_settings: Settings
) -> None:
    payment = stripe_payment(tx, stripe_fake, 10_000)
    refund = refunds.request_and_execute(
        transaction=tx,
        adapters=Adapters(),
        actor=FINANCE,
        payment_id=payment.id,
        amount_minor=1500,
        currency="CHF",
        reason="requested_by_customer",
    )
    assert refund.status == "succeeded" and refund.succeeded_at is not None
    assert refund.attempts == 1 and refund.execution_started_at is not None
    [post] = refund_posts(stripe_fake)
    assert post.headers["idempotency-key"] == refund.idempotency_key
    form = form_of(post)
    assert form["amount"] == "1500" and form["payment_intent"] == payment.provider_reference
    assert form["metadata"]["paydesk_refund_id"] == refund.id
    [at_stripe] = stripe_fake.refunds_for(payment.provider_reference or "")
    assert refund.provider_refund_id == at_stripe["id"]
    state = payment_now(engine, payment.id)
    assert (state.refunded_minor, state.refund_pending_minor) == (1500, 0)
    assert audit_of(engine, refund.id) == [
        ("refund.requested", FINANCE.name),
        ("refund.sent", refunds.EXECUTOR),
        ("refund.provider_answered", refunds.EXECUTOR),
    ]
    # Executing it again sends nothing.
    again = refunds.execute_refund(transaction=tx, adapters=Adapters(), refund_id=refund.id)
    assert again.status == "succeeded" and len(refund_posts(stripe_fake)) == 1


def test_an_approved_refund_is_executed_and_a_waiting_one_is_not(
    engine: Engine, tx: Tx, stripe_fake: StripeFake, stripe_settings: Settings
) -> None:
    payment = stripe_payment(tx, stripe_fake, 80_000)
    pending = refunds.request_and_execute(
        transaction=tx,
        adapters=Adapters(),
        actor=FINANCE,
        payment_id=payment.id,
        amount_minor=70_000,
        currency="CHF",
        reason="duplicate",
    )
    assert pending.status == "pending_approval"
    assert refunds.execute_refund(
        transaction=tx, adapters=Adapters(), refund_id=pending.id
    ).status == ("pending_approval")
    assert refund_posts(stripe_fake) == []
    with pytest.raises(PermissionDenied):
        refunds.approve_and_execute(
            transaction=tx, adapters=Adapters(), actor=FINANCE_2, refund_id=pending.id
        )
    done = refunds.approve_and_execute(
        transaction=tx, adapters=Adapters(), actor=MANAGER, refund_id=pending.id
    )
    assert (done.status, done.decided_by) == ("succeeded", MANAGER.name)
    assert [r["amount"] for r in stripe_fake.refunds_for(payment.provider_reference or "")] == [
        70_000
    ]
    assert payment_now(engine, payment.id).refunded_minor == 70_000


def test_a_declined_refund_fails_with_the_reason_and_frees_its_amount(
    engine: Engine, tx: Tx, stripe_fake: StripeFake, stripe_settings: Settings
) -> None:
    payment = stripe_payment(tx, stripe_fake, 10_000)
    assert payment.provider_reference is not None
    # Someone refunded most of it in the Stripe dashboard: Stripe refuses ours.
    Adapters().refunds("stripe").refund(
        RefundRequest(
            refund_id="rf_dashboard",
            payment_id=payment.id,
            provider_reference=payment.provider_reference,
            amount_minor=9_000,
            currency="CHF",
            idempotency_key="dashboard-1",
        )
    )
    refund = refunds.request_and_execute(
        transaction=tx,
        adapters=Adapters(),
        actor=FINANCE,
        payment_id=payment.id,
        amount_minor=5_000,
        currency="CHF",
        reason="requested_by_customer",
    )
    assert refund.status == "failed"
    assert refund.failure_reason and "greater than unrefunded amount" in refund.failure_reason
    state = payment_now(engine, payment.id)
    assert (state.refunded_minor, state.refund_pending_minor) == (0, 0)
    assert audit_of(engine, refund.id)[-1] == ("refund.provider_refused", refunds.EXECUTOR)
    assert "the amount is free again" in timeline_of(engine, payment.id)[-1].summary
    with pytest.raises(refunds.RefundError, match="only a refund that needs attention"):
        refunds.retry_refund(
            transaction=tx, adapters=Adapters(), actor=FINANCE, refund_id=refund.id
        )
    # Its amount can be asked for again.
    assert request(tx, payment, 10_000).status == "processing"


def test_an_unknown_outcome_needs_attention_and_the_retry_refunds_once(
    engine: Engine,
    tx: Tx,
    stripe_fake: StripeFake,
    stripe_settings: Settings,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    payment = stripe_payment(tx, stripe_fake, 10_000)
    monkeypatch.setenv("PROVIDER_TIMEOUT_SECONDS", "0.5")
    get_settings.cache_clear()
    stripe_fake.delay_next(REFUNDS_PATH, 2.0, method="POST")  # done at Stripe, answer lost
    refund = refunds.request_and_execute(
        transaction=tx,
        adapters=Adapters(),
        actor=FINANCE,
        payment_id=payment.id,
        amount_minor=2_500,
        currency="CHF",
        reason="requested_by_customer",
    )
    assert refund.status == "needs_attention" and refund.failure_reason
    assert refund.provider_refund_id is None
    # Still in flight: the money may be on its way back.
    assert payment_now(engine, payment.id).refund_pending_minor == 2_500
    assert audit_of(engine, refund.id)[-1] == ("refund.outcome_unknown", refunds.EXECUTOR)
    with pytest.raises(PermissionDenied):
        refunds.retry_refund(
            transaction=tx, adapters=Adapters(), actor=ANALYST, refund_id=refund.id
        )

    retried = refunds.retry_refund(
        transaction=tx, adapters=Adapters(), actor=FINANCE_2, refund_id=refund.id
    )
    assert retried.status == "succeeded" and retried.attempts == 2
    assert retried.failure_reason is None
    posts = refund_posts(stripe_fake)
    assert len(posts) == 2
    assert {p.headers["idempotency-key"] for p in posts} == {refund.idempotency_key}
    [at_stripe] = stripe_fake.refunds_for(payment.provider_reference or "")
    assert at_stripe["amount"] == 2_500 and retried.provider_refund_id == at_stripe["id"]
    state = payment_now(engine, payment.id)
    assert (state.refunded_minor, state.refund_pending_minor) == (2_500, 0)
    assert ("refund.retried", FINANCE_2.name) in audit_of(engine, refund.id)


def test_an_executor_that_died_after_claiming_can_be_retried_once_the_claim_is_stale(
    engine: Engine, tx: Tx, stripe_fake: StripeFake, stripe_settings: Settings
) -> None:
    payment = stripe_payment(tx, stripe_fake, 10_000)
    refund = request(tx, payment, 1_000)
    with tx() as session:  # what a crash between the claim and the call leaves behind
        row = session.get(Refund, refund.id)
        assert row is not None
        row.execution_started_at, row.attempts = utcnow(), 1
        session.add(row)
    with pytest.raises(refunds.RefundError, match="it is being sent right now"):
        refunds.retry_refund(
            transaction=tx, adapters=Adapters(), actor=FINANCE, refund_id=refund.id
        )
    assert (
        refunds.execute_refund(transaction=tx, adapters=Adapters(), refund_id=refund.id).attempts
        == 1
    )
    assert refund_posts(stripe_fake) == []
    with tx() as session:
        row = session.get(Refund, refund.id)
        assert row is not None
        row.execution_started_at = utcnow() - refunds.STALE_CLAIM - timedelta(minutes=1)
        session.add(row)
    retried = refunds.retry_refund(
        transaction=tx, adapters=Adapters(), actor=FINANCE, refund_id=refund.id
    )
    assert (retried.status, retried.attempts) == ("succeeded", 2)
    assert len(refund_posts(stripe_fake)) == 1


def stripe_refund_event(fake: StripeFake, provider_refund_id: str) -> EventFacts:
    body = {
        "id": f"evt_{provider_refund_id}",
        "object": "event",
        "type": "refund.updated",
        "livemode": False,
        "data": {"object": fake.refunds[provider_refund_id]},
    }
    return stripe_provider.event_facts(json.dumps(body).encode())


def apply_webhook(tx: Tx, payment_id: str, facts: EventFacts) -> None:
    """What the worker does with a verified webhook: apply its facts to the locked payment."""
    with tx() as session:
        payment = session.exec(
            select(Payment).where(col(Payment.id) == payment_id).with_for_update()
        ).one()
        apply_facts(
            session,
            payment,
            facts,
            provider=payment.provider,
            actor=f"provider:{payment.provider}",
            source=f"{payment.provider} webhook",
            now=utcnow(),
        )


def test_a_refund_pending_at_stripe_is_finished_by_its_webhook_on_our_row(
    engine: Engine, tx: Tx, stripe_fake: StripeFake, stripe_settings: Settings
) -> None:
    payment = stripe_payment(tx, stripe_fake, 10_000)
    stripe_fake.refund_status = "pending"
    refund = refunds.request_and_execute(
        transaction=tx,
        adapters=Adapters(),
        actor=FINANCE,
        payment_id=payment.id,
        amount_minor=4_000,
        currency="CHF",
        reason="requested_by_customer",
    )
    assert refund.status == "processing" and refund.provider_refund_id
    assert payment_now(engine, payment.id).refund_pending_minor == 4_000
    # Not sent twice while Stripe works on it.
    refunds.execute_refund(transaction=tx, adapters=Adapters(), refund_id=refund.id)
    assert len(refund_posts(stripe_fake)) == 1

    stripe_fake.set_refund_status(refund.provider_refund_id, "succeeded")
    facts = stripe_refund_event(stripe_fake, refund.provider_refund_id)
    assert facts.refunds[0].refund_id == refund.id
    apply_webhook(tx, payment.id, facts)
    [row] = refund_rows(engine, payment.id)
    assert (row.id, row.status) == (refund.id, "succeeded")
    state = payment_now(engine, payment.id)
    assert (state.refunded_minor, state.refund_pending_minor) == (4_000, 0)


def test_after_an_unknown_outcome_the_webhook_finishes_our_refund_without_a_retry(
    engine: Engine,
    tx: Tx,
    stripe_fake: StripeFake,
    stripe_settings: Settings,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    payment = stripe_payment(tx, stripe_fake, 10_000)
    monkeypatch.setenv("PROVIDER_TIMEOUT_SECONDS", "0.5")
    get_settings.cache_clear()
    stripe_fake.delay_next(REFUNDS_PATH, 2.0, method="POST")
    refund = refunds.request_and_execute(
        transaction=tx,
        adapters=Adapters(),
        actor=FINANCE,
        payment_id=payment.id,
        amount_minor=6_000,
        currency="CHF",
        reason="requested_by_customer",
    )
    assert refund.status == "needs_attention" and refund.provider_refund_id is None
    [at_stripe] = stripe_fake.refunds_for(payment.provider_reference or "")
    apply_webhook(tx, payment.id, stripe_refund_event(stripe_fake, at_stripe["id"]))
    [row] = refund_rows(engine, payment.id)
    assert (row.id, row.status, row.provider_refund_id) == (refund.id, "succeeded", at_stripe["id"])
    state = payment_now(engine, payment.id)
    assert (state.refunded_minor, state.refund_pending_minor) == (6_000, 0)
    with pytest.raises(refunds.RefundError, match="is succeeded"):
        refunds.retry_refund(
            transaction=tx, adapters=Adapters(), actor=FINANCE, refund_id=refund.id
        )
    assert len(refund_posts(stripe_fake)) == 1


def test_a_webhook_naming_our_refund_id_updates_our_row_before_any_provider_id_is_known(
    engine: Engine, tx: Tx, settings: Settings
) -> None:
    payment = captured_payment(tx, amount_minor=10_000)
    refund = request(tx, payment, 3_000)
    assert refund.status == "processing" and refund.provider_refund_id is None
    facts = EventFacts(
        payment=PaymentFacts(reference=payment.provider_reference or ""),
        refunds=(
            RefundFacts(
                provider_refund_id="re_early",
                amount_minor=3_000,
                currency="CHF",
                status=RefundStatus.FAILED,
                refund_id=refund.id,
                failure_reason="expired_or_canceled_card",
            ),
        ),
    )
    apply_webhook(tx, payment.id, facts)
    [row] = refund_rows(engine, payment.id)
    assert (row.id, row.status, row.provider_refund_id) == (refund.id, "failed", "re_early")
    assert row.failure_reason == "expired_or_canceled_card"
    assert payment_now(engine, payment.id).refund_pending_minor == 0
    # Finished by the provider: nothing left to send.
    done = refunds.execute_refund(transaction=tx, adapters=Adapters(), refund_id=refund.id)
    assert done.status == "failed" and done.attempts == 0


# --- Offline refunds of manual payments ----------------------------------------------------------


def test_a_manual_payment_is_refunded_offline_with_a_reference(
    engine: Engine, tx: Tx, settings: Settings
) -> None:
    payment = captured_payment(
        tx,
        amount_minor=120_000,
        provider="manual",
        method="bank_transfer",
        provider_reference="PD-REF-77",
    )
    error = refused(tx, payment, 1_000)
    assert error.field == "offline_reference" and "outside Paydesk" in error.message

    small = refunds.request_and_execute(
        transaction=tx,
        adapters=Adapters(),
        actor=FINANCE,
        payment_id=payment.id,
        amount_minor=1_000,
        currency="CHF",
        reason="overpaid",
        offline_reference="IBAN transfer 2025-03-01 #551",
    )
    assert (small.status, small.offline) == ("succeeded", True)
    assert small.offline_reference == "IBAN transfer 2025-03-01 #551"
    assert small.attempts == 0 and small.succeeded_at is not None

    large = request(tx, payment, 100_000, offline_reference="cash receipt 9")
    assert large.status == "pending_approval"
    state = payment_now(engine, payment.id)
    assert (state.refunded_minor, state.refund_pending_minor) == (1_000, 100_000)
    done = refunds.approve_and_execute(
        transaction=tx, adapters=Adapters(), actor=MANAGER, refund_id=large.id
    )
    assert (done.status, done.offline, done.decided_by) == ("succeeded", True, MANAGER.name)
    state = payment_now(engine, payment.id)
    assert (state.refunded_minor, state.refund_pending_minor) == (101_000, 0)
    assert "cash receipt 9" in timeline_of(engine, payment.id)[-1].summary
    assert audit_of(engine, large.id) == [
        ("refund.requested", FINANCE.name),
        ("refund.approved", MANAGER.name),
    ]


# --- Concurrency ---------------------------------------------------------------------------------


def run_in_threads(count: int, work: Callable[[int], Any]) -> list[Any]:
    barrier = threading.Barrier(count)
    results: list[Any] = [None] * count

    def run(index: int) -> None:
        barrier.wait()
        try:
            results[index] = work(index)
        except Exception as exc:  # collected and asserted on below
            results[index] = exc

    threads = [threading.Thread(target=run, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not any(thread.is_alive() for thread in threads)
    return results


def test_one_refund_executed_from_many_threads_is_sent_once(
    engine: Engine, tx: Tx, stripe_fake: StripeFake, stripe_settings: Settings
) -> None:
    payment = stripe_payment(tx, stripe_fake, 10_000)
    refund = request(tx, payment, 1_000)
    adapters = Adapters()
    results = run_in_threads(
        8,
        lambda _: refunds.execute_refund(transaction=tx, adapters=adapters, refund_id=refund.id),
    )
    assert all(isinstance(r, Refund) for r in results), results
    assert len(refund_posts(stripe_fake)) == 1
    assert refund_now(engine, refund.id).attempts == 1


def test_fifty_parallel_requests_never_refund_more_than_was_captured(
    engine: Engine, tx: Tx, stripe_fake: StripeFake, stripe_settings: Settings
) -> None:
    if engine.dialect.name == "sqlite":
        pytest.skip(
            "SQLite has one writer at a time (BEGIN IMMEDIATE), so requests cannot race there; "
            "the row locks that keep concurrent requests apart are PostgreSQL's"
        )
    captured, each, threads = 10_000, 300, 50
    payment = stripe_payment(tx, stripe_fake, captured)
    adapters = Adapters()

    def one(index: int) -> Refund:
        return refunds.request_and_execute(
            transaction=tx,
            adapters=adapters,
            actor=FINANCE,
            payment_id=payment.id,
            amount_minor=each,
            currency="CHF",
            reason=f"parallel {index}",
        )

    results = run_in_threads(threads, one)
    made = [r for r in results if isinstance(r, Refund)]
    errors = [r for r in results if not isinstance(r, Refund)]
    assert all(isinstance(e, refunds.RefundError) and e.field == "amount" for e in errors), errors
    assert len(made) == captured // each
    assert {r.status for r in made} == {"succeeded"}

    at_stripe = stripe_fake.refunds_for(payment.provider_reference or "")
    assert sum(r["amount"] for r in at_stripe) == len(made) * each <= captured
    keys = [p.headers["idempotency-key"] for p in refund_posts(stripe_fake)]
    assert sorted(keys) == sorted(r.idempotency_key for r in made)  # one call per refund
    assert {r["metadata"]["paydesk_refund_id"] for r in at_stripe} == {r.id for r in made}
    rows = refund_rows(engine, payment.id)
    assert len(rows) == len(made) and all(r.attempts == 1 for r in rows)
    state = payment_now(engine, payment.id)
    assert (state.refunded_minor, state.refund_pending_minor) == (len(made) * each, 0)
