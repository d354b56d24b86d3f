"""Provider status-mapping tables and the monotonic transition rules they feed.

* State by state: every member of every provider ``Literal``/SDK enum has an expected mapping
  written out here (iterating the type itself, so a new state fails until it is mapped), unknown
  wire values raise ``UnknownProviderState`` (except Paystack transactions: PENDING), failure
  reasons are carried.
* Monotonic folds: a provider's sequence, in every order and with duplicates, ends in one status.
* ``payments_core.status`` itself: all 81 payment transitions against an explicit table.
"""

from __future__ import annotations

import itertools
import pickle
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any, Literal, TypeVar, get_args, get_origin

import pytest
import stripe as stripe_sdk
from postfinancecheckout.models.refund_state import RefundState
from postfinancecheckout.models.transaction_state import TransactionState

from payments_core.providers import manual, mpesa, paystack, postfinance
from payments_core.providers import stripe as stripe_mapping
from payments_core.providers.base import (
    PaymentMethod,
    ProviderName,
    UnknownProviderState,
)
from payments_core.status import (
    Decision,
    DisputeStatus,
    MappedStatus,
    PaymentStatus,
    ProofStatus,
    RefundStatus,
    decide_payment,
    decide_refund,
    is_late_success,
)

T = TypeVar("T")

P = PaymentStatus
R = RefundStatus
D = DisputeStatus


def literal_values(literal_type: Any) -> list[str]:
    return list(get_args(literal_type))


# ================================================================================================
# base.py
# ================================================================================================


def test_provider_and_method_names() -> None:
    assert {p.value for p in ProviderName} == {
        "stripe",
        "postfinance",
        "paystack",
        "mpesa",
        "manual",
        "dummy",
    }
    assert {m.value for m in PaymentMethod} == {
        "card",
        "bank_transfer",
        "cash_on_delivery",
        "mobile_money",
        "twint",
        "bank_debit",
        "ussd",
        "wallet",
        "other",
    }


def test_unknown_provider_state_error() -> None:
    error = UnknownProviderState(ProviderName.STRIPE, "Refund status", "reversed")
    assert isinstance(error, ValueError)
    assert (error.provider, error.kind, error.value) == (
        ProviderName.STRIPE,
        "Refund status",
        "reversed",
    )
    assert str(error) == "unknown stripe Refund status: 'reversed'"
    copy = pickle.loads(pickle.dumps(error))  # noqa: S301 - our own bytes, just made
    assert isinstance(copy, UnknownProviderState)
    assert str(copy) == str(error)
    assert copy.value == "reversed"


# ================================================================================================
# Stripe (providers.md 1.6-1.9)
# ================================================================================================

STRIPE_PAYMENT_INTENT: dict[str, PaymentStatus] = {
    "requires_payment_method": P.PENDING,
    "requires_confirmation": P.PENDING,
    "requires_action": P.PENDING,
    "processing": P.PROCESSING,
    "requires_capture": P.AUTHORIZED,
    "canceled": P.CANCELED,
    "succeeded": P.SUCCEEDED,
}


@pytest.mark.parametrize("state", literal_values(stripe_mapping.PaymentIntentStatus))
def test_stripe_payment_intent_every_status(state: str) -> None:
    assert stripe_mapping.map_payment_intent(state) == MappedStatus(
        STRIPE_PAYMENT_INTENT[state], state, None
    )


def test_stripe_payment_intent_table_matches_literal() -> None:
    assert set(STRIPE_PAYMENT_INTENT) == set(literal_values(stripe_mapping.PaymentIntentStatus))


def test_stripe_failed_attempt_carries_error() -> None:
    mapped = stripe_mapping.map_payment_intent(
        "requires_payment_method", last_payment_error="Your card was declined."
    )
    assert mapped == MappedStatus(P.PENDING, "requires_payment_method", "Your card was declined.")
    # An error object without message/code still marks the attempt failed.
    blank = stripe_mapping.map_payment_intent("requires_payment_method", last_payment_error="")
    assert blank.status is P.PENDING
    assert blank.failure_reason == "payment attempt failed"


