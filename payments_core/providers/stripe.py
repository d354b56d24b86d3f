"""Stripe: what Stripe's object states mean for our payments, refunds and disputes, and the
outbound adapter (``StripeAdapter``) that starts checkouts, refunds, reads payments back and
answers disputes through the official SDK.

Each Stripe state set is a ``Literal`` type; a wire string is first checked by a ``parse_*``
function, which raises ``UnknownProviderState`` for a value we do not know, and then mapped by an
exhaustive ``match``, so a new Stripe state is a mypy error here rather than a silent default.
Webhook bodies and objects the adapter reads are turned into facts by the same parsing helpers, so
reconciliation and webhooks agree. Minor units become Stripe's wire unit only in
``amount_to_stripe`` (and back only in ``amount_from_stripe``).

Source: ../shared/reference/providers.md sections 1.1 (SDK), 1.6 (PaymentIntent), 1.7 (Refund),
1.8 (Dispute), 1.9 (Checkout Session), 1.10 (idempotency), 1.12 (currencies) and 5.

Note: this module is named ``stripe`` inside ``payments_core.providers``; it does not shadow the
``stripe`` SDK for absolute imports.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import json
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Final, Literal, TypeVar, assert_never, cast, get_args

from payments_core.config import Settings
from payments_core.money import (
    InvalidAmountError,
    UnknownCurrencyError,
    exponent,
    normalize_currency,
)
from payments_core.providers.base import (
    IGNORED_EVENT,
    CheckoutRequest,
    CheckoutResult,
    DisputeFacts,
    EventFacts,
    LineItemKind,
    MalformedEvent,
    PaymentFacts,
    PaymentMethod,
    ProviderAuthError,
    ProviderDeclined,
    ProviderEntityNotFound,
    ProviderError,
    ProviderName,
    ProviderNotConfigured,
    ProviderOutcomeUnknown,
    ProviderUnavailable,
    RefundFacts,
    RefundRequest,
    RefundResult,
    RejectionReason,
    UnknownProviderState,
    Verification,
    VerifiedWebhook,
    WebhookRejected,
)
from payments_core.providers.base import (
    load_json_object as _load_json_object,
)
from payments_core.providers.base import (
    malformed_delivery as _malformed,
)
from payments_core.status import DisputeStatus, MappedStatus, PaymentStatus, RefundStatus

if TYPE_CHECKING:
    import stripe
    from stripe.params import DisputeUpdateParams, FileCreateParams, RefundCreateParams
    from stripe.params.checkout import SessionCreateParams

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


@functools.lru_cache(maxsize=8)
def _keyed_hmac(secret: str) -> hmac.HMAC:
    return hmac.new(secret.encode("utf-8"), digestmod=hashlib.sha256)


def _compute_signature(raw: bytes, secret: str, timestamp: int) -> str:
    """HMAC-SHA256 of ``{timestamp}.{raw}``: a copy of the HMAC already keyed with ``secret``
    (one per secret, cached), fed the two parts without joining them. Keying and looking up the
    digest were a third of the cost of a fresh HMAC on a 1 KiB event."""
    mac = _keyed_hmac(secret).copy()
    mac.update(b"%d." % timestamp)
    mac.update(raw)
    return mac.hexdigest()


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


# --- Event facts --------------------------------------------------------------------------------
# A verified, stored event body -> what it says in our terms (``base.EventFacts``). Pure: no API
# calls. A body without what its type needs raises ``MalformedEvent``; a Stripe state we do not
# know raises ``UnknownProviderState`` (from the ``parse_*`` functions above).

# Section 1.12. Every other currency is two-decimal on the wire, including the special cases ISK
# (ISO: no minor unit, Stripe: two decimals, always a multiple of 100), HUF and TWD (two decimals
# for charges; only their payouts must be whole units).
_ZERO_DECIMAL_CURRENCIES: Final = frozenset(
    {
        "BIF", "CLP", "DJF", "GNF", "JPY", "KMF", "KRW", "MGA",
        "PYG", "RWF", "UGX", "VND", "VUV", "XAF", "XOF", "XPF",
    }
)  # fmt: skip
_THREE_DECIMAL_CURRENCIES: Final = frozenset({"BHD", "JOD", "KWD", "OMR", "TND"})


def _wire_exponent(currency: str) -> int:
    if currency in _ZERO_DECIMAL_CURRENCIES:
        return 0
    if currency in _THREE_DECIMAL_CURRENCIES:
        return 3
    return 2


def amount_from_stripe(amount: int, currency: str) -> int:
    """Minor units of ``currency`` for a Stripe wire ``amount`` (section 1.12).

    Stripe counts in its own unit per currency, which is not always ISO 4217's minor unit: zero-
    decimal currencies in major units (MGA 100 is 10000 of our minor units, ISO gives MGA two
    decimals), three-decimal ones in thousandths, ISK in hundredths although ISO has none
    (ISK 500 on the wire is ISK 5). An amount that is not a whole number of our minor units raises
    ``InvalidAmountError`` (never rounded), an unknown currency ``UnknownCurrencyError``.
    """
    if isinstance(amount, bool) or not isinstance(amount, int):
        raise TypeError(f"a Stripe amount is an int, got {type(amount).__name__}")
    code = normalize_currency(currency)
    shift = exponent(code) - _wire_exponent(code)
    scale: int = 10 ** abs(shift)
    if shift >= 0:
        return amount * scale
    whole, rest = divmod(amount, scale)
    if rest:
        raise InvalidAmountError(
            f"Stripe amount {amount} {code.lower()} is not a whole number of {code} minor units"
        )
    return whole


def event_facts(raw: bytes) -> EventFacts:
    """What one verified Stripe event body says about a payment, its refunds and disputes.

    PaymentIntent and Checkout Session events and Charge events with a PaymentIntent give complete
    payment facts; Refund and Dispute events give partial ones (the payment must exist). Other event
    types, charges and disputes without a PaymentIntent, and setup-mode sessions are ignored.
    """
    event_type, livemode, obj = _event_parts(raw)
    if event_type.startswith("payment_intent."):
        return _payment_intent_facts(event_type, livemode, obj)
    if event_type in _CHECKOUT_SESSION_EVENTS:
        return _checkout_session_facts(event_type, livemode, obj)
    if event_type in _CHARGE_EVENTS:
        return _charge_facts(event_type, livemode, obj)
    if event_type in _REFUND_EVENTS:
        return _refund_event_facts(event_type, livemode, obj)
    if event_type.startswith("charge.dispute."):
        return _dispute_event_facts(event_type, livemode, obj)
    return IGNORED_EVENT


_CHECKOUT_SESSION_EVENTS: Final = frozenset(
    {
        "checkout.session.completed",
        "checkout.session.async_payment_succeeded",
        "checkout.session.async_payment_failed",
        "checkout.session.expired",
    }
)
_CHARGE_EVENTS: Final = frozenset(
    {
        "charge.succeeded",
        "charge.failed",
        "charge.captured",
        "charge.refunded",
        "charge.updated",
        "charge.pending",
    }
)
_REFUND_EVENTS: Final = frozenset(
    {"refund.created", "refund.updated", "refund.failed", "charge.refund.updated"}
)


def _payment_intent_facts(
    event_type: str, livemode: bool | None, intent: dict[str, Any]
) -> EventFacts:
    what = "PaymentIntent"
    currency = _currency(intent, what)
    error = _optional_object(intent, "last_payment_error", what)
    error_text = None
    if error is not None:
        error_text = (
            _optional_str(error, "message", f"{what}.last_payment_error")
            or _optional_str(error, "code", f"{what}.last_payment_error")
            or ""
        )
    mapped = map_payment_intent(
        _required_str(intent, "status", what), last_payment_error=error_text
    )
    amount = _amount(intent, "amount", currency, what)
    captured = None
    if mapped.status is PaymentStatus.SUCCEEDED:
        captured = _amount(intent, "amount_received", currency, what)
    metadata = _metadata(intent, what)
    payment = PaymentFacts(
        reference=_required_str(intent, "id", what),
        status=mapped,
        amount_minor=amount,
        currency=currency,
        captured_minor=captured,
        payment_id=_optional_str(metadata, "paydesk_payment_id", f"{what}.metadata"),
        complete=True,
        method=_first_method(intent, what),
        host_reference=_optional_str(metadata, "host_reference", f"{what}.metadata"),
        customer_email=_optional_str(intent, "receipt_email", what),
        description=_optional_str(intent, "description", what),
        livemode=_livemode(livemode, intent, what),
        created_at=_timestamp(intent, "created", what),
    )
    return EventFacts(payment=payment, summary=f"{event_type} ({mapped.provider_state})")


def _checkout_session_facts(
    event_type: str, livemode: bool | None, session: dict[str, Any]
) -> EventFacts:
    what = "Checkout Session"
    if _optional_str(session, "mode", what) == "setup":
        return IGNORED_EVENT  # saves a payment method, moves no money
    session_id = _required_str(session, "id", what)
    mapped = map_checkout_session(
        _required_str(session, "status", what), _required_str(session, "payment_status", what)
    )
    if event_type == "checkout.session.async_payment_failed":
        # The session fields do not change when a delayed payment fails; the event type says it.
        mapped = MappedStatus(
            PaymentStatus.FAILED, "async_payment_failed", failure_reason="delayed payment failed"
        )
    elif event_type == "checkout.session.async_payment_succeeded":
        mapped = MappedStatus(PaymentStatus.SUCCEEDED, "async_payment_succeeded")
    intent_id = _optional_id(session, "payment_intent", what)
    currency = _currency(session, what)
    amount = _amount(session, "amount_total", currency, what)
    metadata = _metadata(session, what)
    details = _optional_object(session, "customer_details", what) or {}
    payment = PaymentFacts(
        # Before the PaymentIntent exists the session id is the only reference; once it does,
        # the payment may still be stored under the session id.
        reference=intent_id or session_id,
        alt_references=(session_id,) if intent_id else (),
        status=mapped,
        amount_minor=amount,
        currency=currency,
        captured_minor=amount if mapped.status is PaymentStatus.SUCCEEDED else None,
        payment_id=_optional_str(metadata, "paydesk_payment_id", f"{what}.metadata")
        or _optional_str(session, "client_reference_id", what),
        complete=True,
        method=_first_method(session, what),
        host_reference=_optional_str(metadata, "host_reference", f"{what}.metadata"),
        customer_email=_optional_str(details, "email", f"{what}.customer_details")
        or _optional_str(session, "customer_email", what),
        customer_name=_optional_str(details, "name", f"{what}.customer_details"),
        livemode=_livemode(livemode, session, what),
        created_at=_timestamp(session, "created", what),
    )
    return EventFacts(payment=payment, summary=f"{event_type} ({mapped.provider_state})")


ChargeStatus = Literal["succeeded", "pending", "failed"]  # section 1.11
_CHARGE_STATUSES: Final = frozenset(get_args(ChargeStatus))


def _parse_charge_status(value: str) -> ChargeStatus:
    if value not in _CHARGE_STATUSES:
        raise UnknownProviderState(ProviderName.STRIPE, "Charge status", value)
    return cast(ChargeStatus, value)


def _map_charge(status: str, *, captured: bool, failure: str | None) -> MappedStatus:
    charge_status = _parse_charge_status(status)
    match charge_status:
        case "succeeded":
            if captured:
                return MappedStatus(PaymentStatus.SUCCEEDED, charge_status)
            return MappedStatus(PaymentStatus.AUTHORIZED, "succeeded/uncaptured")
        case "pending":
            return MappedStatus(PaymentStatus.PROCESSING, charge_status)
        case "failed":
            # One failed attempt; the PaymentIntent may be retried (see map_payment_intent).
            attempt = map_payment_intent(
                "requires_payment_method", last_payment_error=failure or ""
            )
            return replace(attempt, provider_state=charge_status)
        case _ as unreachable:
            assert_never(unreachable)


def _charge_facts(event_type: str, livemode: bool | None, charge: dict[str, Any]) -> EventFacts:
    what = "Charge"
    intent_id = _optional_id(charge, "payment_intent", what)
    if intent_id is None:
        return IGNORED_EVENT  # a charge outside a PaymentIntent is not a Paydesk payment
    captured = _required_bool(charge, "captured", what)
    failure = _optional_str(charge, "failure_message", what) or _optional_str(
        charge, "failure_code", what
    )
    mapped = _map_charge(_required_str(charge, "status", what), captured=captured, failure=failure)
    currency = _currency(charge, what)
    billing = _optional_object(charge, "billing_details", what) or {}
    method_details = _optional_object(charge, "payment_method_details", what) or {}
    method = _optional_str(method_details, "type", f"{what}.payment_method_details")
    metadata = _metadata(charge, what)
    refunds: tuple[RefundFacts, ...] = ()
    refund_list = _optional_object(charge, "refunds", what)
    if refund_list is not None:
        items = refund_list.get("data")
        if items is not None and not isinstance(items, list):
            raise MalformedEvent("Stripe Charge.refunds.data is not a list")
        refunds = tuple(
            _refund_facts(_as_object(item, "Charge.refunds.data[]")) for item in items or ()
        )
    payment = PaymentFacts(
        reference=intent_id,
        status=mapped,
        amount_minor=_amount(charge, "amount", currency, what),
        currency=currency,
        captured_minor=_amount(charge, "amount_captured", currency, what) if captured else None,
        payment_id=_optional_str(metadata, "paydesk_payment_id", f"{what}.metadata"),
        complete=True,
        method=_method(method) if method else None,
        customer_email=_optional_str(billing, "email", f"{what}.billing_details")
        or _optional_str(charge, "receipt_email", what),
        customer_phone=_optional_str(billing, "phone", f"{what}.billing_details"),
        customer_name=_optional_str(billing, "name", f"{what}.billing_details"),
        description=_optional_str(charge, "description", what),
        livemode=_livemode(livemode, charge, what),
        created_at=_timestamp(charge, "created", what),
    )
    detail = mapped.provider_state
    if refunds:
        detail += f", {len(refunds)} refund" + ("s" if len(refunds) > 1 else "")
    return EventFacts(payment=payment, refunds=refunds, summary=f"{event_type} ({detail})")


def _refund_facts(refund: dict[str, Any]) -> RefundFacts:
    what = "Refund"
    currency = _currency(refund, what)
    metadata = _metadata(refund, what)
    return RefundFacts(
        provider_refund_id=_required_str(refund, "id", what),
        amount_minor=_amount(refund, "amount", currency, what),
        currency=currency,
        status=map_refund_status(_required_str(refund, "status", what)),
        refund_id=_optional_str(metadata, "paydesk_refund_id", f"{what}.metadata"),
        failure_reason=_optional_str(refund, "failure_reason", what),
        reason=_optional_str(refund, "reason", what),
    )


def _refund_event_facts(
    event_type: str, livemode: bool | None, refund: dict[str, Any]
) -> EventFacts:
    intent_id = _optional_id(refund, "payment_intent", "Refund")
    if intent_id is None:
        return IGNORED_EVENT  # a refund of a charge outside a PaymentIntent
    facts = _refund_facts(refund)
    payment = PaymentFacts(reference=intent_id, livemode=_livemode(livemode, refund, "Refund"))
    return EventFacts(
        payment=payment,
        refunds=(facts,),
        summary=f"{event_type} ({facts.provider_refund_id} {facts.status})",
    )


def _dispute_facts(dispute: dict[str, Any]) -> DisputeFacts:
    what = "Dispute"
    currency = _currency(dispute, what)
    evidence = _optional_object(dispute, "evidence_details", what) or {}
    return DisputeFacts(
        provider_dispute_id=_required_str(dispute, "id", what),
        amount_minor=_amount(dispute, "amount", currency, what),
        currency=currency,
        status=map_dispute_status(_required_str(dispute, "status", what)),
        reason=_optional_str(dispute, "reason", what),
        # ``due_by`` is null, or 0 when the bank allows no response (section 1.8).
        evidence_due_at=_timestamp(evidence, "due_by", f"{what}.evidence_details"),
    )


def _dispute_event_facts(
    event_type: str, livemode: bool | None, dispute: dict[str, Any]
) -> EventFacts:
    what = "Dispute"
    intent_id = _optional_id(dispute, "payment_intent", what)
    if intent_id is None:
        return IGNORED_EVENT  # a dispute on a charge outside a PaymentIntent
    facts = _dispute_facts(dispute)
    payment = PaymentFacts(reference=intent_id, livemode=_livemode(livemode, dispute, what))
    return EventFacts(
        payment=payment,
        disputes=(facts,),
        summary=f"{event_type} ({facts.provider_dispute_id} {facts.status})",
    )


def _event_parts(raw: bytes) -> tuple[str, bool | None, dict[str, Any]]:
    """``type``, ``livemode`` and ``data.object`` of an event body."""
    try:
        body = json.loads(raw)
    except (ValueError, RecursionError):
        raise MalformedEvent("Stripe event body is not valid JSON") from None
    if not isinstance(body, dict):
        raise MalformedEvent("Stripe event body is not a JSON object")
    event_type = _required_str(body, "type", "event")
    livemode = body.get("livemode")
    if livemode is not None and not isinstance(livemode, bool):
        raise MalformedEvent("Stripe event.livemode is not a boolean")
    data = _as_object(body.get("data"), "event.data")
    return event_type, livemode, _as_object(data.get("object"), "event.data.object")


def _as_object(value: object, what: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise MalformedEvent(f"Stripe {what} is not an object")
    return value


def _optional_object(obj: dict[str, Any], key: str, what: str) -> dict[str, Any] | None:
    value = obj.get(key)
    return None if value is None else _as_object(value, f"{what}.{key}")


def _metadata(obj: dict[str, Any], what: str) -> dict[str, Any]:
    return _optional_object(obj, "metadata", what) or {}


def _required_str(obj: dict[str, Any], key: str, what: str) -> str:
    value = _optional_str(obj, key, what)
    if value is None:
        raise MalformedEvent(f"Stripe {what}.{key} is missing")
    return value


def _optional_str(obj: dict[str, Any], key: str, what: str) -> str | None:
    """A string field; absent, null and empty are None."""
    value = obj.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        raise MalformedEvent(f"Stripe {what}.{key} is not a string")
    return value or None


def _optional_id(obj: dict[str, Any], key: str, what: str) -> str | None:
    """An id field, or the ``id`` of the object when Stripe sent it expanded."""
    value = obj.get(key)
    if isinstance(value, dict):
        return _required_str(value, "id", f"{what}.{key}")
    return _optional_str(obj, key, what)


def _required_bool(obj: dict[str, Any], key: str, what: str) -> bool:
    value = obj.get(key)
    if not isinstance(value, bool):
        raise MalformedEvent(f"Stripe {what}.{key} is not a boolean")
    return value


def _livemode(event_livemode: bool | None, obj: dict[str, Any], what: str) -> bool | None:
    if event_livemode is not None:
        return event_livemode
    value = obj.get("livemode")
    if value is not None and not isinstance(value, bool):
        raise MalformedEvent(f"Stripe {what}.livemode is not a boolean")
    return value


def _currency(obj: dict[str, Any], what: str) -> str:
    value = _required_str(obj, "currency", what)
    try:
        return normalize_currency(value)
    except UnknownCurrencyError:
        raise MalformedEvent(f"Stripe {what}.currency {value!r} is not a known currency") from None


def _amount(obj: dict[str, Any], key: str, currency: str, what: str) -> int:
    value = obj.get(key)
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise MalformedEvent(f"Stripe {what}.{key} is not a non-negative integer: {value!r}")
    try:
        return amount_from_stripe(value, currency)
    except InvalidAmountError as exc:
        raise MalformedEvent(f"Stripe {what}.{key}: {exc}") from None


def _timestamp(obj: dict[str, Any], key: str, what: str) -> datetime | None:
    """A Unix-seconds field as an aware UTC datetime; absent, null and 0 are None."""
    value = obj.get(key)
    if value is None or value == 0:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise MalformedEvent(f"Stripe {what}.{key} is not a Unix timestamp: {value!r}")
    try:
        return datetime.fromtimestamp(value, tz=UTC)
    except (OverflowError, OSError, ValueError):
        raise MalformedEvent(f"Stripe {what}.{key} is out of range: {value!r}") from None


_METHOD_FIELD_LENGTH: Final = 30  # Payment.method column


def _method(stripe_type: str) -> str:
    """Our payment method for a Stripe payment method type."""
    match stripe_type:
        case "card":
            return PaymentMethod.CARD.value
        case "sepa_debit":
            return PaymentMethod.BANK_DEBIT.value
        case "customer_balance":
            return PaymentMethod.BANK_TRANSFER.value
        case _:
            return stripe_type[:_METHOD_FIELD_LENGTH]


def _first_method(obj: dict[str, Any], what: str) -> str | None:
    types = obj.get("payment_method_types")
    if types is None or types == []:
        return None
    if not isinstance(types, list) or not isinstance(types[0], str):
        raise MalformedEvent(f"Stripe {what}.payment_method_types is not a list of strings")
    return _method(types[0]) if types[0] else None


# --- Outbound: the adapter ----------------------------------------------------------------------
# Section 1.1 (SDK), 1.10 (idempotency), 1.12 (currency exponents). The SDK is imported when an
# adapter is built, not with this module: webhook intake needs only the functions above.

_REFUND_REASONS: Final = frozenset({"duplicate", "fraudulent", "requested_by_customer"})
_METADATA_VALUE_LIMIT: Final = 500  # Stripe's longest metadata value
_LIVE_KEY_PREFIXES: Final = ("sk_live_", "rk_live_")
_TEST_KEY_PREFIXES: Final = ("sk_test_", "rk_test_")
_REFUND_PAGE_SIZE: Final = 100
# What Stripe takes as dispute evidence files (by content; the SDK sends every file as
# application/octet-stream and Stripe detects the type itself).
_EVIDENCE_FILE_TYPES: Final = frozenset({"application/pdf", "image/jpeg", "image/png"})

_R = TypeVar("_R")


def _declined(message: str, code: str) -> ProviderDeclined:
    return ProviderDeclined(message, provider=ProviderName.STRIPE, code=code)


def amount_to_stripe(amount_minor: int, currency: str) -> int:
    """Stripe's wire amount for ``amount_minor`` of ``currency`` (section 1.12); the inverse of
    ``amount_from_stripe`` and the only place outbound amounts are converted.

    Zero-decimal currencies go in whole units (JPY 500 is 500; MGA 100.00 is 100), ISK in
    hundredths although ISO gives it none, three-decimal currencies in thousandths whose last
    digit Stripe requires to be 0. An amount Stripe cannot represent (KWD 12.345, MGA 100.50), a
    negative one or an unknown currency raises ``ProviderDeclined``: refused, never rounded.
    """
    if isinstance(amount_minor, bool) or not isinstance(amount_minor, int):
        raise TypeError(f"an amount is an int of minor units, got {type(amount_minor).__name__}")
    try:
        code = normalize_currency(currency)
    except UnknownCurrencyError:
        raise _declined(f"unknown currency {currency!r}", "invalid_currency") from None
    if amount_minor < 0:
        raise _declined(f"negative amount {amount_minor} {code}", "invalid_amount")
    shift = _wire_exponent(code) - exponent(code)
    scale: int = 10 ** abs(shift)
    if shift >= 0:
        wire = amount_minor * scale
    else:
        wire, rest = divmod(amount_minor, scale)
        if rest:
            raise _declined(
                f"{amount_minor} {code} minor units is not a whole number of Stripe's {code} unit",
                "amount_not_representable",
            )
    if code in _THREE_DECIMAL_CURRENCIES and wire % 10:
        raise _declined(
            f"Stripe takes {code} amounts only in multiples of 10 thousandths, "
            f"got {amount_minor} (refused rather than rounded)",
            "amount_not_representable",
        )
    return wire


def _provider_error(exc: stripe.StripeError, *, write: bool, what: str) -> ProviderError:
    """The ``base`` error for an SDK exception. Transient failures of a write are
    ``ProviderOutcomeUnknown``: Stripe may have carried it out (retry with the same key)."""
    import stripe

    status = exc.http_status
    message = f"{what}: {exc.user_message or type(exc).__name__}"
    transient: type[ProviderUnavailable] = ProviderOutcomeUnknown if write else ProviderUnavailable
    where = ProviderName.STRIPE
    if isinstance(exc, stripe.CardError):
        decline_code = getattr(exc.error, "decline_code", None) if exc.error else None
        return ProviderDeclined(
            message, provider=where, code=decline_code or exc.code, status_code=status
        )
    if isinstance(exc, stripe.IdempotencyError):
        return ProviderDeclined(
            message, provider=where, code=exc.code or "idempotency_error", status_code=status
        )
    if isinstance(exc, stripe.InvalidRequestError):
        return ProviderDeclined(message, provider=where, code=exc.code, status_code=status)
    if isinstance(exc, stripe.AuthenticationError | stripe.PermissionError):
        return ProviderAuthError(message, provider=where, code=exc.code, status_code=status)
    # RateLimitError, APIConnectionError (timeouts, refused, reset), APIError (5xx, 409 after the
    # SDK's retries, and answers that are not JSON) and anything newer: nothing certain happened.
    return transient(message, provider=where, code=exc.code, status_code=status)


class StripeAdapter:
    """Checkout, refunds, status reads and dispute answers through ``stripe.StripeClient``.

    Every write carries an ``Idempotency-Key``: our stored key for checkouts and refunds, and the
    SDK's own for dispute calls (reused across its retries only). The SDK retries transient
    failures (connection errors, timeouts, 409, 5xx) ``max_network_retries`` times with the same
    key. Every SDK exception is translated into a ``base.ProviderError``; reads raise
    ``ProviderUnavailable`` for transient failures, writes ``ProviderOutcomeUnknown``.
    ``fetch_payment`` raises ``ProviderEntityNotFound`` for an object Stripe does not know, and a
    plain ``ProviderError`` (code ``unreadable_object``) for one our parsers refuse (a missing
    field, a state we do not know).
    """

    def __init__(self, client: stripe.StripeClient) -> None:
        self._client = client

    @classmethod
    def from_settings(cls, settings: Settings) -> StripeAdapter:
        """An adapter for ``STRIPE_API_KEY`` at ``STRIPE_API_BASE``.

        Refuses (``ProviderNotConfigured``) an empty key, and a key whose mode contradicts
        ``STRIPE_TEST_MODE`` (a live key would otherwise record real payments as test ones).
        """
        import stripe

        api_key = settings.stripe_api_key.get_secret_value().strip()
        if not api_key:
            raise ProviderNotConfigured("STRIPE_API_KEY is not set", provider=ProviderName.STRIPE)
        if settings.stripe_test_mode and api_key.startswith(_LIVE_KEY_PREFIXES):
            raise ProviderNotConfigured(
                "STRIPE_API_KEY is a live key but STRIPE_TEST_MODE is true",
                provider=ProviderName.STRIPE,
            )
        if not settings.stripe_test_mode and api_key.startswith(_TEST_KEY_PREFIXES):
            raise ProviderNotConfigured(
                "STRIPE_API_KEY is a test key but STRIPE_TEST_MODE is false",
                provider=ProviderName.STRIPE,
            )
        api_base = settings.stripe_api_base.rstrip("/")
        client = stripe.StripeClient(
            api_key,
            # One base for both: uploads (POST /v1/files) go to the "files" address, which is
            # files.stripe.com by default and the same fake as the API in tests.
            base_addresses={"api": api_base, "files": api_base},
            max_network_retries=settings.provider_max_retries,
            http_client=stripe.RequestsClient(timeout=settings.provider_timeout_seconds),
        )
        return cls(client)

    # -- checkout ---------------------------------------------------------------------------------

    def create_checkout(self, request: CheckoutRequest) -> CheckoutResult:
        """A Checkout Session (mode ``payment``) for the request; our payment id travels in the
        session's and the PaymentIntent's metadata and as ``client_reference_id``."""
        metadata = _our_metadata(request)
        params: dict[str, Any] = {
            "mode": "payment",
            "line_items": _checkout_lines(request),
            "client_reference_id": request.payment_id,
            "metadata": metadata,
            "payment_intent_data": {"metadata": dict(metadata)},
        }
        if request.description:
            params["payment_intent_data"]["description"] = request.description
        if request.success_url:
            params["success_url"] = request.success_url
        if request.cancel_url:
            params["cancel_url"] = request.cancel_url
        if request.customer_email:
            params["customer_email"] = request.customer_email
        what = f"Stripe checkout for {request.payment_id}"
        session = self._call(
            lambda: self._client.v1.checkout.sessions.create(
                params=cast("SessionCreateParams", params),
                options={"idempotency_key": request.idempotency_key},
            ),
            write=True,
            what=what,
        )
        try:
            data = session.to_dict()
            session_id = _required_str(data, "id", "Checkout Session")
            url = _required_str(data, "url", "Checkout Session")
            status = map_checkout_session(
                _required_str(data, "status", "Checkout Session"),
                _required_str(data, "payment_status", "Checkout Session"),
            )
            expires_at = _timestamp(data, "expires_at", "Checkout Session")
        except (MalformedEvent, UnknownProviderState) as exc:
            raise _unreadable(what, exc) from exc
        return CheckoutResult(
            provider_reference=session_id,
            status=status,
            checkout_url=url,
            expires_at=expires_at,
        )

    # -- refunds ----------------------------------------------------------------------------------

    def refund(self, request: RefundRequest) -> RefundResult:
        """Refund ``amount_minor`` of the PaymentIntent behind ``provider_reference`` (a
        PaymentIntent, or the Checkout Session the payment was first stored under)."""
        amount = amount_to_stripe(request.amount_minor, request.currency)
        if amount == 0:
            raise _declined("a refund needs an amount above zero", "invalid_amount")
        what = f"Stripe refund {request.refund_id} of {request.provider_reference}"
        intent_id = self._refund_target(request.provider_reference, what)
        metadata = {
            "paydesk_refund_id": request.refund_id,
            "paydesk_payment_id": request.payment_id,
        }
        params: dict[str, Any] = {"payment_intent": intent_id, "amount": amount}
        if request.reason in _REFUND_REASONS:
            params["reason"] = request.reason
        elif request.reason:
            metadata["paydesk_reason"] = request.reason[:_METADATA_VALUE_LIMIT]
        params["metadata"] = metadata
        refund = self._call(
            lambda: self._client.v1.refunds.create(
                params=cast("RefundCreateParams", params),
                options={"idempotency_key": request.idempotency_key},
            ),
            write=True,
            what=what,
        )
        try:
            data = refund.to_dict()
            return RefundResult(
                provider_refund_id=_required_str(data, "id", "Refund"),
                status=map_refund_status(_required_str(data, "status", "Refund")),
                failure_reason=_optional_str(data, "failure_reason", "Refund"),
            )
        except (MalformedEvent, UnknownProviderState) as exc:
            raise _unreadable(what, exc) from exc

    def _refund_target(self, provider_reference: str, what: str) -> str:
        if provider_reference.startswith("pi_"):
            return provider_reference
        if not provider_reference.startswith("cs_"):
            raise _declined(f"{what}: not a PaymentIntent or Checkout Session", "invalid_reference")
        # Nothing is written yet: a failure here is a plain read failure.
        session = self._call(
            lambda: self._client.v1.checkout.sessions.retrieve(provider_reference),
            write=False,
            what=what,
        )
        try:
            intent_id = _optional_id(session.to_dict(), "payment_intent", "Checkout Session")
        except MalformedEvent as exc:
            raise ProviderUnavailable(
                f"{what}: unreadable Checkout Session ({exc})", provider=ProviderName.STRIPE
            ) from exc
        if intent_id is None:
            raise _declined(f"{what}: the session has no payment to refund", "no_payment_intent")
        return intent_id

    # -- status -----------------------------------------------------------------------------------

    def fetch_payment(self, provider_reference: str) -> EventFacts:
        """The payment as Stripe sees it now, with its refunds.

        ``pi_...`` reads the PaymentIntent; ``cs_...`` reads the Checkout Session and, once the
        session has one, its PaymentIntent (the facts then name the PaymentIntent, with the
        session id as an alternative reference).
        """
        what = f"Stripe payment {provider_reference}"
        try:
            return self._fetch_payment(provider_reference, what)
        except (MalformedEvent, UnknownProviderState) as exc:
            # Not transient (a retry reads the same object) and not a reason to stop a
            # reconciliation run: a plain ProviderError that names what to look at.
            raise ProviderError(
                f"{what}: {exc}", provider=ProviderName.STRIPE, code="unreadable_object"
            ) from exc

    def _fetch_payment(self, provider_reference: str, what: str) -> EventFacts:
        if provider_reference.startswith("pi_"):
            intent = self._read(
                lambda: self._client.v1.payment_intents.retrieve(provider_reference), what
            )
            facts = _payment_intent_facts("payment_intent.fetched", None, intent)
            return self._with_refunds(facts, provider_reference, what)
        if not provider_reference.startswith("cs_"):
            raise ProviderEntityNotFound(f"{what}: not a PaymentIntent or Checkout Session id")
        session = self._read(
            lambda: self._client.v1.checkout.sessions.retrieve(provider_reference), what
        )
        session_facts = _checkout_session_facts("checkout.session.fetched", None, session)
        intent_id = _optional_id(session, "payment_intent", "Checkout Session")
        if intent_id is None or session_facts.payment is None:
            return session_facts
        intent = self._read(lambda: self._client.v1.payment_intents.retrieve(intent_id), what)
        facts = _merge_session(
            _payment_intent_facts("payment_intent.fetched", None, intent), session_facts
        )
        return self._with_refunds(facts, intent_id, what)

    def _with_refunds(self, facts: EventFacts, intent_id: str, what: str) -> EventFacts:
        def list_refunds() -> list[dict[str, Any]]:
            page = self._client.v1.refunds.list(
                params={"payment_intent": intent_id, "limit": _REFUND_PAGE_SIZE}
            )
            return [refund.to_dict() for refund in page.auto_paging_iter()]

        refunds = self._call(list_refunds, write=False, what=f"{what} refunds", not_found=True)
        if not refunds:
            return facts
        return replace(facts, refunds=tuple(_refund_facts(refund) for refund in refunds))

    def _read(self, call: Callable[[], stripe.StripeObject], what: str) -> dict[str, Any]:
        return self._call(call, write=False, what=what, not_found=True).to_dict()

    # -- disputes ---------------------------------------------------------------------------------

    def update_dispute_evidence(
        self, provider_dispute_id: str, evidence: Mapping[str, str], *, submit: bool
    ) -> DisputeFacts:
        """Stage ``evidence`` (Stripe's field names) on the dispute; ``submit`` sends it all to
        the bank, after which it cannot be changed."""
        params: dict[str, Any] = {"evidence": dict(evidence), "submit": submit}
        what = f"Stripe dispute {provider_dispute_id} evidence"
        dispute = self._call(
            lambda: self._client.v1.disputes.update(
                provider_dispute_id, params=cast("DisputeUpdateParams", params)
            ),
            write=True,
            what=what,
        )
        return _dispute_answer(dispute, what)

    def upload_dispute_file(self, name: str, content: bytes, content_type: str) -> str:
        """Upload one evidence file (purpose ``dispute_evidence``); its Stripe File id
        (``file_...``), to name in an evidence file field of ``update_dispute_evidence``.

        ``content_type`` is checked (PDF, JPEG or PNG) but not sent: the SDK sends every file as
        ``application/octet-stream`` and Stripe detects the type itself. The SDK's own
        Idempotency-Key covers its retries only: a retry after ``ProviderOutcomeUnknown`` may
        leave a second, unreferenced File at Stripe.
        """
        import io

        if content_type not in _EVIDENCE_FILE_TYPES:
            raise _declined(
                f"Stripe takes PDF, JPEG or PNG evidence files, not {content_type!r}",
                "invalid_file_type",
            )
        if not content:
            raise _declined(f"evidence file {name!r} is empty", "invalid_file")
        what = f"Stripe evidence file upload {name!r}"

        def upload() -> stripe.StripeObject:
            # A fresh stream per call: the SDK reads it to the end when it builds the body.
            stream = io.BytesIO(content)
            stream.name = name  # the multipart part's filename
            params = {"purpose": "dispute_evidence", "file": stream}
            return self._client.v1.files.create(params=cast("FileCreateParams", params))

        uploaded = self._call(upload, write=True, what=what)
        try:
            data = uploaded.to_dict()
            file_id = _required_str(data, "id", "File")
        except MalformedEvent as exc:
            raise _unreadable(what, exc) from exc
        if not file_id.startswith("file_"):
            raise _unreadable(what, MalformedEvent(f"File id {file_id!r} is not a file_ id"))
        return file_id

    def accept_dispute(self, provider_dispute_id: str) -> DisputeFacts:
        """Close the dispute without contest: Stripe marks it lost (irreversible)."""
        what = f"Stripe dispute {provider_dispute_id} close"
        dispute = self._call(
            lambda: self._client.v1.disputes.close(provider_dispute_id), write=True, what=what
        )
        return _dispute_answer(dispute, what)

    # -- SDK calls --------------------------------------------------------------------------------

    def _call(
        self, call: Callable[[], _R], *, write: bool, what: str, not_found: bool = False
    ) -> _R:
        """Run one SDK call; ``not_found`` makes a 404 ``ProviderEntityNotFound`` (reads)."""
        import stripe

        try:
            return call()
        except stripe.StripeError as exc:
            if not_found and isinstance(exc, stripe.InvalidRequestError) and exc.http_status == 404:
                raise ProviderEntityNotFound(f"{what}: not found at Stripe") from exc
            raise _provider_error(exc, write=write, what=what) from exc


def _our_metadata(request: CheckoutRequest) -> dict[str, str]:
    # Empty values would unset keys on Stripe's side; ours are written last so a host's
    # metadata cannot overwrite them.
    metadata = {key: value for key, value in request.metadata.items() if value}
    if request.host_reference:
        metadata["host_reference"] = request.host_reference
    metadata["paydesk_payment_id"] = request.payment_id
    return metadata


def _checkout_lines(request: CheckoutRequest) -> list[dict[str, Any]]:
    """Stripe line items (``price_data`` in wire units) for the request's lines."""
    items = request.line_items
    if not items or any(item.kind is LineItemKind.DISCOUNT for item in items):
        # Stripe line items cannot be negative, and a coupon would be a second object to keep in
        # step: with a discount, one line carries the whole (already discounted) amount.
        name = request.description or f"Payment {request.payment_id}"
        return [_line(name, 1, request.amount_minor, request.currency)]
    total = sum(item.total_minor for item in items)
    if total != request.amount_minor:
        raise _declined(
            f"line items add up to {total}, the payment is {request.amount_minor}",
            "line_items_mismatch",
        )
    return [
        _line(item.name, item.quantity, item.unit_amount_minor, request.currency) for item in items
    ]


def _line(name: str, quantity: int, unit_amount_minor: int, currency: str) -> dict[str, Any]:
    unit_amount = amount_to_stripe(unit_amount_minor, currency)  # checks the currency too
    return {
        "price_data": {
            "currency": normalize_currency(currency).lower(),  # section 1.12: lowercase
            "unit_amount": unit_amount,
            "product_data": {"name": name},
        },
        "quantity": quantity,
    }


def _merge_session(intent_facts: EventFacts, session_facts: EventFacts) -> EventFacts:
    """PaymentIntent facts completed by what only the session knows (its id, the customer)."""
    intent, session = intent_facts.payment, session_facts.payment
    if intent is None or session is None:
        return intent_facts
    status = intent.status
    if (
        session.status is not None
        and session.status.status is PaymentStatus.EXPIRED
        and status is not None
        and status.status not in {PaymentStatus.SUCCEEDED, PaymentStatus.CANCELED}
    ):
        status = session.status  # the session ran out while an attempt was left unfinished
    payment = replace(
        intent,
        status=status,
        alt_references=(*intent.alt_references, *session.alt_references),
        payment_id=intent.payment_id or session.payment_id,
        host_reference=intent.host_reference or session.host_reference,
        customer_email=intent.customer_email or session.customer_email,
        customer_name=intent.customer_name or session.customer_name,
    )
    summary = intent_facts.summary
    if status is not intent.status and status is not None:
        summary = f"{session_facts.summary}, PaymentIntent {intent.reference}"
    return replace(intent_facts, payment=payment, summary=summary)


def _dispute_answer(dispute: stripe.StripeObject, what: str) -> DisputeFacts:
    try:
        return _dispute_facts(dispute.to_dict())
    except (MalformedEvent, UnknownProviderState) as exc:
        raise _unreadable(what, exc) from exc


def _unreadable(what: str, exc: Exception) -> ProviderOutcomeUnknown:
    """A write's answer we cannot read: Stripe probably did it; read back or retry the key."""
    return ProviderOutcomeUnknown(
        f"{what}: unreadable answer from Stripe ({exc})", provider=ProviderName.STRIPE
    )
