"""DarajaClient (OAuth + STK Query) and callback_facts against the fake Daraja server over HTTP.

Covers: the query request (Kenyan-time Timestamp, Password scheme, bearer token), token caching
and refresh (by clock, and after Daraja refuses an expired token), the pending / success / cancel
answers, transient failures -> ProviderUnavailable, and the callback rule: a success counts only
when an STK Query confirms it.
"""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Callable, Iterator

import httpx
import pytest
from fakes.daraja import DarajaFake

from payments_core.providers.base import (
    EventFacts,
    MalformedEvent,
    PaymentFacts,
    ProviderEntityNotFound,
    ProviderUnavailable,
)
from payments_core.providers.mpesa import (
    DarajaClient,
    DarajaError,
    StkQueryResult,
    callback_facts,
)
from payments_core.status import MappedStatus, PaymentStatus

PHONE = "254708374149"
# 2026-01-05 10:15:00 UTC is 13:15:00 in Nairobi (UTC+3).
FIXED_NOW = 1767608100.0


class FakeClock:
    def __init__(self, now: float = FIXED_NOW) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def _client(
    fake: DarajaFake,
    *,
    http: httpx.Client | None = None,
    clock: Callable[[], float] = time.time,
) -> DarajaClient:
    return DarajaClient(
        fake.base_url,
        fake.consumer_key,
        fake.consumer_secret,
        fake.shortcode,
        fake.passkey,
        http=http,
        clock=clock,
    )


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def client(daraja_fake: DarajaFake, clock: FakeClock) -> Iterator[DarajaClient]:
    with _client(daraja_fake, clock=clock) as client:
        yield client


def _oauth_calls(fake: DarajaFake) -> int:
    return len(fake.requests_to("/oauth/v1/generate"))


def _payment(facts: EventFacts) -> PaymentFacts:
    assert facts.payment is not None
    return facts.payment


# --- STK Query ------------------------------------------------------------------------------------


def test_unanswered_push_is_pending(daraja_fake: DarajaFake, client: DarajaClient) -> None:
    checkout_request_id = daraja_fake.start_push()

    result = client.stk_query(checkout_request_id)

    assert result == StkQueryResult(
        status=MappedStatus(PaymentStatus.PROCESSING, "500.001.1001"),
        result_code=None,
        result_desc="The transaction is being processed",
        pending=True,
    )


def test_query_request_uses_kenyan_time_and_the_password_scheme(
    daraja_fake: DarajaFake, client: DarajaClient
) -> None:
    checkout_request_id = daraja_fake.start_push()
    daraja_fake.answer(checkout_request_id, 0)

    client.stk_query(checkout_request_id)

    (request,) = daraja_fake.requests_to("/mpesa/stkpushquery/v1/query", "POST")
    body = request.json()
    assert body["Timestamp"] == "20260105131500"
    expected = f"{daraja_fake.shortcode}{daraja_fake.passkey}20260105131500".encode()
    assert body["Password"] == base64.b64encode(expected).decode()
    assert body["BusinessShortCode"] == daraja_fake.shortcode
    assert body["CheckoutRequestID"] == checkout_request_id
    assert request.headers["authorization"].startswith("Bearer ")
    oauth = daraja_fake.requests_to("/oauth/v1/generate")[-1]  # the client's token request
    assert oauth.path == "/oauth/v1/generate?grant_type=client_credentials"
    assert oauth.headers["authorization"] == daraja_fake.basic_auth_header()


def test_paid_push(daraja_fake: DarajaFake, client: DarajaClient) -> None:
    checkout_request_id = daraja_fake.start_push()
    daraja_fake.answer(checkout_request_id, 0)

    result = client.stk_query(checkout_request_id)

    assert result == StkQueryResult(
        status=MappedStatus(PaymentStatus.SUCCEEDED, "0"),
        result_code="0",
        result_desc="The service request is processed successfully.",
        pending=False,
    )


def test_cancelled_push(daraja_fake: DarajaFake, client: DarajaClient) -> None:
    checkout_request_id = daraja_fake.start_push()
    daraja_fake.answer(checkout_request_id, 1032)

    result = client.stk_query(checkout_request_id)

    assert result.status == MappedStatus(
        PaymentStatus.CANCELED, "1032", failure_reason="cancelled by customer"
    )
    assert result.result_code == "1032"
    assert result.result_desc == "Request cancelled by user"
    assert result.pending is False


