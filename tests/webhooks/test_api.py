"""The host-application API on the real app (TestClient), SQLite and PostgreSQL."""

from __future__ import annotations

import io
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, func
from sqlmodel import Session, col, select

from payments_core.db import transaction
from payments_core.models import AuditEntry, IdempotencyRecord, ManualProof, Payment, PaymentEvent
from payments_core.services.apikeys import create_api_key, hash_key
from payments_core.services.checkout import checkout_key

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 64
PDF = b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n1 0 obj\n<<>>\nendobj\n"


@pytest.fixture
def api_key(client: TestClient) -> str:
    with transaction() as session:
        _, key = create_api_key(session=session, name="shop", actor="test")
    return key


def auth(key: str, **headers: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}", **headers}


def dummy_body(**overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "provider": "dummy",
        "amount": 4990,
        "currency": "CHF",
        "host_reference": "order-1001",
        "description": "Two tickets",
        "customer": {"email": "ada@example.com", "name": "Ada"},
        "line_items": [
            {"name": "Ticket", "quantity": 2, "unit_amount": 2500},
            {"name": "Voucher", "quantity": 1, "unit_amount": 100, "kind": "discount"},
            {"name": "Booking fee", "quantity": 1, "unit_amount": 90, "kind": "fee"},
        ],
        "metadata": {"cart": "c-77"},
    }
    return body | overrides


def count(engine: Engine, model: Any) -> int:
    with Session(engine) as session:
        return int(session.exec(select(func.count()).select_from(model)).one())


def test_requests_without_a_valid_key_are_refused(client: TestClient, api_key: str) -> None:
    assert client.post("/api/v1/payments", json=dummy_body()).status_code == 401
    answer = client.post("/api/v1/payments", json=dummy_body(), headers=auth("pdk_nope_nope"))
    assert answer.status_code == 401
    assert answer.headers["www-authenticate"] == "Bearer"
    assert (
        client.get("/api/v1/payments/pay_x", headers={"Authorization": "Basic x"}).status_code
        == 401
    )


def test_only_the_hash_of_a_key_is_stored(client: TestClient, api_key: str, engine: Engine) -> None:
    with Session(engine) as session:
        from payments_core.models import ApiKey

        row = session.exec(select(ApiKey)).one()
    assert row.key_hash == hash_key(api_key)
    assert api_key not in (row.key_hash, row.prefix, row.name)


def test_a_dummy_payment_is_created_with_its_simulate_checkout(
    client: TestClient, api_key: str, engine: Engine
) -> None:
    answer = client.post("/api/v1/payments", json=dummy_body(), headers=auth(api_key))
    assert answer.status_code == 201, answer.text
    body = answer.json()
    assert body["status"] == "pending"
    assert body["amount"] == 4990 and body["currency"] == "CHF"
    assert body["checkout_url"] == f"http://127.0.0.1:8000/simulate/{body['id']}"
    read = client.get(f"/api/v1/payments/{body['id']}", headers=auth(api_key))
    assert read.status_code == 200
    assert read.json()["status"] == "pending" and read.json()["refunds"] == []
    with Session(engine) as session:
        payment = session.get(Payment, body["id"])
        assert payment is not None
        assert payment.origin == "api" and payment.host_reference == "order-1001"
        assert payment.checkout_idempotency_key == checkout_key(payment.id)
        assert [item["kind"] for item in payment.line_items] == ["product", "discount", "fee"]
        actions = session.exec(
            select(AuditEntry.action).where(col(AuditEntry.entity_id) == payment.id)
        ).all()
        kinds = session.exec(
            select(PaymentEvent.kind).where(col(PaymentEvent.payment_id) == payment.id)
        ).all()
    assert {"payment.created", "payment.checkout_started", "payment.status_changed"} <= set(actions)
    assert {"created", "checkout", "status"} <= set(kinds)


def test_same_idempotency_key_and_body_returns_the_stored_answer(
    client: TestClient, api_key: str, engine: Engine
) -> None:
    headers = auth(api_key, **{"Idempotency-Key": "order-1001-try"})
    first = client.post("/api/v1/payments", json=dummy_body(), headers=headers)
    # Same meaning, other spacing and key order: the same request.
    second = client.post(
        "/api/v1/payments",
        content=__import__("json").dumps(dict(reversed(list(dummy_body().items())))),
        headers=headers | {"Content-Type": "application/json"},
    )
    assert first.status_code == second.status_code == 201
    assert second.json() == first.json()
    assert second.headers["idempotent-replayed"] == "true"
    assert count(engine, Payment) == 1
    changed = client.post(
        "/api/v1/payments", json=dummy_body(amount=5000, line_items=[]), headers=headers
    )
    assert changed.status_code == 409
    assert "different request body" in changed.json()["detail"]
    assert count(engine, Payment) == 1
    # Another key is another payment.
    other = client.post(
        "/api/v1/payments", json=dummy_body(), headers=auth(api_key, **{"Idempotency-Key": "k2"})
    )
    assert other.status_code == 201 and other.json()["id"] != first.json()["id"]
    assert count(engine, IdempotencyRecord) == 2


