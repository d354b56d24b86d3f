"""Paystack: what transaction, refund and dispute statuses mean for us.

Mapping only, no API calls yet (the adapter is added to this module later). Each status set is a
``Literal`` type mapped by an exhaustive ``match``. Refund and dispute statuses we do not know raise
``UnknownProviderState``; transaction statuses do not: the reference says to treat unknown values
as non-final, so an unknown transaction status maps to PENDING with the raw value kept.

Source: ../shared/reference/providers.md sections 3.3 (verify, transaction status),
3.4 (refund lifecycle), 3.5 (webhooks, disputes) and 5 (suggested mapping).
"""

from __future__ import annotations

import hashlib
import hmac
import json
from typing import Any, Final, Literal, assert_never, cast, get_args

from payments_core.providers.base import (
    ProviderName,
    RejectionReason,
    UnknownProviderState,
    Verification,
    VerifiedWebhook,
    WebhookRejected,
)
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


# --- Webhook verification -----------------------------------------------------------------------
# Section 3.5: x-paystack-signature, envelope without event id, payload shapes.

SIGNATURE_HEADER: Final = "x-paystack-signature"


def sign_payload(raw: bytes, secret_key: str) -> str:
    """The ``x-paystack-signature`` value for ``raw`` (tests, demos, fake senders)."""
    return hmac.new(secret_key.encode("utf-8"), raw, hashlib.sha512).hexdigest()


def verify_webhook(raw: bytes, signature_header: str | None, secret_key: str) -> VerifiedWebhook:
    """Verify a Paystack delivery (HMAC-SHA512 of the raw bytes with the API secret key).

    Paystack sends no event id and no timestamp: ``event_id`` is a dedupe key derived from the
    content (see ``dedupe_key``), and there is no replay window.
    """
    if not secret_key:
        raise WebhookRejected(
            RejectionReason.NOT_CONFIGURED, "no Paystack secret key configured", status_code=503
        )
    if signature_header is None or not signature_header.strip():
        raise WebhookRejected(
            RejectionReason.MISSING_SIGNATURE, "missing x-paystack-signature header"
        )
    expected = sign_payload(raw, secret_key).encode("ascii")
    candidate = signature_header.strip().lower().encode("utf-8", "replace")
    if not hmac.compare_digest(expected, candidate):
        raise WebhookRejected(RejectionReason.BAD_SIGNATURE, "signature does not match")

    body = _load_json_object(raw)
    event = body.get("event")
    data = body.get("data")
    if not isinstance(event, str) or not event or not isinstance(data, dict):
        raise _malformed("body without event or data")
    domain = data.get("domain")
    return VerifiedWebhook(
        provider=ProviderName.PAYSTACK,
        event_id=dedupe_key(event, data, raw),
        event_type=event,
        verification=Verification.SIGNED,
        livemode=domain == "live" if isinstance(domain, str) else None,
        reference=_reference(event, data),
    )


def dedupe_key(event: str, data: dict[str, Any], raw: bytes) -> str:
    """A stable key for one Paystack event, built from its content.

    ``charge.success:{id}``; refunds ``refund:{transaction_reference}:{refund_reference or id}:
    {status}``; disputes ``{event}:{id}:{status}``; any other event ``{event}:{sha256(raw)}``.
    Raises MALFORMED when a charge, refund or dispute lacks the fields its key needs.
    """
    if event == "charge.success":
        return f"charge.success:{_required(data, 'id')}"
    if event.startswith("refund."):
        refund_id = _text(data.get("refund_reference")) or _text(data.get("id")) or ""
        transaction_reference = _required(data, "transaction_reference")
        return f"refund:{transaction_reference}:{refund_id}:{_required(data, 'status')}"
    if event.startswith("charge.dispute."):
        return f"{event}:{_required(data, 'id')}:{_required(data, 'status')}"
    return f"{event}:{hashlib.sha256(raw).hexdigest()}"


def _reference(event: str, data: dict[str, Any]) -> str | None:
    if event.startswith("charge.dispute."):
        transaction = data.get("transaction")
        return _text(transaction.get("reference")) if isinstance(transaction, dict) else None
    if event.startswith("charge."):
        return _text(data.get("reference"))
    if event.startswith("refund."):
        return _text(data.get("transaction_reference"))
    return None


def _text(value: object) -> str | None:
    """A non-empty string, or an integer id as text (the same key for ``12`` and ``"12"``)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str) and value:
        return value
    return None


def _required(data: dict[str, Any], field: str) -> str:
    value = _text(data.get(field))
    if value is None:
        raise _malformed(f"data.{field} missing")
    return value


def _malformed(detail: str) -> WebhookRejected:
    return WebhookRejected(RejectionReason.MALFORMED, detail)


def _load_json_object(raw: bytes) -> dict[str, Any]:
    try:
        body = json.loads(raw)
    except (ValueError, RecursionError):  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        raise _malformed("body is not valid JSON") from None
    if not isinstance(body, dict):
        raise _malformed("body is not a JSON object")
    return body