def test_unknown_checkout_request_is_not_found(
    daraja_fake: DarajaFake, client: DarajaClient
) -> None:
    with pytest.raises(ProviderEntityNotFound, match="ws_CO_unknown"):
        client.stk_query("ws_CO_unknown")


def test_other_client_errors_are_not_transient(
    daraja_fake: DarajaFake, client: DarajaClient
) -> None:
    checkout_request_id = daraja_fake.start_push()
    daraja_fake.fail_next("/mpesa/stkpushquery", 400)

    with pytest.raises(DarajaError) as info:
        client.stk_query(checkout_request_id)

    assert info.value.status_code == 400
    assert info.value.error_code == "400.002.02"


# --- Access token -------------------------------------------------------------------------------


def test_token_is_cached_across_queries(daraja_fake: DarajaFake, client: DarajaClient) -> None:
    checkout_request_id = daraja_fake.start_push()
    before = _oauth_calls(daraja_fake)

    client.stk_query(checkout_request_id)
    client.stk_query(checkout_request_id)

    assert _oauth_calls(daraja_fake) - before == 1


def test_token_is_renewed_60_seconds_before_it_expires(
    daraja_fake: DarajaFake, client: DarajaClient, clock: FakeClock
) -> None:
    checkout_request_id = daraja_fake.start_push()
    before = _oauth_calls(daraja_fake)
    client.stk_query(checkout_request_id)

    clock.now += 3599 - 61  # expires_in "3599": still more than a minute left
    client.stk_query(checkout_request_id)
    assert _oauth_calls(daraja_fake) - before == 1

    clock.now += 2  # now within the last minute: renewed before the call
    client.stk_query(checkout_request_id)
    assert _oauth_calls(daraja_fake) - before == 2
    assert len(daraja_fake.requests_to("/mpesa/stkpushquery/v1/query")) == 3  # no refused call


def test_refused_token_is_refreshed_once(daraja_fake: DarajaFake, client: DarajaClient) -> None:
    checkout_request_id = daraja_fake.start_push()
    daraja_fake.answer(checkout_request_id, 0)
    client.stk_query(checkout_request_id)
    before = _oauth_calls(daraja_fake)
    queries_before = len(daraja_fake.requests_to("/mpesa/stkpushquery/v1/query"))

    daraja_fake.expire_tokens()
    result = client.stk_query(checkout_request_id)

    assert result.status.status is PaymentStatus.SUCCEEDED
    assert _oauth_calls(daraja_fake) - before == 1
    queries = daraja_fake.requests_to("/mpesa/stkpushquery/v1/query")
    assert len(queries) - queries_before == 2  # refused with the old token, then answered
    assert queries[-2].headers["authorization"] != queries[-1].headers["authorization"]


def test_token_refused_twice_is_transient(daraja_fake: DarajaFake, client: DarajaClient) -> None:
    checkout_request_id = daraja_fake.start_push()
    daraja_fake.fail_next("/mpesa/stkpushquery", 401, times=2)

    with pytest.raises(ProviderUnavailable, match="access token"):
        client.stk_query(checkout_request_id)


def test_wrong_consumer_credentials(daraja_fake: DarajaFake) -> None:
    checkout_request_id = daraja_fake.start_push()
    with (
        DarajaClient(
            daraja_fake.base_url,
            daraja_fake.consumer_key,
            "not-the-secret",
            daraja_fake.shortcode,
            daraja_fake.passkey,
        ) as client,
        pytest.raises(ProviderUnavailable, match="MPESA_CONSUMER_SECRET"),
    ):
        client.stk_query(checkout_request_id)


@pytest.mark.parametrize("status", [500, 503, 429])
def test_oauth_server_errors_are_transient(
    daraja_fake: DarajaFake, client: DarajaClient, status: int
) -> None:
    daraja_fake.fail_next("/oauth/v1/generate", status)

    with pytest.raises(ProviderUnavailable, match=f"HTTP {status}"):
        client.stk_query("ws_CO_1")


# --- Transient failures -------------------------------------------------------------------------


