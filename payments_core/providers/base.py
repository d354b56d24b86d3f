"""Protocols and normalized types shared by provider adapters.

Inbound: webhook verification results (``VerifiedWebhook``) and what an event says in our terms
(``EventFacts``). Outbound: the requests adapters carry out (``CheckoutRequest``,
``RefundRequest``, dispute evidence), their results, the protocols each adapter implements, and one
hierarchy of typed errors (``ProviderError``) so services never see an SDK's or httpx's exceptions.

Amounts are always integer minor units of the ISO 4217 currency here; each adapter converts to its
provider's wire unit in exactly one place.
"""

from __future__ import annotations

import enum
import hmac
import random
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final, Protocol, TypeVar

import orjson

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
        body = orjson.loads(raw)  # 3-4x json.loads on a webhook body; the same Python values
    except (ValueError, RecursionError):  # orjson.JSONDecodeError is a ValueError
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


class ProviderError(Exception):
    """A provider call did not give the answer we asked for. ``code`` is the provider's own error
    code when it sent one; ``status_code`` the HTTP status, when there was an answer."""

    def __init__(
        self,
        message: str,
        *,
        provider: ProviderName | None = None,
        code: str | None = None,
        status_code: int | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.provider = provider
        self.code = code
        self.status_code = status_code

    def __str__(self) -> str:
        where = f"{self.provider.value}: " if self.provider else ""
        code = f" [{self.code}]" if self.code else ""
        return f"{where}{self.message}{code}"


class ProviderUnavailable(ProviderError):
    """A transient failure (network, 5xx, 429, timeout) that outlasted the adapter's retries:
    nothing is known to have happened; try again later (reads and idempotent writes)."""


class ProviderOutcomeUnknown(ProviderUnavailable):
    """A write may or may not have been carried out (timeout after sending, connection lost,
    unreadable answer). Retrying with the same idempotency key is safe where the provider has one;
    otherwise read back before trying again."""


class ProviderDeclined(ProviderError):
    """The provider refused the request (card declined, amount above what is refundable, invalid
    parameters): nothing happened, and the same request will be refused again."""


class ProviderAuthError(ProviderError):
    """The provider refused our credentials (wrong key, expired or revoked)."""


class ProviderNotConfigured(ProviderError):
    """The provider's credentials are not set in the settings: its operations are refused."""


class OperationNotSupported(ProviderError):
    """The provider cannot do this (a refund on M-Pesa, dispute evidence outside Stripe)."""


class MalformedEvent(ValueError):
    """A stored event body lacks a field its type needs, or has one of the wrong type."""


class ProviderEntityNotFound(LookupError):
    """The provider does not know the entity read (HTTP 404): retrying will not help."""


# --- Outbound operations -------------------------------------------------------------------------


class LineItemKind(enum.StrEnum):
    PRODUCT = "product"
    DISCOUNT = "discount"
    SHIPPING = "shipping"
    FEE = "fee"


@dataclass(frozen=True, slots=True)
class LineItem:
    """One line of a checkout. ``unit_amount_minor`` is positive; a DISCOUNT line subtracts
    ``quantity * unit_amount_minor`` from the total, every other kind adds it."""

    name: str
    quantity: int
    unit_amount_minor: int
    kind: LineItemKind = LineItemKind.PRODUCT
    sku: str | None = None

    @property
    def total_minor(self) -> int:
        """The line's signed contribution to the payment amount."""
        total = self.quantity * self.unit_amount_minor
        return -total if self.kind is LineItemKind.DISCOUNT else total


@dataclass(frozen=True, slots=True)
class CheckoutRequest:
    """Start collecting one payment. ``payment_id`` is ours; ``idempotency_key`` was stored on
    the payment before the call, so a retry after an unknown outcome sends the same key.

    ``line_items`` always sum to ``amount_minor`` (the service checks; an empty tuple means one
    line named after ``description``). ``callback_url`` is where the provider should notify us
    when it takes a per-payment URL (M-Pesa: it holds the secret token)."""

    payment_id: str
    amount_minor: int
    currency: str
    idempotency_key: str
    description: str | None = None
    line_items: tuple[LineItem, ...] = ()
    host_reference: str | None = None
    customer_email: str | None = None
    customer_phone: str | None = None
    customer_name: str | None = None
    metadata: Mapping[str, str] = field(default_factory=dict)
    success_url: str | None = None
    cancel_url: str | None = None
    callback_url: str | None = None
    # The payment method asked for, where the provider offers several (manual: bank transfer,
    # cash on delivery, mobile money).
    method: str | None = None


@dataclass(frozen=True, slots=True)
class CheckoutResult:
    """What the provider gave back: its reference for the payment, where to send the customer,
    or (manual payments) the instructions to show. ``status`` is where the payment now stands."""

    provider_reference: str | None
    status: MappedStatus
    checkout_url: str | None = None
    instructions: Mapping[str, str] | None = None
    expires_at: datetime | None = None
    details: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class RefundRequest:
    """Return money of a captured payment. ``refund_id`` is ours; ``idempotency_key`` was stored
    on the refund row before the call."""

    refund_id: str
    payment_id: str
    provider_reference: str
    amount_minor: int
    currency: str
    idempotency_key: str
    reason: str | None = None
    # What the payment captured in all: some providers refund "the rest" differently.
    captured_minor: int | None = None


@dataclass(frozen=True, slots=True)
class RefundResult:
    provider_refund_id: str
    status: RefundStatus
    failure_reason: str | None = None


class CheckoutAdapter(Protocol):
    def create_checkout(self, request: CheckoutRequest) -> CheckoutResult: ...


class RefundAdapter(Protocol):
    def refund(self, request: RefundRequest) -> RefundResult: ...


class StatusAdapter(Protocol):
    def fetch_payment(self, provider_reference: str) -> EventFacts:
        """The payment as the provider sees it now (reconciliation), with its refunds."""
        ...


class DisputeAdapter(Protocol):
    def update_dispute_evidence(
        self, provider_dispute_id: str, evidence: Mapping[str, str], *, submit: bool
    ) -> DisputeFacts: ...

    def upload_dispute_file(self, name: str, content: bytes, content_type: str) -> str:
        """Upload one evidence file; the provider's id for it, to name in ``evidence``."""
        ...

    def accept_dispute(self, provider_dispute_id: str) -> DisputeFacts: ...


_T = TypeVar("_T")


def with_retries(
    call: Callable[[], _T],
    *,
    attempts: int = 3,
    base_delay: float = 0.25,
    max_delay: float = 4.0,
    sleep: Callable[[float], None] = time.sleep,
) -> _T:
    """Run ``call``; retry it on ProviderUnavailable with exponential backoff and full jitter.

    Only for calls that are safe to repeat: reads, and writes the provider deduplicates (an
    idempotency key, a unique reference). ProviderOutcomeUnknown is retried too, since for those
    calls the repeat is harmless; every other error is raised at once."""
    for attempt in range(1, attempts + 1):
        try:
            return call()
        except ProviderUnavailable:
            if attempt == attempts:
                raise
            sleep(random.uniform(0, min(max_delay, base_delay * 2 ** (attempt - 1))))  # noqa: S311
    raise AssertionError("unreachable")