@pytest.mark.parametrize(
    "state",
    [
        s
        for s in literal_values(stripe_mapping.PaymentIntentStatus)
        if s != "requires_payment_method"
    ],
)
def test_stripe_last_payment_error_only_matters_for_requires_payment_method(state: str) -> None:
    mapped = stripe_mapping.map_payment_intent(state, last_payment_error="card_declined")
    assert mapped == MappedStatus(STRIPE_PAYMENT_INTENT[state], state, None)


STRIPE_CHECKOUT_SESSION: dict[tuple[str, str], PaymentStatus] = {
    ("open", "paid"): P.PENDING,
    ("open", "unpaid"): P.PENDING,
    ("open", "no_payment_required"): P.PENDING,
    ("complete", "paid"): P.SUCCEEDED,
    ("complete", "no_payment_required"): P.SUCCEEDED,
    ("complete", "unpaid"): P.PROCESSING,
    ("expired", "paid"): P.EXPIRED,
    ("expired", "unpaid"): P.EXPIRED,
    ("expired", "no_payment_required"): P.EXPIRED,
}


@pytest.mark.parametrize(
    ("status", "payment_status"),
    list(
        itertools.product(
            literal_values(stripe_mapping.CheckoutSessionStatus),
            literal_values(stripe_mapping.CheckoutSessionPaymentStatus),
        )
    ),
)
def test_stripe_checkout_session_every_combination(status: str, payment_status: str) -> None:
    assert stripe_mapping.map_checkout_session(status, payment_status) == MappedStatus(
        STRIPE_CHECKOUT_SESSION[(status, payment_status)], f"{status}/{payment_status}", None
    )


STRIPE_REFUND: dict[str, RefundStatus] = {
    "pending": R.PROCESSING,
    "requires_action": R.PROCESSING,
    "succeeded": R.SUCCEEDED,
    "failed": R.FAILED,
    "canceled": R.CANCELED,
}


@pytest.mark.parametrize("state", literal_values(stripe_mapping.StripeRefundStatus))
def test_stripe_refund_every_status(state: str) -> None:
    assert stripe_mapping.map_refund_status(state) is STRIPE_REFUND[state]


STRIPE_DISPUTE: dict[str, DisputeStatus] = {
    "needs_response": D.NEEDS_RESPONSE,
    "warning_needs_response": D.NEEDS_RESPONSE,
    "appeal_needs_response": D.NEEDS_RESPONSE,
    "under_review": D.UNDER_REVIEW,
    "warning_under_review": D.UNDER_REVIEW,
    "appeal_under_review": D.UNDER_REVIEW,
    "won": D.WON,
    "lost": D.LOST,
    "warning_closed": D.CLOSED,
    "prevented": D.CLOSED,
}


@pytest.mark.parametrize("state", literal_values(stripe_mapping.StripeDisputeStatus))
def test_stripe_dispute_every_status(state: str) -> None:
    assert stripe_mapping.map_dispute_status(state) is STRIPE_DISPUTE[state]


def _sdk_literal(cls: type, field: str) -> set[str]:
    """The ``Literal[...]`` part of an SDK annotation such as ``Union[Literal[...], str]``."""
    for arg in get_args(cls.__annotations__[field]):
        if get_origin(arg) is Literal:
            return set(get_args(arg))
    raise AssertionError(f"{cls.__name__}.{field} has no Literal in its annotation")


