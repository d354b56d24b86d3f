"""PostFinanceAdapter against the fake PostFinance server, through the real SDK over HTTP.

The fake checks the SDK's JWT on every request. Covers: the exact TransactionCreate and
RefundCreate JSON (line item types, signed amounts in major units, JPY and KWD), the payment page
URL, refusals (400/409/422, invalid requests caught before sending), unknown outcomes (timeouts,
unreadable answers, 5xx) that never make a second transaction or refund, retries, credentials,
configuration, and reading a payment back.
"""

from __future__ import annotations

from typing import Any

import pytest
from fakes.postfinance import PostFinanceFake

from payments_core.config import Settings
from payments_core.providers.base import (
    CheckoutRequest,
    LineItem,
    LineItemKind,
    ProviderAuthError,
    ProviderDeclined,
    ProviderEntityNotFound,
    ProviderNotConfigured,
    ProviderOutcomeUnknown,
    ProviderUnavailable,
    RefundRequest,
)
from payments_core.providers.postfinance import PostFinanceAdapter
from payments_core.status import MappedStatus, PaymentStatus, RefundStatus

FIRST_TX_ID = 100_001  # the fake's first transaction id


def _settings(fake: PostFinanceFake, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "postfinance_space_id": fake.space_id,
        "postfinance_user_id": fake.user_id,
        "postfinance_authentication_key": fake.authentication_key,
        "postfinance_api_base": fake.base_url,
        "provider_timeout_seconds": 2.0,
        "provider_max_retries": 2,
    }
    values.update(overrides)
    return Settings(**values)


@pytest.fixture
def adapter(postfinance_fake: PostFinanceFake) -> PostFinanceAdapter:
    return PostFinanceAdapter.from_settings(_settings(postfinance_fake))


@pytest.fixture
def impatient(postfinance_fake: PostFinanceFake) -> PostFinanceAdapter:
    """An adapter that gives up on an answer after 0.3 s."""
    return PostFinanceAdapter.from_settings(
        _settings(postfinance_fake, provider_timeout_seconds=0.3)
    )


def _checkout(**overrides: Any) -> CheckoutRequest:
    values: dict[str, Any] = {
        "payment_id": "pay_01",
        "amount_minor": 2990,
        "currency": "CHF",
        "idempotency_key": "checkout:pay_01",
        "description": "Order 42",
    }
    values.update(overrides)
    return CheckoutRequest(**values)


def _refund(tx_id: int, **overrides: Any) -> RefundRequest:
    values: dict[str, Any] = {
        "refund_id": "rf_01",
        "payment_id": "pay_01",
        "provider_reference": str(tx_id),
        "amount_minor": 500,
        "currency": "CHF",
        "idempotency_key": "refund:rf_01:1",
    }
    values.update(overrides)
    return RefundRequest(**values)


def _posted(fake: PostFinanceFake, path: str) -> list[dict[str, Any]]:
    return [request.json() for request in fake.requests_to(path, "POST")]


def _searches(fake: PostFinanceFake, entity: str = "transactions") -> int:
    return len(fake.requests_to(f"/payment/{entity}/search", "GET"))


@pytest.fixture
def completed_tx(postfinance_fake: PostFinanceFake) -> dict[str, Any]:
    return postfinance_fake.create_transaction("20.00", "CHF", state="FULFILL")


# --- Checkout -------------------------------------------------------------------------------------