@pytest.mark.parametrize("status", [500, 502, 503, 429])
def test_query_server_errors_are_transient(
    daraja_fake: DarajaFake, client: DarajaClient, status: int
) -> None:
    checkout_request_id = daraja_fake.start_push()
    daraja_fake.fail_next("/mpesa/stkpushquery", status)

    with pytest.raises(ProviderUnavailable, match=f"HTTP {status}"):
        client.stk_query(checkout_request_id)


def test_500_001_1001_with_another_message_is_not_pending(daraja_fake: DarajaFake) -> None:
    # Daraja overloads the pending code, e.g. for a wrong Password (wrong passkey here).
    checkout_request_id = daraja_fake.start_push()
    with (
        DarajaClient(
            daraja_fake.base_url,
            daraja_fake.consumer_key,
            daraja_fake.consumer_secret,
            daraja_fake.shortcode,
            "wrong-passkey",
        ) as client,
        pytest.raises(ProviderUnavailable, match="Wrong credentials"),
    ):
        client.stk_query(checkout_request_id)


def test_unreadable_answer_is_transient(daraja_fake: DarajaFake, client: DarajaClient) -> None:
    checkout_request_id = daraja_fake.start_push()
    daraja_fake.answer(checkout_request_id, 0)
    daraja_fake.malformed_next("/mpesa/stkpushquery")

    with pytest.raises(ProviderUnavailable, match="unreadable"):
        client.stk_query(checkout_request_id)


def test_timeout_is_transient(daraja_fake: DarajaFake) -> None:
    checkout_request_id = daraja_fake.start_push()
    daraja_fake.delay_next("/mpesa/stkpushquery", 1.5)
    with (
        httpx.Client(timeout=0.3) as http,
        _client(daraja_fake, http=http) as client,
        pytest.raises(ProviderUnavailable, match="not reachable"),
    ):
        client.stk_query(checkout_request_id)


def test_refused_connection_is_transient() -> None:
    fake = DarajaFake().start()
    client = _client(fake)
    fake.stop()

    with client, pytest.raises(ProviderUnavailable, match="not reachable"):
        client.stk_query("ws_CO_1")


def test_shared_http_client_is_not_closed(daraja_fake: DarajaFake) -> None:
    with httpx.Client() as http:
        with _client(daraja_fake, http=http):
            pass
        assert not http.is_closed


# --- callback_facts -----------------------------------------------------------------------------


def test_success_confirmed_by_the_query(daraja_fake: DarajaFake, client: DarajaClient) -> None:
    checkout_request_id = daraja_fake.start_push(amount=150)
    daraja_fake.answer(checkout_request_id, 0, receipt="QKH94M1Z11")
    raw = daraja_fake.callback_body(checkout_request_id)

    facts = callback_facts(raw, client.stk_query(checkout_request_id))

    assert facts.payment == PaymentFacts(
        reference=checkout_request_id,
        status=MappedStatus(PaymentStatus.SUCCEEDED, "0"),
        amount_minor=15000,  # Amount 150.0 KES on the wire
        currency="KES",
        captured_minor=15000,
        complete=False,
        method="mobile_money",
        customer_phone=PHONE,
        details={"receipt": "QKH94M1Z11"},
    )
    assert facts.refunds == ()
    assert facts.summary == (
        "STK callback ResultCode 0: The service request is processed successfully."
    )


def test_success_without_query_is_only_processing(daraja_fake: DarajaFake) -> None:
    checkout_request_id = daraja_fake.start_push(amount=20)
    daraja_fake.answer(checkout_request_id, 0)

    payment = _payment(callback_facts(daraja_fake.callback_body(checkout_request_id), None))

    assert payment.status == MappedStatus(PaymentStatus.PROCESSING, "0")
    assert payment.amount_minor == 2000  # what the callback claims, to be checked
    assert payment.captured_minor is None


def test_success_while_query_is_pending_is_processing(
    daraja_fake: DarajaFake, client: DarajaClient
) -> None:
    checkout_request_id = daraja_fake.start_push()
    pending = client.stk_query(checkout_request_id)  # asked before the customer answered
    daraja_fake.answer(checkout_request_id, 0)

    payment = _payment(callback_facts(daraja_fake.callback_body(checkout_request_id), pending))

    assert pending.pending
    assert payment.status == MappedStatus(PaymentStatus.PROCESSING, "500.001.1001")
    assert payment.captured_minor is None