@pytest.mark.parametrize(
    ("ours", "sdk_class", "field"),
    [
        (stripe_mapping.PaymentIntentStatus, stripe_sdk.PaymentIntent, "status"),
        (stripe_mapping.StripeDisputeStatus, stripe_sdk.Dispute, "status"),
        (stripe_mapping.CheckoutSessionStatus, stripe_sdk.checkout.Session, "status"),
        (
            stripe_mapping.CheckoutSessionPaymentStatus,
            stripe_sdk.checkout.Session,
            "payment_status",
        ),
    ],
)
def test_stripe_literals_match_sdk_annotations(ours: Any, sdk_class: type, field: str) -> None:
    # An SDK upgrade that adds a state fails here until the state is mapped. (Refund.status is
    # typed plain ``str`` in the SDK, so it has no counterpart to compare with.)
    assert set(get_args(ours)) == _sdk_literal(sdk_class, field)


# ================================================================================================
# PostFinance (providers.md 2.6-2.7)
# ================================================================================================

POSTFINANCE_TRANSACTION: dict[TransactionState, PaymentStatus] = {
    TransactionState.CREATE: P.PENDING,
    TransactionState.PENDING: P.PENDING,
    TransactionState.CONFIRMED: P.PENDING,
    TransactionState.PROCESSING: P.PROCESSING,
    TransactionState.AUTHORIZED: P.AUTHORIZED,
    TransactionState.COMPLETED: P.SUCCEEDED,
    TransactionState.FULFILL: P.SUCCEEDED,
    TransactionState.FAILED: P.FAILED,
    TransactionState.VOIDED: P.CANCELED,
    TransactionState.DECLINE: P.DECLINED,
}


@pytest.mark.parametrize("state", list(TransactionState), ids=lambda s: s.value)
def test_postfinance_transaction_every_state(state: TransactionState) -> None:
    expected = MappedStatus(POSTFINANCE_TRANSACTION[state], state.value, None)
    assert postfinance.map_transaction_state(state) == expected
    # The raw wire string maps the same way.
    assert postfinance.map_transaction_state(state.value) == expected


def test_postfinance_failure_reason_kept_for_failed_only() -> None:
    assert postfinance.map_transaction_state(
        TransactionState.FAILED, failure_reason="Card expired"
    ) == MappedStatus(P.FAILED, "FAILED", "Card expired")
    assert postfinance.map_transaction_state("FAILED", failure_reason="Card expired") == (
        MappedStatus(P.FAILED, "FAILED", "Card expired")
    )
    voided = postfinance.map_transaction_state("VOIDED", failure_reason="ignored")
    assert voided.failure_reason is None


POSTFINANCE_REFUND: dict[RefundState, RefundStatus] = {
    RefundState.CREATE: R.PROCESSING,
    RefundState.SCHEDULED: R.PROCESSING,
    RefundState.PENDING: R.PROCESSING,
    RefundState.MANUAL_CHECK: R.NEEDS_ATTENTION,
    RefundState.SUCCESSFUL: R.SUCCEEDED,
    RefundState.FAILED: R.FAILED,
}


@pytest.mark.parametrize("state", list(RefundState), ids=lambda s: s.value)
def test_postfinance_refund_every_state(state: RefundState) -> None:
    assert postfinance.map_refund_state(state) is POSTFINANCE_REFUND[state]
    assert postfinance.map_refund_state(state.value) is POSTFINANCE_REFUND[state]


# ================================================================================================
# Paystack (providers.md 3.3-3.5)
# ================================================================================================

PAYSTACK_TRANSACTION: dict[str, PaymentStatus] = {
    "success": P.SUCCEEDED,
    "failed": P.FAILED,
    "abandoned": P.PENDING,
    "reversed": P.SUCCEEDED,
    "ongoing": P.PROCESSING,
    "pending": P.PROCESSING,
    "processing": P.PROCESSING,
    "queued": P.PROCESSING,
}


@pytest.mark.parametrize("state", literal_values(paystack.TransactionStatus))
def test_paystack_transaction_every_status(state: str) -> None:
    assert paystack.map_transaction_status(state) == MappedStatus(
        PAYSTACK_TRANSACTION[state], state, None
    )


