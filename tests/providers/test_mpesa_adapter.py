"""MpesaAdapter and DarajaClient.stk_push against the fake Daraja server over HTTP (127.0.0.1).

Covers: the STK push on the wire (Password/Timestamp in Kenyan time, whole shillings, normalised
phone, field lengths), the cached OAuth token, declines, unknown outcomes (timeout, 5xx,
unreadable answer: ProviderOutcomeUnknown and exactly one push), throttling, bad credentials,
what is refused before any call (other currencies, shilling fractions, phone, callback URL),
fetch_payment by STK Query, and refunds refused.
"""

from __future__ import annotations

import base64
from collections.abc import Iterator
from typing import Any

import pytest
from fakes.daraja import DarajaFake

from payments_core.config import Settings
from payments_core.providers.base import (
    CheckoutRequest,
    OperationNotSupported,
    ProviderAuthError,
    ProviderDeclined,
    ProviderEntityNotFound,
    ProviderNotConfigured,
    ProviderOutcomeUnknown,
    ProviderUnavailable,
    RefundRequest,
)
from payments_core.providers.mpesa import MpesaAdapter, amount_to_mpesa, normalize_msisdn
from payments_core.status import MappedStatus, PaymentStatus

TIMEOUT = 0.3
SLOW = 1.0
PUSH = "/mpesa/stkpush/v1/processrequest"
QUERY = "/mpesa/stkpushquery/v1/query"
OAUTH = "/oauth/v1/generate"
CALLBACK = "https://pay.example.com/webhooks/mpesa/s3cret-token"
# 2026-01-05 10:15:00 UTC is 13:15:00 in Nairobi (UTC+3).
FIXED_NOW = 1767608100.0


def _settings(fake: DarajaFake, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "mpesa_consumer_key": fake.consumer_key,
        "mpesa_consumer_secret": fake.consumer_secret,
        "mpesa_passkey": fake.passkey,
        "mpesa_shortcode": fake.shortcode,
        "mpesa_api_base": fake.base_url,
        "provider_timeout_seconds": TIMEOUT,
        "provider_max_retries": 2,
    }
    values.update(overrides)
    return Settings(_env_file=None, **values)  # type: ignore[call-arg]


@pytest.fixture
def sleeps() -> list[float]:
    return []


@pytest.fixture
def adapter(daraja_fake: DarajaFake, sleeps: list[float]) -> Iterator[MpesaAdapter]:
    with MpesaAdapter.from_settings(
        _settings(daraja_fake), clock=lambda: FIXED_NOW, sleep=sleeps.append
    ) as adapter:
        yield adapter


def _checkout(**overrides: Any) -> CheckoutRequest:
    values: dict[str, Any] = {
        "payment_id": "pay_01HXYZABCDEF",
        "amount_minor": 15000,  # KES 150
        "currency": "KES",
        "idempotency_key": "pd-pay01-1",
        "customer_phone": "0712 345 678",
        "host_reference": "ORD-42/2026",
        "description": "Order 42: two mangoes and a pineapple",
        "callback_url": CALLBACK,
    }
    values.update(overrides)
    return CheckoutRequest(**values)


# --- create_checkout ----------------------------------------------------------------------------


def test_push_on_the_wire(daraja_fake: DarajaFake, adapter: MpesaAdapter) -> None:
    result = adapter.create_checkout(_checkout())

    (sent,) = daraja_fake.requests_to(PUSH, "POST")
    password = base64.b64encode(
        f"{daraja_fake.shortcode}{daraja_fake.passkey}20260105131500".encode()
    ).decode()
    assert sent.json() == {
        "BusinessShortCode": daraja_fake.shortcode,
        "Password": password,
        "Timestamp": "20260105131500",  # Nairobi time, not UTC (10:15)
        "TransactionType": "CustomerPayBillOnline",
        "Amount": 150,  # whole shillings, an integer
        "PartyA": "254712345678",
        "PartyB": daraja_fake.shortcode,
        "PhoneNumber": "254712345678",
        "CallBackURL": CALLBACK,
        "AccountReference": "ORD422026",  # letters and digits, at most 12
        "TransactionDesc": "Order 42 two",  # at most 13
    }
    assert sent.headers["authorization"].startswith("Bearer ")
    (push,) = daraja_fake.pushes.values()
    assert result.provider_reference == push.checkout_request_id
    assert result.checkout_url is None
    assert result.status.status is PaymentStatus.PENDING
    assert result.details == {
        "merchant_request_id": push.merchant_request_id,
        "customer_message": "Success. Request accepted for processing",
    }