def test_validation_errors_name_each_field(client: TestClient, api_key: str) -> None:
    answer = client.post(
        "/api/v1/payments",
        json={"provider": "paypal", "amount": 49.9, "currency": "swiss", "surprise": 1},
        headers=auth(api_key),
    )
    assert answer.status_code == 422
    fields = {tuple(error["loc"]) for error in answer.json()["detail"]}
    assert {
        ("body", "provider"),
        ("body", "amount"),
        ("body", "currency"),
        ("body", "surprise"),
    } <= fields
    for error in answer.json()["detail"]:
        assert error["msg"]
    # Rules beyond the shape come from the service, in the same format.
    answer = client.post(
        "/api/v1/payments",
        json=dummy_body(amount=5000, currency="XYZ"),
        headers=auth(api_key),
    )
    assert answer.status_code == 422
    fields = {tuple(error["loc"]): error["msg"] for error in answer.json()["detail"]}
    assert ("body", "currency") in fields
    answer = client.post("/api/v1/payments", json=dummy_body(amount=5000), headers=auth(api_key))
    assert answer.status_code == 422
    assert "add up to 4990" in answer.json()["detail"][0]["msg"]


def test_provider_specific_requirements_are_checked_before_anything_is_stored(
    client: TestClient, api_key: str, engine: Engine
) -> None:
    answer = client.post(
        "/api/v1/payments",
        json={"provider": "mpesa", "amount": 10000, "currency": "KES"},
        headers=auth(api_key),
    )
    assert answer.status_code == 422
    assert answer.json()["detail"][0]["loc"] == ["body", "customer", "phone"]
    answer = client.post(
        "/api/v1/payments",
        json={"provider": "paystack", "amount": 10000, "currency": "NGN"},
        headers=auth(api_key),
    )
    assert answer.status_code == 422
    assert answer.json()["detail"][0]["loc"] == ["body", "customer", "email"]
    assert count(engine, Payment) == 0


