"""PostFinanceReader against the fake PostFinance server, through the real SDK over HTTP.

Covers: transaction states (incl. FULFILL, DECLINE, FAILED with its reason) and what they say about
money (CHF and the zero-decimal JPY), refunds, the webhook entity dispatch (linked completions,
voids and invoices), and error translation: 404 -> ProviderEntityNotFound; 5xx, 429, timeouts,
refused connections, unreadable answers and refused credentials -> ProviderUnavailable.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

import pytest
from fakes.postfinance import PostFinanceFake

from payments_core.providers.base import (
    IGNORED_EVENT,
    EventFacts,
    PaymentFacts,
    ProviderEntityNotFound,
    ProviderUnavailable,
    RefundFacts,
)
from payments_core.providers.postfinance import PostFinanceReader
from payments_core.status import MappedStatus, PaymentStatus, RefundStatus


@pytest.fixture
def reader(postfinance_fake: PostFinanceFake) -> PostFinanceReader:
    return PostFinanceReader(postfinance_fake.configuration(), postfinance_fake.space_id)


def _payment(facts: EventFacts) -> PaymentFacts:
    assert facts.payment is not None
    return facts.payment


def _refund(facts: EventFacts) -> RefundFacts:
    assert len(facts.refunds) == 1
    return facts.refunds[0]


def _create_refund(
    fake: PostFinanceFake, tx_id: int, amount: float, external_id: str
) -> dict[str, Any]:
    """Create a refund through the SDK (a real ``POST /payment/refunds``)."""
    from postfinancecheckout.models.refund_create import RefundCreate
    from postfinancecheckout.models.refund_type import RefundType
    from postfinancecheckout.service.refunds_service import RefundsService

    refund = RefundsService(fake.configuration()).post_payment_refunds(
        fake.space_id,
        RefundCreate(
            external_id=external_id,
            type=RefundType.MERCHANT_INITIATED_ONLINE,
            transaction=tx_id,
            amount=amount,
        ),
    )
    assert refund is not None and refund.id is not None
    return fake.refunds[refund.id]


# --- Transactions ---------------------------------------------------------------------------------


def test_fulfilled_chf_transaction_is_complete_facts(
    postfinance_fake: PostFinanceFake, reader: PostFinanceReader
) -> None:
    tx = postfinance_fake.create_transaction(
        "29.95",
        "CHF",
        state="FULFILL",
        merchant_reference="ORD-1042",
        meta_data={"paydesk_payment_id": "pay_123"},
    )

    facts = reader.transaction_facts(str(tx["id"]))

    payment = _payment(facts)
    assert payment.reference == str(tx["id"])
    assert payment.status == MappedStatus(PaymentStatus.SUCCEEDED, "FULFILL")
    assert payment.amount_minor == 2995
    assert payment.captured_minor == 2995
    assert payment.currency == "CHF"
    assert payment.payment_id == "pay_123"
    assert payment.host_reference == "ORD-1042"
    assert payment.complete is True
    assert payment.method == "card"
    assert payment.livemode is False  # the fake's environment is PREVIEW
    assert isinstance(payment.created_at, datetime)
    assert payment.created_at.utcoffset() is not None
    assert facts.refunds == ()
    assert facts.summary == "Transaction FULFILL"
    # The read went through the SDK: JWT-authenticated, space-scoped, at the documented path.
    (request,) = postfinance_fake.requests_to(f"/payment/transactions/{tx['id']}", "GET")
    assert request.headers["space"] == str(postfinance_fake.space_id)
    assert request.headers["authorization"].startswith("Bearer ")


@pytest.mark.parametrize(
    ("state", "status", "captured_minor"),
    [
        ("PENDING", PaymentStatus.PENDING, None),
        ("CONFIRMED", PaymentStatus.PENDING, None),
        ("PROCESSING", PaymentStatus.PROCESSING, None),
        ("AUTHORIZED", PaymentStatus.AUTHORIZED, None),
        ("COMPLETED", PaymentStatus.SUCCEEDED, 4990),
        ("FULFILL", PaymentStatus.SUCCEEDED, 4990),
        ("DECLINE", PaymentStatus.DECLINED, 4990),  # captured, but must not be fulfilled
        ("VOIDED", PaymentStatus.CANCELED, None),
    ],
)
def test_transaction_states(
    postfinance_fake: PostFinanceFake,
    reader: PostFinanceReader,
    state: str,
    status: PaymentStatus,
    captured_minor: int | None,
) -> None:
    tx = postfinance_fake.create_transaction("49.90", "CHF", state=state)

    payment = _payment(reader.transaction_facts(str(tx["id"])))

    assert payment.status == MappedStatus(status, state)
    assert payment.amount_minor == 4990
    assert payment.captured_minor == captured_minor
    assert payment.payment_id is None  # no paydesk_payment_id in metaData


def test_partial_completion_captures_the_completed_amount(
    postfinance_fake: PostFinanceFake, reader: PostFinanceReader
) -> None:
    tx = postfinance_fake.create_transaction("100.00", "CHF")
    postfinance_fake.set_transaction_state(tx["id"], "COMPLETED", completed_amount="60.05")

    payment = _payment(reader.transaction_facts(str(tx["id"])))

    assert payment.amount_minor == 10000
    assert payment.captured_minor == 6005


def test_failed_transaction_keeps_its_reason(
    postfinance_fake: PostFinanceFake, reader: PostFinanceReader
) -> None:
    tx = postfinance_fake.create_transaction("12.00", "CHF")
    postfinance_fake.set_transaction_state(tx["id"], "FAILED", failure_reason="Card expired")

    facts = reader.transaction_facts(str(tx["id"]))

    assert _payment(facts).status == MappedStatus(
        PaymentStatus.FAILED, "FAILED", failure_reason="Card expired"
    )
    assert _payment(facts).captured_minor is None
    assert facts.summary == "Transaction FAILED"


def test_zero_decimal_currency_amounts(
    postfinance_fake: PostFinanceFake, reader: PostFinanceReader
) -> None:
    tx = postfinance_fake.create_transaction(1500, "JPY", state="COMPLETED")

    payment = _payment(reader.transaction_facts(str(tx["id"])))

    assert payment.currency == "JPY"
    assert payment.amount_minor == 1500  # yen have no minor unit
    assert payment.captured_minor == 1500


def test_customer_email_and_live_environment(
    postfinance_fake: PostFinanceFake, reader: PostFinanceReader
) -> None:
    from postfinancecheckout.models.line_item_create import LineItemCreate
    from postfinancecheckout.models.line_item_type import LineItemType
    from postfinancecheckout.models.transaction_create import TransactionCreate
    from postfinancecheckout.service.transactions_service import TransactionsService

    created = TransactionsService(postfinance_fake.configuration()).post_payment_transactions(
        postfinance_fake.space_id,
        TransactionCreate(
            line_items=[
                LineItemCreate(
                    name="Widget",
                    quantity=1,
                    unique_id="li-1",
                    type=LineItemType.PRODUCT,
                    amount_including_tax=19.9,
                )
            ],
            currency="EUR",
            merchant_reference="ORD-7",
            customer_email_address="ada@example.ch",
        ),
    )
    assert created is not None and created.id is not None
    postfinance_fake.transactions[created.id]["environment"] = "LIVE"  # no request in flight

    payment = _payment(reader.transaction_facts(str(created.id)))

    assert payment.customer_email == "ada@example.ch"
    assert payment.host_reference == "ORD-7"
    assert payment.amount_minor == 1990
    assert payment.currency == "EUR"
    assert payment.livemode is True
    assert payment.status == MappedStatus(PaymentStatus.PENDING, "PENDING")


# --- Refunds --------------------------------------------------------------------------------------


def test_refund_facts_name_the_transaction_and_our_refund_id(
    postfinance_fake: PostFinanceFake, reader: PostFinanceReader
) -> None:
    tx = postfinance_fake.create_transaction("50.00", "CHF", state="FULFILL")
    refund = _create_refund(postfinance_fake, tx["id"], 10.5, "rf_01HZX")

    facts = reader.refund_facts(str(refund["id"]))

    assert facts.payment == PaymentFacts(reference=str(tx["id"]), complete=False)
    assert _refund(facts) == RefundFacts(
        provider_refund_id=str(refund["id"]),
        amount_minor=1050,
        currency="CHF",
        status=RefundStatus.SUCCEEDED,
        refund_id="rf_01HZX",
        failure_reason=None,
    )
    assert facts.summary == "Refund SUCCESSFUL"


def test_refund_created_elsewhere_has_no_refund_id(
    postfinance_fake: PostFinanceFake, reader: PostFinanceReader
) -> None:
    tx = postfinance_fake.create_transaction(3000, "JPY", state="COMPLETED")
    refund = _create_refund(postfinance_fake, tx["id"], 500, "portal-refund-1")

    refund_facts = _refund(reader.refund_facts(str(refund["id"])))

    assert refund_facts.refund_id is None
    assert refund_facts.amount_minor == 500
    assert refund_facts.currency == "JPY"


@pytest.mark.parametrize(
    ("state", "status"),
    [
        ("PENDING", RefundStatus.PROCESSING),
        ("SCHEDULED", RefundStatus.PROCESSING),
        ("MANUAL_CHECK", RefundStatus.NEEDS_ATTENTION),
        ("SUCCESSFUL", RefundStatus.SUCCEEDED),
    ],
)
def test_refund_states(
    postfinance_fake: PostFinanceFake,
    reader: PostFinanceReader,
    state: str,
    status: RefundStatus,
) -> None:
    tx = postfinance_fake.create_transaction("20.00", "CHF", state="COMPLETED")
    refund = _create_refund(postfinance_fake, tx["id"], 5.0, "rf_state")
    postfinance_fake.set_refund_state(refund["id"], state)

    facts = reader.refund_facts(str(refund["id"]))

    assert _refund(facts).status is status
    assert facts.summary == f"Refund {state}"


def test_failed_refund_keeps_its_reason(
    postfinance_fake: PostFinanceFake, reader: PostFinanceReader
) -> None:
    tx = postfinance_fake.create_transaction("20.00", "CHF", state="COMPLETED")
    refund = _create_refund(postfinance_fake, tx["id"], 20.0, "rf_fail")
    postfinance_fake.set_refund_state(refund["id"], "FAILED", failure_reason="Account closed")

    refund_facts = _refund(reader.refund_facts(str(refund["id"])))

    assert refund_facts.status is RefundStatus.FAILED
    assert refund_facts.failure_reason == "Account closed"


# --- Webhook entity dispatch ----------------------------------------------------------------------


def test_facts_dispatches_transaction_and_refund(
    postfinance_fake: PostFinanceFake, reader: PostFinanceReader
) -> None:
    tx = postfinance_fake.create_transaction("8.00", "CHF", state="COMPLETED")
    refund = _create_refund(postfinance_fake, tx["id"], 8.0, "rf_dispatch")

    assert reader.facts("Transaction", str(tx["id"])) == reader.transaction_facts(str(tx["id"]))
    assert reader.facts("Refund", str(refund["id"])) == reader.refund_facts(str(refund["id"]))


@pytest.mark.parametrize(
    ("entity", "entity_state", "tx_state", "status"),
    [
        ("TransactionCompletion", "SUCCESSFUL", "COMPLETED", PaymentStatus.SUCCEEDED),
        ("TransactionVoid", "SUCCESSFUL", "VOIDED", PaymentStatus.CANCELED),
        ("TransactionInvoice", "PAID", "FULFILL", PaymentStatus.SUCCEEDED),
    ],
)
def test_linked_entities_are_read_as_their_transaction(
    postfinance_fake: PostFinanceFake,
    reader: PostFinanceReader,
    entity: str,
    entity_state: str,
    tx_state: str,
    status: PaymentStatus,
) -> None:
    tx = postfinance_fake.create_transaction("15.00", "CHF", state=tx_state)
    linked = postfinance_fake.create_linked_entity(entity, tx["id"], entity_state)

    facts = reader.facts(entity, str(linked["id"]))

    assert facts == reader.transaction_facts(str(tx["id"]))
    assert _payment(facts).status == MappedStatus(status, tx_state)


@pytest.mark.parametrize("entity", ["Token", "ManualTask", "DeliveryIndication", "Unknown"])
def test_other_entities_are_ignored_without_a_read(
    postfinance_fake: PostFinanceFake, reader: PostFinanceReader, entity: str
) -> None:
    assert reader.facts(entity, "12345") is IGNORED_EVENT
    assert postfinance_fake.requests == []


# --- Errors ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "read",
    [
        lambda r: r.transaction_facts("999999"),
        lambda r: r.refund_facts("999999"),
        lambda r: r.facts("TransactionCompletion", "999999"),
    ],
    ids=["transaction", "refund", "completion"],
)
def test_unknown_entity_is_not_found(
    reader: PostFinanceReader, read: Callable[[PostFinanceReader], EventFacts]
) -> None:
    with pytest.raises(ProviderEntityNotFound, match="not found"):
        read(reader)


def test_non_numeric_id_is_not_found(reader: PostFinanceReader) -> None:
    with pytest.raises(ProviderEntityNotFound):
        reader.transaction_facts("tx_abc")


def test_another_space_is_not_found(postfinance_fake: PostFinanceFake) -> None:
    tx = postfinance_fake.create_transaction()
    other_space = PostFinanceReader(postfinance_fake.configuration(), postfinance_fake.space_id + 1)

    with pytest.raises(ProviderEntityNotFound):
        other_space.transaction_facts(str(tx["id"]))


@pytest.mark.parametrize("status", [500, 502, 503, 429])
def test_server_errors_are_transient(
    postfinance_fake: PostFinanceFake, reader: PostFinanceReader, status: int
) -> None:
    tx = postfinance_fake.create_transaction()
    postfinance_fake.fail_next("/payment/transactions", status)

    with pytest.raises(ProviderUnavailable, match=f"HTTP {status}"):
        reader.transaction_facts(str(tx["id"]))
    # the next read works again
    assert _payment(reader.transaction_facts(str(tx["id"]))).reference == str(tx["id"])


def test_refund_server_error_is_transient(
    postfinance_fake: PostFinanceFake, reader: PostFinanceReader
) -> None:
    tx = postfinance_fake.create_transaction("20.00", "CHF", state="COMPLETED")
    refund = _create_refund(postfinance_fake, tx["id"], 5.0, "rf_503")
    postfinance_fake.fail_next("/payment/refunds", 503, method="GET")

    with pytest.raises(ProviderUnavailable):
        reader.refund_facts(str(refund["id"]))


def test_unreadable_answer_is_transient(
    postfinance_fake: PostFinanceFake, reader: PostFinanceReader
) -> None:
    tx = postfinance_fake.create_transaction()
    postfinance_fake.malformed_next("/payment/transactions")

    with pytest.raises(ProviderUnavailable, match="unreadable"):
        reader.transaction_facts(str(tx["id"]))


def test_timeout_is_transient(postfinance_fake: PostFinanceFake) -> None:
    tx = postfinance_fake.create_transaction()
    impatient = PostFinanceReader(
        postfinance_fake.configuration(request_timeout=0.3), postfinance_fake.space_id
    )
    postfinance_fake.delay_next("/payment/transactions", 1.5)

    with pytest.raises(ProviderUnavailable, match="not reachable"):
        impatient.transaction_facts(str(tx["id"]))


def test_refused_connection_is_transient() -> None:
    fake = PostFinanceFake().start()
    configuration = fake.configuration()
    fake.stop()

    with pytest.raises(ProviderUnavailable, match="not reachable"):
        PostFinanceReader(configuration, fake.space_id).transaction_facts("100001")


@pytest.mark.parametrize(
    "overrides",
    [
        {"authentication_key": "d3Jvbmcta2V5LXdyb25nLWtleS13cm9uZy1rZXktISE="},
        {"user_id": 999},
    ],
    ids=["wrong-key", "wrong-user"],
)
def test_wrong_credentials_are_refused_by_the_fake(
    postfinance_fake: PostFinanceFake, overrides: dict[str, Any]
) -> None:
    tx = postfinance_fake.create_transaction()
    wrong = PostFinanceReader(
        postfinance_fake.configuration(**overrides), postfinance_fake.space_id
    )

    with pytest.raises(ProviderUnavailable, match="refused our credentials") as info:
        wrong.transaction_facts(str(tx["id"]))

    assert "HTTP 401" in str(info.value)
    assert "POSTFINANCE_AUTHENTICATION_KEY" in str(info.value)


def test_forbidden_is_a_credentials_problem(
    postfinance_fake: PostFinanceFake, reader: PostFinanceReader
) -> None:
    tx = postfinance_fake.create_transaction()
    postfinance_fake.fail_next("/payment/transactions", 403)

    with pytest.raises(ProviderUnavailable, match="HTTP 403, PostFinance refused our credentials"):
        reader.transaction_facts(str(tx["id"]))
