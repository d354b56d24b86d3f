"""Starting checkouts through the real adapters (fakes over HTTP) and reconciling open payments,
on SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from fakes.paystack import PaystackFake
from sqlalchemy import Engine
from sqlmodel import Session, col, select

from payments_core.config import Settings, get_settings
from payments_core.db import transaction
from payments_core.models import AuditEntry, Payment, utcnow
from payments_core.providers.base import ProviderOutcomeUnknown
from payments_core.providers.registry import Adapters
from payments_core.services import checkout
from payments_core.services.reconcile import reconcile


@pytest.fixture
def paystack_settings(
    db_url: str, paystack_fake: PaystackFake, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Settings]:
    monkeypatch.setenv("DATABASE_URL", db_url)
    monkeypatch.setenv("PAYSTACK_SECRET_KEY", paystack_fake.secret_key)
    monkeypatch.setenv("PAYSTACK_API_BASE", paystack_fake.base_url)
    monkeypatch.setenv("PROVIDER_TIMEOUT_SECONDS", "0.5")
    monkeypatch.setenv("PROVIDER_MAX_RETRIES", "0")
    get_settings.cache_clear()
    yield get_settings()
    get_settings.cache_clear()


def new_payment(**overrides: Any) -> checkout.NewPayment:
    values: dict[str, Any] = {
        "provider": "paystack",
        "amount_minor": 250_000,
        "currency": "NGN",
        "customer_email": "Buyer@Example.com",
        "host_reference": "order-9",
        "description": "Lagos order",
    }
    return checkout.NewPayment(**(values | overrides))


def initialize_calls(fake: PaystackFake) -> int:
    return sum(1 for r in fake.requests if r.path.startswith("/transaction/initialize"))


def test_checkout_is_started_with_the_stored_key(
    engine: Engine, paystack_fake: PaystackFake, paystack_settings: Settings
) -> None:
    outcome = checkout.create_payment(
        transaction=transaction, adapters=Adapters(), new=new_payment(), actor="api:shop"
    )
    assert outcome.error is None
    payment = outcome.payment
    assert payment.status == "pending"
    assert payment.checkout_url and payment.checkout_url.startswith("http")
    assert payment.provider_reference == payment.checkout_idempotency_key
    sent = next(r for r in paystack_fake.requests if r.path.startswith("/transaction/initialize"))
    assert sent.json()["reference"] == payment.checkout_idempotency_key
    assert sent.json()["amount"] in (250_000, "250000")
    assert sent.json()["email"] == "buyer@example.com"


def test_an_unknown_outcome_keeps_the_payment_and_a_retry_makes_no_second_transaction(
    engine: Engine, paystack_fake: PaystackFake, paystack_settings: Settings
) -> None:
    paystack_fake.delay_next("/transaction/initialize", 2.0)
    outcome = checkout.create_payment(
        transaction=transaction, adapters=Adapters(), new=new_payment(), actor="api:shop"
    )
    assert isinstance(outcome.error, ProviderOutcomeUnknown)
    assert outcome.payment.status == "created"
    assert outcome.payment.checkout_error
    with Session(engine) as session:
        actions = session.exec(
            select(AuditEntry.action).where(col(AuditEntry.entity_id) == outcome.payment.id)
        ).all()
    assert "payment.checkout_failed" in actions
    # The provider did create it; the retry sends the same reference.
    retried = checkout.retry_checkout(
        transaction=transaction, adapters=Adapters(), payment=outcome.payment, actor="api:shop"
    )
    assert len(paystack_fake.transactions) == 1
    assert initialize_calls(paystack_fake) == 2
    assert retried.payment.provider_reference == outcome.payment.checkout_idempotency_key
    # Paystack does not hand out the lost payment page again: said on the payment, not hidden.
    assert retried.error is None
    assert retried.payment.status == "pending"
    assert retried.payment.checkout_url is None
    assert retried.payment.checkout_error is not None
    assert "did not give its payment page again" in retried.payment.checkout_error


def test_reconciliation_advances_open_payments_and_explains_disagreements(
    engine: Engine, paystack_fake: PaystackFake, paystack_settings: Settings
) -> None:
    adapters = Adapters()
    paid = checkout.create_payment(
        transaction=transaction, adapters=adapters, new=new_payment(), actor="api:shop"
    ).payment
    abandoned = checkout.create_payment(
        transaction=transaction,
        adapters=adapters,
        new=new_payment(host_reference="order-10"),
        actor="api:shop",
    ).payment
    fresh = checkout.create_payment(
        transaction=transaction,
        adapters=adapters,
        new=new_payment(host_reference="order-11"),
        actor="api:shop",
    ).payment
    assert paid.provider_reference and abandoned.provider_reference
    paystack_fake.set_status(paid.provider_reference, "success")
    paystack_fake.set_status(abandoned.provider_reference, "failed", "Declined by bank")
    # A payment the provider has forgotten about.
    with transaction() as session:
        lost = session.get(Payment, fresh.id)
        assert lost is not None
        lost.provider_reference = "ref-nobody-knows"
        session.add(lost)
    later = utcnow() + timedelta(minutes=20)

    # Nothing is due before its provider's expected time.
    early = reconcile(transaction=transaction, adapters=adapters, now=utcnow())
    assert early.lines == []

    report = reconcile(transaction=transaction, adapters=adapters, now=later)
    by_id = {line.payment_id: line for line in report.lines}
    assert set(by_id) == {paid.id, abandoned.id, fresh.id}
    assert (by_id[paid.id].before, by_id[paid.id].after) == ("pending", "succeeded"), (
        report.render()
    )
    assert by_id[abandoned.id].after == "failed"
    assert by_id[fresh.id].disagreement and "ref-nobody-knows" in by_id[fresh.id].disagreement
    text = report.render()
    assert "2 changed" in text and "1 disagree" in text
    with Session(engine) as session:
        stored = session.get(Payment, paid.id)
        assert stored is not None
        assert stored.status == "succeeded" and stored.captured_minor == 250_000
        assert stored.reconciled_at is not None
    # Run again: nothing open is left but the unknown one, which stays explained.
    again = reconcile(transaction=transaction, adapters=adapters, now=later)
    assert [line.payment_id for line in again.lines] == [fresh.id]


def test_the_worker_reconciles_periodically(
    engine: Engine,
    paystack_fake: PaystackFake,
    paystack_settings: Settings,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import threading
    import time

    from webhook_server.worker import run_worker

    monkeypatch.setenv("RECONCILE_INTERVAL_SECONDS", "1")
    monkeypatch.setenv("RECONCILE_AFTER_SECONDS", "1")
    get_settings.cache_clear()
    payment = checkout.create_payment(
        transaction=transaction, adapters=Adapters(), new=new_payment(), actor="api:shop"
    ).payment
    assert payment.provider_reference
    paystack_fake.set_status(payment.provider_reference, "success")
    stop = threading.Event()
    worker = threading.Thread(target=run_worker, args=(stop,), daemon=True)
    worker.start()
    try:
        deadline = time.monotonic() + 20
        status = "pending"
        while status != "succeeded" and time.monotonic() < deadline:
            time.sleep(0.2)
            with Session(engine) as session:
                status = session.get(Payment, payment.id).status  # type: ignore[union-attr]
    finally:
        stop.set()
        worker.join(10)
    assert status == "succeeded"
