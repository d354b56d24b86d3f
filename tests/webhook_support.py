"""Helpers for webhook tests: signed deliveries through the real app, processing to quiescence,
and a comparable snapshot of what a payment ended up as."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from payments_core.models import Dispute, Payment, Refund, WebhookEvent, utcnow
from payments_core.providers import dummy, paystack
from payments_core.providers import stripe as stripe_provider
from payments_core.providers.registry import WebhookFacts
from payments_core.services.processing import DUE_STATUSES, Outcome, process_due

STRIPE_SECRET = "whsec_test_current"
PAYSTACK_SECRET = "sk_test_paystack_secret"
DUMMY_SECRET = "dummy-webhook-secret-for-tests"


# --- deliveries ----------------------------------------------------------------------------------


def post_stripe(client: TestClient, event: dict[str, Any]) -> Any:
    body = json.dumps(event).encode()
    header = stripe_provider.sign_payload(body, STRIPE_SECRET, int(time.time()))
    return client.post("/webhooks/stripe", content=body, headers={"Stripe-Signature": header})


def post_paystack(client: TestClient, event: dict[str, Any]) -> Any:
    body = json.dumps(event).encode()
    signature = paystack.sign_payload(body, PAYSTACK_SECRET)
    return client.post(
        "/webhooks/paystack", content=body, headers={"x-paystack-signature": signature}
    )


def post_dummy(client: TestClient, event: dict[str, Any]) -> Any:
    body = json.dumps(event).encode()
    signature = dummy.sign_payload(body, DUMMY_SECRET)
    return client.post("/webhooks/dummy", content=body, headers={"X-Dummy-Signature": signature})


# --- Stripe objects, shaped like the API's (only the fields processing reads, and a few more) ---


def stripe_event(
    event_id: str, kind: str, obj: dict[str, Any], created: int = 1767225600
) -> dict[str, Any]:
    return {
        "id": event_id,
        "object": "event",
        "api_version": "2025-03-31.basil",
        "type": kind,
        "livemode": False,
        "created": created,
        "pending_webhooks": 1,
        "request": {"id": None, "idempotency_key": None},
        "data": {"object": obj},
    }


def payment_intent(
    pi: str,
    status: str,
    *,
    amount: int = 4990,
    currency: str = "chf",
    received: int | None = None,
    metadata: dict[str, str] | None = None,
    error: str | None = None,
) -> dict[str, Any]:
    return {
        "id": pi,
        "object": "payment_intent",
        "amount": amount,
        "amount_received": received
        if received is not None
        else (amount if status == "succeeded" else 0),
        "currency": currency,
        "status": status,
        "created": 1767225000,
        "livemode": False,
        "metadata": metadata or {},
        "payment_method_types": ["card"],
        "receipt_email": "buyer@example.com",
        "description": "Order 42",
        "last_payment_error": None
        if error is None
        else {"code": "card_declined", "message": error, "type": "card_error"},
    }


def charge(
    pi: str,
    ch: str,
    *,
    amount: int = 4990,
    currency: str = "chf",
    refunded: int = 0,
    refunds: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    return {
        "id": ch,
        "object": "charge",
        "amount": amount,
        "amount_captured": amount,
        "amount_refunded": refunded,
        "captured": True,
        "currency": currency,
        "status": "succeeded",
        "paid": True,
        "refunded": refunded == amount,
        "payment_intent": pi,
        "created": 1767225050,
        "livemode": False,
        "metadata": {},
        "billing_details": {"email": "buyer@example.com", "name": "Ada Buyer", "phone": None},
        "receipt_email": "buyer@example.com",
        "failure_code": None,
        "failure_message": None,
        "refunds": {"object": "list", "data": refunds or [], "has_more": False},
    }


def refund(
    pi: str, re_id: str, status: str, *, amount: int = 1000, currency: str = "chf"
) -> dict[str, Any]:
    return {
        "id": re_id,
        "object": "refund",
        "amount": amount,
        "currency": currency,
        "status": status,
        "payment_intent": pi,
        "charge": "ch_" + pi[3:],
        "created": 1767226000,
        "metadata": {},
        "reason": "requested_by_customer",
        "failure_reason": "expired_or_canceled_card" if status == "failed" else None,
    }


def dispute(
    pi: str, dp_id: str, status: str, *, amount: int = 4990, currency: str = "chf"
) -> dict[str, Any]:
    return {
        "id": dp_id,
        "object": "dispute",
        "amount": amount,
        "currency": currency,
        "status": status,
        "reason": "fraudulent",
        "payment_intent": pi,
        "charge": "ch_" + pi[3:],
        "created": 1767227000,
        "livemode": False,
        "is_charge_refundable": False,
        "evidence_details": {
            "due_by": 1768000000,
            "has_evidence": False,
            "past_due": False,
            "submission_count": 0,
        },
    }


# --- processing ----------------------------------------------------------------------------------


def due_count(engine: Engine) -> int:
    with Session(engine) as session:
        return len(
            list(
                session.exec(
                    select(WebhookEvent.id).where(col(WebhookEvent.status).in_(DUE_STATUSES))
                )
            )
        )


def process_until_quiet(
    engine: Engine,
    reader: WebhookFacts | None = None,
    *,
    start: datetime | None = None,
    step: timedelta = timedelta(hours=2),
    max_rounds: int = 40,
) -> list[Outcome]:
    """Run worker rounds, moving the clock past every backoff, until nothing is due."""
    reader = reader or WebhookFacts()
    now = start or utcnow()
    outcomes: list[Outcome] = []
    for _ in range(max_rounds):
        if due_count(engine) == 0:
            return outcomes
        outcomes.extend(process_due(engine=engine, read_facts=reader, now=now).outcomes)
        now += step
    raise AssertionError(f"events still due after {max_rounds} rounds: {outcomes[-5:]}")


# --- what a payment ended up as -------------------------------------------------------------------


@dataclass(frozen=True)
class PaymentState:
    status: str
    amount_minor: int
    currency: str
    captured_minor: int
    refunded_minor: int
    refund_pending_minor: int
    disputed_minor: int
    review_reason: str | None
    failure_reason: str | None
    refunds: frozenset[tuple[str | None, int, str]]
    disputes: frozenset[tuple[str, int, str]]


def payment_state(engine: Engine, provider: str, reference: str) -> PaymentState:
    with Session(engine) as session:
        payment = session.exec(
            select(Payment).where(
                col(Payment.provider) == provider, col(Payment.provider_reference) == reference
            )
        ).one()
        refunds = session.exec(select(Refund).where(col(Refund.payment_id) == payment.id)).all()
        disputes = session.exec(select(Dispute).where(col(Dispute.payment_id) == payment.id)).all()
        return PaymentState(
            status=payment.status,
            amount_minor=payment.amount_minor,
            currency=payment.currency,
            captured_minor=payment.captured_minor,
            refunded_minor=payment.refunded_minor,
            refund_pending_minor=payment.refund_pending_minor,
            disputed_minor=payment.disputed_minor,
            review_reason=payment.review_reason,
            failure_reason=payment.failure_reason,
            refunds=frozenset((r.provider_refund_id, r.amount_minor, r.status) for r in refunds),
            disputes=frozenset((d.provider_dispute_id, d.amount_minor, d.status) for d in disputes),
        )


def inbox_rows(engine: Engine) -> Iterator[WebhookEvent]:
    with Session(engine) as session:
        yield from session.exec(select(WebhookEvent).order_by(col(WebhookEvent.id)))


# --- a real server -------------------------------------------------------------------------------


@contextmanager
def running_server() -> Iterator[str]:
    """The webhook server under uvicorn in a thread on a free loopback port; yields its base URL.

    Configure it through the environment (and ``get_settings.cache_clear()``) before entering.
    """
    import socket
    import threading

    import uvicorn

    from webhook_server.app import app

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    # Keep-alive longer than any test client's timeout: uvicorn closes a connection idle for
    # ``timeout_keep_alive`` and a client reusing it at that moment gets a reset (a POST is not
    # retried), which is an HTTP race, not what these tests are about.
    config = uvicorn.Config(
        app, host="127.0.0.1", port=port, log_level="warning", lifespan="on", timeout_keep_alive=60
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("webhook server did not start")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(20)


def wait_until_quiet(engine: Engine, timeout: float = 120.0) -> None:
    """Wait for running workers to leave nothing due (pending, failed or deferred)."""
    deadline = time.monotonic() + timeout
    while due_count(engine) > 0:
        if time.monotonic() > deadline:
            raise AssertionError(f"{due_count(engine)} events still due after {timeout} s")
        time.sleep(0.1)
