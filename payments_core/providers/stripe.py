"""Stripe: what Stripe's object states mean for our payments, refunds and disputes.

Mapping only, no API calls yet (the adapter is added to this module later). Each Stripe state set is
a ``Literal`` type; a wire string is first checked by a ``parse_*`` function, which raises
``UnknownProviderState`` for a value we do not know, and then mapped by an exhaustive ``match``,
so a new Stripe state is a mypy error here rather than a silent default.

Source: ../shared/reference/providers.md sections 1.6 (PaymentIntent), 1.7 (Refund),
1.8 (Dispute), 1.9 (Checkout Session) and 5 (suggested mapping).

Note: this module is named ``stripe`` inside ``payments_core.providers``; it does not shadow the
``stripe`` SDK for absolute imports.
"""

from __future__ import annotations

from typing import Final, Literal, assert_never, cast, get_args

from payments_core.providers.base import ProviderName, UnknownProviderState
from payments_core.status import DisputeStatus, MappedStatus, PaymentStatus, RefundStatus

# --- PaymentIntent (section 1.6) ----------------------------------------------------------------

PaymentIntentStatus = Literal[
    "requires_payment_method",
    "requires_confirmation",
    "requires_action",
    "processing",
    "requires_capture",
    "canceled",
    "succeeded",
]
_PAYMENT_INTENT_STATUSES: Final = frozenset(get_args(PaymentIntentStatus))


def parse_payment_intent_status(value: str) -> PaymentIntentStatus:
    if value not in _PAYMENT_INTENT_STATUSES:
        raise UnknownProviderState(ProviderName.STRIPE, "PaymentIntent status", value)
    return cast(PaymentIntentStatus, value)


def map_payment_intent(status: str, *, last_payment_error: str | None = None) -> MappedStatus:
    """Map a PaymentIntent ``status``; pass the message (or code) of ``last_payment_error`` if set.

    A PaymentIntent back in ``requires_payment_method`` with a ``last_payment_error`` is a failed
    attempt (``payment_intent.payment_failed``). Stripe does not consider that final - the customer
    may retry on the same PaymentIntent - so the payment stays PENDING with the failure reason
    recorded; it ends as CANCELED or EXPIRED (or SUCCEEDED after a retry) by later events.
    """
    pi_status = parse_payment_intent_status(status)
    match pi_status:
        case "requires_payment_method":
            if last_payment_error is not None:
                return MappedStatus(
                    PaymentStatus.PENDING,
                    pi_status,
                    failure_reason=last_payment_error or "payment attempt failed",
                )
            return MappedStatus(PaymentStatus.PENDING, pi_status)
        case "requires_confirmation" | "requires_action":
            return MappedStatus(PaymentStatus.PENDING, pi_status)
        case "processing":
            return MappedStatus(PaymentStatus.PROCESSING, pi_status)
        case "requires_capture":
            return MappedStatus(PaymentStatus.AUTHORIZED, pi_status)
        case "canceled":
            return MappedStatus(PaymentStatus.CANCELED, pi_status)
        case "succeeded":
            return MappedStatus(PaymentStatus.SUCCEEDED, pi_status)
        case _ as unreachable:
            assert_never(unreachable)


# --- Checkout Session (section 1.9) -------------------------------------------------------------

CheckoutSessionStatus = Literal["open", "complete", "expired"]
CheckoutSessionPaymentStatus = Literal["paid", "unpaid", "no_payment_required"]
_CHECKOUT_SESSION_STATUSES: Final = frozenset(get_args(CheckoutSessionStatus))
_CHECKOUT_SESSION_PAYMENT_STATUSES: Final = frozenset(get_args(CheckoutSessionPaymentStatus))


def parse_checkout_session_status(value: str) -> CheckoutSessionStatus:
    if value not in _CHECKOUT_SESSION_STATUSES:
        raise UnknownProviderState(ProviderName.STRIPE, "Checkout Session status", value)
    return cast(CheckoutSessionStatus, value)


