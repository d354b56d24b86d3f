"""PaystackAdapter against the fake Paystack server over HTTP (127.0.0.1).

Covers: what initialize and refund put on the wire (subunits, reference, metadata, merchant note),
declines, unknown outcomes (timeout, malformed answer, 5xx) with their idempotency handling (one
transaction per reference, never a second refund), transient failures on reads, bad
credentials, currencies refused before any call, and fetch_payment matching the webhook path.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from fakes.paystack import PaystackFake

from payments_core.config import Settings
from payments_core.providers import paystack
from payments_core.providers.base import (
    CheckoutRequest,
    ProviderAuthError,
    ProviderDeclined,
    ProviderEntityNotFound,
    ProviderNotConfigured,
    ProviderOutcomeUnknown,
    ProviderUnavailable,
    RefundFacts,
    RefundRequest,
)
from payments_core.providers.paystack import PaystackAdapter
from payments_core.status import MappedStatus, PaymentStatus, RefundStatus

TIMEOUT = 0.3  # seconds; delay_next answers later than this
SLOW = 1.0
INITIALIZE = "/transaction/initialize"
VERIFY = "/transaction/verify/"


def _settings(fake: PaystackFake, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "paystack_secret_key": fake.secret_key,
        "paystack_api_base": fake.base_url,
        "provider_timeout_seconds": TIMEOUT,
        "provider_max_retries": 2,
    }
    values.update(overrides)
    return Settings(_env_file=None, **values)  # type: ignore[call-arg]


@pytest.fixture
def sleeps() -> list[float]:
    return []


@pytest.fixture
def adapter(paystack_fake: PaystackFake, sleeps: list[float]) -> Iterator[PaystackAdapter]:
    with PaystackAdapter.from_settings(_settings(paystack_fake), sleep=sleeps.append) as adapter:
        yield adapter


def _checkout(**overrides: Any) -> CheckoutRequest:
    values: dict[str, Any] = {
        "payment_id": "pay_01",
        "amount_minor": 250000,
        "currency": "NGN",
        "idempotency_key": "pd-pay01-1",
        "customer_email": "buyer@example.com",
        "host_reference": "ORD-42",
        "metadata": {"cart": "c-7"},
        "success_url": "https://shop.example/paid",
        "cancel_url": "https://shop.example/cancelled",
    }
    values.update(overrides)
    return CheckoutRequest(**values)


def _refund_request(reference: str, **overrides: Any) -> RefundRequest:
    values: dict[str, Any] = {
        "refund_id": "ref_01",
        "payment_id": "pay_01",
        "provider_reference": reference,
        "amount_minor": 50000,
        "currency": "NGN",
        "idempotency_key": "refund:ref_01:1",
    }
    values.update(overrides)
    return RefundRequest(**values)


def _paid(fake: PaystackFake, adapter: PaystackAdapter, **overrides: Any) -> str:
    """A paid transaction created through the adapter; its reference."""
    result = adapter.create_checkout(_checkout(**overrides))
    assert result.provider_reference is not None
    fake.set_status(result.provider_reference, "success")
    fake.requests.clear()
    return result.provider_reference


def _paths(fake: PaystackFake) -> list[str]:
    return [f"{r.method} {r.path.split('?')[0]}" for r in fake.requests]


# --- create_checkout ----------------------------------------------------------------------------


def test_checkout_sends_subunits_reference_and_metadata(
    paystack_fake: PaystackFake, adapter: PaystackAdapter
) -> None:
    result = adapter.create_checkout(_checkout())

    (sent,) = paystack_fake.requests_to(INITIALIZE, "POST")
    assert sent.json() == {
        "email": "buyer@example.com",
        "amount": 250000,
        "currency": "NGN",
        "reference": "pd-pay01-1",
        "callback_url": "https://shop.example/paid",
        "metadata": {
            "cart": "c-7",
            "paydesk_payment_id": "pay_01",
            "host_reference": "ORD-42",
            "cancel_action": "https://shop.example/cancelled",
        },
    }
    assert sent.headers["authorization"] == f"Bearer {paystack_fake.secret_key}"
    access_code = paystack_fake.transactions["pd-pay01-1"]["access_code"]
    assert result.provider_reference == "pd-pay01-1"
    assert result.checkout_url == f"https://checkout.paystack.com/{access_code}"
    assert result.details == {"access_code": access_code}
    assert result.status.status is PaymentStatus.PENDING


def test_host_metadata_cannot_override_our_payment_id(
    paystack_fake: PaystackFake, adapter: PaystackAdapter
) -> None:
    adapter.create_checkout(_checkout(metadata={"paydesk_payment_id": "someone-else"}))

    (sent,) = paystack_fake.requests_to(INITIALIZE, "POST")
    assert sent.json()["metadata"]["paydesk_payment_id"] == "pay_01"


def test_xof_is_sent_in_hundredths(paystack_fake: PaystackFake, adapter: PaystackAdapter) -> None:
    adapter.create_checkout(_checkout(amount_minor=2500, currency="XOF"))  # XOF 2,500

    (sent,) = paystack_fake.requests_to(INITIALIZE, "POST")
    assert sent.json()["amount"] == 250000
    assert sent.json()["currency"] == "XOF"


@pytest.mark.parametrize(("amount", "currency"), [(1500, "JPY"), (1234, "KWD"), (1000, "CHF")])
def test_unsupported_currency_is_refused_before_any_call(
    paystack_fake: PaystackFake, adapter: PaystackAdapter, amount: int, currency: str
) -> None:
    with pytest.raises(ProviderDeclined) as info:
        adapter.create_checkout(_checkout(amount_minor=amount, currency=currency))
    assert info.value.code == "currency_not_supported"

    with pytest.raises(ProviderDeclined) as info:
        adapter.refund(_refund_request("pd-pay01-1", amount_minor=amount, currency=currency))
    assert info.value.code == "currency_not_supported"
    assert paystack_fake.requests == []


@pytest.mark.parametrize(
    ("overrides", "code"),
    [
        ({"customer_email": None}, "email_required"),
        ({"customer_email": "  "}, "email_required"),
        ({"idempotency_key": "checkout:pay_01:1"}, "invalid_reference"),
        ({"amount_minor": 0}, "invalid_amount"),
    ],
)
def test_invalid_checkout_is_refused_before_any_call(
    paystack_fake: PaystackFake, adapter: PaystackAdapter, overrides: dict[str, Any], code: str
) -> None:
    with pytest.raises(ProviderDeclined) as info:
        adapter.create_checkout(_checkout(**overrides))

    assert info.value.code == code
    assert paystack_fake.requests == []


def test_paystack_error_answer_is_a_decline(
    paystack_fake: PaystackFake, adapter: PaystackAdapter, sleeps: list[float]
) -> None:
    with pytest.raises(ProviderDeclined, match="Invalid Email Address Passed") as info:
        adapter.create_checkout(_checkout(customer_email="not-an-email"))

    assert info.value.status_code == 400
    assert len(paystack_fake.requests) == 1  # a refusal is not retried
    assert sleeps == []


def test_timeout_is_retried_with_the_same_reference_and_read_back(
    paystack_fake: PaystackFake, adapter: PaystackAdapter
) -> None:
    paystack_fake.delay_next(INITIALIZE, SLOW)  # created at Paystack, answer too late

    result = adapter.create_checkout(_checkout())

    initializes = paystack_fake.requests_to(INITIALIZE, "POST")
    assert [r.json()["reference"] for r in initializes] == ["pd-pay01-1", "pd-pay01-1"]
    assert list(paystack_fake.transactions) == ["pd-pay01-1"]  # one transaction
    assert len(paystack_fake.requests_to(VERIFY, "GET")) == 1
    assert result.provider_reference == "pd-pay01-1"
    assert result.checkout_url is None  # only the initialize answer carries it
    assert result.status == MappedStatus(PaymentStatus.PENDING, "abandoned")
    transaction_id = str(paystack_fake.transactions["pd-pay01-1"]["id"])
    assert result.details == {"recovered": "true", "paystack_transaction_id": transaction_id}


def test_malformed_initialize_answer_is_resolved_by_reading_back(
    paystack_fake: PaystackFake, adapter: PaystackAdapter
) -> None:
    paystack_fake.malformed_next(INITIALIZE)

    result = adapter.create_checkout(_checkout())

    assert len(paystack_fake.requests_to(INITIALIZE)) == 2
    assert len(paystack_fake.transactions) == 1
    assert result.details["recovered"] == "true"


def test_initialize_5xx_is_retried(
    paystack_fake: PaystackFake, adapter: PaystackAdapter, sleeps: list[float]
) -> None:
    paystack_fake.fail_next(INITIALIZE, 502)  # not processed

    result = adapter.create_checkout(_checkout())

    assert len(paystack_fake.requests_to(INITIALIZE)) == 2
    assert len(paystack_fake.transactions) == 1
    assert result.checkout_url is not None
    assert len(sleeps) == 1


def test_initialize_5xx_until_retries_run_out(
    paystack_fake: PaystackFake, adapter: PaystackAdapter, sleeps: list[float]
) -> None:
    paystack_fake.fail_next(INITIALIZE, 503, times=3)

    with pytest.raises(ProviderOutcomeUnknown) as info:  # a 5xx after a write: may exist
        adapter.create_checkout(_checkout())

    assert info.value.status_code == 503
    assert len(paystack_fake.requests_to(INITIALIZE)) == 3  # provider_max_retries=2
    assert len(sleeps) == 2
    assert paystack_fake.transactions == {}


def test_unreachable_paystack_is_unavailable_not_unknown(sleeps: list[float]) -> None:
    fake = PaystackFake().start()
    settings = _settings(fake)
    fake.stop()

    with (
        PaystackAdapter.from_settings(settings, sleep=sleeps.append) as adapter,
        pytest.raises(ProviderUnavailable) as info,
    ):
        adapter.create_checkout(_checkout())

    assert not isinstance(info.value, ProviderOutcomeUnknown)  # nothing was sent
    assert len(sleeps) == 2


def test_reference_of_another_transaction_is_declined(
    paystack_fake: PaystackFake, adapter: PaystackAdapter
) -> None:
    adapter.create_checkout(_checkout(payment_id="pay_other", amount_minor=100000))

    with pytest.raises(ProviderDeclined) as info:
        adapter.create_checkout(_checkout())

    assert info.value.code == "duplicate_reference"
    assert len(paystack_fake.transactions) == 1


def test_bad_secret_key(paystack_fake: PaystackFake, sleeps: list[float]) -> None:
    settings = _settings(paystack_fake, paystack_secret_key="sk_test_wrong")
    with (
        PaystackAdapter.from_settings(settings, sleep=sleeps.append) as adapter,
        pytest.raises(ProviderAuthError, match="PAYSTACK_SECRET_KEY") as info,
    ):
        adapter.create_checkout(_checkout())

    assert info.value.status_code == 401
    assert len(paystack_fake.requests) == 1
    assert sleeps == []


def test_not_configured(paystack_fake: PaystackFake) -> None:
    with pytest.raises(ProviderNotConfigured, match="PAYSTACK_SECRET_KEY"):
        PaystackAdapter.from_settings(_settings(paystack_fake, paystack_secret_key=""))


# --- refund -------------------------------------------------------------------------------------


def test_refund_sends_subunits_and_our_note(
    paystack_fake: PaystackFake, adapter: PaystackAdapter
) -> None:
    reference = _paid(paystack_fake, adapter)

    result = adapter.refund(_refund_request(reference))

    (refund,) = paystack_fake.refunds_for(reference)
    (sent,) = paystack_fake.requests_to("/refund", "POST")
    assert sent.json() == {
        "transaction": reference,
        "amount": 50000,
        "currency": "NGN",
        "merchant_note": "Paydesk refund ref_01",
    }
    # Looked for an earlier attempt first: the transaction's id, then its refunds.
    assert _paths(paystack_fake) == [f"GET {VERIFY}{reference}", "GET /refund", "POST /refund"]
    listing = paystack_fake.requests_to("/refund", "GET")[0]
    assert f"transaction={paystack_fake.transactions[reference]['id']}" in listing.path
    assert result.provider_refund_id == str(refund["id"])
    assert result.status is RefundStatus.PROCESSING


def test_refund_timeout_never_refunds_twice(
    paystack_fake: PaystackFake, adapter: PaystackAdapter, sleeps: list[float]
) -> None:
    reference = _paid(paystack_fake, adapter)
    paystack_fake.delay_next("/refund", SLOW, method="POST")  # refunded, answer too late

    result = adapter.refund(_refund_request(reference))

    (refund,) = paystack_fake.refunds_for(reference)  # exactly one refund
    assert len(paystack_fake.requests_to("/refund", "POST")) == 1
    assert result.provider_refund_id == str(refund["id"])
    assert result.status is RefundStatus.PROCESSING
    assert len(sleeps) == 1  # paused before looking it up


def test_malformed_refund_answer_never_refunds_twice(
    paystack_fake: PaystackFake, adapter: PaystackAdapter
) -> None:
    reference = _paid(paystack_fake, adapter)
    paystack_fake.malformed_next("/refund", method="POST")

    result = adapter.refund(_refund_request(reference))

    (refund,) = paystack_fake.refunds_for(reference)
    assert len(paystack_fake.requests_to("/refund", "POST")) == 1
    assert result.provider_refund_id == str(refund["id"])


def test_refund_not_carried_out_is_tried_again(
    paystack_fake: PaystackFake, adapter: PaystackAdapter
) -> None:
    reference = _paid(paystack_fake, adapter)
    paystack_fake.fail_next("/refund", 502, method="POST")  # refused without refunding

    result = adapter.refund(_refund_request(reference))

    (refund,) = paystack_fake.refunds_for(reference)
    assert len(paystack_fake.requests_to("/refund", "POST")) == 2
    assert result.provider_refund_id == str(refund["id"])


def test_refund_5xx_until_retries_run_out_is_unknown(
    paystack_fake: PaystackFake, adapter: PaystackAdapter
) -> None:
    reference = _paid(paystack_fake, adapter)
    paystack_fake.fail_next("/refund", 503, times=3, method="POST")

    with pytest.raises(ProviderOutcomeUnknown):
        adapter.refund(_refund_request(reference))

    assert len(paystack_fake.requests_to("/refund", "POST")) == 3
    assert paystack_fake.refunds_for(reference) == []


def test_repeated_refund_call_returns_the_existing_refund(
    paystack_fake: PaystackFake, adapter: PaystackAdapter
) -> None:
    reference = _paid(paystack_fake, adapter)
    first = adapter.refund(_refund_request(reference))

    again = adapter.refund(_refund_request(reference))  # e.g. the service retrying after a crash

    assert again == first
    assert len(paystack_fake.refunds_for(reference)) == 1
    assert len(paystack_fake.requests_to("/refund", "POST")) == 1


def test_refunds_of_other_transactions_are_not_ours(
    paystack_fake: PaystackFake, adapter: PaystackAdapter
) -> None:
    other = _paid(paystack_fake, adapter, payment_id="pay_02", idempotency_key="pd-pay02-1")
    adapter.refund(_refund_request(other, payment_id="pay_02"))  # same refund id, other payment
    reference = _paid(paystack_fake, adapter)
    paystack_fake.ignore_refund_filter = True  # the list holds every refund of the integration

    adapter.refund(_refund_request(reference))

    assert len(paystack_fake.refunds_for(reference)) == 1
    assert len(paystack_fake.refunds_for(other)) == 1


def test_refund_paystack_refuses(paystack_fake: PaystackFake, adapter: PaystackAdapter) -> None:
    reference = _paid(paystack_fake, adapter)

    with pytest.raises(ProviderDeclined, match="cannot be greater than the remaining"):
        adapter.refund(_refund_request(reference, amount_minor=300000))

    assert paystack_fake.refunds_for(reference) == []


def test_refund_of_unknown_transaction(
    paystack_fake: PaystackFake, adapter: PaystackAdapter
) -> None:
    with pytest.raises(ProviderDeclined) as info:
        adapter.refund(_refund_request("pd-unknown-1"))

    assert info.value.code == "transaction_not_found"
    assert paystack_fake.requests_to("/refund", "POST") == []


# --- fetch_payment ------------------------------------------------------------------------------


def test_fetch_payment_matches_the_webhook_facts(
    paystack_fake: PaystackFake, adapter: PaystackAdapter
) -> None:
    reference = _paid(paystack_fake, adapter)
    webhook = paystack.event_facts(paystack_fake.webhook_body("charge.success", reference))

    facts = adapter.fetch_payment(reference)

    assert facts.payment == webhook.payment
    assert facts.payment is not None
    assert facts.payment.status == MappedStatus(PaymentStatus.SUCCEEDED, "success")
    assert facts.payment.amount_minor == 250000
    assert facts.payment.payment_id == "pay_01"
    assert facts.payment.customer_email == "buyer@example.com"
    assert facts.refunds == ()


def test_fetch_payment_with_refunds(paystack_fake: PaystackFake, adapter: PaystackAdapter) -> None:
    reference = _paid(paystack_fake, adapter)
    result = adapter.refund(_refund_request(reference))
    paystack_fake.set_refund_status(int(result.provider_refund_id), "processed")

    facts = adapter.fetch_payment(reference)

    assert facts.refunds == (
        RefundFacts(
            provider_refund_id=result.provider_refund_id,
            amount_minor=50000,
            currency="NGN",
            status=RefundStatus.SUCCEEDED,
            refund_id="ref_01",
        ),
    )


def test_fetch_unpaid_payment(paystack_fake: PaystackFake, adapter: PaystackAdapter) -> None:
    adapter.create_checkout(_checkout())
    paystack_fake.requests.clear()

    facts = adapter.fetch_payment("pd-pay01-1")

    assert facts.payment is not None
    assert facts.payment.status == MappedStatus(PaymentStatus.PENDING, "abandoned")
    assert _paths(paystack_fake) == [f"GET {VERIFY}pd-pay01-1"]  # no refunds to list


def test_fetch_unknown_payment(paystack_fake: PaystackFake, adapter: PaystackAdapter) -> None:
    with pytest.raises(ProviderEntityNotFound, match="pd-unknown"):
        adapter.fetch_payment("pd-unknown")
    assert len(paystack_fake.requests) == 1


@pytest.mark.parametrize("fault", ["5xx", "malformed", "timeout"])
def test_fetch_payment_retries_transient_failures(
    paystack_fake: PaystackFake, adapter: PaystackAdapter, fault: str
) -> None:
    reference = _paid(paystack_fake, adapter)
    if fault == "5xx":
        paystack_fake.fail_next(VERIFY, 500)
    elif fault == "malformed":
        paystack_fake.malformed_next(VERIFY)
    else:
        paystack_fake.delay_next(VERIFY, SLOW)

    facts = adapter.fetch_payment(reference)

    assert facts.payment is not None
    assert facts.payment.status is not None
    assert facts.payment.status.status is PaymentStatus.SUCCEEDED
    assert len(paystack_fake.requests_to(VERIFY)) == 2


def test_fetch_payment_5xx_until_retries_run_out(
    paystack_fake: PaystackFake, adapter: PaystackAdapter
) -> None:
    reference = _paid(paystack_fake, adapter)
    paystack_fake.fail_next(VERIFY, 503, times=3)

    with pytest.raises(ProviderUnavailable) as info:
        adapter.fetch_payment(reference)

    assert not isinstance(info.value, ProviderOutcomeUnknown)  # a read changes nothing
    assert len(paystack_fake.requests_to(VERIFY)) == 3


# --- conversion ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("minor", "currency", "wire"),
    [(250000, "NGN", 250000), (1, "USD", 1), (2500, "XOF", 250000), (150, "kes", 150)],
)
def test_amount_to_paystack_inverts_amount_from_paystack(
    minor: int, currency: str, wire: int
) -> None:
    assert paystack.amount_to_paystack(minor, currency) == wire
    assert paystack.amount_from_paystack(wire, currency) == minor
