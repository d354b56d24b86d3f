"""Protocols and normalized types shared by provider adapters; adapters are added by later work.

For now this module holds the provider and payment-method names used across the code base and the
error raised when a provider sends a state that our mapping tables do not know.
"""

from __future__ import annotations

import enum
import hmac
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final

from payments_core.status import DisputeStatus, MappedStatus, RefundStatus


class ProviderName(enum.StrEnum):
    STRIPE = "stripe"
    POSTFINANCE = "postfinance"
    PAYSTACK = "paystack"
    MPESA = "mpesa"
    MANUAL = "manual"
    DUMMY = "dummy"


class PaymentMethod(enum.StrEnum):
    CARD = "card"
    BANK_TRANSFER = "bank_transfer"
    CASH_ON_DELIVERY = "cash_on_delivery"
    MOBILE_MONEY = "mobile_money"
    TWINT = "twint"
    BANK_DEBIT = "bank_debit"
    USSD = "ussd"
    WALLET = "wallet"
    OTHER = "other"


class UnknownProviderState(ValueError):
    """A provider sent a state (status, result code, ...) that our mapping tables do not know.

    Raised by the ``parse_*`` functions of the provider modules so that a new or misspelt provider
    state is an error to look at, never a silent default.
    """

    def __init__(self, provider: ProviderName, kind: str, value: object) -> None:
        self.provider = provider
        self.kind = kind
        self.value = value
        super().__init__(f"unknown {provider} {kind}: {value!r}")

    def __reduce__(self) -> tuple[type[UnknownProviderState], tuple[ProviderName, str, object]]:
        # Keep the exception picklable (task queues, multiprocessing) despite the custom __init__.
        return (type(self), (self.provider, self.kind, self.value))


# --- Webhooks ----------------------------------------------------------------------------------


class RejectionReason(enum.StrEnum):
    """Why a delivery was refused; one counter and one aggregated audit record per reason."""

    MISSING_SIGNATURE = "missing_signature"
    BAD_SIGNATURE = "bad_signature"
    STALE_TIMESTAMP = "stale_timestamp"
    FUTURE_TIMESTAMP = "future_timestamp"
    MALFORMED = "malformed"
    UNSIGNED = "unsigned"
    UNKNOWN_TOKEN = "unknown_token"  # noqa: S105 (a reason, not a secret)
    SOURCE_NOT_ALLOWED = "source_not_allowed"
    TOO_LARGE = "too_large"
    NOT_CONFIGURED = "not_configured"
    UNKNOWN_PROVIDER = "unknown_provider"


class WebhookRejected(Exception):
    """A delivery that must not be trusted: answered with ``status_code`` and changes nothing."""

    def __init__(self, reason: RejectionReason, detail: str, status_code: int = 400) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail
        self.status_code = status_code


def malformed_delivery(detail: str) -> WebhookRejected:
    """A verified delivery whose body is not what the provider sends (answered 400)."""
    return WebhookRejected(RejectionReason.MALFORMED, detail)


def load_json_object(raw: bytes) -> dict[str, Any]:
    """The body as a JSON object, or MALFORMED."""
    try:
        body = json.loads(raw)
    except (ValueError, RecursionError):  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        raise malformed_delivery("body is not valid JSON") from None
    if not isinstance(body, dict):
        raise malformed_delivery("body is not a JSON object")
    return body