def test_checkout_sends_line_items_in_major_units(
    postfinance_fake: PostFinanceFake, adapter: PostFinanceAdapter
) -> None:
    request = _checkout(
        amount_minor=5490,
        line_items=(
            LineItem("Widget", quantity=2, unit_amount_minor=2495, sku="W-1"),
            LineItem("Shipping", 1, 900, LineItemKind.SHIPPING),
            LineItem("Card fee", 1, 100, LineItemKind.FEE),
            LineItem("Welcome discount", 1, 500, LineItemKind.DISCOUNT),
        ),
        host_reference="order-42",
        customer_email="ada@example.com",
        metadata={"channel": "web", "paydesk_payment_id": "spoofed"},
        success_url="https://shop.example/ok",
        cancel_url="https://shop.example/cancel",
    )

    result = adapter.create_checkout(request)

    assert _posted(postfinance_fake, "/payment/transactions") == [
        {
            "lineItems": [
                {
                    "name": "Widget",
                    "quantity": 2,
                    "uniqueId": "line-1",
                    "sku": "W-1",
                    "type": "PRODUCT",
                    "amountIncludingTax": 49.9,
                },
                {
                    "name": "Shipping",
                    "quantity": 1,
                    "uniqueId": "line-2",
                    "type": "SHIPPING",
                    "amountIncludingTax": 9,
                },
                {
                    "name": "Card fee",
                    "quantity": 1,
                    "uniqueId": "line-3",
                    "type": "FEE",
                    "amountIncludingTax": 1,
                },
                {
                    "name": "Welcome discount",
                    "quantity": 1,
                    "uniqueId": "line-4",
                    "type": "DISCOUNT",
                    "amountIncludingTax": -5,
                },
            ],
            "currency": "CHF",
            "merchantReference": "pay_01",
            "metaData": {
                "channel": "web",
                "paydesk_payment_id": "pay_01",
                "host_reference": "order-42",
            },
            "successUrl": "https://shop.example/ok",
            "failedUrl": "https://shop.example/cancel",
            "customerEmailAddress": "ada@example.com",
        }
    ]
    (tx,) = postfinance_fake.transactions.values()
    assert tx["authorizationAmount"] == 54.9
    assert result.provider_reference == str(tx["id"])
    assert result.status == MappedStatus(PaymentStatus.PENDING, "PENDING")
    assert result.checkout_url == (
        f"{postfinance_fake.origin}/s/{postfinance_fake.space_id}/payment/transaction/pay/"
        f"{tx['id']}?securityToken={tx['_securityToken']}"
    )
    assert result.expires_at is not None
    # Looked up by merchantReference first (no idempotency key on create), then created.
    assert [r.method for r in postfinance_fake.requests] == ["GET", "POST", "GET"]


def test_checkout_without_line_items_is_one_line_named_after_the_description(
    postfinance_fake: PostFinanceFake, adapter: PostFinanceAdapter
) -> None:
    adapter.create_checkout(_checkout(amount_minor=2990, success_url=None, cancel_url=None))

    (body,) = _posted(postfinance_fake, "/payment/transactions")
    assert body["lineItems"] == [
        {
            "name": "Order 42",
            "quantity": 1,
            "uniqueId": "line-1",
            "type": "PRODUCT",
            "amountIncludingTax": 29.9,
        }
    ]
    assert "successUrl" not in body and "customerEmailAddress" not in body


@pytest.mark.parametrize(
    ("currency", "amount_minor", "wire_text", "wire_value"),
    [
        ("JPY", 1500, "1500", 1500),
        ("KWD", 12345, "12.345", 12.345),
        ("KWD", 5, "0.005", 0.005),
        ("CHF", 7, "0.07", 0.07),
        ("CHF", 123456789012, "1234567890.12", 1234567890.12),
    ],
)
def test_checkout_amounts_on_the_wire(
    postfinance_fake: PostFinanceFake,
    adapter: PostFinanceAdapter,
    currency: str,
    amount_minor: int,
    wire_text: str,
    wire_value: float,
) -> None:
    result = adapter.create_checkout(_checkout(currency=currency, amount_minor=amount_minor))

    (request,) = postfinance_fake.requests_to("/payment/transactions", "POST")
    assert f'"amountIncludingTax": {wire_text},'.encode() in request.body
    (line,) = request.json()["lineItems"]
    assert line["amountIncludingTax"] == wire_value
    facts = adapter.fetch_payment(str(result.provider_reference))
    assert facts.payment is not None
    assert (facts.payment.amount_minor, facts.payment.currency) == (amount_minor, currency)


def test_line_items_that_do_not_sum_to_the_amount_are_refused_before_sending(
    postfinance_fake: PostFinanceFake, adapter: PostFinanceAdapter
) -> None:
    request = _checkout(amount_minor=1000, line_items=(LineItem("Widget", 1, 999),))

    with pytest.raises(ProviderDeclined, match="sum to 999") as caught:
        adapter.create_checkout(request)

    assert caught.value.code == "invalid_request"
    assert postfinance_fake.requests == []


def test_unknown_currency_is_refused_before_sending(
    postfinance_fake: PostFinanceFake, adapter: PostFinanceAdapter
) -> None:
    with pytest.raises(ProviderDeclined, match="XYZ") as caught:
        adapter.create_checkout(_checkout(currency="XYZ"))
    assert caught.value.code == "invalid_request"
    assert postfinance_fake.requests == []