def test_long_references_are_cut_to_daraja_limits(
    daraja_fake: DarajaFake, adapter: MpesaAdapter
) -> None:
    adapter.create_checkout(_checkout(host_reference=None, description=None))

    body = daraja_fake.requests_to(PUSH, "POST")[0].json()
    assert body["AccountReference"] == "pay01HXYZABC"  # from our payment id
    assert len(body["AccountReference"]) <= 12
    assert body["TransactionDesc"] == "Payment"


def test_timestamp_is_kenyan_time_by_the_real_clock(sleeps: list[float]) -> None:
    with DarajaFake(max_timestamp_skew=120) as fake:  # refuses a UTC timestamp (3 h off)
        with MpesaAdapter.from_settings(_settings(fake), sleep=sleeps.append) as adapter:
            result = adapter.create_checkout(_checkout())

        assert result.provider_reference in fake.pushes


def test_token_is_cached_across_pushes(daraja_fake: DarajaFake, adapter: MpesaAdapter) -> None:
    adapter.create_checkout(_checkout())
    adapter.create_checkout(_checkout(payment_id="pay_02"))

    assert len(daraja_fake.requests_to(OAUTH)) == 1
    assert len(daraja_fake.pushes) == 2


@pytest.mark.parametrize(
    ("overrides", "code"),
    [
        ({"currency": "USD"}, "currency_not_supported"),
        ({"currency": "JPY", "amount_minor": 150}, "currency_not_supported"),
        ({"currency": "KWD", "amount_minor": 150000}, "currency_not_supported"),
        ({"amount_minor": 15050}, "amount_not_whole_shillings"),  # KES 150.50
        ({"amount_minor": 1}, "amount_not_whole_shillings"),
        ({"amount_minor": 0}, "invalid_amount"),
        ({"customer_phone": None}, "phone_required"),
        ({"customer_phone": "+41 79 123 45 67"}, "invalid_phone"),
        ({"customer_phone": "0712"}, "invalid_phone"),
        ({"callback_url": None}, "callback_url_required"),
    ],
)
def test_refused_before_any_call(
    daraja_fake: DarajaFake, adapter: MpesaAdapter, overrides: dict[str, Any], code: str
) -> None:
    with pytest.raises(ProviderDeclined) as info:
        adapter.create_checkout(_checkout(**overrides))

    assert info.value.code == code
    assert daraja_fake.requests == []


def test_push_refused_by_daraja(daraja_fake: DarajaFake, adapter: MpesaAdapter) -> None:
    daraja_fake.fail_next(
        PUSH,
        400,
        body={
            "requestId": "1-2-3",
            "errorCode": "400.002.02",
            "errorMessage": "Bad Request - Invalid PhoneNumber",
        },
    )

    with pytest.raises(ProviderDeclined, match="Invalid PhoneNumber") as info:
        adapter.create_checkout(_checkout())

    assert info.value.code == "400.002.02"
    assert len(daraja_fake.requests_to(PUSH)) == 1


def test_push_not_accepted(daraja_fake: DarajaFake, adapter: MpesaAdapter) -> None:
    daraja_fake.fail_next(
        PUSH, 200, body={"ResponseCode": "1", "ResponseDescription": "Rejected by Safaricom"}
    )

    with pytest.raises(ProviderDeclined, match="Rejected by Safaricom") as info:
        adapter.create_checkout(_checkout())

    assert info.value.code == "1"


def test_push_timeout_is_unknown_and_not_repeated(
    daraja_fake: DarajaFake, adapter: MpesaAdapter, sleeps: list[float]
) -> None:
    daraja_fake.delay_next(PUSH, SLOW)  # the prompt went out, the answer comes too late

    with pytest.raises(ProviderOutcomeUnknown, match="may have been carried out"):
        adapter.create_checkout(_checkout())

    assert len(daraja_fake.requests_to(PUSH)) == 1  # exactly one push
    assert len(daraja_fake.pushes) == 1
    assert sleeps == []


@pytest.mark.parametrize("status", [500, 503])
def test_push_5xx_is_unknown_and_not_repeated(
    daraja_fake: DarajaFake, adapter: MpesaAdapter, status: int
) -> None:
    daraja_fake.fail_next(PUSH, status, body={"errorCode": "500.001.01", "errorMessage": "Oops"})

    with pytest.raises(ProviderOutcomeUnknown) as info:
        adapter.create_checkout(_checkout())

    assert info.value.status_code == status
    assert len(daraja_fake.requests_to(PUSH)) == 1