def id_text(value: object) -> str | None:
    """An id as text: a non-empty string, or a JSON integer (``12`` and ``"12"`` are one id)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str) and value:
        return value
    return None


def check_hex_hmac(
    raw: bytes,
    signature_header: str | None,
    secret: str,
    digestmod: str,
    *,
    what: str,
    header_name: str,
) -> None:
    """Refuse unless the header is the hex HMAC (``digestmod``) of ``raw`` with ``secret``.

    No secret configured -> NOT_CONFIGURED (503, the provider retries once it is set); no header
    -> MISSING_SIGNATURE; anything else that does not match -> BAD_SIGNATURE. Constant time.
    """
    if not secret:
        raise WebhookRejected(
            RejectionReason.NOT_CONFIGURED, f"no {what} configured", status_code=503
        )
    if signature_header is None or not signature_header.strip():
        raise WebhookRejected(RejectionReason.MISSING_SIGNATURE, f"missing {header_name} header")
    expected = hmac.new(secret.encode("utf-8"), raw, digestmod).hexdigest().encode("ascii")
    candidate = signature_header.strip().lower().encode("utf-8", "replace")
    if not hmac.compare_digest(expected, candidate):
        raise WebhookRejected(RejectionReason.BAD_SIGNATURE, "signature does not match")


class Verification(enum.StrEnum):
    SIGNED = "signed"  # signature checked on the raw bytes
    TOKEN = "token"  # noqa: S105 -- unsigned provider, secret per-payment URL token checked (M-Pesa)
    HINT = "hint"  # unsigned and allowed only as a hint: processing must read the provider API


@dataclass(frozen=True, slots=True)
class VerifiedWebhook:
    """What intake needs from a verified delivery; the raw bytes are stored alongside."""

    provider: ProviderName
    event_id: str  # stable dedupe key, unique per provider
    event_type: str
    verification: Verification
    livemode: bool | None = None
    # The provider's reference of the payment the event is about, when the body names it
    # (PaymentIntent id, PostFinance transaction id, Paystack reference, CheckoutRequestID, ...).
    reference: str | None = None


# --- What an event says, in our terms (processing) -----------------------------------------------
# Adapters turn a stored delivery into these facts; ``payments_core.services.processing`` applies
# them. Amounts are minor units of ``currency`` (converted from the wire unit inside the adapter).


@dataclass(frozen=True, slots=True)
class PaymentFacts:
    """What the provider says about one payment.

    ``reference`` is the provider's id of the payment (PaymentIntent, PostFinance transaction id,
    Paystack reference, CheckoutRequestID, dummy payment id); ``alt_references`` are other ids the
    payment may have been stored under first (a Checkout Session id before its PaymentIntent
    existed). ``payment_id`` is ours when the provider echoes it back (metadata).

    ``complete`` says the facts describe the whole payment (amount, currency, customer): enough to
    create a payment Paydesk has not seen from a signed event. Partial facts (a charge inside a
    dispute) only update a payment that exists.
    """

    reference: str
    status: MappedStatus | None = None
    amount_minor: int | None = None
    currency: str | None = None
    # Money actually captured, when the provider says it (PaymentIntent amount_received, ...).
    captured_minor: int | None = None
    payment_id: str | None = None
    alt_references: tuple[str, ...] = ()
    complete: bool = False
    method: str | None = None
    host_reference: str | None = None
    customer_email: str | None = None
    customer_phone: str | None = None
    customer_name: str | None = None
    description: str | None = None
    livemode: bool | None = None
    created_at: datetime | None = None
    # Provider facts worth keeping on the timeline (receipt number, card brand, ...).
    details: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class RefundFacts:
    provider_refund_id: str
    amount_minor: int
    currency: str
    status: RefundStatus
    # Our refund id when the provider echoes it back (metadata / externalId).
    refund_id: str | None = None
    failure_reason: str | None = None
    reason: str | None = None


@dataclass(frozen=True, slots=True)
class DisputeFacts:
    provider_dispute_id: str
    amount_minor: int
    currency: str
    status: DisputeStatus
    reason: str | None = None
    evidence_due_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class EventFacts:
    """Everything one event says. ``payment`` is None for events we do not act on."""

    payment: PaymentFacts | None
    refunds: tuple[RefundFacts, ...] = ()
    disputes: tuple[DisputeFacts, ...] = ()
    summary: str = ""  # one line for the payment's timeline, e.g. "payment_intent.succeeded"

    @property
    def actionable(self) -> bool:
        return self.payment is not None


IGNORED_EVENT: Final = EventFacts(payment=None)


class ProviderUnavailable(Exception):
    """A provider read failed transiently (network, 5xx, timeout): retry the event later."""


class MalformedEvent(ValueError):
    """A stored event body lacks a field its type needs, or has one of the wrong type."""


class ProviderEntityNotFound(LookupError):
    """The provider does not know the entity read (HTTP 404): retrying will not help."""