def test_invalid_transaction_refused_by_postfinance_is_declined_without_retry(
    postfinance_fake: PostFinanceFake, adapter: PostFinanceAdapter
) -> None:
    # Quantity 0 passes the SDK's model but the server refuses it (400).
    request = _checkout(
        amount_minor=1000,
        line_items=(LineItem("Widget", 1, 1000), LineItem("Free gift", 0, 100)),
    )

    with pytest.raises(ProviderDeclined, match="quantity") as caught:
        adapter.create_checkout(request)

    assert (caught.value.status_code, caught.value.code) == (400, "bad_request")
    assert len(postfinance_fake.requests_to("/payment/transactions", "POST")) == 1
    assert postfinance_fake.transactions == {}


def test_unprocessable_checkout_is_declined(
    postfinance_fake: PostFinanceFake, adapter: PostFinanceAdapter
) -> None:
    postfinance_fake.fail_next("/payment/transactions", 422, method="POST")

    with pytest.raises(ProviderDeclined) as caught:
        adapter.create_checkout(_checkout())

    assert caught.value.status_code == 422
    assert len(postfinance_fake.requests_to("/payment/transactions", "POST")) == 1


def test_create_timeout_finds_the_first_transaction_by_merchant_reference(
    postfinance_fake: PostFinanceFake, impatient: PostFinanceAdapter
) -> None:
    # The fake creates the transaction, then answers too late: outcome unknown.
    postfinance_fake.delay_next("/payment/transactions", 1.5, method="POST")

    result = impatient.create_checkout(_checkout())

    (tx,) = postfinance_fake.transactions.values()
    assert result.provider_reference == str(tx["id"])
    assert result.checkout_url is not None and str(tx["id"]) in result.checkout_url
    assert len(postfinance_fake.requests_to("/payment/transactions", "POST")) == 1
    assert _searches(postfinance_fake) == 2


def test_unreadable_create_answer_finds_the_transaction(
    postfinance_fake: PostFinanceFake, adapter: PostFinanceAdapter
) -> None:
    postfinance_fake.malformed_next("/payment/transactions", method="POST")

    result = adapter.create_checkout(_checkout())

    (tx,) = postfinance_fake.transactions.values()
    assert result.provider_reference == str(tx["id"])
    assert len(postfinance_fake.requests_to("/payment/transactions", "POST")) == 1


def test_create_5xx_is_retried_then_succeeds(
    postfinance_fake: PostFinanceFake, adapter: PostFinanceAdapter
) -> None:
    postfinance_fake.fail_next("/payment/transactions", 503, method="POST")

    result = adapter.create_checkout(_checkout())

    (tx,) = postfinance_fake.transactions.values()
    assert result.provider_reference == str(tx["id"])
    assert len(postfinance_fake.requests_to("/payment/transactions", "POST")) == 2


def test_persistent_create_5xx_is_outcome_unknown(
    postfinance_fake: PostFinanceFake, adapter: PostFinanceAdapter
) -> None:
    postfinance_fake.fail_next("/payment/transactions", 500, times=10, method="POST")

    with pytest.raises(ProviderOutcomeUnknown, match="HTTP 500") as caught:
        adapter.create_checkout(_checkout())

    assert caught.value.status_code == 500
    # provider_max_retries=2: three attempts, each looking the transaction up first.
    assert len(postfinance_fake.requests_to("/payment/transactions", "POST")) == 3
    assert _searches(postfinance_fake) == 3


def test_persistent_lookup_5xx_is_unavailable_and_creates_nothing(
    postfinance_fake: PostFinanceFake, adapter: PostFinanceAdapter
) -> None:
    postfinance_fake.fail_next("/payment/transactions/search", 503, times=10)

    with pytest.raises(ProviderUnavailable) as caught:
        adapter.create_checkout(_checkout())

    assert not isinstance(caught.value, ProviderOutcomeUnknown)
    assert postfinance_fake.requests_to("/payment/transactions", "POST") == []


def test_page_url_failure_after_create_is_outcome_unknown_and_a_repeat_finds_the_transaction(
    postfinance_fake: PostFinanceFake, adapter: PostFinanceAdapter
) -> None:
    page_url = f"/payment/transactions/{FIRST_TX_ID}/payment-page-url"
    postfinance_fake.fail_next(page_url, 503, times=3)

    with pytest.raises(ProviderOutcomeUnknown, match=str(FIRST_TX_ID)):
        adapter.create_checkout(_checkout())
    result = adapter.create_checkout(_checkout())

    assert list(postfinance_fake.transactions) == [FIRST_TX_ID]
    assert result.provider_reference == str(FIRST_TX_ID)
    assert len(postfinance_fake.requests_to("/payment/transactions", "POST")) == 1