def test_paystack_failed_carries_gateway_response() -> None:
    assert paystack.map_transaction_status(
        "failed", gateway_response="Declined by issuer"
    ) == MappedStatus(P.FAILED, "failed", "Declined by issuer")
    assert paystack.map_transaction_status("success", gateway_response="Approved") == (
        MappedStatus(P.SUCCEEDED, "success", None)
    )


@pytest.mark.parametrize("state", ["blocked", "SUCCESS", "", "send_otp"])
def test_paystack_unknown_transaction_status_is_pending_not_an_error(state: str) -> None:
    # providers.md 3.3: treat unknown values as non-final.
    mapped = paystack.map_transaction_status(state, gateway_response="whatever")
    assert mapped == MappedStatus(P.PENDING, state, None)
    assert paystack.parse_transaction_status(state) is None


PAYSTACK_REFUND: dict[str, RefundStatus] = {
    "pending": R.PROCESSING,
    "processing": R.PROCESSING,
    "processed": R.SUCCEEDED,
    "failed": R.FAILED,
    "needs-attention": R.NEEDS_ATTENTION,
}


@pytest.mark.parametrize("state", literal_values(paystack.PaystackRefundStatus))
def test_paystack_refund_every_status(state: str) -> None:
    assert paystack.map_refund_status(state) is PAYSTACK_REFUND[state]


PAYSTACK_OPEN_DISPUTE: dict[str, DisputeStatus] = {
    "awaiting-merchant-feedback": D.NEEDS_RESPONSE,
    "awaiting-bank-feedback": D.UNDER_REVIEW,
    "pending": D.UNDER_REVIEW,
}
PAYSTACK_RESOLVED_DISPUTE: dict[str | None, DisputeStatus] = {
    "merchant-accepted": D.LOST,
    "auto-accepted": D.LOST,
    "declined": D.WON,
    None: D.CLOSED,
    "something-new": D.CLOSED,
    "": D.CLOSED,
}


def test_paystack_dispute_tables_cover_literals() -> None:
    assert set(PAYSTACK_OPEN_DISPUTE) | {"resolved"} == set(
        literal_values(paystack.PaystackDisputeStatus)
    )
    assert set(literal_values(paystack.DisputeResolution)) < set(PAYSTACK_RESOLVED_DISPUTE)


@pytest.mark.parametrize(
    ("status", "resolution"),
    list(
        itertools.product(
            literal_values(paystack.PaystackDisputeStatus), list(PAYSTACK_RESOLVED_DISPUTE)
        )
    ),
)
def test_paystack_dispute_every_status_and_resolution(status: str, resolution: str | None) -> None:
    if status == "resolved":
        expected = PAYSTACK_RESOLVED_DISPUTE[resolution]
    else:
        expected = PAYSTACK_OPEN_DISPUTE[status]  # resolution does not matter while open
    assert paystack.map_dispute_status(status, resolution) is expected


# ================================================================================================
# M-Pesa (providers.md 4.3-4.5)
# ================================================================================================

MPESA: dict[int, tuple[PaymentStatus, str | None]] = {
    0: (P.SUCCEEDED, None),
    1: (P.FAILED, "insufficient funds"),
    17: (P.FAILED, "receiving party unable to process"),
    1001: (P.FAILED, "subscriber busy: another M-Pesa session in progress"),
    1019: (P.EXPIRED, "transaction expired"),
    1025: (P.FAILED, "push could not be sent"),
    1032: (P.CANCELED, "cancelled by customer"),
    1037: (P.EXPIRED, "customer unreachable"),
    2001: (P.FAILED, "wrong PIN"),
    9999: (P.FAILED, "push could not be sent"),
}


def test_mpesa_table_covers_known_codes() -> None:
    assert set(mpesa.RESULT_CODES) | {mpesa.SUCCESS_RESULT_CODE} == set(MPESA)
    with pytest.raises(TypeError):
        mpesa.RESULT_CODES[1] = (P.SUCCEEDED, "nope")  # type: ignore[index]