def test_unreadable_push_answer_is_unknown(daraja_fake: DarajaFake, adapter: MpesaAdapter) -> None:
    daraja_fake.malformed_next(PUSH)

    with pytest.raises(ProviderOutcomeUnknown, match="unreadable"):
        adapter.create_checkout(_checkout())

    assert len(daraja_fake.requests_to(PUSH)) == 1
    assert len(daraja_fake.pushes) == 1  # Daraja did push


def test_throttled_push_is_unavailable_not_unknown(
    daraja_fake: DarajaFake, adapter: MpesaAdapter
) -> None:
    daraja_fake.fail_next(PUSH, 429)

    with pytest.raises(ProviderUnavailable) as info:
        adapter.create_checkout(_checkout())

    assert not isinstance(info.value, ProviderOutcomeUnknown)
    assert daraja_fake.pushes == {}


def test_refused_token_is_replaced_and_the_push_sent(
    daraja_fake: DarajaFake, adapter: MpesaAdapter
) -> None:
    adapter.create_checkout(_checkout())
    daraja_fake.expire_tokens()

    adapter.create_checkout(_checkout(payment_id="pay_02"))

    assert len(daraja_fake.requests_to(OAUTH)) == 2
    assert len(daraja_fake.requests_to(PUSH)) == 3  # refused once (not processed), then sent
    assert len(daraja_fake.pushes) == 2


def test_oauth_outage_is_retried_before_pushing(
    daraja_fake: DarajaFake, adapter: MpesaAdapter, sleeps: list[float]
) -> None:
    daraja_fake.fail_next(OAUTH, 503)

    adapter.create_checkout(_checkout())

    assert len(daraja_fake.requests_to(OAUTH)) == 2
    assert len(daraja_fake.pushes) == 1
    assert len(sleeps) == 1


def test_unreachable_daraja_is_unavailable_not_unknown(sleeps: list[float]) -> None:
    fake = DarajaFake().start()
    settings = _settings(fake)
    fake.stop()

    with (
        MpesaAdapter.from_settings(settings, sleep=sleeps.append) as adapter,
        pytest.raises(ProviderUnavailable) as info,
    ):
        adapter.create_checkout(_checkout())

    assert not isinstance(info.value, ProviderOutcomeUnknown)


def test_wrong_consumer_secret(daraja_fake: DarajaFake, sleeps: list[float]) -> None:
    settings = _settings(daraja_fake, mpesa_consumer_secret="not-the-secret")
    with (
        MpesaAdapter.from_settings(settings, sleep=sleeps.append) as adapter,
        pytest.raises(ProviderAuthError, match="MPESA_CONSUMER_SECRET") as info,
    ):
        adapter.create_checkout(_checkout())

    assert not isinstance(info.value, ProviderUnavailable)  # not retried as an outage
    assert len(daraja_fake.requests_to(OAUTH)) == 1
    assert daraja_fake.requests_to(PUSH) == []


def test_wrong_passkey(daraja_fake: DarajaFake, sleeps: list[float]) -> None:
    settings = _settings(daraja_fake, mpesa_passkey="wrong-passkey")
    with (
        MpesaAdapter.from_settings(settings, sleep=sleeps.append) as adapter,
        pytest.raises(ProviderAuthError, match="MPESA_PASSKEY"),
    ):
        adapter.create_checkout(_checkout())

    assert len(daraja_fake.requests_to(PUSH)) == 1
    assert daraja_fake.pushes == {}


@pytest.mark.parametrize(
    "missing", ["mpesa_consumer_key", "mpesa_consumer_secret", "mpesa_passkey"]
)
def test_not_configured(daraja_fake: DarajaFake, missing: str) -> None:
    with pytest.raises(ProviderNotConfigured, match=missing.upper()):
        MpesaAdapter.from_settings(_settings(daraja_fake, **{missing: ""}))


# --- fetch_payment ------------------------------------------------------------------------------


def _pushed(adapter: MpesaAdapter) -> str:
    reference = adapter.create_checkout(_checkout()).provider_reference
    assert reference is not None
    return reference