def test_existing_transaction_of_another_amount_is_a_conflict(
    postfinance_fake: PostFinanceFake, adapter: PostFinanceAdapter
) -> None:
    postfinance_fake.create_transaction("99.00", "CHF", merchant_reference="pay_01")

    with pytest.raises(ProviderDeclined) as caught:
        adapter.create_checkout(_checkout())

    assert caught.value.code == "merchant_reference_conflict"
    assert postfinance_fake.requests_to("/payment/transactions", "POST") == []


def test_refused_connection_is_unavailable_not_unknown(postfinance_fake: PostFinanceFake) -> None:
    adapter = PostFinanceAdapter.from_settings(_settings(postfinance_fake))
    postfinance_fake.stop()

    with pytest.raises(ProviderUnavailable, match="not reachable") as caught:
        adapter.create_checkout(_checkout())

    assert not isinstance(caught.value, ProviderOutcomeUnknown)


# --- Credentials and configuration ----------------------------------------------------------------


@pytest.mark.parametrize(
    "overrides",
    [
        {"postfinance_authentication_key": "d3Jvbmcta2V5LXdyb25nLWtleS13cm9uZy1rZXktISE="},
        {"postfinance_user_id": 999},
    ],
)
def test_bad_credentials_are_an_auth_error(
    postfinance_fake: PostFinanceFake, overrides: dict[str, Any]
) -> None:
    adapter = PostFinanceAdapter.from_settings(_settings(postfinance_fake, **overrides))
    tx = postfinance_fake.create_transaction(state="FULFILL")

    with pytest.raises(ProviderAuthError) as caught:
        adapter.create_checkout(_checkout())
    assert caught.value.status_code == 401
    with pytest.raises(ProviderAuthError):
        adapter.fetch_payment(str(tx["id"]))
    with pytest.raises(ProviderAuthError):
        adapter.refund(_refund(tx["id"]))

    assert len(postfinance_fake.transactions) == 1  # no retries on refused credentials
    assert len(postfinance_fake.requests) == 3


@pytest.mark.parametrize(
    ("overrides", "missing"),
    [
        ({"postfinance_user_id": 0}, "POSTFINANCE_USER_ID"),
        ({"postfinance_authentication_key": ""}, "POSTFINANCE_AUTHENTICATION_KEY"),
        ({"postfinance_space_id": 0}, "POSTFINANCE_SPACE_ID"),
        ({"postfinance_authentication_key": "not base64!"}, "not base64"),
    ],
)
def test_missing_credentials_are_not_configured(
    postfinance_fake: PostFinanceFake, overrides: dict[str, Any], missing: str
) -> None:
    with pytest.raises(ProviderNotConfigured, match=missing):
        PostFinanceAdapter.from_settings(_settings(postfinance_fake, **overrides))


# --- Refunds --------------------------------------------------------------------------------------


def test_refund_sends_external_id_and_major_units(
    postfinance_fake: PostFinanceFake,
    adapter: PostFinanceAdapter,
    completed_tx: dict[str, Any],
) -> None:
    result = adapter.refund(_refund(completed_tx["id"], amount_minor=550))

    assert _posted(postfinance_fake, "/payment/refunds") == [
        {
            "externalId": "refund:rf_01:1",
            "type": "MERCHANT_INITIATED_ONLINE",
            "transaction": completed_tx["id"],
            "amount": 5.5,
            "merchantReference": "rf_01",
            "metaData": {"paydesk_refund_id": "rf_01", "paydesk_payment_id": "pay_01"},
        }
    ]
    (refund,) = postfinance_fake.refunds.values()
    assert result.provider_refund_id == str(refund["id"])
    assert result.status is RefundStatus.SUCCEEDED
    assert result.failure_reason is None


def test_asynchronous_refund_is_processing(
    postfinance_fake: PostFinanceFake,
    adapter: PostFinanceAdapter,
    completed_tx: dict[str, Any],
) -> None:
    postfinance_fake.refund_state = "PENDING"

    assert adapter.refund(_refund(completed_tx["id"])).status is RefundStatus.PROCESSING


