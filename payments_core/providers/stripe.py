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

import hashlib
import hmac
import json
import re
from collections.abc import Sequence
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


# --- Webhook verification -----------------------------------------------------------------------
# Sections 1.2 (signatures), 1.3 (event object) and 1.4 (event types).

SIGNATURE_HEADER: Final = "Stripe-Signature"
DEFAULT_TOLERANCE: Final = 300  # seconds, same as stripe.Webhook.DEFAULT_TOLERANCE

_TIMESTAMP: Final = re.compile(r"[0-9]{1,15}")
# Events whose data.object is not the PaymentIntent but names it in ``payment_intent``.
_PAYMENT_INTENT_FIELD_PREFIXES: Final = ("charge.", "refund.", "checkout.session.")


def _compute_signature(raw: bytes, secret: str, timestamp: int) -> str:
    signed = f"{timestamp}.".encode() + raw
    return hmac.new(secret.encode("utf-8"), signed, hashlib.sha256).hexdigest()


def sign_payload(raw: bytes, secret: str, timestamp: int) -> str:
    """A ``Stripe-Signature`` header value for ``raw`` (tests, demos, fake senders)."""
    return f"t={timestamp},v1={_compute_signature(raw, secret, timestamp)}"


def _parse_signature_header(header: str) -> tuple[int, list[str]]:
    """``t`` and every ``v1`` of a header; ``v0`` and unknown keys are ignored."""
    timestamps: list[str] = []
    signatures: list[str] = []
    for item in header.split(","):
        key, sep, value = item.partition("=")
        if not sep:
            continue
        key, value = key.strip(), value.strip()
        if key == "t":
            timestamps.append(value)
        elif key == "v1":
            signatures.append(value)
    if len(timestamps) != 1 or not _TIMESTAMP.fullmatch(timestamps[0]):
        raise WebhookRejected(RejectionReason.BAD_SIGNATURE, "malformed Stripe-Signature header")
    if not signatures:
        raise WebhookRejected(RejectionReason.BAD_SIGNATURE, "no v1 signature in header")
    return int(timestamps[0]), signatures


def _hex_equal(expected: str, candidate: str) -> bool:
    # Bytes, not str: compare_digest raises TypeError for non-ASCII str.
    return hmac.compare_digest(expected.encode("ascii"), candidate.encode("utf-8", "replace"))


def verify_webhook(
    raw: bytes,
    signature_header: str | None,
    secrets: Sequence[str],
    *,
    now: float,
    tolerance: int = DEFAULT_TOLERANCE,
) -> VerifiedWebhook:
    """Verify a Stripe delivery on its raw bytes and extract what intake needs.

    ``secrets`` are the endpoint signing secrets (``whsec_...``) currently valid; several during a
    rotation. The signature is checked first, then the timestamp, which must lie within
    ``tolerance`` seconds of ``now`` in both directions (unlike the SDK, which accepts any future
    timestamp; ``tolerance=0`` demands the exact second and does not disable the check).
    """
    configured = [secret for secret in secrets if secret]
    if not configured:
        raise WebhookRejected(
            RejectionReason.NOT_CONFIGURED, "no Stripe webhook secret configured", status_code=503
        )
    if signature_header is None or not signature_header.strip():
        raise WebhookRejected(RejectionReason.MISSING_SIGNATURE, "missing Stripe-Signature header")
    timestamp, signatures = _parse_signature_header(signature_header)
    expected = [_compute_signature(raw, secret, timestamp) for secret in configured]
    if not any(_hex_equal(exp, sig) for exp in expected for sig in signatures):
        raise WebhookRejected(RejectionReason.BAD_SIGNATURE, "signature does not match")
    if timestamp < now - tolerance:
        raise WebhookRejected(RejectionReason.STALE_TIMESTAMP, "signature timestamp too old")
    if timestamp > now + tolerance:
        raise WebhookRejected(RejectionReason.FUTURE_TIMESTAMP, "signature timestamp in the future")
    return _parse_event(raw)


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


def _nonempty_str(value: object) -> str | None:
    return value if isinstance(value, str) and value else None


def _id_of(value: object) -> str | None:
    """An id field that is a string or, if expanded, an object with an ``id``."""
    if isinstance(value, dict):
        return _nonempty_str(value.get("id"))
    return _nonempty_str(value)


def _parse_event(raw: bytes) -> VerifiedWebhook:
    body = _load_json_object(raw)
    if body.get("object") != "event":
        raise _malformed("not a Stripe event object")
    event_id = _nonempty_str(body.get("id"))
    event_type = _nonempty_str(body.get("type"))
    livemode = body.get("livemode")
    data = body.get("data")
    if event_id is None or event_type is None or not isinstance(livemode, bool):
        raise _malformed("event without id, type or livemode")
    if not isinstance(data, dict) or not isinstance(data.get("object"), dict):
        raise _malformed("event without data.object")
    obj: dict[str, Any] = data["object"]
    reference: str | None = None
    if event_type.startswith("payment_intent."):
        reference = _nonempty_str(obj.get("id"))
    elif event_type.startswith(_PAYMENT_INTENT_FIELD_PREFIXES):
        reference = _id_of(obj.get("payment_intent"))
        if reference is None and event_type.startswith("checkout.session."):
            # A session without a PaymentIntent (yet): the session id is the reference.
            reference = _nonempty_str(obj.get("id"))
    return VerifiedWebhook(
        provider=ProviderName.STRIPE,
        event_id=event_id,
        event_type=event_type,
        verification=Verification.SIGNED,
        livemode=livemode,
        reference=reference,
    )
