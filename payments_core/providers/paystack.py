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
from datetime import UTC, datetime
from typing import Any, Final, Literal, assert_never, cast, get_args

from payments_core.money import (
    InvalidAmountError,
    UnknownCurrencyError,
    exponent,
    normalize_currency,
)
from payments_core.providers.base import (
    IGNORED_EVENT,
    DisputeFacts,
    EventFacts,
    MalformedEvent,
    PaymentFacts,
    PaymentMethod,
    ProviderName,
    RefundFacts,
    UnknownProviderState,
    Verification,
    VerifiedWebhook,
    check_hex_hmac,
)
from payments_core.providers.base import (
    id_text as _text,
)
from payments_core.providers.base import (
    load_json_object as _load_json_object,
)
from payments_core.providers.base import (
    malformed_delivery as _malformed,
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
    check_hex_hmac(
        raw,
        signature_header,
        secret_key,
        "sha512",
        what="Paystack secret key",
        header_name=SIGNATURE_HEADER,
    )

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


def _required(data: dict[str, Any], field: str) -> str:
    value = _text(data.get(field))
    if value is None:
        raise _malformed(f"data.{field} missing")
    return value


# --- Event facts --------------------------------------------------------------------------------
# A verified, stored event body -> what it says in our terms (``base.EventFacts``). Pure: no API
# calls. Shapes per section 3.5; a body without what its event needs raises ``MalformedEvent``, a
# refund or dispute status we do not know ``UnknownProviderState``.

# Paystack counts every currency in hundredths of its major unit (kobo, pesewas, cents), also
# currencies whose ISO 4217 minor unit is not 1/100 (XOF and RWF have none): Paystack's own
# WooCommerce plugin sends ``total * 100`` and reads ``amount / 100`` for all of them.
_WIRE_EXPONENT: Final = 2


def amount_from_paystack(amount: int, currency: str) -> int:
    """Minor units of ``currency`` for a Paystack wire ``amount`` (hundredths of the major unit).

    The same number for NGN, GHS, ZAR, KES, USD (two-decimal in ISO 4217 too); XOF 250000 on the
    wire is XOF 2500. An amount that is not a whole number of our minor units raises
    ``InvalidAmountError`` (never rounded), an unknown currency ``UnknownCurrencyError``.
    """
    if isinstance(amount, bool) or not isinstance(amount, int):
        raise TypeError(f"a Paystack amount is an int, got {type(amount).__name__}")
    code = normalize_currency(currency)
    shift = exponent(code) - _WIRE_EXPONENT
    scale: int = 10 ** abs(shift)
    if shift >= 0:
        return amount * scale
    whole, rest = divmod(amount, scale)
    if rest:
        raise InvalidAmountError(
            f"Paystack amount {amount} {code} is not a whole number of {code} minor units"
        )
    return whole


def event_facts(raw: bytes) -> EventFacts:
    """What one verified Paystack event body says about a payment, its refunds and disputes.

    ``charge.success`` gives complete payment facts; refund and dispute events partial ones (the
    payment must exist). Other events (transfers, subscriptions, ...) are ignored.
    """
    event, data = _event_parts(raw)
    if event == "charge.success":
        return _charge_facts(event, data)
    if event in _REFUND_EVENTS:
        return _refund_event_facts(event, data)
    if event in _DISPUTE_EVENTS:
        return _dispute_event_facts(event, data)
    return IGNORED_EVENT


# ``refund.needs-attention`` too: the refund waits for the customer's account details (3.4).
_REFUND_EVENTS: Final = frozenset(
    {
        "refund.pending",
        "refund.processing",
        "refund.processed",
        "refund.failed",
        "refund.needs-attention",
    }
)
_DISPUTE_EVENTS: Final = frozenset(
    {"charge.dispute.create", "charge.dispute.remind", "charge.dispute.resolve"}
)


def _charge_facts(event: str, data: dict[str, Any]) -> EventFacts:
    what = "charge"
    mapped = map_transaction_status(
        _required_str(data, "status", what),
        gateway_response=_optional_str(data, "gateway_response", what),
    )
    currency = _currency(data, what)
    amount = _amount(data.get("amount"), currency, f"{what}.amount")
    customer = _optional_object(data, "customer", what) or {}
    names = [
        _optional_str(customer, "first_name", "customer"),
        _optional_str(customer, "last_name", "customer"),
    ]
    channel = _optional_str(data, "channel", what)
    payment = PaymentFacts(
        reference=_required_text(data, "reference", what),
        status=mapped,
        amount_minor=amount,
        currency=currency,
        captured_minor=amount if mapped.status is PaymentStatus.SUCCEEDED else None,
        payment_id=_optional_str(_metadata(data), "paydesk_payment_id", "metadata"),
        complete=True,
        method=_method(channel) if channel else None,
        customer_email=_optional_str(customer, "email", "customer"),
        customer_phone=_optional_str(customer, "phone", "customer"),
        customer_name=" ".join(name for name in names if name) or None,
        livemode=_livemode(data),
        created_at=_iso_datetime(data, "created_at", what) or _iso_datetime(data, "paid_at", what),
    )
    return EventFacts(payment=payment, summary=f"{event} ({mapped.provider_state})")


def _refund_event_facts(event: str, data: dict[str, Any]) -> EventFacts:
    what = "refund"
    # ``refund_reference`` is null while the refund is pending or processing (section 3.5).
    refund_id = _text(data.get("refund_reference")) or _text(data.get("id"))
    if refund_id is None:
        raise MalformedEvent("Paystack refund without refund_reference or id")
    currency = _currency(data, what)
    refund = RefundFacts(
        provider_refund_id=refund_id,
        amount_minor=_amount(data.get("amount"), currency, f"{what}.amount"),
        currency=currency,
        status=map_refund_status(_required_str(data, "status", what)),
    )
    payment = PaymentFacts(
        reference=_required_text(data, "transaction_reference", what), livemode=_livemode(data)
    )
    return EventFacts(
        payment=payment, refunds=(refund,), summary=f"{event} ({refund_id} {refund.status})"
    )


def _dispute_event_facts(event: str, data: dict[str, Any]) -> EventFacts:
    what = "dispute"
    transaction = _optional_object(data, "transaction", what)
    if transaction is None:
        raise MalformedEvent("Paystack dispute without transaction")
    currency = _currency(data, what) if data.get("currency") else _currency(transaction, what)
    # ``refund_amount`` is what goes back to the customer if the dispute is lost; without it the
    # whole transaction is taken as disputed.
    if data.get("refund_amount") is not None:
        amount = _amount(data["refund_amount"], currency, f"{what}.refund_amount")
    else:
        amount = _amount(transaction.get("amount"), currency, f"{what}.transaction.amount")
    dispute = DisputeFacts(
        provider_dispute_id=_required_text(data, "id", what),
        amount_minor=amount,
        currency=currency,
        status=map_dispute_status(
            _required_str(data, "status", what), _optional_str(data, "resolution", what)
        ),
        reason=_optional_str(data, "category", what),
        evidence_due_at=_iso_datetime(data, "dueAt", what),
    )
    payment = PaymentFacts(
        reference=_required_text(transaction, "reference", f"{what}.transaction"),
        livemode=_livemode(data),
    )
    return EventFacts(
        payment=payment,
        disputes=(dispute,),
        summary=f"{event} ({dispute.provider_dispute_id} {dispute.status})",
    )


def _event_parts(raw: bytes) -> tuple[str, dict[str, Any]]:
    try:
        body = json.loads(raw)
    except (ValueError, RecursionError):
        raise MalformedEvent("Paystack event body is not valid JSON") from None
    if not isinstance(body, dict):
        raise MalformedEvent("Paystack event body is not a JSON object")
    event = body.get("event")
    data = body.get("data")
    if not isinstance(event, str) or not event or not isinstance(data, dict):
        raise MalformedEvent("Paystack event body without event or data")
    return event, data


def _optional_object(obj: dict[str, Any], key: str, what: str) -> dict[str, Any] | None:
    value = obj.get(key)
    if value is None:
        return None
    if not isinstance(value, dict):
        raise MalformedEvent(f"Paystack {what}.{key} is not an object")
    return value


def _metadata(data: dict[str, Any]) -> dict[str, Any]:
    """``metadata`` as an object: Paystack sends an object, a JSON string, ``""`` or ``0``."""
    value = data.get("metadata")
    if isinstance(value, str) and value.lstrip().startswith("{"):
        try:
            value = json.loads(value)
        except (ValueError, RecursionError):
            return {}
    return value if isinstance(value, dict) else {}


def _optional_str(obj: dict[str, Any], key: str, what: str) -> str | None:
    """A string field; absent, null and empty are None."""
    value = obj.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        raise MalformedEvent(f"Paystack {what}.{key} is not a string")
    return value or None


def _required_str(obj: dict[str, Any], key: str, what: str) -> str:
    value = _optional_str(obj, key, what)
    if value is None:
        raise MalformedEvent(f"Paystack {what}.{key} is missing")
    return value


def _required_text(obj: dict[str, Any], key: str, what: str) -> str:
    """A non-empty string or an integer id as text."""
    value = _text(obj.get(key))
    if value is None:
        raise MalformedEvent(f"Paystack {what}.{key} is missing")
    return value


def _livemode(data: dict[str, Any]) -> bool | None:
    domain = data.get("domain")
    return domain == "live" if isinstance(domain, str) else None


def _currency(obj: dict[str, Any], what: str) -> str:
    value = _optional_str(obj, "currency", what)
    if value is None:
        raise MalformedEvent(f"Paystack {what}.currency is missing")
    try:
        return normalize_currency(value)
    except UnknownCurrencyError:
        raise MalformedEvent(
            f"Paystack {what}.currency {value!r} is not a known currency"
        ) from None


def _amount(value: object, currency: str, what: str) -> int:
    """A wire amount, an integer or (refund events, section 3.5) a string of digits."""
    if isinstance(value, str) and value.isascii() and value.isdigit():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise MalformedEvent(f"Paystack {what} is not a non-negative integer: {value!r}")
    try:
        return amount_from_paystack(value, currency)
    except InvalidAmountError as exc:
        raise MalformedEvent(f"Paystack {what}: {exc}") from None


def _iso_datetime(obj: dict[str, Any], key: str, what: str) -> datetime | None:
    """An ISO 8601 field (``2026-01-05T10:15:00.000Z``) as an aware UTC datetime, or None."""
    value = _optional_str(obj, key, what)
    if value is None:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise MalformedEvent(f"Paystack {what}.{key} is not an ISO date: {value!r}") from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)  # Paystack writes UTC ("...Z")
    return parsed.astimezone(UTC)


_METHOD_FIELD_LENGTH: Final = 30  # Payment.method column


def _method(channel: str) -> str:
    """Our payment method for a Paystack ``channel``."""
    match channel:
        case "card":
            return PaymentMethod.CARD.value
        case "bank" | "bank_transfer":
            return PaymentMethod.BANK_TRANSFER.value
        case "mobile_money":
            return PaymentMethod.MOBILE_MONEY.value
        case "ussd":
            return PaymentMethod.USSD.value
        case _:
            return channel[:_METHOD_FIELD_LENGTH]