@pytest.mark.parametrize(
    ("currency", "amount", "amount_minor", "wire_text"),
    [("JPY", 5000, 1500, "1500"), ("KWD", "20.000", 1234, "1.234")],
)
def test_refund_amounts_on_the_wire(
    postfinance_fake: PostFinanceFake,
    adapter: PostFinanceAdapter,
    currency: str,
    amount: int | str,
    amount_minor: int,
    wire_text: str,
) -> None:
    tx = postfinance_fake.create_transaction(amount, currency, state="COMPLETED")

    result = adapter.refund(_refund(tx["id"], currency=currency, amount_minor=amount_minor))

    (request,) = postfinance_fake.requests_to("/payment/refunds", "POST")
    assert f'"amount": {wire_text},'.encode() in request.body
    assert result.status is RefundStatus.SUCCEEDED


def test_over_refund_is_declined_without_retry(
    postfinance_fake: PostFinanceFake,
    adapter: PostFinanceAdapter,
    completed_tx: dict[str, Any],
) -> None:
    with pytest.raises(ProviderDeclined, match="exceeds the refundable amount") as caught:
        adapter.refund(_refund(completed_tx["id"], amount_minor=2001))

    assert caught.value.status_code == 409
    assert len(postfinance_fake.requests_to("/payment/refunds", "POST")) == 1
    assert postfinance_fake.refunds == {}


def test_refund_of_unknown_transaction_is_declined(
    postfinance_fake: PostFinanceFake, adapter: PostFinanceAdapter
) -> None:
    with pytest.raises(ProviderDeclined) as caught:
        adapter.refund(_refund(999_999))
    assert caught.value.status_code == 404

    with pytest.raises(ProviderDeclined, match="invalid literal"):
        adapter.refund(_refund(0, provider_reference="pi_not_postfinance"))


def test_refund_timeout_makes_exactly_one_refund(
    postfinance_fake: PostFinanceFake,
    impatient: PostFinanceAdapter,
    completed_tx: dict[str, Any],
) -> None:
    postfinance_fake.delay_next("/payment/refunds", 1.5, method="POST")

    result = impatient.refund(_refund(completed_tx["id"]))

    (refund,) = postfinance_fake.refunds.values()
    assert result.provider_refund_id == str(refund["id"])
    posted = _posted(postfinance_fake, "/payment/refunds")
    assert len(posted) == 2 and posted[0] == posted[1]  # the same externalId, repeated


def test_unreadable_refund_answer_makes_exactly_one_refund(
    postfinance_fake: PostFinanceFake,
    adapter: PostFinanceAdapter,
    completed_tx: dict[str, Any],
) -> None:
    postfinance_fake.malformed_next("/payment/refunds", method="POST")

    result = adapter.refund(_refund(completed_tx["id"]))

    (refund,) = postfinance_fake.refunds.values()
    assert result.provider_refund_id == str(refund["id"])


def test_refund_repeated_by_the_service_returns_the_same_refund(
    postfinance_fake: PostFinanceFake,
    adapter: PostFinanceAdapter,
    completed_tx: dict[str, Any],
) -> None:
    first = adapter.refund(_refund(completed_tx["id"], amount_minor=2000))
    again = adapter.refund(_refund(completed_tx["id"], amount_minor=2000))

    assert again == first
    assert len(postfinance_fake.refunds) == 1


def test_refund_repeat_refused_by_postfinance_is_read_back() -> None:
    # Should PostFinance refuse a repeated externalId instead of replaying it, the refund made
    # by the attempt whose answer was lost is found by its externalId.
    with PostFinanceFake(replay_external_id=False) as fake:
        adapter = PostFinanceAdapter.from_settings(_settings(fake))
        tx = fake.create_transaction("20.00", "CHF", state="FULFILL")
        fake.malformed_next("/payment/refunds", method="POST")

        result = adapter.refund(_refund(tx["id"], amount_minor=2000))

        (refund,) = fake.refunds.values()
        assert result.provider_refund_id == str(refund["id"])
        assert len(fake.requests_to("/payment/refunds", "POST")) == 2
        assert _searches(fake, "refunds") == 1


def test_external_id_reused_for_another_amount_is_a_conflict(
    postfinance_fake: PostFinanceFake,
    adapter: PostFinanceAdapter,
    completed_tx: dict[str, Any],
) -> None:
    adapter.refund(_refund(completed_tx["id"], amount_minor=500))

    with pytest.raises(ProviderDeclined) as caught:
        adapter.refund(_refund(completed_tx["id"], amount_minor=700))

    assert caught.value.code == "external_id_conflict"
    assert len(postfinance_fake.refunds) == 1


