"""PostFinance and M-Pesa webhooks are hints: processing reads the provider before acting.

The real SDK (PostFinance) and httpx (Daraja) talk to the fake servers over HTTP.
"""

from __future__ import annotations

import random
from datetime import timedelta
from typing import Any

import pytest
from factories import make_payment
from fakes.daraja import DarajaFake
from fakes.postfinance import PostFinanceFake
from fastapi.testclient import TestClient
from sqlalchemy.engine import Engine
from sqlmodel import Session, select
from webhook_support import inbox_rows, payment_state, process_until_quiet

from payments_core.config import get_settings
from payments_core.models import Payment, utcnow
from payments_core.providers import mpesa
from payments_core.providers.registry import WebhookFacts
from payments_core.services.processing import process_due


@pytest.fixture
def pf(
    client: TestClient, postfinance_fake: PostFinanceFake, monkeypatch: pytest.MonkeyPatch
) -> PostFinanceFake:
    monkeypatch.setenv("POSTFINANCE_API_BASE", postfinance_fake.base_url)
    monkeypatch.setenv("POSTFINANCE_SPACE_ID", str(postfinance_fake.space_id))
    monkeypatch.setenv("POSTFINANCE_USER_ID", str(postfinance_fake.user_id))
    monkeypatch.setenv("POSTFINANCE_AUTHENTICATION_KEY", postfinance_fake.authentication_key)
    get_settings.cache_clear()
    return postfinance_fake


def deliver_pf(
    client: TestClient, fake: PostFinanceFake, entity_id: int, state: str, **kw: Any
) -> None:
    body, headers = fake.signed_webhook(entity_id, state, **kw)
    assert client.post("/webhooks/postfinance", content=body, headers=headers).status_code == 200


def test_postfinance_fulfill_before_authorized_ends_succeeded(
    client: TestClient, pf: PostFinanceFake, engine: Engine
) -> None:
    tx = pf.create_transaction("49.90", "CHF", merchant_reference="order-42")
    tx_id = int(tx["id"])
    with Session(engine) as session, session.begin():
        make_payment(
            session,
            provider="postfinance",
            provider_reference=str(tx_id),
            amount_minor=4990,
            currency="CHF",
        )
    pf.set_transaction_state(tx_id, "AUTHORIZED")
    pf.set_transaction_state(tx_id, "FULFILL")
    # Deliveries in the wrong order, one twice: each one reads the transaction as it is now.
    for state in ("FULFILL", "AUTHORIZED", "PROCESSING", "FULFILL"):
        deliver_pf(client, pf, tx_id, state)
    process_until_quiet(engine)
    state = payment_state(engine, "postfinance", str(tx_id))
    assert (state.status, state.captured_minor, state.review_reason) == ("succeeded", 4990, None)
    assert len(pf.requests_to(f"/payment/transactions/{tx_id}", "GET")) == 4  # one per event


def test_postfinance_transaction_paydesk_never_saw_is_created_after_reading_it(
    client: TestClient, pf: PostFinanceFake, engine: Engine
) -> None:
    tx = pf.create_transaction("1500", "JPY", state="FULFILL", merchant_reference="pos-7")
    deliver_pf(client, pf, int(tx["id"]), "FULFILL")
    process_until_quiet(engine)
    with Session(engine) as session:
        payment = session.exec(select(Payment)).one()
        assert (payment.origin, payment.status, payment.amount_minor, payment.currency) == (
            "provider",
            "succeeded",
            1500,
            "JPY",
        )
        assert payment.host_reference == "pos-7"


def test_postfinance_decline_after_capture_is_flagged_do_not_fulfil(
    client: TestClient, pf: PostFinanceFake, engine: Engine
) -> None:
    tx = pf.create_transaction("20.00", "CHF", state="DECLINE")
    deliver_pf(client, pf, int(tx["id"]), "COMPLETED")
    deliver_pf(client, pf, int(tx["id"]), "DECLINE")
    process_until_quiet(engine)
    state = payment_state(engine, "postfinance", str(tx["id"]))
    assert (
        state.status == "declined"
        and state.review_reason
        and "do not fulfil" in state.review_reason
    )


def test_postfinance_read_failure_retries_then_succeeds(
    client: TestClient, pf: PostFinanceFake, engine: Engine
) -> None:
    tx = pf.create_transaction("10.00", "CHF", state="FULFILL")
    deliver_pf(client, pf, int(tx["id"]), "FULFILL")
    pf.fail_next("/payment/transactions", status=503, method="GET")
    now = utcnow()
    [outcome] = process_due(engine=engine, read_facts=WebhookFacts(), now=now).outcomes
    assert outcome.status == "failed" and "provider unavailable" in outcome.detail
    [row] = inbox_rows(engine)
    assert row.last_error and row.attempts == 1
    process_until_quiet(engine, start=now + timedelta(minutes=5))
    assert payment_state(engine, "postfinance", str(tx["id"])).status == "succeeded"


