"""Paystack: what transaction, refund and dispute statuses mean for us.

Mapping only, no API calls yet (the adapter is added to this module later). Each status set is a
``Literal`` type mapped by an exhaustive ``match``. Refund and dispute statuses we do not know raise
``UnknownProviderState``; transaction statuses do not: the reference says to treat unknown values
as non-final, so an unknown transaction status maps to PENDING with the raw value kept.

Source: ../shared/reference/providers.md sections 3.3 (verify, transaction status),
3.4 (refund lifecycle), 3.5 (webhooks, disputes) and 5 (suggested mapping).
"""

from __future__ import annotations

from typing import Final, Literal, assert_never, cast, get_args

from payments_core.providers.base import ProviderName, UnknownProviderState
from payments_core.status import DisputeStatus, MappedStatus, PaymentStatus, RefundStatus

# --- Transaction (section 3.3) ------------------------------------------------------------------

# The first four are the spec's list filter; the in-flight ones appear in Paystack docs and
# integrations (section 3.3).
TransactionStatus = Literal[
    "success",
    "failed",
    "abandoned",
    "reversed",
    "ongoing",
    "pending",
    "processing",
    "queued",
]
_TRANSACTION_STATUSES: Final = frozenset(get_args(TransactionStatus))


def parse_transaction_status(value: str) -> TransactionStatus | None:
    """The status as a known value, or ``None`` for one we do not know (to be treated non-final)."""
    if value not in _TRANSACTION_STATUSES:
        return None
    return cast(TransactionStatus, value)


def map_transaction_status(status: str, *, gateway_response: str | None = None) -> MappedStatus:
    """Map a transaction ``status`` (verify response or ``charge.*`` webhook ``data.status``).

    Pass ``gateway_response`` to keep it as the failure reason of a ``failed`` transaction.
    """
    known = parse_transaction_status(status)
    match known:
        case None:
            # Unknown to us, so not known to be final: keep waiting, keep the raw state.
            return MappedStatus(PaymentStatus.PENDING, status)
        case "success":
            return MappedStatus(PaymentStatus.SUCCEEDED, known)
        case "failed":
            return MappedStatus(PaymentStatus.FAILED, known, failure_reason=gateway_response)
        case "abandoned":
            # Paystack reports a checkout the customer has not completed (yet) as abandoned; it
            # can still be paid, so it is not a failure.
            return MappedStatus(PaymentStatus.PENDING, known)
        case "reversed":
            # The money was captured; the reversal (refund or accepted dispute) is accounted for
            # by the refund/dispute processing as an amount, not as a payment status.
            return MappedStatus(PaymentStatus.SUCCEEDED, known)
        case "ongoing" | "pending" | "processing" | "queued":
            return MappedStatus(PaymentStatus.PROCESSING, known)
        case _ as unreachable:
            assert_never(unreachable)


# --- Refund (section 3.4) -----------------------------------------------------------------------

PaystackRefundStatus = Literal["pending", "processing", "processed", "failed", "needs-attention"]
_REFUND_STATUSES: Final = frozenset(get_args(PaystackRefundStatus))


def parse_refund_status(value: str) -> PaystackRefundStatus:
    if value not in _REFUND_STATUSES:
        raise UnknownProviderState(ProviderName.PAYSTACK, "refund status", value)
    return cast(PaystackRefundStatus, value)


def map_refund_status(status: str) -> RefundStatus:
    """Map a refund status; ``needs-attention`` wants the customer's account details re-sent."""
    refund_status = parse_refund_status(status)
    match refund_status:
        case "pending" | "processing":
            return RefundStatus.PROCESSING
        case "processed":
            return RefundStatus.SUCCEEDED
        case "failed":
            return RefundStatus.FAILED
        case "needs-attention":
            return RefundStatus.NEEDS_ATTENTION
        case _ as unreachable:
            assert_never(unreachable)


# --- Dispute (section 3.5) ----------------------------------------------------------------------

PaystackDisputeStatus = Literal[
    "awaiting-merchant-feedback", "awaiting-bank-feedback", "pending", "resolved"
]
DisputeResolution = Literal["merchant-accepted", "auto-accepted", "declined"]
_DISPUTE_STATUSES: Final = frozenset(get_args(PaystackDisputeStatus))
_DISPUTE_RESOLUTIONS: Final = frozenset(get_args(DisputeResolution))


def parse_dispute_status(value: str) -> PaystackDisputeStatus:
    if value not in _DISPUTE_STATUSES:
        raise UnknownProviderState(ProviderName.PAYSTACK, "dispute status", value)
    return cast(PaystackDisputeStatus, value)


def parse_dispute_resolution(value: str | None) -> DisputeResolution | None:
    """The resolution as a known value, or ``None`` when absent or unknown (outcome unknown)."""
    if value is None or value not in _DISPUTE_RESOLUTIONS:
        return None
    return cast(DisputeResolution, value)


def map_dispute_status(status: str, resolution: str | None = None) -> DisputeStatus:
    """Map a dispute's ``(status, resolution)``; the resolution only matters once ``resolved``."""
    dispute_status = parse_dispute_status(status)
    match dispute_status:
        case "awaiting-merchant-feedback":
            return DisputeStatus.NEEDS_RESPONSE
        case "awaiting-bank-feedback" | "pending":
            return DisputeStatus.UNDER_REVIEW
        case "resolved":
            return _map_dispute_resolution(parse_dispute_resolution(resolution))
        case _ as unreachable:
            assert_never(unreachable)


def _map_dispute_resolution(resolution: DisputeResolution | None) -> DisputeStatus:
    match resolution:
        case "merchant-accepted" | "auto-accepted":
            # Accepted (by us, or by Paystack after the deadline): the customer keeps the money.
            return DisputeStatus.LOST
        case "declined":
            return DisputeStatus.WON
        case None:
            return DisputeStatus.CLOSED
        case _ as unreachable:
            assert_never(unreachable)