def test_refund_5xx_is_retried_then_succeeds(
    postfinance_fake: PostFinanceFake,
    adapter: PostFinanceAdapter,
    completed_tx: dict[str, Any],
) -> None:
    postfinance_fake.fail_next("/payment/refunds", 502, method="POST")

    result = adapter.refund(_refund(completed_tx["id"]))

    assert result.status is RefundStatus.SUCCEEDED
    assert len(postfinance_fake.refunds) == 1
    assert len(postfinance_fake.requests_to("/payment/refunds", "POST")) == 2


def test_persistent_refund_5xx_is_outcome_unknown(
    postfinance_fake: PostFinanceFake,
    adapter: PostFinanceAdapter,
    completed_tx: dict[str, Any],
) -> None:
    postfinance_fake.fail_next("/payment/refunds", 503, times=10, method="POST")

    with pytest.raises(ProviderOutcomeUnknown, match="HTTP 503"):
        adapter.refund(_refund(completed_tx["id"]))

    assert len(postfinance_fake.requests_to("/payment/refunds", "POST")) == 3
    assert postfinance_fake.refunds == {}


# --- Reading a payment back -----------------------------------------------------------------------


def test_fetch_payment_reads_the_transaction(
    postfinance_fake: PostFinanceFake, adapter: PostFinanceAdapter
) -> None:
    created = adapter.create_checkout(
        _checkout(host_reference="order-42", customer_email="ada@example.com")
    )
    tx_id = int(str(created.provider_reference))
    postfinance_fake.set_transaction_state(tx_id, "FULFILL")

    facts = adapter.fetch_payment(str(tx_id))

    payment = facts.payment
    assert payment is not None
    assert payment.reference == str(tx_id)
    assert payment.status == MappedStatus(PaymentStatus.SUCCEEDED, "FULFILL")
    assert (payment.amount_minor, payment.captured_minor, payment.currency) == (2990, 2990, "CHF")
    assert payment.payment_id == "pay_01"
    assert payment.host_reference == "order-42"  # from metaData, not merchantReference
    assert payment.customer_email == "ada@example.com"
    assert payment.complete


def test_fetch_payment_of_our_transaction_without_host_reference(
    adapter: PostFinanceAdapter,
) -> None:
    created = adapter.create_checkout(_checkout())

    facts = adapter.fetch_payment(str(created.provider_reference))

    assert facts.payment is not None
    assert facts.payment.host_reference is None  # merchantReference is our own payment id


@pytest.mark.parametrize("reference", ["999999", "pi_123"])
def test_fetch_unknown_payment_is_not_found(adapter: PostFinanceAdapter, reference: str) -> None:
    with pytest.raises(ProviderEntityNotFound):
        adapter.fetch_payment(reference)


def test_fetch_payment_retries_a_5xx(
    postfinance_fake: PostFinanceFake, adapter: PostFinanceAdapter
) -> None:
    tx = postfinance_fake.create_transaction()
    postfinance_fake.fail_next("/payment/transactions", 500, method="GET")

    facts = adapter.fetch_payment(str(tx["id"]))

    assert facts.payment is not None and facts.payment.reference == str(tx["id"])


@pytest.mark.parametrize("fault", ["fail", "malformed"])
def test_persistent_read_failure_is_unavailable(
    postfinance_fake: PostFinanceFake, adapter: PostFinanceAdapter, fault: str
) -> None:
    tx = postfinance_fake.create_transaction()
    if fault == "fail":
        postfinance_fake.fail_next("/payment/transactions", 503, times=10)
    else:
        postfinance_fake.malformed_next("/payment/transactions", times=10)

    with pytest.raises(ProviderUnavailable) as caught:
        adapter.fetch_payment(str(tx["id"]))

    assert not isinstance(caught.value, ProviderOutcomeUnknown)
    assert len(postfinance_fake.requests) == 3


def test_read_timeout_is_unavailable(
    postfinance_fake: PostFinanceFake, impatient: PostFinanceAdapter
) -> None:
    tx = postfinance_fake.create_transaction()
    postfinance_fake.delay_next("/payment/transactions", 1.0, times=3)

    with pytest.raises(ProviderUnavailable, match="no answer"):
        impatient.fetch_payment(str(tx["id"]))