def test_an_unconfigured_provider_answers_503_and_keeps_the_payment(
    client: TestClient, api_key: str, engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    answer = client.post(
        "/api/v1/payments",
        json={"provider": "stripe", "amount": 1000, "currency": "EUR"},
        headers=auth(api_key),
    )
    assert answer.status_code == 503
    body = answer.json()
    assert body["error"] == "provider_not_configured"
    assert body["payment"]["status"] == "created"
    assert "STRIPE_API_KEY" in body["payment"]["checkout_error"]


def test_a_manual_payment_gets_instructions_and_takes_proofs(
    client: TestClient, api_key: str, engine: Engine
) -> None:
    created = client.post(
        "/api/v1/payments",
        json={"provider": "manual", "amount": 12050, "currency": "CHF", "method": "bank_transfer"},
        headers=auth(api_key),
    )
    assert created.status_code == 201, created.text
    payment = created.json()
    assert payment["status"] == "pending"
    instructions = payment["instructions"]
    assert instructions["reference"] == payment["id"]
    assert instructions["amount"] == "120.50 CHF"
    assert instructions["iban"]

    url = f"/api/v1/payments/{payment['id']}/proofs"
    form = {"reference": "BANK-REF-1", "amount": "12050", "paid_on": "2026-11-20"}
    proof = client.post(
        url,
        data=form,
        files={"file": ("receipt.png", io.BytesIO(PNG), "image/png")},
        headers=auth(api_key),
    )
    assert proof.status_code == 201, proof.text
    assert proof.json()["content_type"] == "image/png"
    assert proof.json()["status"] == "pending_review"
    assert proof.json()["duplicate_of_payment_id"] is None

    # Named like a picture, but it is text: refused by content.
    fake = client.post(
        url,
        data=form,
        files={"file": ("receipt.png", io.BytesIO(b"hello"), "image/png")},
        headers=auth(api_key),
    )
    assert fake.status_code == 422
    assert fake.json()["detail"][0]["loc"] == ["body", "file"]

    # The same bank reference and amount on another payment: flagged with the first payment.
    other = client.post(
        "/api/v1/payments",
        json={"provider": "manual", "amount": 12050, "currency": "CHF"},
        headers=auth(api_key),
    ).json()
    duplicate = client.post(
        f"/api/v1/payments/{other['id']}/proofs",
        data=form,
        files={"file": ("statement.pdf", io.BytesIO(PDF), "application/pdf")},
        headers=auth(api_key),
    )
    assert duplicate.status_code == 201
    assert duplicate.json()["duplicate_of_payment_id"] == payment["id"]
    with Session(engine) as session:
        stored = session.exec(select(ManualProof).order_by(col(ManualProof.created_at))).all()
    assert [p.content_type for p in stored] == ["image/png", "application/pdf"]


def test_proofs_only_for_manual_payments_and_within_the_size_limit(
    client: TestClient, api_key: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from payments_core.config import get_settings

    dummy = client.post("/api/v1/payments", json=dummy_body(), headers=auth(api_key)).json()
    form = {"reference": "R", "amount": "4990"}
    refused = client.post(
        f"/api/v1/payments/{dummy['id']}/proofs",
        data=form,
        files={"file": ("p.png", io.BytesIO(PNG), "image/png")},
        headers=auth(api_key),
    )
    assert refused.status_code == 422
    assert "not a manual one" in refused.json()["detail"][0]["msg"]
    assert (
        client.post(
            "/api/v1/payments/pay_missing/proofs",
            data=form,
            files={"file": ("p.png", io.BytesIO(PNG), "image/png")},
            headers=auth(api_key),
        ).status_code
        == 404
    )

    monkeypatch.setenv("PROOF_MAX_BYTES", "2048")
    get_settings.cache_clear()
    manual = client.post(
        "/api/v1/payments",
        json={"provider": "manual", "amount": 100, "currency": "CHF"},
        headers=auth(api_key),
    ).json()
    big = client.post(
        f"/api/v1/payments/{manual['id']}/proofs",
        data=form,
        files={"file": ("p.png", io.BytesIO(PNG + b"\x00" * 4096), "image/png")},
        headers=auth(api_key),
    )
    assert big.status_code == 422
    assert "larger than 2,048 bytes" in big.json()["detail"][0]["msg"]


def test_openapi_documents_the_api(client: TestClient) -> None:
    assert client.get("/docs").status_code == 200
    spec = client.get("/openapi.json").json()
    assert {
        "/api/v1/payments",
        "/api/v1/payments/{payment_id}",
        "/api/v1/payments/{payment_id}/proofs",
    } <= set(spec["paths"])
    assert not any(
        path.startswith("/webhooks") or path.startswith("/simulate") for path in spec["paths"]
    )


def test_an_mpesa_payment_gets_its_own_callback_url_and_is_confirmed_by_query(
    client: TestClient,
    api_key: str,
    engine: Engine,
    daraja_fake: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """API -> STK push carrying the per-payment callback URL -> Daraja's callback at that URL ->
    inbox -> worker confirms with an STK Query -> succeeded."""
    from webhook_support import process_until_quiet

    from payments_core.config import get_settings
    from payments_core.providers.registry import WebhookFacts

    for name, value in {
        "MPESA_CONSUMER_KEY": daraja_fake.consumer_key,
        "MPESA_CONSUMER_SECRET": daraja_fake.consumer_secret,
        "MPESA_PASSKEY": daraja_fake.passkey,
        "MPESA_SHORTCODE": daraja_fake.shortcode,
        "MPESA_API_BASE": daraja_fake.base_url,
        "PUBLIC_BASE_URL": "https://pay.example.com",
    }.items():
        monkeypatch.setenv(name, value)
    get_settings.cache_clear()
    created = client.post(
        "/api/v1/payments",
        json={
            "provider": "mpesa",
            "amount": 150_000,
            "currency": "KES",
            "customer": {"phone": "0712 345 678"},
            "host_reference": "inv-5",
        },
        headers=auth(api_key),
    )
    assert created.status_code == 201, created.text
    payment = created.json()
    assert payment["status"] == "pending"
    push = daraja_fake.push(payment["provider_reference"])
    assert push.amount == 1500 and push.phone_number == "254712345678"
    prefix = "https://pay.example.com/webhooks/mpesa/"
    assert push.callback_url.startswith(prefix)
    token = push.callback_url.removeprefix(prefix)
    with Session(engine) as session:
        stored = session.get(Payment, payment["id"])
        assert stored is not None
        assert stored.callback_token_hash and token not in stored.callback_token_hash

    daraja_fake.answer(payment["provider_reference"], 0)
    delivered = client.post(
        f"/webhooks/mpesa/{token}",
        content=daraja_fake.callback_body(payment["provider_reference"]),
        headers={"Content-Type": "application/json"},
    )
    assert delivered.status_code == 200, delivered.text
    assert (
        client.post(
            "/webhooks/mpesa/not-the-token",
            content=daraja_fake.callback_body(payment["provider_reference"]),
        ).status_code
        == 404
    )
    process_until_quiet(engine, WebhookFacts())
    read = client.get(f"/api/v1/payments/{payment['id']}", headers=auth(api_key)).json()
    assert read["status"] == "succeeded" and read["captured"] == 150_000
