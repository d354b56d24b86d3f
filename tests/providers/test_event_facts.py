"""``event_facts``: a verified, stored webhook body -> our facts (Stripe, Paystack, dummy).

Pure functions, so every test builds a realistic body (dict -> JSON bytes) and checks the facts:
each event type the adapters act on, the wire-unit conversions (Stripe zero- and three-decimal
currencies and its ISK special case, Paystack hundredths), failed attempts, refunds and disputes,
ignored types, and bodies that must raise ``MalformedEvent`` or ``UnknownProviderState``.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest

from payments_core.money import InvalidAmountError, UnknownCurrencyError
from payments_core.providers import dummy, paystack
from payments_core.providers import stripe as stripe_provider
from payments_core.providers.base import (
    IGNORED_EVENT,
    DisputeFacts,
    EventFacts,
    MalformedEvent,
    PaymentFacts,
    RefundFacts,
    UnknownProviderState,
)
from payments_core.status import DisputeStatus, MappedStatus, PaymentStatus, RefundStatus

CREATED = 1767225600  # 2026-01-01T00:00:00Z
CREATED_AT = datetime(2026, 1, 1, tzinfo=UTC)


def payment_of(facts: EventFacts) -> PaymentFacts:
    assert facts.payment is not None
    return facts.payment


def status_of(facts: EventFacts) -> MappedStatus:
    status = payment_of(facts).status
    assert status is not None
    return status


# ================================================================================================
# Stripe
# ================================================================================================


def stripe_event(event_type: str, obj: dict[str, Any], *, livemode: bool = False) -> bytes:
    return json.dumps(
        {
            "id": "evt_1QexampleA",
            "object": "event",
            "type": event_type,
            "created": CREATED + 60,
            "livemode": livemode,
            "api_version": "2026-10-28.endive",
            "pending_webhooks": 1,
            "request": {"id": "req_abc", "idempotency_key": "pay_01:create:0"},
            "data": {"object": obj},
        }
    ).encode()


def payment_intent(**overrides: Any) -> dict[str, Any]:
    obj: dict[str, Any] = {
        "id": "pi_3Qexample",
        "object": "payment_intent",
        "status": "succeeded",
        "amount": 4990,
        "amount_received": 4990,
        "amount_capturable": 0,
        "currency": "chf",
        "created": CREATED,
        "livemode": False,
        "description": "Order 42",
        "receipt_email": "buyer@example.com",
        "latest_charge": "ch_3Qexample",
        "last_payment_error": None,
        "payment_method_types": ["card"],
        "metadata": {"paydesk_payment_id": "pay_01", "host_reference": "order-42"},
    }
    obj.update(overrides)
    return obj


def checkout_session(**overrides: Any) -> dict[str, Any]:
    obj: dict[str, Any] = {
        "id": "cs_test_a1b2",
        "object": "checkout.session",
        "mode": "payment",
        "status": "complete",
        "payment_status": "paid",
        "payment_intent": "pi_3Qexample",
        "client_reference_id": None,
        "amount_total": 4990,
        "currency": "chf",
        "created": CREATED,
        "livemode": False,
        "customer_email": None,
        "customer_details": {"email": "buyer@example.com", "name": "Ada Buyer", "phone": None},
        "payment_method_types": ["card"],
        "metadata": {"paydesk_payment_id": "pay_01"},
    }
    obj.update(overrides)
    return obj


def refund(**overrides: Any) -> dict[str, Any]:
    obj: dict[str, Any] = {
        "id": "re_3Qexample",
        "object": "refund",
        "amount": 1000,
        "currency": "chf",
        "status": "succeeded",
        "charge": "ch_3Qexample",
        "payment_intent": "pi_3Qexample",
        "reason": "requested_by_customer",
        "failure_reason": None,
        "metadata": {"paydesk_refund_id": "ref_01"},
        "created": CREATED + 3600,
    }
    obj.update(overrides)
    return obj


def charge(**overrides: Any) -> dict[str, Any]:
    obj: dict[str, Any] = {
        "id": "ch_3Qexample",
        "object": "charge",
        "status": "succeeded",
        "captured": True,
        "paid": True,
        "amount": 4990,
        "amount_captured": 4990,
        "amount_refunded": 0,
        "refunded": False,
        "currency": "chf",
        "payment_intent": "pi_3Qexample",
        "created": CREATED,
        "livemode": False,
        "description": "Order 42",
        "receipt_email": "receipt@example.com",
        "billing_details": {"email": "buyer@example.com", "name": "Ada Buyer", "phone": None},
        "failure_code": None,
        "failure_message": None,
        "payment_method_details": {"type": "card", "card": {"brand": "visa", "last4": "4242"}},
        "metadata": {},
    }
    obj.update(overrides)
    return obj


def dispute(**overrides: Any) -> dict[str, Any]:
    obj: dict[str, Any] = {
        "id": "du_1Qexample",
        "object": "dispute",
        "amount": 4990,
        "currency": "chf",
        "status": "needs_response",
        "reason": "fraudulent",
        "charge": "ch_3Qexample",
        "payment_intent": "pi_3Qexample",
        "evidence_details": {
            "due_by": 1768003200,  # 2026-01-10T00:00:00Z
            "has_evidence": False,
            "past_due": False,
            "submission_count": 0,
        },
        "livemode": False,
        "created": CREATED + 86400,
    }
    obj.update(overrides)
    return obj


# --- Amount units (section 1.12) ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("amount", "currency", "minor"),
    [
        (4990, "chf", 4990),  # two-decimal: cents
        (4990, "CHF", 4990),
        (1500, "jpy", 1500),  # zero-decimal, ISO has no minor unit either
        (5000, "ugx", 5000),
        (2500, "xof", 2500),
        (100, "mga", 10000),  # zero-decimal at Stripe, two decimals in ISO 4217
        (5120, "kwd", 5120),  # three-decimal: thousandths (last digit 0)
        (12340, "bhd", 12340),
        (50000, "isk", 500),  # special case: two decimals on the wire, none in ISO
        (0, "isk", 0),
        (123456, "huf", 123456),  # special case only for payouts
        (99900, "twd", 99900),
        (0, "usd", 0),
    ],
)
def test_amount_from_stripe(amount: int, currency: str, minor: int) -> None:
    assert stripe_provider.amount_from_stripe(amount, currency) == minor


def test_amount_from_stripe_never_rounds_isk() -> None:
    with pytest.raises(InvalidAmountError, match="whole number"):
        stripe_provider.amount_from_stripe(12345, "isk")


def test_amount_from_stripe_rejects_unknown_currency_and_non_int() -> None:
    with pytest.raises(UnknownCurrencyError):
        stripe_provider.amount_from_stripe(100, "xyz")
    with pytest.raises(TypeError):
        stripe_provider.amount_from_stripe(49.9, "chf")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        stripe_provider.amount_from_stripe(True, "chf")


# --- PaymentIntent ------------------------------------------------------------------------------


def test_payment_intent_succeeded_gives_complete_facts() -> None:
    facts = stripe_provider.event_facts(
        stripe_event("payment_intent.succeeded", payment_intent(), livemode=True)
    )

    assert facts.refunds == ()
    assert facts.disputes == ()
    assert facts.summary == "payment_intent.succeeded (succeeded)"
    assert facts.payment == PaymentFacts(
        reference="pi_3Qexample",
        status=MappedStatus(PaymentStatus.SUCCEEDED, "succeeded"),
        amount_minor=4990,
        currency="CHF",
        captured_minor=4990,
        payment_id="pay_01",
        complete=True,
        method="card",
        host_reference="order-42",
        customer_email="buyer@example.com",
        description="Order 42",
        livemode=True,
        created_at=CREATED_AT,
    )
    created_at = payment_of(facts).created_at
    assert created_at is not None
    assert created_at.utcoffset() is not None


@pytest.mark.parametrize(
    ("amount", "currency", "expected_minor", "expected_currency"),
    [(1500, "jpy", 1500, "JPY"), (5120, "kwd", 5120, "KWD"), (150000, "isk", 1500, "ISK")],
)
def test_payment_intent_amounts_in_our_minor_units(
    amount: int, currency: str, expected_minor: int, expected_currency: str
) -> None:
    body = payment_intent(amount=amount, amount_received=amount, currency=currency)
    payment = payment_of(
        stripe_provider.event_facts(stripe_event("payment_intent.succeeded", body))
    )

    assert payment.amount_minor == expected_minor
    assert payment.captured_minor == expected_minor
    assert payment.currency == expected_currency


@pytest.mark.parametrize(
    ("error", "reason"),
    [
        (
            {"code": "card_declined", "decline_code": "insufficient_funds", "message": "Declined"},
            "Declined",
        ),
        ({"code": "card_declined", "message": None}, "card_declined"),
        ({"type": "card_error"}, "payment attempt failed"),
    ],
)
def test_payment_intent_failed_attempt_stays_pending_with_reason(
    error: dict[str, Any], reason: str
) -> None:
    body = payment_intent(
        status="requires_payment_method", amount_received=0, last_payment_error=error
    )
    facts = stripe_provider.event_facts(stripe_event("payment_intent.payment_failed", body))

    assert status_of(facts) == MappedStatus(
        PaymentStatus.PENDING, "requires_payment_method", failure_reason=reason
    )
    assert payment_of(facts).captured_minor is None
    assert facts.summary == "payment_intent.payment_failed (requires_payment_method)"


@pytest.mark.parametrize(
    ("event_type", "status", "expected"),
    [
        ("payment_intent.created", "requires_payment_method", PaymentStatus.PENDING),
        ("payment_intent.requires_action", "requires_action", PaymentStatus.PENDING),
        ("payment_intent.processing", "processing", PaymentStatus.PROCESSING),
        ("payment_intent.amount_capturable_updated", "requires_capture", PaymentStatus.AUTHORIZED),
        ("payment_intent.canceled", "canceled", PaymentStatus.CANCELED),
    ],
)
def test_payment_intent_other_states_capture_nothing(
    event_type: str, status: str, expected: PaymentStatus
) -> None:
    body = payment_intent(status=status, amount_received=0)
    facts = stripe_provider.event_facts(stripe_event(event_type, body))

    assert status_of(facts).status is expected
    assert status_of(facts).failure_reason is None
    assert payment_of(facts).captured_minor is None
    assert payment_of(facts).complete


@pytest.mark.parametrize(
    ("types", "method"),
    [
        (["card"], "card"),
        (["sepa_debit"], "bank_debit"),
        (["customer_balance"], "bank_transfer"),
        (["twint", "card"], "twint"),
        (["a_very_long_future_stripe_payment_method_type"], "a_very_long_future_stripe_paym"),
        ([], None),
    ],
)
def test_payment_intent_method(types: list[str], method: str | None) -> None:
    body = payment_intent(payment_method_types=types)
    payment = payment_of(
        stripe_provider.event_facts(stripe_event("payment_intent.succeeded", body))
    )

    assert payment.method == method
    assert payment.method is None or len(payment.method) <= 30


def test_payment_intent_without_metadata_or_email() -> None:
    body = payment_intent(metadata={}, receipt_email=None, description=None)
    payment = payment_of(
        stripe_provider.event_facts(stripe_event("payment_intent.succeeded", body))
    )

    assert payment.payment_id is None
    assert payment.host_reference is None
    assert payment.customer_email is None
    assert payment.description is None


def test_payment_intent_unknown_status_raises() -> None:
    body = payment_intent(status="requires_magic")
    with pytest.raises(UnknownProviderState, match="requires_magic"):
        stripe_provider.event_facts(stripe_event("payment_intent.succeeded", body))


# --- Checkout Session ---------------------------------------------------------------------------


def test_checkout_completed_paid_refers_to_the_payment_intent() -> None:
    facts = stripe_provider.event_facts(
        stripe_event("checkout.session.completed", checkout_session())
    )
    payment = payment_of(facts)

    assert payment.reference == "pi_3Qexample"
    assert payment.alt_references == ("cs_test_a1b2",)
    assert payment.status == MappedStatus(PaymentStatus.SUCCEEDED, "complete/paid")
    assert payment.amount_minor == 4990
    assert payment.currency == "CHF"
    assert payment.captured_minor == 4990
    assert payment.payment_id == "pay_01"
    assert payment.customer_email == "buyer@example.com"
    assert payment.customer_name == "Ada Buyer"
    assert payment.complete
    assert payment.method == "card"
    assert payment.livemode is False
    assert payment.created_at == CREATED_AT
    assert facts.summary == "checkout.session.completed (complete/paid)"


def test_checkout_completed_before_the_payment_intent_exists() -> None:
    body = checkout_session(
        payment_intent=None,
        payment_status="unpaid",
        metadata={},
        client_reference_id="pay_02",
        customer_details=None,
        customer_email="early@example.com",
    )
    payment = payment_of(
        stripe_provider.event_facts(stripe_event("checkout.session.completed", body))
    )

    assert payment.reference == "cs_test_a1b2"
    assert payment.alt_references == ()
    assert payment.status == MappedStatus(PaymentStatus.PROCESSING, "complete/unpaid")
    assert payment.captured_minor is None
    assert payment.payment_id == "pay_02"  # client_reference_id when metadata has none
    assert payment.customer_email == "early@example.com"
    assert payment.customer_name is None


def test_checkout_metadata_payment_id_wins_over_client_reference_id() -> None:
    body = checkout_session(client_reference_id="pay_other")
    payment = payment_of(
        stripe_provider.event_facts(stripe_event("checkout.session.completed", body))
    )
    assert payment.payment_id == "pay_01"


def test_checkout_expanded_payment_intent() -> None:
    body = checkout_session(payment_intent={"id": "pi_expanded", "object": "payment_intent"})
    payment = payment_of(
        stripe_provider.event_facts(stripe_event("checkout.session.completed", body))
    )
    assert payment.reference == "pi_expanded"
    assert payment.alt_references == ("cs_test_a1b2",)


def test_checkout_async_payment_succeeded() -> None:
    body = checkout_session(payment_status="paid", amount_total=120000, currency="jpy")
    facts = stripe_provider.event_facts(
        stripe_event("checkout.session.async_payment_succeeded", body)
    )

    assert status_of(facts) == MappedStatus(PaymentStatus.SUCCEEDED, "async_payment_succeeded")
    assert payment_of(facts).amount_minor == 120000
    assert payment_of(facts).captured_minor == 120000
    assert payment_of(facts).currency == "JPY"


def test_checkout_async_payment_failed_is_a_failure_whatever_the_session_fields_say() -> None:
    body = checkout_session(payment_status="unpaid")
    facts = stripe_provider.event_facts(stripe_event("checkout.session.async_payment_failed", body))

    assert status_of(facts) == MappedStatus(
        PaymentStatus.FAILED, "async_payment_failed", failure_reason="delayed payment failed"
    )
    assert payment_of(facts).captured_minor is None
    assert facts.summary == "checkout.session.async_payment_failed (async_payment_failed)"


def test_checkout_expired() -> None:
    body = checkout_session(status="expired", payment_status="unpaid", payment_intent=None)
    facts = stripe_provider.event_facts(stripe_event("checkout.session.expired", body))

    assert status_of(facts) == MappedStatus(PaymentStatus.EXPIRED, "expired/unpaid")
    assert payment_of(facts).reference == "cs_test_a1b2"
    assert payment_of(facts).captured_minor is None


def test_checkout_setup_mode_is_ignored() -> None:
    body = checkout_session(mode="setup", amount_total=None, currency=None, payment_intent=None)
    assert stripe_provider.event_facts(stripe_event("checkout.session.completed", body)) is (
        IGNORED_EVENT
    )


def test_checkout_unknown_payment_status_raises() -> None:
    body = checkout_session(payment_status="partially_paid")
    with pytest.raises(UnknownProviderState):
        stripe_provider.event_facts(stripe_event("checkout.session.completed", body))


# --- Charge -------------------------------------------------------------------------------------


def test_charge_succeeded_captured() -> None:
    facts = stripe_provider.event_facts(stripe_event("charge.succeeded", charge()))
    payment = payment_of(facts)

    assert payment.reference == "pi_3Qexample"
    assert payment.status == MappedStatus(PaymentStatus.SUCCEEDED, "succeeded")
    assert payment.amount_minor == 4990
    assert payment.captured_minor == 4990
    assert payment.currency == "CHF"
    assert payment.complete
    assert payment.method == "card"
    assert payment.customer_email == "buyer@example.com"  # billing_details before receipt_email
    assert payment.customer_name == "Ada Buyer"
    assert facts.refunds == ()
    assert facts.summary == "charge.succeeded (succeeded)"


def test_charge_email_falls_back_to_receipt_email() -> None:
    body = charge(billing_details={"email": None, "name": None, "phone": None})
    payment = payment_of(stripe_provider.event_facts(stripe_event("charge.captured", body)))
    assert payment.customer_email == "receipt@example.com"


def test_charge_succeeded_uncaptured_is_authorized() -> None:
    body = charge(captured=False, amount_captured=0)
    payment = payment_of(stripe_provider.event_facts(stripe_event("charge.succeeded", body)))

    assert payment.status is not None
    assert payment.status.status is PaymentStatus.AUTHORIZED
    assert payment.captured_minor is None


def test_charge_pending_is_processing() -> None:
    body = charge(status="pending", captured=False, amount_captured=0)
    facts = stripe_provider.event_facts(stripe_event("charge.pending", body))
    assert status_of(facts) == MappedStatus(PaymentStatus.PROCESSING, "pending")


@pytest.mark.parametrize(
    ("message", "code", "reason"),
    [
        ("Your card has insufficient funds.", "card_declined", "Your card has insufficient funds."),
        (None, "expired_card", "expired_card"),
        (None, None, "payment attempt failed"),
    ],
)
def test_charge_failed_is_a_failed_attempt(
    message: str | None, code: str | None, reason: str
) -> None:
    body = charge(
        status="failed",
        captured=False,
        amount_captured=0,
        failure_message=message,
        failure_code=code,
    )
    facts = stripe_provider.event_facts(stripe_event("charge.failed", body))

    assert status_of(facts) == MappedStatus(PaymentStatus.PENDING, "failed", failure_reason=reason)
    assert payment_of(facts).captured_minor is None


def test_charge_refunded_lists_every_refund() -> None:
    body = charge(
        amount_refunded=3000,
        refunds={
            "object": "list",
            "has_more": False,
            "data": [
                refund(id="re_1", amount=1000, metadata={"paydesk_refund_id": "ref_01"}),
                refund(id="re_2", amount=2000, status="pending", metadata={}),
            ],
        },
    )
    facts = stripe_provider.event_facts(stripe_event("charge.refunded", body))

    assert status_of(facts).status is PaymentStatus.SUCCEEDED
    assert facts.refunds == (
        RefundFacts(
            provider_refund_id="re_1",
            amount_minor=1000,
            currency="CHF",
            status=RefundStatus.SUCCEEDED,
            refund_id="ref_01",
            reason="requested_by_customer",
        ),
        RefundFacts(
            provider_refund_id="re_2",
            amount_minor=2000,
            currency="CHF",
            status=RefundStatus.PROCESSING,
            reason="requested_by_customer",
        ),
    )
    assert facts.summary == "charge.refunded (succeeded, 2 refunds)"


def test_charge_updated_with_refunds_in_kwd() -> None:
    body = charge(
        amount=5120,
        amount_captured=5120,
        currency="kwd",
        refunds={"object": "list", "data": [refund(amount=1230, currency="kwd")]},
    )
    facts = stripe_provider.event_facts(stripe_event("charge.updated", body))

    assert payment_of(facts).amount_minor == 5120
    assert [(r.amount_minor, r.currency) for r in facts.refunds] == [(1230, "KWD")]


def test_charge_refunded_without_refund_list_has_no_refund_facts() -> None:
    body = charge(amount_refunded=4990, refunded=True)
    facts = stripe_provider.event_facts(stripe_event("charge.refunded", body))
    assert facts.refunds == ()
    assert facts.actionable


def test_charge_without_payment_intent_is_ignored() -> None:
    body = charge(payment_intent=None)
    assert stripe_provider.event_facts(stripe_event("charge.succeeded", body)) is IGNORED_EVENT


def test_charge_unknown_status_raises() -> None:
    with pytest.raises(UnknownProviderState, match="Charge status"):
        stripe_provider.event_facts(stripe_event("charge.updated", charge(status="reversed")))


# --- Refund -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("event_type", "status", "expected"),
    [
        ("refund.created", "pending", RefundStatus.PROCESSING),
        ("refund.updated", "succeeded", RefundStatus.SUCCEEDED),
        ("charge.refund.updated", "requires_action", RefundStatus.PROCESSING),
        ("refund.updated", "canceled", RefundStatus.CANCELED),
    ],
)
def test_refund_events_give_partial_payment_facts(
    event_type: str, status: str, expected: RefundStatus
) -> None:
    facts = stripe_provider.event_facts(stripe_event(event_type, refund(status=status)))

    assert facts.payment == PaymentFacts(reference="pi_3Qexample", livemode=False)
    assert not payment_of(facts).complete
    assert payment_of(facts).status is None
    assert facts.refunds == (
        RefundFacts(
            provider_refund_id="re_3Qexample",
            amount_minor=1000,
            currency="CHF",
            status=expected,
            refund_id="ref_01",
            reason="requested_by_customer",
        ),
    )
    assert facts.summary == f"{event_type} (re_3Qexample {expected})"


def test_refund_failed_keeps_the_failure_reason() -> None:
    body = refund(status="failed", failure_reason="expired_or_canceled_card", metadata={})
    facts = stripe_provider.event_facts(stripe_event("refund.failed", body))

    (refund_facts,) = facts.refunds
    assert refund_facts.status is RefundStatus.FAILED
    assert refund_facts.failure_reason == "expired_or_canceled_card"
    assert refund_facts.refund_id is None


def test_refund_in_jpy() -> None:
    facts = stripe_provider.event_facts(
        stripe_event("refund.created", refund(amount=500, currency="jpy"))
    )
    assert [(r.amount_minor, r.currency) for r in facts.refunds] == [(500, "JPY")]


def test_refund_without_payment_intent_is_ignored() -> None:
    body = refund(payment_intent=None)
    assert stripe_provider.event_facts(stripe_event("refund.created", body)) is IGNORED_EVENT


def test_refund_unknown_status_raises() -> None:
    with pytest.raises(UnknownProviderState):
        stripe_provider.event_facts(stripe_event("refund.updated", refund(status="reversed")))


# --- Dispute ------------------------------------------------------------------------------------


def test_dispute_created_with_evidence_due_date() -> None:
    facts = stripe_provider.event_facts(stripe_event("charge.dispute.created", dispute()))

    assert facts.payment == PaymentFacts(reference="pi_3Qexample", livemode=False)
    assert facts.disputes == (
        DisputeFacts(
            provider_dispute_id="du_1Qexample",
            amount_minor=4990,
            currency="CHF",
            status=DisputeStatus.NEEDS_RESPONSE,
            reason="fraudulent",
            evidence_due_at=datetime(2026, 1, 10, tzinfo=UTC),
        ),
    )
    assert facts.summary == "charge.dispute.created (du_1Qexample needs_response)"


@pytest.mark.parametrize("evidence", [{"due_by": 0, "has_evidence": False}, {"due_by": None}, None])
def test_dispute_without_a_response_deadline(evidence: dict[str, Any] | None) -> None:
    body = dispute(status="warning_needs_response", evidence_details=evidence)
    (dispute_facts,) = stripe_provider.event_facts(
        stripe_event("charge.dispute.created", body)
    ).disputes

    assert dispute_facts.evidence_due_at is None
    assert dispute_facts.status is DisputeStatus.NEEDS_RESPONSE


@pytest.mark.parametrize(
    ("event_type", "status", "expected"),
    [
        ("charge.dispute.updated", "under_review", DisputeStatus.UNDER_REVIEW),
        ("charge.dispute.funds_withdrawn", "needs_response", DisputeStatus.NEEDS_RESPONSE),
        ("charge.dispute.closed", "lost", DisputeStatus.LOST),
        ("charge.dispute.closed", "won", DisputeStatus.WON),
        ("charge.dispute.closed", "warning_closed", DisputeStatus.CLOSED),
    ],
)
def test_dispute_lifecycle(event_type: str, status: str, expected: DisputeStatus) -> None:
    facts = stripe_provider.event_facts(stripe_event(event_type, dispute(status=status)))
    assert [d.status for d in facts.disputes] == [expected]


def test_dispute_in_kwd() -> None:
    body = dispute(amount=5120, currency="kwd")
    (dispute_facts,) = stripe_provider.event_facts(
        stripe_event("charge.dispute.created", body)
    ).disputes
    assert (dispute_facts.amount_minor, dispute_facts.currency) == (5120, "KWD")


def test_dispute_without_payment_intent_is_ignored() -> None:
    body = dispute(payment_intent=None)
    assert stripe_provider.event_facts(stripe_event("charge.dispute.created", body)) is (
        IGNORED_EVENT
    )


# --- Ignored and malformed ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("event_type", "obj"),
    [
        ("customer.created", {"id": "cus_1", "object": "customer"}),
        ("invoice.paid", {"id": "in_1", "object": "invoice"}),
        ("charge.expired", charge(status="failed")),
        ("payout.paid", {"id": "po_1", "object": "payout", "amount": 1000}),
    ],
)
def test_stripe_other_event_types_are_ignored(event_type: str, obj: dict[str, Any]) -> None:
    facts = stripe_provider.event_facts(stripe_event(event_type, obj))
    assert facts is IGNORED_EVENT
    assert not facts.actionable


@pytest.mark.parametrize(
    "raw",
    [
        b"not json",
        b"\xff\xfe",
        b"[]",
        json.dumps({"type": "payment_intent.succeeded"}).encode(),  # no data
        json.dumps({"type": "payment_intent.succeeded", "data": {"object": []}}).encode(),
        json.dumps({"data": {"object": payment_intent()}}).encode(),  # no type
        json.dumps(
            {"type": "payment_intent.succeeded", "livemode": "yes", "data": {"object": {}}}
        ).encode(),
    ],
)
def test_stripe_malformed_envelope(raw: bytes) -> None:
    with pytest.raises(MalformedEvent):
        stripe_provider.event_facts(raw)


@pytest.mark.parametrize(
    ("event_type", "obj"),
    [
        ("payment_intent.succeeded", payment_intent(id=None)),
        ("payment_intent.succeeded", payment_intent(amount=49.90)),
        ("payment_intent.succeeded", payment_intent(amount="4990")),
        ("payment_intent.succeeded", payment_intent(amount=-1)),
        ("payment_intent.succeeded", payment_intent(amount=True)),
        ("payment_intent.succeeded", payment_intent(amount_received=None)),
        ("payment_intent.succeeded", payment_intent(currency="xyz")),
        ("payment_intent.succeeded", payment_intent(currency=None)),
        (
            "payment_intent.succeeded",
            payment_intent(currency="isk", amount=12345, amount_received=12345),
        ),
        ("payment_intent.succeeded", payment_intent(status=None)),
        ("payment_intent.succeeded", payment_intent(metadata=["pay_01"])),
        ("payment_intent.succeeded", payment_intent(metadata={"paydesk_payment_id": 7})),
        ("payment_intent.succeeded", payment_intent(created="2026-01-01")),
        ("payment_intent.succeeded", payment_intent(payment_method_types="card")),
        ("payment_intent.payment_failed", payment_intent(last_payment_error="declined")),
        ("checkout.session.completed", checkout_session(amount_total=None)),
        ("checkout.session.completed", checkout_session(id=None)),
        ("checkout.session.completed", checkout_session(payment_intent=42)),
        ("charge.succeeded", charge(captured=None)),
        ("charge.refunded", charge(refunds={"object": "list", "data": {"re_1": {}}})),
        ("charge.refunded", charge(refunds={"object": "list", "data": ["re_1"]})),
        ("refund.created", refund(id=None)),
        ("refund.created", refund(amount=None)),
        ("charge.dispute.created", dispute(evidence_details={"due_by": "soon"})),
        ("charge.dispute.created", dispute(status=None)),
    ],
)
def test_stripe_malformed_objects(event_type: str, obj: dict[str, Any]) -> None:
    with pytest.raises(MalformedEvent):
        stripe_provider.event_facts(stripe_event(event_type, obj))


def test_malformed_event_is_a_value_error() -> None:
    assert issubclass(MalformedEvent, ValueError)


# ================================================================================================
# Paystack (section 3.5)
# ================================================================================================


def paystack_event(event: str, data: dict[str, Any]) -> bytes:
    return json.dumps({"event": event, "data": data}).encode()


def paystack_charge(**overrides: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "id": 302961,
        "domain": "live",
        "status": "success",
        "reference": "ord-42-a1",
        "amount": 250000,
        "currency": "NGN",
        "channel": "card",
        "gateway_response": "Approved",
        "message": None,
        "ip_address": "198.51.100.7",
        "paid_at": "2026-01-05T10:15:00.000Z",
        "created_at": "2026-01-05T10:14:02.000Z",
        "metadata": {"paydesk_payment_id": "pay_01", "order_id": "42"},
        "fees": 3750,
        "customer": {
            "id": 68324,
            "first_name": "Ada",
            "last_name": "Obi",
            "email": "buyer@example.com",
            "customer_code": "CUS_xxx",
            "phone": "+2348012345678",
            "metadata": None,
        },
        "authorization": {"authorization_code": "AUTH_xxx", "last4": "4081", "brand": "visa"},
    }
    data.update(overrides)
    return data


def paystack_refund(**overrides: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "status": "processed",
        "transaction_reference": "ord-42-a1",
        "refund_reference": "RF123",
        "amount": "5000",
        "currency": "NGN",
        "processor": "mpgs_zen",
        "customer": {"email": "buyer@example.com"},
        "integration": 412829,
        "domain": "live",
    }
    data.update(overrides)
    return data


def paystack_dispute(**overrides: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "id": 358950,
        "refund_amount": 5800,
        "currency": "NGN",
        "status": "awaiting-merchant-feedback",
        "resolution": None,
        "domain": "live",
        "category": "chargeback",
        "dueAt": "2026-01-06T18:00:00.000Z",
        "transaction": {
            "id": 896467688,
            "reference": "ord-42-a1",
            "status": "success",
            "amount": 5800,
            "currency": "NGN",
        },
    }
    data.update(overrides)
    return data


@pytest.mark.parametrize(
    ("amount", "currency", "minor"),
    [
        (250000, "NGN", 250000),  # kobo
        (5000, "GHS", 5000),  # pesewas
        (10000, "ZAR", 10000),
        (10000, "KES", 10000),
        (2599, "USD", 2599),
        (250000, "XOF", 2500),  # hundredths on the wire, no minor unit in ISO 4217
        (0, "XOF", 0),
    ],
)
def test_amount_from_paystack(amount: int, currency: str, minor: int) -> None:
    assert paystack.amount_from_paystack(amount, currency) == minor


def test_amount_from_paystack_never_rounds() -> None:
    with pytest.raises(InvalidAmountError):
        paystack.amount_from_paystack(250050, "XOF")
    with pytest.raises(UnknownCurrencyError):
        paystack.amount_from_paystack(100, "NGX")
    with pytest.raises(TypeError):
        paystack.amount_from_paystack("100", "NGN")  # type: ignore[arg-type]


def test_paystack_charge_success_gives_complete_facts() -> None:
    facts = paystack.event_facts(paystack_event("charge.success", paystack_charge()))

    assert facts.payment == PaymentFacts(
        reference="ord-42-a1",
        status=MappedStatus(PaymentStatus.SUCCEEDED, "success"),
        amount_minor=250000,
        currency="NGN",
        captured_minor=250000,
        payment_id="pay_01",
        complete=True,
        method="card",
        customer_email="buyer@example.com",
        customer_phone="+2348012345678",
        customer_name="Ada Obi",
        livemode=True,
        created_at=datetime(2026, 1, 5, 10, 14, 2, tzinfo=UTC),
    )
    assert facts.refunds == ()
    assert facts.summary == "charge.success (success)"


def test_paystack_charge_created_at_falls_back_to_paid_at() -> None:
    data = paystack_charge(created_at=None)
    payment = payment_of(paystack.event_facts(paystack_event("charge.success", data)))
    assert payment.created_at == datetime(2026, 1, 5, 10, 15, tzinfo=UTC)


def test_paystack_charge_in_xof_and_test_domain() -> None:
    data = paystack_charge(amount=1500000, currency="XOF", domain="test")
    payment = payment_of(paystack.event_facts(paystack_event("charge.success", data)))

    assert (payment.amount_minor, payment.captured_minor, payment.currency) == (15000, 15000, "XOF")
    assert payment.livemode is False


@pytest.mark.parametrize(
    ("metadata", "payment_id"),
    [
        ({"paydesk_payment_id": "pay_01"}, "pay_01"),
        ('{"paydesk_payment_id": "pay_03"}', "pay_03"),  # stringified JSON
        ("", None),
        (0, None),
        ("order 42", None),
        ("{not json", None),
        ({"order_id": "42"}, None),
        (None, None),
    ],
)
def test_paystack_metadata_shapes(metadata: object, payment_id: str | None) -> None:
    data = paystack_charge(metadata=metadata)
    payment = payment_of(paystack.event_facts(paystack_event("charge.success", data)))
    assert payment.payment_id == payment_id


@pytest.mark.parametrize(
    ("channel", "method"),
    [
        ("card", "card"),
        ("bank", "bank_transfer"),
        ("bank_transfer", "bank_transfer"),
        ("mobile_money", "mobile_money"),
        ("ussd", "ussd"),
        ("qr", "qr"),
        ("apple_pay", "apple_pay"),
        (None, None),
    ],
)
def test_paystack_channel_to_method(channel: str | None, method: str | None) -> None:
    data = paystack_charge(channel=channel)
    assert payment_of(paystack.event_facts(paystack_event("charge.success", data))).method == method


def test_paystack_customer_without_name_or_phone() -> None:
    data = paystack_charge(
        customer={"id": 1, "first_name": None, "last_name": "", "email": "b@example.com"}
    )
    payment = payment_of(paystack.event_facts(paystack_event("charge.success", data)))
    assert payment.customer_name is None
    assert payment.customer_phone is None
    assert payment.customer_email == "b@example.com"


def test_paystack_charge_status_comes_from_the_data() -> None:
    data = paystack_charge(status="failed", gateway_response="Declined")
    facts = paystack.event_facts(paystack_event("charge.success", data))

    assert status_of(facts) == MappedStatus(
        PaymentStatus.FAILED, "failed", failure_reason="Declined"
    )
    assert payment_of(facts).captured_minor is None


@pytest.mark.parametrize(
    ("event", "overrides", "refund_id", "amount", "status"),
    [
        (
            "refund.pending",
            {"status": "pending", "refund_reference": None, "id": 1641, "amount": "5000"},
            "1641",
            5000,
            RefundStatus.PROCESSING,
        ),
        (
            "refund.processing",
            {"status": "processing", "refund_reference": None, "id": "1641"},
            "1641",
            5000,
            RefundStatus.PROCESSING,
        ),
        ("refund.processed", {}, "RF123", 5000, RefundStatus.SUCCEEDED),
        (
            "refund.failed",
            {"status": "failed", "amount": 5000},
            "RF123",
            5000,
            RefundStatus.FAILED,
        ),
        (
            "refund.needs-attention",
            {"status": "needs-attention", "amount": 7500},
            "RF123",
            7500,
            RefundStatus.NEEDS_ATTENTION,
        ),
    ],
)
def test_paystack_refund_events(
    event: str, overrides: dict[str, Any], refund_id: str, amount: int, status: RefundStatus
) -> None:
    facts = paystack.event_facts(paystack_event(event, paystack_refund(**overrides)))

    assert facts.payment == PaymentFacts(reference="ord-42-a1", livemode=True)
    assert facts.refunds == (
        RefundFacts(
            provider_refund_id=refund_id, amount_minor=amount, currency="NGN", status=status
        ),
    )
    assert facts.summary == f"{event} ({refund_id} {status})"


def test_paystack_refund_in_xof() -> None:
    data = paystack_refund(amount="500000", currency="XOF")
    (refund_facts,) = paystack.event_facts(paystack_event("refund.processed", data)).refunds
    assert (refund_facts.amount_minor, refund_facts.currency) == (5000, "XOF")


def test_paystack_dispute_create() -> None:
    facts = paystack.event_facts(paystack_event("charge.dispute.create", paystack_dispute()))

    assert facts.payment == PaymentFacts(reference="ord-42-a1", livemode=True)
    assert facts.disputes == (
        DisputeFacts(
            provider_dispute_id="358950",
            amount_minor=5800,
            currency="NGN",
            status=DisputeStatus.NEEDS_RESPONSE,
            reason="chargeback",
            evidence_due_at=datetime(2026, 1, 6, 18, 0, tzinfo=UTC),
        ),
    )
    assert facts.summary == "charge.dispute.create (358950 needs_response)"


@pytest.mark.parametrize(
    ("event", "status", "resolution", "expected"),
    [
        ("charge.dispute.remind", "awaiting-merchant-feedback", None, DisputeStatus.NEEDS_RESPONSE),
        ("charge.dispute.remind", "awaiting-bank-feedback", None, DisputeStatus.UNDER_REVIEW),
        ("charge.dispute.resolve", "resolved", "merchant-accepted", DisputeStatus.LOST),
        ("charge.dispute.resolve", "resolved", "auto-accepted", DisputeStatus.LOST),
        ("charge.dispute.resolve", "resolved", "declined", DisputeStatus.WON),
        ("charge.dispute.resolve", "resolved", None, DisputeStatus.CLOSED),
    ],
)
def test_paystack_dispute_lifecycle(
    event: str, status: str, resolution: str | None, expected: DisputeStatus
) -> None:
    data = paystack_dispute(status=status, resolution=resolution)
    facts = paystack.event_facts(paystack_event(event, data))
    assert [d.status for d in facts.disputes] == [expected]


def test_paystack_dispute_amount_and_currency_fall_back_to_the_transaction() -> None:
    data = paystack_dispute(refund_amount=None, currency=None, dueAt=None)
    (dispute_facts,) = paystack.event_facts(paystack_event("charge.dispute.create", data)).disputes

    assert (dispute_facts.amount_minor, dispute_facts.currency) == (5800, "NGN")
    assert dispute_facts.evidence_due_at is None


@pytest.mark.parametrize(
    "event",
    ["transfer.success", "subscription.create", "invoice.update", "paymentrequest.success"],
)
def test_paystack_other_events_are_ignored(event: str) -> None:
    assert paystack.event_facts(paystack_event(event, {"id": 1, "domain": "live"})) is (
        IGNORED_EVENT
    )


@pytest.mark.parametrize(
    "raw",
    [
        b"{",
        b'"charge.success"',
        json.dumps({"data": paystack_charge()}).encode(),
        json.dumps({"event": "charge.success", "data": "x"}).encode(),
        json.dumps({"event": "", "data": {}}).encode(),
    ],
)
def test_paystack_malformed_envelope(raw: bytes) -> None:
    with pytest.raises(MalformedEvent):
        paystack.event_facts(raw)


@pytest.mark.parametrize(
    ("event", "data"),
    [
        ("charge.success", paystack_charge(reference=None)),
        ("charge.success", paystack_charge(status=None)),
        ("charge.success", paystack_charge(amount=2500.5)),
        ("charge.success", paystack_charge(amount="25.00")),
        ("charge.success", paystack_charge(amount=-5)),
        ("charge.success", paystack_charge(currency="NAIRA")),
        ("charge.success", paystack_charge(currency=None)),
        ("charge.success", paystack_charge(amount=250050, currency="XOF")),
        ("charge.success", paystack_charge(paid_at="yesterday", created_at=None)),
        ("charge.success", paystack_charge(customer="buyer@example.com")),
        ("charge.success", paystack_charge(customer={"email": 7})),
        ("refund.processed", paystack_refund(transaction_reference=None)),
        ("refund.processed", paystack_refund(refund_reference=None)),  # no id either
        ("refund.processed", paystack_refund(amount="50.00")),
        ("charge.dispute.create", paystack_dispute(transaction=None)),
        ("charge.dispute.create", paystack_dispute(transaction={"id": 1, "amount": 5800})),
        ("charge.dispute.create", paystack_dispute(id=None)),
        ("charge.dispute.create", paystack_dispute(dueAt="06/01/2026 18:00")),
    ],
)
def test_paystack_malformed_data(event: str, data: dict[str, Any]) -> None:
    with pytest.raises(MalformedEvent):
        paystack.event_facts(paystack_event(event, data))


@pytest.mark.parametrize(
    ("event", "data"),
    [
        ("refund.processed", paystack_refund(status="reversed")),
        ("charge.dispute.create", paystack_dispute(status="escalated")),
    ],
)
def test_paystack_unknown_refund_or_dispute_status_raises(event: str, data: dict[str, Any]) -> None:
    with pytest.raises(UnknownProviderState):
        paystack.event_facts(paystack_event(event, data))


# ================================================================================================
# Dummy
# ================================================================================================


def dummy_event(event_type: str, **overrides: Any) -> bytes:
    body: dict[str, Any] = {
        "id": "dmy_evt_01",
        "type": event_type,
        "payment_id": "pay_01",
        "amount": 4990,
        "currency": "CHF",
        "livemode": False,
    }
    body.update(overrides)
    return json.dumps(body).encode()


def test_dummy_payment_succeeded() -> None:
    facts = dummy.event_facts(dummy_event("payment.succeeded"))

    assert facts.payment == PaymentFacts(
        reference="pay_01",
        payment_id="pay_01",
        status=MappedStatus(PaymentStatus.SUCCEEDED, "payment.succeeded"),
        amount_minor=4990,
        currency="CHF",
        captured_minor=4990,
        complete=False,
        livemode=False,
    )
    assert facts.summary == "payment.succeeded (pay_01)"


@pytest.mark.parametrize(
    ("reason", "expected"),
    [("card declined (simulated)", "card declined (simulated)"), (None, None)],
)
def test_dummy_payment_failed(reason: str | None, expected: str | None) -> None:
    facts = dummy.event_facts(dummy_event("payment.failed", failure_reason=reason))

    assert status_of(facts) == MappedStatus(
        PaymentStatus.FAILED, "payment.failed", failure_reason=expected
    )
    assert payment_of(facts).captured_minor is None
    assert not payment_of(facts).complete


@pytest.mark.parametrize(
    ("event_type", "expected"),
    [("payment.pending", PaymentStatus.PENDING), ("payment.canceled", PaymentStatus.CANCELED)],
)
def test_dummy_other_payment_events(event_type: str, expected: PaymentStatus) -> None:
    facts = dummy.event_facts(dummy_event(event_type, currency="jpy", amount=1500))

    assert status_of(facts).status is expected
    assert status_of(facts).failure_reason is None
    assert payment_of(facts).captured_minor is None
    assert (payment_of(facts).amount_minor, payment_of(facts).currency) == (1500, "JPY")


@pytest.mark.parametrize("event_type", ["refund.succeeded", "ping", "dispute.created"])
def test_dummy_non_payment_events_are_ignored(event_type: str) -> None:
    assert dummy.event_facts(dummy_event(event_type)) is IGNORED_EVENT


def test_dummy_unknown_payment_event_raises() -> None:
    with pytest.raises(UnknownProviderState):
        dummy.event_facts(dummy_event("payment.exploded"))


@pytest.mark.parametrize(
    "raw",
    [
        b"nope",
        b"[1]",
        dummy_event("payment.succeeded", type=None),
        dummy_event("payment.succeeded", payment_id=None),
        dummy_event("payment.succeeded", payment_id=""),
        dummy_event("payment.succeeded", amount=49.9),
        dummy_event("payment.succeeded", amount="4990"),
        dummy_event("payment.succeeded", amount=None),
        dummy_event("payment.succeeded", currency="francs"),
        dummy_event("payment.succeeded", currency=None),
        dummy_event("payment.succeeded", livemode="false"),
        dummy_event("payment.failed", failure_reason=["declined"]),
    ],
)
def test_dummy_malformed(raw: bytes) -> None:
    with pytest.raises(MalformedEvent):
        dummy.event_facts(raw)