@pytest.mark.parametrize("code", list(MPESA))
def test_mpesa_every_known_code_int_and_string(code: int) -> None:
    status, reason = MPESA[code]
    expected = MappedStatus(status, str(code), reason)
    # Callback: JSON number. STK Query: string, sometimes padded.
    for wire in (code, str(code), f" {code} ", f"{code}\n"):
        assert mpesa.map_result_code(wire) == expected


@pytest.mark.parametrize("code", [2, 26, 1036, 4999, 500001])
def test_mpesa_unknown_nonzero_code_is_a_failure(code: int) -> None:
    expected = MappedStatus(P.FAILED, str(code), f"M-Pesa result code {code}")
    assert mpesa.map_result_code(code) == expected
    assert mpesa.map_result_code(str(code)) == expected


def test_mpesa_stk_query_pending() -> None:
    assert mpesa.map_stk_query_pending() == MappedStatus(P.PROCESSING, "500.001.1001", None)
    assert mpesa.is_stk_query_pending("500.001.1001", "The transaction is being processed")
    # The code is overloaded (wrong password, unknown merchant, ...): the message decides.
    assert not mpesa.is_stk_query_pending("500.001.1001", "Merchant does not exist")
    assert not mpesa.is_stk_query_pending("500.003.02", "The transaction is being processed")


# ================================================================================================
# Manual
# ================================================================================================

MANUAL: dict[ProofStatus, PaymentStatus] = {
    ProofStatus.PENDING_REVIEW: P.PENDING,
    ProofStatus.APPROVED: P.SUCCEEDED,
    ProofStatus.REJECTED: P.PENDING,
}


@pytest.mark.parametrize("proof", list(ProofStatus), ids=lambda s: s.value)
def test_manual_every_proof_status(proof: ProofStatus) -> None:
    assert manual.map_proof_status(proof) is MANUAL[proof]


# ================================================================================================
# Unknown wire values
# ================================================================================================