def test_fetch_pending(daraja_fake: DarajaFake, adapter: MpesaAdapter) -> None:
    reference = _pushed(adapter)

    facts = adapter.fetch_payment(reference)

    assert facts.payment is not None
    assert facts.payment.reference == reference
    assert facts.payment.status == MappedStatus(PaymentStatus.PROCESSING, "500.001.1001")
    assert facts.payment.currency == "KES"
    assert facts.payment.complete is False
    assert facts.summary == "STK Query pending: The transaction is being processed"


def test_fetch_paid(daraja_fake: DarajaFake, adapter: MpesaAdapter) -> None:
    reference = _pushed(adapter)
    daraja_fake.answer(reference, 0)

    facts = adapter.fetch_payment(reference)

    assert facts.payment is not None
    assert facts.payment.status == MappedStatus(PaymentStatus.SUCCEEDED, "0")
    assert facts.payment.details == {
        "result_code": "0",
        "result_desc": "The service request is processed successfully.",
    }
    (query,) = daraja_fake.requests_to(QUERY)
    assert query.json()["Timestamp"] == "20260105131500"
    assert query.json()["CheckoutRequestID"] == reference


def test_fetch_cancelled(daraja_fake: DarajaFake, adapter: MpesaAdapter) -> None:
    reference = _pushed(adapter)
    daraja_fake.answer(reference, 1032)

    facts = adapter.fetch_payment(reference)

    assert facts.payment is not None
    assert facts.payment.status == MappedStatus(
        PaymentStatus.CANCELED, "1032", failure_reason="cancelled by customer"
    )


def test_fetch_unknown(daraja_fake: DarajaFake, adapter: MpesaAdapter) -> None:
    with pytest.raises(ProviderEntityNotFound):
        adapter.fetch_payment("ws_CO_unknown")


def test_fetch_retries_transient_failures(
    daraja_fake: DarajaFake, adapter: MpesaAdapter, sleeps: list[float]
) -> None:
    reference = _pushed(adapter)
    daraja_fake.answer(reference, 0)
    daraja_fake.delay_next(QUERY, SLOW)  # the first query times out

    facts = adapter.fetch_payment(reference)

    assert facts.payment is not None
    assert facts.payment.status == MappedStatus(PaymentStatus.SUCCEEDED, "0")
    assert len(daraja_fake.requests_to(QUERY)) == 2
    assert len(sleeps) == 1


def test_fetch_5xx_until_retries_run_out(daraja_fake: DarajaFake, adapter: MpesaAdapter) -> None:
    reference = _pushed(adapter)
    daraja_fake.fail_next(QUERY, 503, times=3)

    with pytest.raises(ProviderUnavailable):
        adapter.fetch_payment(reference)

    assert len(daraja_fake.requests_to(QUERY)) == 3


def test_fetch_malformed_answer_is_retried(daraja_fake: DarajaFake, adapter: MpesaAdapter) -> None:
    reference = _pushed(adapter)
    daraja_fake.answer(reference, 0)
    daraja_fake.malformed_next(QUERY)

    facts = adapter.fetch_payment(reference)

    assert facts.payment is not None
    assert facts.payment.status == MappedStatus(PaymentStatus.SUCCEEDED, "0")


def test_refund_is_not_supported(daraja_fake: DarajaFake, adapter: MpesaAdapter) -> None:
    request = RefundRequest(
        refund_id="ref_01",
        payment_id="pay_01",
        provider_reference="ws_CO_1",
        amount_minor=15000,
        currency="KES",
        idempotency_key="refund:ref_01:1",
    )
    with pytest.raises(OperationNotSupported):
        adapter.refund(request)
    assert daraja_fake.requests == []


# --- conversions --------------------------------------------------------------------------------


@pytest.mark.parametrize(("minor", "shillings"), [(100, 1), (15000, 150), (25000000, 250000)])
def test_amount_to_mpesa(minor: int, shillings: int) -> None:
    assert amount_to_mpesa(minor, "KES") == shillings


@pytest.mark.parametrize(
    ("phone", "msisdn"),
    [
        ("254712345678", "254712345678"),
        ("+254 712 345 678", "254712345678"),
        ("0712-345-678", "254712345678"),
        ("712345678", "254712345678"),
        ("0110345678", "254110345678"),
    ],
)
def test_normalize_msisdn(phone: str, msisdn: str) -> None:
    assert normalize_msisdn(phone) == msisdn


@pytest.mark.parametrize("phone", ["", "0812345678", "25471234567", "2547123456789", "abc"])
def test_normalize_msisdn_refuses(phone: str) -> None:
    with pytest.raises(ProviderDeclined):
        normalize_msisdn(phone)