def test_postfinance_refund_entity_is_read_and_applied(
    client: TestClient, pf: PostFinanceFake, engine: Engine
) -> None:
    tx = pf.create_transaction("30.00", "CHF", state="FULFILL")
    tx_id = int(tx["id"])
    refund = pf.refunds_for(tx_id)  # none yet
    assert refund == []
    # A refund made in the PostFinance back office, through the API here.
    from postfinancecheckout.models.refund_create import RefundCreate
    from postfinancecheckout.models.refund_type import RefundType
    from postfinancecheckout.service.refunds_service import RefundsService

    created = RefundsService(pf.configuration()).post_payment_refunds(
        pf.space_id,
        RefundCreate(
            transaction=tx_id,
            amount=12.5,
            external_id="bo-1",
            type=RefundType.MERCHANT_INITIATED_ONLINE,
        ),
    )
    events = [(tx_id, "FULFILL", "Transaction"), (int(created.id), "SUCCESSFUL", "Refund")]
    random.Random(3).shuffle(events)
    for entity_id, state, entity in events:
        deliver_pf(client, pf, entity_id, state, entity=entity)
    process_until_quiet(engine)
    state = payment_state(engine, "postfinance", str(tx_id))
    assert (state.status, state.refunded_minor) == ("succeeded", 1250)
    assert state.refunds == frozenset({(str(created.id), 1250, "succeeded")})


# --- M-Pesa: token URL, and a success counts only once an STK Query confirms it -------------------


@pytest.fixture
def daraja(
    client: TestClient, daraja_fake: DarajaFake, monkeypatch: pytest.MonkeyPatch
) -> DarajaFake:
    monkeypatch.setenv("MPESA_API_BASE", daraja_fake.base_url)
    monkeypatch.setenv("MPESA_CONSUMER_KEY", daraja_fake.consumer_key)
    monkeypatch.setenv("MPESA_CONSUMER_SECRET", daraja_fake.consumer_secret)
    monkeypatch.setenv("MPESA_SHORTCODE", daraja_fake.shortcode)
    monkeypatch.setenv("MPESA_PASSKEY", daraja_fake.passkey)
    get_settings.cache_clear()
    return daraja_fake


def mpesa_payment(engine: Engine, checkout_request_id: str | None, amount_kes: int = 150) -> str:
    token = mpesa.new_callback_token()
    with Session(engine) as session, session.begin():
        make_payment(
            session,
            provider="mpesa",
            provider_reference=checkout_request_id,
            amount_minor=amount_kes * 100,
            currency="KES",
            method="mobile_money",
            callback_token_hash=mpesa.hash_callback_token(token),
        )
    return token


def test_mpesa_success_confirmed_by_stk_query(
    client: TestClient, daraja: DarajaFake, engine: Engine
) -> None:
    checkout = daraja.start_push()
    token = mpesa_payment(engine, checkout)
    daraja.answer(checkout, 0)
    body = daraja.callback_body(checkout)
    assert client.post(f"/webhooks/mpesa/{token}", content=body).status_code == 200
    process_until_quiet(engine)
    state = payment_state(engine, "mpesa", checkout)
    assert (state.status, state.captured_minor) == ("succeeded", 15000)
    assert len(daraja.requests_to("/mpesa/stkpushquery/v1/query", "POST")) == 1


def test_mpesa_forged_success_is_not_believed(
    client: TestClient, daraja: DarajaFake, engine: Engine
) -> None:
    """Someone who learnt the URL posts a success the customer never made: the query says no."""
    checkout = daraja.start_push()
    token = mpesa_payment(engine, checkout)
    daraja.answer(checkout, 1032)  # the customer actually cancelled
    forged = (
        b'{"Body":{"stkCallback":{"MerchantRequestID":"1","CheckoutRequestID":"'
        + checkout.encode()
        + b'","ResultCode":0,"ResultDesc":"ok","CallbackMetadata":{"Item":[{"Name":"Amount",'
        b'"Value":150},{"Name":"MpesaReceiptNumber","Value":"FAKE000000"}]}}}}'
    )
    assert client.post(f"/webhooks/mpesa/{token}", content=forged).status_code == 200
    process_until_quiet(engine)
    assert payment_state(engine, "mpesa", checkout).status == "canceled"


def test_mpesa_cancel_is_applied(client: TestClient, daraja: DarajaFake, engine: Engine) -> None:
    checkout = daraja.start_push()
    token = mpesa_payment(engine, checkout)
    daraja.answer(checkout, 1032)
    client.post(f"/webhooks/mpesa/{token}", content=daraja.callback_body(checkout))
    process_until_quiet(engine)
    state = payment_state(engine, "mpesa", checkout)
    assert state.status == "canceled" and state.failure_reason == "cancelled by customer"


def test_mpesa_callback_for_another_checkout_request_is_unmatched(
    client: TestClient, daraja: DarajaFake, engine: Engine
) -> None:
    ours, other = daraja.start_push(), daraja.start_push()
    token = mpesa_payment(engine, ours)
    daraja.answer(other, 0)
    client.post(f"/webhooks/mpesa/{token}", content=daraja.callback_body(other))
    [outcome] = process_until_quiet(engine)
    assert outcome.status == "unmatched" and other in outcome.detail
    assert payment_state(engine, "mpesa", ours).status == "pending"