def parse_checkout_session_payment_status(value: str) -> CheckoutSessionPaymentStatus:
    if value not in _CHECKOUT_SESSION_PAYMENT_STATUSES:
        raise UnknownProviderState(ProviderName.STRIPE, "Checkout Session payment_status", value)
    return cast(CheckoutSessionPaymentStatus, value)


def map_checkout_session(status: str, payment_status: str) -> MappedStatus:
    """Map a Checkout Session's ``(status, payment_status)`` (provider_state ``"complete/paid"``).

    ``complete``/``unpaid`` is a delayed payment method still in flight: the outcome arrives as
    ``checkout.session.async_payment_succeeded``/``_failed`` (the session fields do not change on
    failure, so the adapter has to use the event type or the PaymentIntent for that).
    """
    session_status = parse_checkout_session_status(status)
    paid = parse_checkout_session_payment_status(payment_status)
    provider_state = f"{session_status}/{paid}"
    match session_status:
        case "open":
            return MappedStatus(PaymentStatus.PENDING, provider_state)
        case "complete":
            match paid:
                case "paid" | "no_payment_required":
                    return MappedStatus(PaymentStatus.SUCCEEDED, provider_state)
                case "unpaid":
                    return MappedStatus(PaymentStatus.PROCESSING, provider_state)
                case _ as unreachable:
                    assert_never(unreachable)
        case "expired":
            return MappedStatus(PaymentStatus.EXPIRED, provider_state)
        case _ as unreachable:
            assert_never(unreachable)


# --- Refund (section 1.7) -----------------------------------------------------------------------

StripeRefundStatus = Literal["pending", "requires_action", "succeeded", "failed", "canceled"]
_REFUND_STATUSES: Final = frozenset(get_args(StripeRefundStatus))


def parse_refund_status(value: str) -> StripeRefundStatus:
    if value not in _REFUND_STATUSES:
        raise UnknownProviderState(ProviderName.STRIPE, "Refund status", value)
    return cast(StripeRefundStatus, value)


def map_refund_status(status: str) -> RefundStatus:
    """Map a Refund ``status``. A ``succeeded`` refund can still turn ``failed`` (section 1.7)."""
    refund_status = parse_refund_status(status)
    match refund_status:
        case "pending" | "requires_action":
            return RefundStatus.PROCESSING
        case "succeeded":
            return RefundStatus.SUCCEEDED
        case "failed":
            return RefundStatus.FAILED
        case "canceled":
            return RefundStatus.CANCELED
        case _ as unreachable:
            assert_never(unreachable)


# --- Dispute (section 1.8) ----------------------------------------------------------------------

StripeDisputeStatus = Literal[
    "warning_needs_response",
    "warning_under_review",
    "warning_closed",
    "needs_response",
    "under_review",
    "won",
    "lost",
    "appeal_needs_response",
    "appeal_under_review",
    "prevented",
]
_DISPUTE_STATUSES: Final = frozenset(get_args(StripeDisputeStatus))


def parse_dispute_status(value: str) -> StripeDisputeStatus:
    if value not in _DISPUTE_STATUSES:
        raise UnknownProviderState(ProviderName.STRIPE, "Dispute status", value)
    return cast(StripeDisputeStatus, value)


def map_dispute_status(status: str) -> DisputeStatus:
    """Map a Dispute ``status``; ``warning_*`` is the inquiry stage, ``appeal_*`` an appeal."""
    dispute_status = parse_dispute_status(status)
    match dispute_status:
        case "needs_response" | "warning_needs_response" | "appeal_needs_response":
            return DisputeStatus.NEEDS_RESPONSE
        case "under_review" | "warning_under_review" | "appeal_under_review":
            return DisputeStatus.UNDER_REVIEW
        case "won":
            return DisputeStatus.WON
        case "lost":
            return DisputeStatus.LOST
        case "warning_closed" | "prevented":
            return DisputeStatus.CLOSED
        case _ as unreachable:
            assert_never(unreachable)
