"""StripeAdapter: the real ``stripe`` SDK against the fake Stripe server over HTTP.

Covers: the Checkout Session request as it reaches Stripe (form fields, wire amounts, metadata,
Idempotency-Key), discount lines, card declines, refunds (success, over-refund, idempotent
retries after a timeout or an unreadable answer: never a double refund), the SDK's own retries
on 5xx, persistent failures as ProviderUnavailable / ProviderOutcomeUnknown, credentials,
zero- and three-decimal currencies, reading payments back (``pi_`` and ``cs_``) in agreement with
webhook facts, dispute evidence / acceptance, and evidence file uploads (multipart to the
``files`` base address, file ids in the file evidence fields, upload errors).
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from datetime import datetime
from typing import Any

import pytest
from fakes.stripe import StripeFake, form_of, parts_of
from pydantic import SecretStr

from payments_core.config import Settings
from payments_core.providers import stripe as stripe_provider
from payments_core.providers.base import (
    CheckoutRequest,
    CheckoutResult,
    LineItem,
    LineItemKind,
    PaymentFacts,
    ProviderAuthError,
    ProviderDeclined,
    ProviderEntityNotFound,
    ProviderError,
    ProviderNotConfigured,
    ProviderOutcomeUnknown,
    ProviderUnavailable,
    RefundRequest,
)
from payments_core.providers.stripe import StripeAdapter, amount_to_stripe
from payments_core.status import DisputeStatus, MappedStatus, PaymentStatus, RefundStatus

PAYMENT_ID = "pay_01JTESTSTRIPE"
SESSIONS = "/v1/checkout/sessions"
REFUNDS = "/v1/refunds"
FILES = "/v1/files"
PDF = b"%PDF-1.7\n1 0 obj\n<<>>\nendobj\n\r\n--not-a-boundary\r\n\x00\xff binary tail"
PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(256))


@pytest.fixture(autouse=True)
def _fake_handlers_did_not_crash(request: pytest.FixtureRequest) -> Iterator[None]:
    fake: StripeFake | None = None
    if "stripe_fake" in request.fixturenames:
        fake = request.getfixturevalue("stripe_fake")
    yield
    assert fake is None or fake.errors == []


def make_adapter(
    fake: StripeFake,
    *,
    timeout: float = 5.0,
    retries: int = 0,
    api_key: str | None = None,
    test_mode: bool = True,
) -> StripeAdapter:
    settings = Settings(
        stripe_api_key=SecretStr(fake.api_key if api_key is None else api_key),
        stripe_api_base=fake.base_url,
        stripe_test_mode=test_mode,
        provider_timeout_seconds=timeout,
        provider_max_retries=retries,
    )
    return StripeAdapter.from_settings(settings)


def checkout_request(
    *,
    amount: int = 2000,
    currency: str = "CHF",
    line_items: tuple[LineItem, ...] = (),
    description: str | None = "Order ORD-1",
    key: str = f"paydesk-{PAYMENT_ID}-checkout",
    metadata: Mapping[str, str] | None = None,
    customer_email: str | None = None,
) -> CheckoutRequest:
    return CheckoutRequest(
        payment_id=PAYMENT_ID,
        amount_minor=amount,
        currency=currency,
        idempotency_key=key,
        description=description,
        line_items=line_items,
        host_reference="ORD-1",
        customer_email=customer_email,
        metadata=metadata or {},
        success_url="https://shop.example/return/ok",
        cancel_url="https://shop.example/return/cancel",
    )


def refund_request(
    reference: str,
    amount: int,
    *,
    refund_id: str = "rf_01JTEST1",
    key: str | None = None,
    currency: str = "CHF",
    reason: str | None = "requested_by_customer",
) -> RefundRequest:
    return RefundRequest(
        refund_id=refund_id,
        payment_id=PAYMENT_ID,
        provider_reference=reference,
        amount_minor=amount,
        currency=currency,
        idempotency_key=key or f"paydesk-{refund_id}-refund",
        reason=reason,
    )


def paid_session(
    fake: StripeFake, adapter: StripeAdapter, *, amount: int = 2000, currency: str = "CHF"
) -> tuple[CheckoutResult, str]:
    """A checkout the customer paid; returns the result and the PaymentIntent id."""
    result = adapter.create_checkout(checkout_request(amount=amount, currency=currency))
    assert result.provider_reference is not None
    intent = fake.complete_session(result.provider_reference, email="buyer@example.com")
    return result, intent["id"]


def payment_of(facts: Any) -> PaymentFacts:
    assert facts.payment is not None
    payment: PaymentFacts = facts.payment
    return payment


# -- amount_to_stripe ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("minor", "currency", "wire"),
    [
        (1234, "CHF", 1234),
        (500, "JPY", 500),  # zero-decimal: whole yen
        (12340, "KWD", 12340),  # three-decimal, last digit 0
        (5, "ISK", 500),  # ISO has no ISK minor unit, Stripe counts hundredths
        (10000, "MGA", 100),  # ISO gives MGA two decimals, Stripe none
        (0, "EUR", 0),
    ],
)
def test_amount_to_stripe_converts_to_the_wire_unit(minor: int, currency: str, wire: int) -> None:
    assert amount_to_stripe(minor, currency) == wire
    assert stripe_provider.amount_from_stripe(wire, currency) == minor


@pytest.mark.parametrize(
    ("minor", "currency", "code"),
    [
        (12345, "KWD", "amount_not_representable"),  # refused, not rounded to 12340 or 12350
        (10050, "MGA", "amount_not_representable"),
        (-1, "CHF", "invalid_amount"),
        (100, "XXX", "invalid_currency"),
    ],
)
def test_amount_to_stripe_refuses_what_stripe_cannot_represent(
    minor: int, currency: str, code: str
) -> None:
    with pytest.raises(ProviderDeclined) as caught:
        amount_to_stripe(minor, currency)
    assert caught.value.code == code


def test_amount_to_stripe_takes_only_integers() -> None:
    with pytest.raises(TypeError):
        amount_to_stripe(12.5, "CHF")  # type: ignore[arg-type]


# -- configuration -------------------------------------------------------------------------------


def test_from_settings_refuses_missing_or_mismatched_keys(stripe_fake: StripeFake) -> None:
    with pytest.raises(ProviderNotConfigured):
        make_adapter(stripe_fake, api_key="")
    with pytest.raises(ProviderNotConfigured):
        make_adapter(stripe_fake, api_key="sk_live_abc123", test_mode=True)
    with pytest.raises(ProviderNotConfigured):
        make_adapter(stripe_fake, api_key="sk_test_abc123", test_mode=False)
    assert stripe_fake.requests == []


def test_wrong_key_is_an_auth_error(stripe_fake: StripeFake) -> None:
    adapter = make_adapter(stripe_fake, api_key="sk_test_wrong0000000000")
    with pytest.raises(ProviderAuthError) as caught:
        adapter.create_checkout(checkout_request())
    assert caught.value.status_code == 401
    with pytest.raises(ProviderAuthError):
        adapter.fetch_payment("pi_test_missing")
    assert stripe_fake.sessions == {}


# -- checkout ------------------------------------------------------------------------------------


def test_checkout_sends_the_session_stripe_expects(stripe_fake: StripeFake) -> None:
    adapter = make_adapter(stripe_fake)
    lines = (
        LineItem("Tea, 250 g", 2, 750),
        LineItem("Shipping", 1, 500, kind=LineItemKind.SHIPPING),
    )
    result = adapter.create_checkout(
        checkout_request(
            amount=2000,
            line_items=lines,
            metadata={"cart": "C-77", "paydesk_payment_id": "spoofed", "empty": ""},
            customer_email="buyer@example.com",
        )
    )

    assert result.provider_reference is not None
    assert result.provider_reference.startswith("cs_")
    assert result.checkout_url == f"https://checkout.stripe.com/c/pay/{result.provider_reference}"
    assert result.status == MappedStatus(PaymentStatus.PENDING, "open/unpaid")
    session = stripe_fake.sessions[result.provider_reference]
    assert isinstance(result.expires_at, datetime)
    assert int(result.expires_at.timestamp()) == session["expires_at"]

    (recorded,) = stripe_fake.requests_to(SESSIONS, "POST")
    metadata = {"cart": "C-77", "host_reference": "ORD-1", "paydesk_payment_id": PAYMENT_ID}
    assert form_of(recorded) == {
        "mode": "payment",
        "line_items": [
            {
                "price_data": {
                    "currency": "chf",
                    "unit_amount": "750",
                    "product_data": {"name": "Tea, 250 g"},
                },
                "quantity": "2",
            },
            {
                "price_data": {
                    "currency": "chf",
                    "unit_amount": "500",
                    "product_data": {"name": "Shipping"},
                },
                "quantity": "1",
            },
        ],
        "client_reference_id": PAYMENT_ID,
        "metadata": metadata,
        "payment_intent_data": {"metadata": metadata, "description": "Order ORD-1"},
        "success_url": "https://shop.example/return/ok",
        "cancel_url": "https://shop.example/return/cancel",
        "customer_email": "buyer@example.com",
    }
    assert recorded.headers["idempotency-key"] == f"paydesk-{PAYMENT_ID}-checkout"
    assert recorded.headers["authorization"] == f"Bearer {stripe_fake.api_key}"
    assert recorded.headers["content-type"] == "application/x-www-form-urlencoded"
    assert recorded.headers["stripe-version"]
    assert session["amount_total"] == 2000


def test_checkout_with_a_discount_sends_one_line_for_the_whole_amount(
    stripe_fake: StripeFake,
) -> None:
    adapter = make_adapter(stripe_fake)
    lines = (
        LineItem("Tea, 250 g", 2, 1000),
        LineItem("Welcome discount", 1, 500, kind=LineItemKind.DISCOUNT),
    )
    adapter.create_checkout(checkout_request(amount=1500, line_items=lines))
    adapter.create_checkout(
        checkout_request(amount=1500, line_items=lines, description=None, key="k-2")
    )
    adapter.create_checkout(checkout_request(amount=900, description=None, key="k-3"))

    forms = stripe_fake.forms(SESSIONS)
    assert [form["line_items"] for form in forms] == [
        [_line("Order ORD-1", "1500")],
        [_line(f"Payment {PAYMENT_ID}", "1500")],
        [_line(f"Payment {PAYMENT_ID}", "900")],
    ]


def _line(name: str, unit_amount: str, currency: str = "chf") -> dict[str, Any]:
    return {
        "price_data": {
            "currency": currency,
            "unit_amount": unit_amount,
            "product_data": {"name": name},
        },
        "quantity": "1",
    }


def test_checkout_lines_that_do_not_add_up_are_refused_before_sending(
    stripe_fake: StripeFake,
) -> None:
    adapter = make_adapter(stripe_fake)
    with pytest.raises(ProviderDeclined):
        adapter.create_checkout(checkout_request(amount=999, line_items=(LineItem("A", 1, 1000),)))
    assert stripe_fake.requests == []


def test_zero_and_three_decimal_amounts_on_the_wire(stripe_fake: StripeFake) -> None:
    adapter = make_adapter(stripe_fake)
    adapter.create_checkout(checkout_request(amount=500, currency="JPY", key="k-jpy"))
    adapter.create_checkout(checkout_request(amount=12340, currency="KWD", key="k-kwd"))
    with pytest.raises(ProviderDeclined) as caught:
        adapter.create_checkout(checkout_request(amount=12345, currency="KWD", key="k-kwd-2"))
    assert caught.value.code == "amount_not_representable"

    forms = stripe_fake.forms(SESSIONS)
    assert len(forms) == 2  # the unrepresentable amount never left the process
    assert forms[0]["line_items"] == [_line("Order ORD-1", "500", "jpy")]
    assert forms[1]["line_items"] == [_line("Order ORD-1", "12340", "kwd")]


def test_card_error_is_declined_with_the_decline_code(stripe_fake: StripeFake) -> None:
    adapter = make_adapter(stripe_fake)
    stripe_fake.decline_next(SESSIONS, decline_code="insufficient_funds")
    with pytest.raises(ProviderDeclined) as caught:
        adapter.create_checkout(checkout_request())
    assert caught.value.code == "insufficient_funds"
    assert caught.value.status_code == 402
    assert not isinstance(caught.value, ProviderUnavailable)


def test_a_declined_attempt_reads_back_as_pending_with_the_reason(stripe_fake: StripeFake) -> None:
    adapter = make_adapter(stripe_fake)
    result = adapter.create_checkout(checkout_request())
    assert result.provider_reference is not None
    intent = stripe_fake.fail_session_payment(
        result.provider_reference, decline_code="stolen_card", message="Your card was declined."
    )

    payment = payment_of(adapter.fetch_payment(result.provider_reference))
    assert payment.reference == intent["id"]
    assert payment.alt_references == (result.provider_reference,)
    assert payment.status == MappedStatus(
        PaymentStatus.PENDING, "requires_payment_method", failure_reason="Your card was declined."
    )
    assert payment.payment_id == PAYMENT_ID


def test_session_creation_retried_by_the_sdk_after_5xx(stripe_fake: StripeFake) -> None:
    adapter = make_adapter(stripe_fake, retries=2)
    stripe_fake.fail_next(SESSIONS, 500, times=2, method="POST")
    result = adapter.create_checkout(checkout_request())

    attempts = stripe_fake.requests_to(SESSIONS, "POST")
    assert len(attempts) == 3
    assert {rec.headers["idempotency-key"] for rec in attempts} == {
        f"paydesk-{PAYMENT_ID}-checkout"
    }
    assert list(stripe_fake.sessions) == [result.provider_reference]


def test_persistent_5xx_is_outcome_unknown_for_writes_unavailable_for_reads(
    stripe_fake: StripeFake,
) -> None:
    adapter = make_adapter(stripe_fake, retries=1)
    stripe_fake.fail_next(SESSIONS, 500, times=2, method="POST")
    with pytest.raises(ProviderOutcomeUnknown) as write_error:
        adapter.create_checkout(checkout_request())
    assert write_error.value.status_code == 500
    assert len(stripe_fake.requests_to(SESSIONS, "POST")) == 2

    stripe_fake.fail_next("/v1/payment_intents/", 503, times=2)
    with pytest.raises(ProviderUnavailable) as read_error:
        adapter.fetch_payment("pi_test_anything")
    assert not isinstance(read_error.value, ProviderOutcomeUnknown)
    assert read_error.value.status_code == 503


def test_rate_limit_on_a_read_is_unavailable(stripe_fake: StripeFake) -> None:
    adapter = make_adapter(stripe_fake, retries=2)
    stripe_fake.fail_next("/v1/payment_intents/", 429)
    with pytest.raises(ProviderUnavailable) as caught:
        adapter.fetch_payment("pi_test_anything")
    assert caught.value.status_code == 429
    assert len(stripe_fake.requests_to("/v1/payment_intents/")) == 1  # the SDK does not retry 429


def test_unreachable_stripe(stripe_fake: StripeFake) -> None:
    adapter = make_adapter(stripe_fake)
    stripe_fake.stop()
    with pytest.raises(ProviderOutcomeUnknown):
        adapter.create_checkout(checkout_request())
    with pytest.raises(ProviderUnavailable) as caught:
        adapter.fetch_payment("pi_test_anything")
    assert not isinstance(caught.value, ProviderOutcomeUnknown)


# -- refunds -------------------------------------------------------------------------------------


def test_refund_of_a_paid_session(stripe_fake: StripeFake) -> None:
    adapter = make_adapter(stripe_fake)
    session, intent_id = paid_session(stripe_fake, adapter)
    assert session.provider_reference is not None

    # The payment may still be stored under the session id: the adapter finds the PaymentIntent.
    result = adapter.refund(refund_request(session.provider_reference, 700))
    assert result.status is RefundStatus.SUCCEEDED
    assert result.provider_refund_id.startswith("re_")

    (recorded,) = stripe_fake.requests_to(REFUNDS, "POST")
    assert form_of(recorded) == {
        "payment_intent": intent_id,
        "amount": "700",
        "reason": "requested_by_customer",
        "metadata": {"paydesk_refund_id": "rf_01JTEST1", "paydesk_payment_id": PAYMENT_ID},
    }
    assert recorded.headers["idempotency-key"] == "paydesk-rf_01JTEST1-refund"

    second = adapter.refund(
        refund_request(intent_id, 300, refund_id="rf_01JTEST2", reason="Item arrived broken")
    )
    assert second.status is RefundStatus.SUCCEEDED
    form = stripe_fake.forms(REFUNDS)[-1]
    assert "reason" not in form  # not one of Stripe's reasons: kept in metadata instead
    assert form["metadata"]["paydesk_reason"] == "Item arrived broken"
    assert [r["amount"] for r in stripe_fake.refunds_for(intent_id)] == [700, 300]


def test_pending_refund_maps_to_processing(stripe_fake: StripeFake) -> None:
    adapter = make_adapter(stripe_fake)
    _, intent_id = paid_session(stripe_fake, adapter)
    stripe_fake.refund_status = "pending"
    assert adapter.refund(refund_request(intent_id, 500)).status is RefundStatus.PROCESSING


def test_over_refund_is_refused(stripe_fake: StripeFake) -> None:
    adapter = make_adapter(stripe_fake)
    _, intent_id = paid_session(stripe_fake, adapter)
    adapter.refund(refund_request(intent_id, 1500, refund_id="rf_1"))

    with pytest.raises(ProviderDeclined) as too_much:
        adapter.refund(refund_request(intent_id, 600, refund_id="rf_2"))
    assert too_much.value.code == "amount_too_large"
    assert too_much.value.status_code == 400

    adapter.refund(refund_request(intent_id, 500, refund_id="rf_3"))
    with pytest.raises(ProviderDeclined) as nothing_left:
        adapter.refund(refund_request(intent_id, 1, refund_id="rf_4"))
    assert nothing_left.value.code == "charge_already_refunded"
    assert sum(r["amount"] for r in stripe_fake.refunds_for(intent_id)) == 2000


def test_refund_of_an_unpaid_session_is_declined_without_a_refund_call(
    stripe_fake: StripeFake,
) -> None:
    adapter = make_adapter(stripe_fake)
    result = adapter.create_checkout(checkout_request())
    assert result.provider_reference is not None
    with pytest.raises(ProviderDeclined):
        adapter.refund(refund_request(result.provider_reference, 500))
    assert stripe_fake.requests_to(REFUNDS) == []


def test_refund_amount_stripe_cannot_represent_is_refused_before_sending(
    stripe_fake: StripeFake,
) -> None:
    adapter = make_adapter(stripe_fake)
    _, intent_id = paid_session(stripe_fake, adapter, amount=12340, currency="KWD")
    with pytest.raises(ProviderDeclined):
        adapter.refund(refund_request(intent_id, 1235, currency="KWD"))
    assert stripe_fake.requests_to(REFUNDS) == []
    adapter.refund(refund_request(intent_id, 1230, currency="KWD"))
    assert stripe_fake.forms(REFUNDS)[0]["amount"] == "1230"


def test_refund_timeout_is_outcome_unknown_and_the_retry_refunds_once(
    stripe_fake: StripeFake,
) -> None:
    adapter = make_adapter(stripe_fake, timeout=0.5, retries=0)
    _, intent_id = paid_session(stripe_fake, adapter)
    stripe_fake.delay_next(REFUNDS, 1.5, method="POST")

    with pytest.raises(ProviderOutcomeUnknown):
        adapter.refund(refund_request(intent_id, 800))
    assert len(stripe_fake.refunds_for(intent_id)) == 1  # Stripe did it; we did not hear back

    result = adapter.refund(refund_request(intent_id, 800))  # the service retries with its key
    (refund,) = stripe_fake.refunds_for(intent_id)
    assert result.provider_refund_id == refund["id"]
    assert result.status is RefundStatus.SUCCEEDED
    keys = [rec.headers["idempotency-key"] for rec in stripe_fake.requests_to(REFUNDS, "POST")]
    assert keys == ["paydesk-rf_01JTEST1-refund"] * 2


def test_refund_timeout_retried_by_the_sdk_with_the_same_key(stripe_fake: StripeFake) -> None:
    adapter = make_adapter(stripe_fake, timeout=0.5, retries=2)
    _, intent_id = paid_session(stripe_fake, adapter)
    stripe_fake.delay_next(REFUNDS, 1.5, method="POST")

    result = adapter.refund(refund_request(intent_id, 800))
    (refund,) = stripe_fake.refunds_for(intent_id)
    assert result.provider_refund_id == refund["id"]
    assert len(stripe_fake.requests_to(REFUNDS, "POST")) == 2


def test_unreadable_refund_answer_is_outcome_unknown_and_replays(stripe_fake: StripeFake) -> None:
    adapter = make_adapter(stripe_fake)
    _, intent_id = paid_session(stripe_fake, adapter)
    stripe_fake.malformed_next(REFUNDS, method="POST")

    with pytest.raises(ProviderOutcomeUnknown):
        adapter.refund(refund_request(intent_id, 400))
    result = adapter.refund(refund_request(intent_id, 400))
    (refund,) = stripe_fake.refunds_for(intent_id)
    assert result.provider_refund_id == refund["id"]


def test_same_key_with_other_parameters_is_declined(stripe_fake: StripeFake) -> None:
    adapter = make_adapter(stripe_fake)
    _, intent_id = paid_session(stripe_fake, adapter)
    adapter.refund(refund_request(intent_id, 400, key="refund-key-1"))
    with pytest.raises(ProviderDeclined) as caught:
        adapter.refund(refund_request(intent_id, 500, key="refund-key-1"))
    assert caught.value.code == "idempotency_error"
    assert caught.value.status_code == 400
    assert len(stripe_fake.refunds_for(intent_id)) == 1


# -- reading payments back -----------------------------------------------------------------------


def test_fetch_payment_intent_with_refunds(stripe_fake: StripeFake) -> None:
    adapter = make_adapter(stripe_fake)
    _, intent_id = paid_session(stripe_fake, adapter)
    adapter.refund(refund_request(intent_id, 700, refund_id="rf_a"))
    adapter.refund(refund_request(intent_id, 300, refund_id="rf_b"))

    facts = adapter.fetch_payment(intent_id)
    payment = payment_of(facts)
    assert payment.reference == intent_id
    assert payment.status == MappedStatus(PaymentStatus.SUCCEEDED, "succeeded")
    assert (payment.amount_minor, payment.captured_minor, payment.currency) == (2000, 2000, "CHF")
    assert payment.payment_id == PAYMENT_ID
    assert payment.host_reference == "ORD-1"
    assert payment.complete
    assert sorted((r.refund_id, r.amount_minor, r.status) for r in facts.refunds) == [
        ("rf_a", 700, RefundStatus.SUCCEEDED),
        ("rf_b", 300, RefundStatus.SUCCEEDED),
    ]
    (listed,) = stripe_fake.requests_to(REFUNDS, "GET")
    assert f"payment_intent={intent_id}" in listed.path

    # What a webhook about the same PaymentIntent says agrees with what was read.
    event = {
        "id": "evt_test_1",
        "object": "event",
        "type": "payment_intent.succeeded",
        "livemode": False,
        "data": {"object": stripe_fake.payment_intents[intent_id]},
    }
    webhook_payment = payment_of(stripe_provider.event_facts(json.dumps(event).encode()))
    assert webhook_payment == payment


def test_fetch_open_and_completed_sessions(stripe_fake: StripeFake) -> None:
    adapter = make_adapter(stripe_fake)
    result = adapter.create_checkout(checkout_request(amount=500, currency="JPY"))
    session_id = result.provider_reference
    assert session_id is not None

    open_payment = payment_of(adapter.fetch_payment(session_id))
    assert open_payment.reference == session_id
    assert open_payment.status == MappedStatus(PaymentStatus.PENDING, "open/unpaid")
    assert (open_payment.amount_minor, open_payment.currency) == (500, "JPY")
    assert open_payment.payment_id == PAYMENT_ID

    intent = stripe_fake.complete_session(session_id, email="buyer@example.com")
    paid = payment_of(adapter.fetch_payment(session_id))
    assert paid.reference == intent["id"]
    assert paid.alt_references == (session_id,)
    assert paid.status is not None and paid.status.status is PaymentStatus.SUCCEEDED
    assert paid.captured_minor == 500
    assert paid.customer_email == "buyer@example.com"


def test_fetch_expired_session_with_an_unfinished_attempt_is_expired(
    stripe_fake: StripeFake,
) -> None:
    adapter = make_adapter(stripe_fake)
    result = adapter.create_checkout(checkout_request())
    assert result.provider_reference is not None
    stripe_fake.fail_session_payment(result.provider_reference)
    stripe_fake.expire_session(result.provider_reference)
    payment = payment_of(adapter.fetch_payment(result.provider_reference))
    assert payment.status is not None and payment.status.status is PaymentStatus.EXPIRED


def test_fetch_unknown_payment(stripe_fake: StripeFake) -> None:
    adapter = make_adapter(stripe_fake)
    with pytest.raises(ProviderEntityNotFound):
        adapter.fetch_payment("pi_test_nope")
    with pytest.raises(ProviderEntityNotFound):
        adapter.fetch_payment("cs_test_nope")
    with pytest.raises(ProviderEntityNotFound):
        adapter.fetch_payment("ch_not_a_payment")


def test_fetch_with_an_unreadable_answer_is_unavailable(stripe_fake: StripeFake) -> None:
    adapter = make_adapter(stripe_fake)
    _, intent_id = paid_session(stripe_fake, adapter)
    stripe_fake.malformed_next("/v1/payment_intents/")
    with pytest.raises(ProviderUnavailable) as caught:
        adapter.fetch_payment(intent_id)
    assert not isinstance(caught.value, ProviderOutcomeUnknown)


# -- disputes ------------------------------------------------------------------------------------


def test_dispute_evidence_staged_then_submitted(stripe_fake: StripeFake) -> None:
    adapter = make_adapter(stripe_fake)
    _, intent_id = paid_session(stripe_fake, adapter)
    dispute = stripe_fake.create_dispute(intent_id, reason="product_not_received")

    staged = adapter.update_dispute_evidence(
        dispute["id"],
        {"customer_name": "Ada Buyer", "shipping_tracking_number": "99AB"},
        submit=False,
    )
    assert staged.status is DisputeStatus.NEEDS_RESPONSE
    assert (staged.amount_minor, staged.currency, staged.reason) == (
        2000,
        "CHF",
        "product_not_received",
    )
    assert staged.evidence_due_at is not None
    assert stripe_fake.forms(f"/v1/disputes/{dispute['id']}")[0] == {
        "evidence": {"customer_name": "Ada Buyer", "shipping_tracking_number": "99AB"},
        "submit": "false",
    }

    submitted = adapter.update_dispute_evidence(
        dispute["id"], {"uncategorized_text": "Delivered on 2 Jan."}, submit=True
    )
    assert submitted.status is DisputeStatus.UNDER_REVIEW
    evidence = stripe_fake.disputes[dispute["id"]]["evidence"]
    assert evidence["customer_name"] == "Ada Buyer"
    assert evidence["uncategorized_text"] == "Delivered on 2 Jan."


def test_dispute_evidence_with_an_unknown_field_is_declined(stripe_fake: StripeFake) -> None:
    adapter = make_adapter(stripe_fake)
    _, intent_id = paid_session(stripe_fake, adapter)
    dispute = stripe_fake.create_dispute(intent_id)
    with pytest.raises(ProviderDeclined) as caught:
        adapter.update_dispute_evidence(dispute["id"], {"favourite_colour": "blue"}, submit=False)
    assert caught.value.status_code == 400


def test_accept_dispute(stripe_fake: StripeFake) -> None:
    adapter = make_adapter(stripe_fake)
    _, intent_id = paid_session(stripe_fake, adapter)
    dispute = stripe_fake.create_dispute(intent_id, amount=1500)
    inquiry = stripe_fake.create_dispute(intent_id, status="warning_needs_response")

    lost = adapter.accept_dispute(dispute["id"])
    assert (lost.status, lost.amount_minor) == (DisputeStatus.LOST, 1500)
    assert adapter.accept_dispute(inquiry["id"]).status is DisputeStatus.CLOSED
    assert stripe_fake.requests_to(f"/v1/disputes/{dispute['id']}/close", "POST")

    with pytest.raises(ProviderDeclined):
        adapter.accept_dispute(dispute["id"])  # already closed
    with pytest.raises(ProviderDeclined) as missing:
        adapter.accept_dispute("du_test_nope")
    assert missing.value.status_code == 404


def test_dispute_call_with_a_5xx_answer_is_outcome_unknown(stripe_fake: StripeFake) -> None:
    adapter = make_adapter(stripe_fake)
    _, intent_id = paid_session(stripe_fake, adapter)
    dispute = stripe_fake.create_dispute(intent_id)
    stripe_fake.fail_next("/v1/disputes/", 502)
    with pytest.raises(ProviderOutcomeUnknown):
        adapter.accept_dispute(dispute["id"])


# -- evidence files ------------------------------------------------------------------------------


def test_upload_dispute_file_reaches_stripe_with_purpose_name_and_bytes(
    stripe_fake: StripeFake,
) -> None:
    adapter = make_adapter(stripe_fake)

    file_id = adapter.upload_dispute_file("receipt.pdf", PDF, "application/pdf")

    assert file_id.startswith("file_")
    (request,) = stripe_fake.requests_to(FILES, "POST")
    assert request.headers["content-type"].startswith("multipart/form-data; boundary=")
    assert request.headers.get("idempotency-key")
    parts = parts_of(request)
    assert set(parts) == {"purpose", "file"}
    assert parts["purpose"].content == b"dispute_evidence"
    assert parts["file"].filename == "receipt.pdf"
    assert parts["file"].content == PDF  # byte for byte, CR/LF and binary included
    stored = stripe_fake.files[file_id]
    assert (stored["purpose"], stored["size"], stored["type"]) == (
        "dispute_evidence",
        len(PDF),
        "pdf",
    )


def test_uploaded_files_go_in_file_evidence_fields_only(stripe_fake: StripeFake) -> None:
    adapter = make_adapter(stripe_fake)
    _, intent_id = paid_session(stripe_fake, adapter)
    dispute = stripe_fake.create_dispute(intent_id)
    receipt = adapter.upload_dispute_file("receipt.png", PNG, "image/png")

    staged = adapter.update_dispute_evidence(
        dispute["id"], {"receipt": receipt, "uncategorized_text": "See receipt"}, submit=False
    )
    assert staged.status is DisputeStatus.NEEDS_RESPONSE
    assert stripe_fake.disputes[dispute["id"]]["evidence"]["receipt"] == receipt

    for evidence in ({"receipt": "file_test_not_issued"}, {"refund_policy": "see our website"}):
        with pytest.raises(ProviderDeclined) as caught:
            adapter.update_dispute_evidence(dispute["id"], evidence, submit=False)
        assert caught.value.code == "resource_missing"
        assert caught.value.status_code == 400


def test_upload_of_a_type_stripe_does_not_take_is_refused_before_sending(
    stripe_fake: StripeFake,
) -> None:
    adapter = make_adapter(stripe_fake)
    with pytest.raises(ProviderDeclined) as caught:
        adapter.upload_dispute_file("notes.txt", b"hello", "text/plain")
    assert caught.value.code == "invalid_file_type"
    with pytest.raises(ProviderDeclined):
        adapter.upload_dispute_file("empty.pdf", b"", "application/pdf")
    assert stripe_fake.requests == []


def test_upload_refused_by_stripe_is_declined(stripe_fake: StripeFake) -> None:
    adapter = make_adapter(stripe_fake)
    with pytest.raises(ProviderDeclined) as caught:  # says PDF, is not one
        adapter.upload_dispute_file("fake.pdf", b"MZ\x90\x00", "application/pdf")
    assert caught.value.code == "file_type_not_supported"
    assert stripe_fake.files == {}


def test_upload_with_a_wrong_key_is_an_auth_error(stripe_fake: StripeFake) -> None:
    adapter = make_adapter(stripe_fake, api_key="sk_test_wrong")
    with pytest.raises(ProviderAuthError):
        adapter.upload_dispute_file("receipt.pdf", PDF, "application/pdf")


def test_upload_failures_are_outcome_unknown(stripe_fake: StripeFake) -> None:
    adapter = make_adapter(stripe_fake)
    stripe_fake.fail_next(FILES, 500)
    with pytest.raises(ProviderOutcomeUnknown):
        adapter.upload_dispute_file("receipt.pdf", PDF, "application/pdf")
    assert stripe_fake.files == {}

    stripe_fake.malformed_next(FILES)  # Stripe stored it, we could not read the answer
    with pytest.raises(ProviderOutcomeUnknown):
        adapter.upload_dispute_file("receipt.pdf", PDF, "application/pdf")
    assert len(stripe_fake.files) == 1


def test_upload_retried_by_the_sdk_after_5xx_stores_one_file(stripe_fake: StripeFake) -> None:
    adapter = make_adapter(stripe_fake, retries=2)
    stripe_fake.fail_next(FILES, 503)

    file_id = adapter.upload_dispute_file("receipt.pdf", PDF, "application/pdf")

    attempts = stripe_fake.requests_to(FILES, "POST")
    assert len(attempts) == 2
    assert len({a.headers["idempotency-key"] for a in attempts}) == 1
    assert list(stripe_fake.files) == [file_id]


def test_fetch_payment_in_a_state_we_do_not_know_is_a_provider_error(
    stripe_fake: StripeFake,
) -> None:
    adapter = make_adapter(stripe_fake)
    _, intent_id = paid_session(stripe_fake, adapter)
    stripe_fake.payment_intents[intent_id]["status"] = "requires_magic"
    with pytest.raises(ProviderError) as caught:
        adapter.fetch_payment(intent_id)
    assert caught.value.code == "unreadable_object"
    assert not isinstance(caught.value, ProviderUnavailable)