UNKNOWN_CASES: list[tuple[str, Callable[[], object], ProviderName, object]] = [
    ("stripe PI typo", lambda: stripe_mapping.map_payment_intent("requires_capturee"),
     ProviderName.STRIPE, "requires_capturee"),
    ("stripe PI case", lambda: stripe_mapping.map_payment_intent("Succeeded"),
     ProviderName.STRIPE, "Succeeded"),
    ("stripe PI empty", lambda: stripe_mapping.map_payment_intent(""), ProviderName.STRIPE, ""),
    ("stripe session status", lambda: stripe_mapping.map_checkout_session("completed", "paid"),
     ProviderName.STRIPE, "completed"),
    ("stripe session payment", lambda: stripe_mapping.map_checkout_session("complete", "free"),
     ProviderName.STRIPE, "free"),
    ("stripe refund", lambda: stripe_mapping.map_refund_status("reversed"),
     ProviderName.STRIPE, "reversed"),
    ("stripe dispute (retired value)",
     lambda: stripe_mapping.map_dispute_status("charge_refunded"),
     ProviderName.STRIPE, "charge_refunded"),
    ("postfinance tx lower case", lambda: postfinance.map_transaction_state("completed"),
     ProviderName.POSTFINANCE, "completed"),
    ("postfinance tx unknown", lambda: postfinance.map_transaction_state("SETTLED"),
     ProviderName.POSTFINANCE, "SETTLED"),
    ("postfinance refund", lambda: postfinance.map_refund_state("DONE"),
     ProviderName.POSTFINANCE, "DONE"),
    ("paystack refund", lambda: paystack.map_refund_status("refunded"),
     ProviderName.PAYSTACK, "refunded"),
    ("paystack dispute", lambda: paystack.map_dispute_status("archived", None),
     ProviderName.PAYSTACK, "archived"),
    ("mpesa text", lambda: mpesa.map_result_code("abc"), ProviderName.MPESA, "abc"),
    ("mpesa empty", lambda: mpesa.map_result_code(""), ProviderName.MPESA, ""),
    ("mpesa decimal", lambda: mpesa.map_result_code("0.0"), ProviderName.MPESA, "0.0"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("call", "provider", "value"),
    [case[1:] for case in UNKNOWN_CASES],
    ids=[case[0] for case in UNKNOWN_CASES],
)
def test_unknown_state_raises(
    call: Callable[[], object], provider: ProviderName, value: object
) -> None:
    with pytest.raises(UnknownProviderState) as excinfo:
        call()
    assert excinfo.value.provider is provider
    assert excinfo.value.value == value
    assert str(provider) in str(excinfo.value)


# ================================================================================================
# Monotonic sequences: any order, any duplicates, same end state
# ================================================================================================


def fold(statuses: Iterable[PaymentStatus]) -> PaymentStatus:
    """Apply ``decide_payment`` to each status in turn, starting from CREATED."""
    current = PaymentStatus.CREATED
    for target in statuses:
        if decide_payment(current, target).applies:
            current = target
    return current


def fold_refund(statuses: Iterable[RefundStatus]) -> RefundStatus:
    """Apply ``decide_refund`` to each status in turn, starting from the lowest rank."""
    current = RefundStatus.PENDING_APPROVAL
    for target in statuses:
        if decide_refund(current, target).applies:
            current = target
    return current


def orderings(sequence: Sequence[T]) -> Iterator[tuple[T, ...]]:
    """Every permutation, alone and with a duplicate of each element appended."""
    for permutation in itertools.permutations(sequence):
        yield permutation
        yield permutation + permutation
        yield tuple(item for item in permutation for _ in range(2))


def finals(fold_fn: Callable[[Iterable[T]], T], sequence: Sequence[T]) -> set[T]:
    return {fold_fn(ordering) for ordering in orderings(sequence)}


PF_HAPPY = ["CREATE", "PENDING", "CONFIRMED", "PROCESSING", "AUTHORIZED", "COMPLETED", "FULFILL"]


def test_postfinance_happy_path_any_order() -> None:
    statuses = [postfinance.map_transaction_state(s).status for s in PF_HAPPY]
    assert fold(statuses) is P.SUCCEEDED
    assert finals(fold, statuses) == {P.SUCCEEDED}


def test_postfinance_decline_after_capture_any_order() -> None:
    states = [*PF_HAPPY[:-1], "DECLINE"]
    statuses = [postfinance.map_transaction_state(s).status for s in states]
    assert fold(statuses) is P.DECLINED
    assert finals(fold, statuses) == {P.DECLINED}


def test_stripe_failed_attempt_then_success_any_order() -> None:
    statuses = [
        stripe_mapping.map_payment_intent(
            "requires_payment_method", last_payment_error="card_declined"
        ).status,
        stripe_mapping.map_payment_intent("processing").status,
        stripe_mapping.map_payment_intent("succeeded").status,
    ]
    assert statuses == [P.PENDING, P.PROCESSING, P.SUCCEEDED]
    assert finals(fold, statuses) == {P.SUCCEEDED}


def test_paystack_abandoned_then_success_any_order() -> None:
    statuses = [paystack.map_transaction_status(s).status for s in ("abandoned", "success")]
    assert finals(fold, statuses) == {P.SUCCEEDED}


def test_mpesa_unreachable_then_paid_any_order() -> None:
    statuses = [mpesa.map_result_code(1037).status, mpesa.map_result_code("0").status]
    assert finals(fold, statuses) == {P.SUCCEEDED}
    # In arrival order this is a late success, worth flagging.
    assert is_late_success(statuses[0], statuses[1])


def test_stripe_refund_succeeded_then_failed_any_order() -> None:
    statuses = [stripe_mapping.map_refund_status(s) for s in ("pending", "succeeded", "failed")]
    assert finals(fold_refund, statuses) == {R.FAILED}


def test_postfinance_refund_any_order() -> None:
    states = ["CREATE", "SCHEDULED", "PENDING", "MANUAL_CHECK", "SUCCESSFUL"]
    statuses = [postfinance.map_refund_state(s) for s in states]
    assert finals(fold_refund, statuses) == {R.SUCCEEDED}


def test_paystack_refund_any_order() -> None:
    states = ["pending", "processing", "needs-attention", "processed"]
    statuses = [paystack.map_refund_status(s) for s in states]
    assert finals(fold_refund, statuses) == {R.SUCCEEDED}


# ================================================================================================
# payments_core.status
# ================================================================================================

# Row = current, column = target. A = APPLY (target ranks strictly higher), D = DUPLICATE (same
# status), S = STALE (lower rank, or a different status of equal rank).
PAYMENT_ORDER = [
    P.CREATED,
    P.PENDING,
    P.PROCESSING,
    P.AUTHORIZED,
    P.FAILED,
    P.CANCELED,
    P.EXPIRED,
    P.SUCCEEDED,
    P.DECLINED,
]
PAYMENT_TRANSITIONS: dict[PaymentStatus, str] = {
    #              cr pe pr au fa ca ex su de
    P.CREATED:    "D  A  A  A  A  A  A  A  A",
    P.PENDING:    "S  D  A  A  A  A  A  A  A",
    P.PROCESSING: "S  S  D  A  A  A  A  A  A",
    P.AUTHORIZED: "S  S  S  D  A  A  A  A  A",
    P.FAILED:     "S  S  S  S  D  S  S  A  A",
    P.CANCELED:   "S  S  S  S  S  D  S  A  A",
    P.EXPIRED:    "S  S  S  S  S  S  D  A  A",
    P.SUCCEEDED:  "S  S  S  S  S  S  S  D  A",
    P.DECLINED:   "S  S  S  S  S  S  S  S  D",
}  # fmt: skip
LETTER = {"A": Decision.APPLY, "D": Decision.DUPLICATE, "S": Decision.STALE}


def expected_decision(current: PaymentStatus, target: PaymentStatus) -> Decision:
    return LETTER[PAYMENT_TRANSITIONS[current].split()[PAYMENT_ORDER.index(target)]]


def test_payment_transition_table_is_complete() -> None:
    assert sorted(PAYMENT_ORDER) == sorted(PaymentStatus)
    assert len(PAYMENT_ORDER) == len(set(PAYMENT_ORDER)) == 9
    assert set(PAYMENT_TRANSITIONS) == set(PaymentStatus)
    assert all(len(row.split()) == 9 for row in PAYMENT_TRANSITIONS.values())


@pytest.mark.parametrize(
    ("current", "target"),
    list(itertools.product(PAYMENT_ORDER, PAYMENT_ORDER)),
    ids=lambda s: str(s),
)
def test_decide_payment_every_pair(current: PaymentStatus, target: PaymentStatus) -> None:
    transition = decide_payment(current, target)
    assert (transition.current, transition.target) == (current, target)
    assert transition.decision is expected_decision(current, target)
    assert transition.applies is (transition.decision is Decision.APPLY)


LATE_SUCCESSES = {(P.FAILED, P.SUCCEEDED), (P.CANCELED, P.SUCCEEDED), (P.EXPIRED, P.SUCCEEDED)}


@pytest.mark.parametrize(
    ("current", "target"),
    list(itertools.product(PAYMENT_ORDER, PAYMENT_ORDER)),
    ids=lambda s: str(s),
)
def test_is_late_success_every_pair(current: PaymentStatus, target: PaymentStatus) -> None:
    assert is_late_success(current, target) is ((current, target) in LATE_SUCCESSES)