def test_success_contradicted_by_the_query_takes_the_query_status(
    daraja_fake: DarajaFake, client: DarajaClient
) -> None:
    checkout_request_id = daraja_fake.start_push()
    daraja_fake.answer(checkout_request_id, 0)
    forged = daraja_fake.callback_body(checkout_request_id)  # a "success" Daraja does not confirm
    daraja_fake.answer(checkout_request_id, 1032)

    payment = _payment(callback_facts(forged, client.stk_query(checkout_request_id)))

    assert payment.status == MappedStatus(
        PaymentStatus.CANCELED, "1032", failure_reason="cancelled by customer"
    )
    assert payment.captured_minor is None


@pytest.mark.parametrize(
    ("code", "status"),
    [
        (1032, PaymentStatus.CANCELED),
        (1037, PaymentStatus.EXPIRED),
        (2001, PaymentStatus.FAILED),
        (1, PaymentStatus.FAILED),
    ],
)
def test_failure_callback_applies_without_query(
    daraja_fake: DarajaFake, code: int, status: PaymentStatus
) -> None:
    checkout_request_id = daraja_fake.start_push()
    daraja_fake.answer(checkout_request_id, code)

    facts = callback_facts(daraja_fake.callback_body(checkout_request_id), None)

    payment = _payment(facts)
    assert payment.status is not None
    assert payment.status.status is status
    assert payment.status.provider_state == str(code)
    assert payment.amount_minor is None  # no CallbackMetadata on failures
    assert payment.captured_minor is None
    assert payment.customer_phone is None
    assert payment.details == {}


def test_definitive_query_wins_over_a_failure_callback(
    daraja_fake: DarajaFake, client: DarajaClient
) -> None:
    checkout_request_id = daraja_fake.start_push()
    daraja_fake.answer(checkout_request_id, 1032)
    cancelled = daraja_fake.callback_body(checkout_request_id)
    daraja_fake.answer(checkout_request_id, 0)  # e.g. a forged cancel for a paid request

    payment = _payment(callback_facts(cancelled, client.stk_query(checkout_request_id)))

    assert payment.status == MappedStatus(PaymentStatus.SUCCEEDED, "0")
    assert payment.captured_minor is None  # a failure callback carries no amount


def test_integer_amount_and_missing_balance_value() -> None:
    raw = json.dumps(
        {
            "Body": {
                "stkCallback": {
                    "MerchantRequestID": "29115-34620561-1",
                    "CheckoutRequestID": "ws_CO_05012026131500123456",
                    "ResultCode": "0",
                    "ResultDesc": "The service request is processed successfully.",
                    "CallbackMetadata": {
                        "Item": [
                            {"Name": "Amount", "Value": 1},
                            {"Name": "MpesaReceiptNumber", "Value": "QKH94M1Z11"},
                            {"Name": "Balance"},
                            {"Name": "PhoneNumber", "Value": 254708374149},
                        ]
                    },
                }
            }
        }
    ).encode()
    confirmed = StkQueryResult(MappedStatus(PaymentStatus.SUCCEEDED, "0"), "0", "ok", False)

    payment = _payment(callback_facts(raw, confirmed))

    assert payment.amount_minor == 100
    assert payment.captured_minor == 100
    assert payment.customer_phone == PHONE


@pytest.mark.parametrize(
    "raw",
    [
        b"not json",
        b"[]",
        b'{"Body": {}}',
        b'{"Body": {"stkCallback": {"ResultCode": 0}}}',
        b'{"Body": {"stkCallback": {"CheckoutRequestID": "ws_CO_1"}}}',
        b'{"Body": {"stkCallback": {"CheckoutRequestID": "ws_CO_1", "ResultCode": "x"}}}',
        b'{"Body": {"stkCallback": {"CheckoutRequestID": "ws_CO_1", "ResultCode": 0,'
        b' "CallbackMetadata": {"Item": [{"Name": "Amount", "Value": "lots"}]}}}}',
    ],
)
def test_malformed_callbacks(raw: bytes) -> None:
    with pytest.raises(MalformedEvent):
        callback_facts(raw, None)
