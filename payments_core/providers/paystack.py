"""Paystack: status mappings, webhook verification, event facts and the API adapter.

Each status set is a ``Literal`` type mapped by an exhaustive ``match``. Refund and dispute statuses
we do not know raise ``UnknownProviderState``; transaction statuses do not: the reference says to
treat unknown values as non-final, so an unknown transaction status maps to PENDING with the raw
value kept.

``PaystackAdapter`` (at the end) carries out checkouts (``POST /transaction/initialize``), refunds
(``POST /refund``) and reads (``GET /transaction/verify``, ``GET /refund``) over httpx. Amounts
leave Paystack through ``amount_from_paystack`` and enter it through ``amount_to_paystack``;
nothing else converts. Idempotency: a transaction's unique ``reference`` is our idempotency key,
so initialize is retried and a duplicate answer read back; refunds have no key, so before every
refund (and after any unknown outcome) the transaction's refunds are searched for ours by its
``merchant_note``.

Source: ../shared/reference/providers.md sections 0 (cross-provider rules), 3.2 (initialize),
3.3 (verify, transaction status), 3.4 (refunds and their lifecycle), 3.5 (webhooks, disputes) and
5 (suggested mapping).
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import json
import random
import re
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Final, Literal, Self, TypeVar, assert_never, cast, get_args
from urllib.parse import quote

import httpx

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
    MalformedEvent,
    PaymentFacts,
    PaymentMethod,
    ProviderAuthError,
    ProviderDeclined,
    ProviderEntityNotFound,
    ProviderName,
    ProviderNotConfigured,
    ProviderOutcomeUnknown,
    ProviderUnavailable,
    RefundFacts,
    RefundRequest,
    RefundResult,
    UnknownProviderState,
    Verification,
    VerifiedWebhook,
    check_hex_hmac,
    with_retries,
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

if TYPE_CHECKING:
    from payments_core.config import Settings

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


# The currencies Paystack takes: the spec's enum (section 3.1) plus the West/East African ones its
# own plugins send in hundredths (see above). Every one has an ISO exponent of 2 or 0.
PAYSTACK_CURRENCIES: Final = frozenset({"NGN", "GHS", "ZAR", "KES", "USD", "XOF", "RWF"})


def amount_to_paystack(amount_minor: int, currency: str) -> int:
    """Paystack's wire amount (hundredths of the major unit) for ``amount_minor`` of ``currency``.

    The inverse of ``amount_from_paystack``: NGN 2500.00 (250000 minor) is 250000 on the wire,
    XOF 2500 (2500 minor) is 250000. Refused with ``ProviderDeclined`` before any call: a currency
    Paystack does not take (JPY, KWD, ...; code ``currency_not_supported``) and an amount that is
    not positive (``invalid_amount``).
    """
    if isinstance(amount_minor, bool) or not isinstance(amount_minor, int):
        raise TypeError(f"an amount in minor units is an int, got {type(amount_minor).__name__}")
    try:
        code = normalize_currency(currency)
    except UnknownCurrencyError:
        code = currency
    if code not in PAYSTACK_CURRENCIES:
        raise ProviderDeclined(
            f"Paystack does not accept {currency!r}",
            provider=ProviderName.PAYSTACK,
            code="currency_not_supported",
        )
    if amount_minor <= 0:
        raise ProviderDeclined(
            f"amount must be positive, got {amount_minor}",
            provider=ProviderName.PAYSTACK,
            code="invalid_amount",
        )
    scale: int = 10 ** (_WIRE_EXPONENT - exponent(code))  # every Paystack currency has 0 or 2
    return amount_minor * scale


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


# --- API adapter ----------------------------------------------------------------------------------
# Sections 3.1-3.4. Every answer is an envelope {"status": bool, "message": str, "data": ...}.

DEFAULT_API_BASE: Final = "https://api.paystack.co"
INITIALIZE_PATH: Final = "/transaction/initialize"
VERIFY_PATH: Final = "/transaction/verify/"
REFUND_PATH: Final = "/refund"
# What Paystack allows in a transaction reference (section 3.2).
_REFERENCE_PATTERN: Final = re.compile(r"[A-Za-z0-9.=-]+")
# Every refund we create carries this merchant_note plus our refund id: Paystack has no idempotency
# key for refunds, so the note is how a refund is found again after an unknown outcome.
REFUND_NOTE_PREFIX: Final = "Paydesk refund "
_REFUND_PAGE_SIZE: Final = 100
_MAX_REFUND_PAGES: Final = 20
# Transaction statuses that can have refunds (a fully refunded transaction is "reversed").
_REFUNDABLE_STATUSES: Final = frozenset({"success", "reversed"})
_PAYSTACK: Final = ProviderName.PAYSTACK
_RETRY_BASE_DELAY: Final = 0.25
_RETRY_MAX_DELAY: Final = 4.0


def refund_note(refund_id: str) -> str:
    """The ``merchant_note`` of the refund with our id ``refund_id``."""
    return f"{REFUND_NOTE_PREFIX}{refund_id}"


def refund_id_from_note(note: object) -> str | None:
    """Our refund id from a ``merchant_note`` written by ``refund_note``, else None."""
    if isinstance(note, str) and note.startswith(REFUND_NOTE_PREFIX):
        return note[len(REFUND_NOTE_PREFIX) :] or None
    return None


class PaystackAdapter:
    """Checkouts, refunds and status reads on the Paystack API, over httpx.

    Errors are ``base`` types only. 401 -> ``ProviderAuthError``; any other refusal (4xx or
    ``"status": false``) -> ``ProviderDeclined`` with Paystack's message (and its ``code`` when it
    sends one). Network errors, timeouts, 429, 5xx and unreadable answers -> ``ProviderUnavailable``
    for reads and ``ProviderOutcomeUnknown`` for writes; a write that never left (connection
    refused, connect timeout) and a 429 are plain ``ProviderUnavailable``, since nothing happened.

    Reads and initialize (deduplicated by its unique reference) are retried with
    ``base.with_retries``, ``attempts`` tries in all; refunds have their own loop that looks for the
    refund at Paystack before every try. ``sleep`` is the pause between tries (tests pass a
    recorder). Pass ``http`` to share a client (its owner closes it); otherwise ``close()`` closes
    ours. The timeout applies per request, to a shared client too.
    """

    def __init__(
        self,
        secret_key: str,
        *,
        api_base: str = DEFAULT_API_BASE,
        timeout: float = 20.0,
        attempts: int = 3,
        http: httpx.Client | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if not secret_key:
            raise ProviderNotConfigured(
                "Paystack is not configured: set PAYSTACK_SECRET_KEY", provider=_PAYSTACK
            )
        self._base_url = api_base.rstrip("/")
        self._headers = {"Authorization": f"Bearer {secret_key}", "Accept": "application/json"}
        self._timeout = httpx.Timeout(timeout)
        self._attempts = max(1, attempts)
        self._owns_http = http is None
        self._http = http if http is not None else httpx.Client(timeout=self._timeout)
        self._sleep = sleep

    @classmethod
    def from_settings(
        cls,
        settings: Settings,
        *,
        http: httpx.Client | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> PaystackAdapter:
        """The adapter for ``settings``; ``ProviderNotConfigured`` without a secret key."""
        return cls(
            settings.paystack_secret_key.get_secret_value(),
            api_base=settings.paystack_api_base,
            timeout=settings.provider_timeout_seconds,
            attempts=settings.provider_max_retries + 1,
            http=http,
            sleep=sleep,
        )

    def close(self) -> None:
        if self._owns_http:
            self._http.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- checkout -------------------------------------------------------------------------------

    def create_checkout(self, request: CheckoutRequest) -> CheckoutResult:
        """``POST /transaction/initialize``: a transaction the customer pays at ``checkout_url``.

        The transaction's ``reference`` is ``request.idempotency_key``. Paystack refuses a second
        transaction with a reference it knows ("Duplicate Transaction Reference"), so the call is
        retried after transient failures and unknown outcomes, and a duplicate answer is resolved
        by reading the transaction back (verify) and checking it is this payment (amount,
        currency, our payment id in the metadata; otherwise ``ProviderDeclined`` with code
        ``duplicate_reference``).

        What a read-back recovers: the reference, the transaction's status (usually still
        ``abandoned`` -> PENDING) and its Paystack id. What it cannot recover: the
        ``authorization_url`` and ``access_code``, which only the initialize answer carries. Such a
        result has ``checkout_url=None`` and ``details["recovered"] == "true"``; the customer
        cannot be sent to that transaction's page, so to collect the payment start a new checkout
        with a new idempotency key (the old transaction stays abandoned at Paystack).

        Refused with ``ProviderDeclined`` before any call: no customer email (``email_required``:
        Paystack requires one), a currency Paystack does not take (``currency_not_supported``), a
        non-positive amount, or a key with characters a reference may not have
        (``invalid_reference``: only letters, digits, ``-``, ``.`` and ``=``).
        """
        email = (request.customer_email or "").strip()
        if not email:
            raise ProviderDeclined(
                "Paystack needs the customer's email address",
                provider=_PAYSTACK,
                code="email_required",
            )
        amount = amount_to_paystack(request.amount_minor, request.currency)
        reference = request.idempotency_key
        if not _REFERENCE_PATTERN.fullmatch(reference):
            raise ProviderDeclined(
                f"idempotency key {reference!r} is not a valid Paystack reference "
                "(letters, digits, '-', '.', '=' only)",
                provider=_PAYSTACK,
                code="invalid_reference",
            )
        body: dict[str, Any] = {
            "email": email,
            "amount": amount,
            "currency": normalize_currency(request.currency),
            "reference": reference,
            "metadata": _checkout_metadata(request),
        }
        if request.success_url:
            body["callback_url"] = request.success_url

        uncertain = False

        def attempt() -> CheckoutResult:
            nonlocal uncertain
            try:
                return self._initialize(request, body)
            except ProviderOutcomeUnknown:
                uncertain = True
                raise

        try:
            return self._retry(attempt)
        except ProviderUnavailable as exc:
            if uncertain and not isinstance(exc, ProviderOutcomeUnknown):
                # An earlier try may have created the transaction; say so.
                raise ProviderOutcomeUnknown(
                    f"Paystack transaction {reference} may exist: {exc.message}",
                    provider=_PAYSTACK,
                    status_code=exc.status_code,
                ) from exc
            raise

    def _initialize(self, request: CheckoutRequest, body: dict[str, Any]) -> CheckoutResult:
        reference = str(body["reference"])
        try:
            envelope = self._call("POST", INITIALIZE_PATH, write=True, json_body=body)
        except ProviderDeclined as exc:
            if not _is_duplicate_reference(exc):
                raise
            return self._recover_checkout(request, reference)
        data = envelope.get("data")
        url = data.get("authorization_url") if isinstance(data, dict) else None
        access_code = data.get("access_code") if isinstance(data, dict) else None
        if not isinstance(url, str) or not url or not isinstance(access_code, str):
            raise ProviderOutcomeUnknown(
                "Paystack initialize answer without authorization_url/access_code",
                provider=_PAYSTACK,
            )
        return CheckoutResult(
            provider_reference=reference,
            status=MappedStatus(PaymentStatus.PENDING, "initialized"),
            checkout_url=url,
            details={"access_code": access_code},
        )

    def _recover_checkout(self, request: CheckoutRequest, reference: str) -> CheckoutResult:
        """The transaction behind a duplicate reference, read back (see ``create_checkout``)."""
        try:
            data = self._verify(reference)
        except ProviderEntityNotFound as exc:
            raise ProviderOutcomeUnknown(
                f"Paystack calls reference {reference} a duplicate but cannot find it",
                provider=_PAYSTACK,
            ) from exc
        payment = _verified_facts(data).payment
        assert payment is not None
        if (
            payment.amount_minor != request.amount_minor
            or payment.currency != normalize_currency(request.currency)
            or payment.payment_id != request.payment_id
        ):
            raise ProviderDeclined(
                f"Paystack reference {reference} belongs to another transaction",
                provider=_PAYSTACK,
                code="duplicate_reference",
            )
        details = {"recovered": "true"}
        transaction_id = _text(data.get("id"))
        if transaction_id is not None:
            details["paystack_transaction_id"] = transaction_id
        return CheckoutResult(
            provider_reference=reference,
            status=payment.status or MappedStatus(PaymentStatus.PENDING, "initialized"),
            checkout_url=None,
            details=details,
        )

    # -- refund ---------------------------------------------------------------------------------

    def refund(self, request: RefundRequest) -> RefundResult:
        """``POST /refund`` of ``request.amount_minor`` on transaction ``provider_reference``.

        Paystack has no idempotency key for refunds, so a refund is marked with
        ``merchant_note = refund_note(refund_id)`` and looked for among the transaction's refunds
        (verify for its id, then ``GET /refund``) before every try: before the first (a retry of
        an earlier call that may have gone through) and after every failure. A refund found is
        returned as it is (never created twice); one with our note but another amount is
        ``ProviderDeclined`` (``refund_conflict``). After ``attempts`` failed tries, or when the
        look-up itself fails after an unknown outcome, ``ProviderOutcomeUnknown``.

        Residual risk: a refund Paystack is still recording when we look is not yet listed; the
        pause before each look-up (backoff) makes that unlikely, not impossible.

        Refused before any call: a currency Paystack does not take, a non-positive amount.
        """
        amount = amount_to_paystack(request.amount_minor, request.currency)
        note = refund_note(request.refund_id)
        body: dict[str, Any] = {
            "transaction": request.provider_reference,
            "amount": amount,
            "currency": normalize_currency(request.currency),
            "merchant_note": note,
        }
        uncertain = False
        last_error: ProviderUnavailable | None = None
        for attempt in range(1, self._attempts + 1):
            existing = self._existing_refund(request.provider_reference, note, amount, uncertain)
            if existing is not None:
                return existing
            try:
                envelope = self._call("POST", REFUND_PATH, write=True, json_body=body)
            except ProviderUnavailable as exc:
                uncertain = uncertain or isinstance(exc, ProviderOutcomeUnknown)
                last_error = exc
                self._sleep(_backoff(attempt))
                continue
            refund = envelope.get("data")
            if not isinstance(refund, dict):
                raise ProviderOutcomeUnknown(
                    "Paystack refund answer without data", provider=_PAYSTACK
                )
            return _refund_result(refund)
        assert last_error is not None
        if not uncertain:
            raise last_error
        # The last try may have gone through: one more look before giving up.
        existing = self._existing_refund(request.provider_reference, note, amount, uncertain)
        if existing is not None:
            return existing
        raise ProviderOutcomeUnknown(
            f"Paystack refund {request.refund_id}: {last_error.message}",
            provider=_PAYSTACK,
            code=last_error.code,
            status_code=last_error.status_code,
        ) from last_error

    def _existing_refund(
        self, reference: str, note: str, amount: int, uncertain: bool
    ) -> RefundResult | None:
        """Our refund (by ``merchant_note``) among the transaction's refunds, if Paystack has it."""
        try:
            transaction = self._retry(lambda: self._verify(reference))
            refunds = self._list_refunds(transaction)
        except ProviderEntityNotFound as exc:
            raise ProviderDeclined(
                f"Paystack does not know transaction {reference!r}",
                provider=_PAYSTACK,
                code="transaction_not_found",
            ) from exc
        except ProviderUnavailable as exc:
            if uncertain:
                raise ProviderOutcomeUnknown(
                    f"Paystack refund may exist and could not be looked up: {exc.message}",
                    provider=_PAYSTACK,
                    status_code=exc.status_code,
                ) from exc
            raise
        for refund in refunds:
            if refund.get("merchant_note") != note:
                continue
            if _wire_int(refund.get("amount")) != amount:
                raise ProviderDeclined(
                    f"Paystack refund {refund.get('id')} has our note but another amount",
                    provider=_PAYSTACK,
                    code="refund_conflict",
                )
            return _refund_result(refund)
        return None

    # -- reads ----------------------------------------------------------------------------------

    def fetch_payment(self, provider_reference: str) -> EventFacts:
        """The transaction as Paystack sees it now (``GET /transaction/verify/{reference}``).

        Parsed by the same code as a ``charge.success`` webhook, so the facts match; a paid (or
        reversed) transaction comes with its refunds from ``GET /refund``, their
        ``provider_refund_id`` the refund's Paystack ``id`` and ``refund_id`` ours when the note
        names it. An unknown reference raises ``ProviderEntityNotFound``.
        """
        data = self._retry(lambda: self._verify(provider_reference))
        facts = _verified_facts(data)
        if data.get("status") not in _REFUNDABLE_STATUSES:
            return facts
        currency = facts.payment.currency if facts.payment is not None else None
        refunds = tuple(_refund_facts(item, currency) for item in self._list_refunds(data))
        return EventFacts(payment=facts.payment, refunds=refunds, summary=facts.summary)

    def _verify(self, reference: str) -> dict[str, Any]:
        """One verify call: the transaction's ``data``."""
        try:
            envelope = self._call("GET", VERIFY_PATH + quote(reference, safe=""), write=False)
        except ProviderDeclined as exc:
            if exc.status_code == httpx.codes.NOT_FOUND or "not found" in exc.message.lower():
                raise ProviderEntityNotFound(
                    f"Paystack does not know transaction {reference!r}: {exc.message}"
                ) from exc
            raise
        data = envelope.get("data")
        if not isinstance(data, dict):
            raise ProviderUnavailable("Paystack verify answer without data", provider=_PAYSTACK)
        return data

    def _list_refunds(self, transaction: Mapping[str, Any]) -> list[dict[str, Any]]:
        """Every refund of ``transaction`` (verify data), read page by page (each page retried).

        The list is filtered by transaction id at Paystack and again here, in case the filter is
        ignored; more than ``_MAX_REFUND_PAGES`` full pages raise ``ProviderUnavailable`` rather
        than claim a refund does not exist.
        """
        transaction_id = _text(transaction.get("id"))
        reference = _text(transaction.get("reference"))
        if transaction_id is None:
            raise ProviderUnavailable("Paystack verify answer without id", provider=_PAYSTACK)
        refunds: list[dict[str, Any]] = []
        for page in range(1, _MAX_REFUND_PAGES + 1):
            params = {
                "transaction": transaction_id,
                "perPage": str(_REFUND_PAGE_SIZE),
                "page": str(page),
            }
            envelope = self._retry(
                functools.partial(self._call, "GET", REFUND_PATH, write=False, params=params)
            )
            items = envelope.get("data")
            if not isinstance(items, list):
                raise ProviderUnavailable("Paystack refund list without data", provider=_PAYSTACK)
            refunds.extend(
                item
                for item in items
                if isinstance(item, dict) and _refund_belongs_to(item, transaction_id, reference)
            )
            page_count = _page_count(envelope)
            if len(items) < _REFUND_PAGE_SIZE or (page_count is not None and page >= page_count):
                return refunds
        raise ProviderUnavailable(
            f"Paystack lists more than {_MAX_REFUND_PAGES * _REFUND_PAGE_SIZE} refunds for "
            f"transaction {reference}; not all could be read",
            provider=_PAYSTACK,
        )

    # -- HTTP -----------------------------------------------------------------------------------

    def _retry(self, call: Callable[[], _T]) -> _T:
        return with_retries(
            call,
            attempts=self._attempts,
            base_delay=_RETRY_BASE_DELAY,
            max_delay=_RETRY_MAX_DELAY,
            sleep=self._sleep,
        )

    def _call(
        self,
        method: str,
        path: str,
        *,
        write: bool,
        json_body: Mapping[str, Any] | None = None,
        params: Mapping[str, str] | None = None,
    ) -> dict[str, Any]:
        """One request; the answer's envelope when Paystack says ``"status": true``."""
        what = f"{method} {path}"
        try:
            response = self._http.request(
                method,
                self._base_url + path,
                json=json_body,
                params=params,
                headers=self._headers,
                timeout=self._timeout,
            )
        except (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout) as exc:
            # The request never left: nothing happened, even for a write.
            raise ProviderUnavailable(
                f"Paystack not reachable for {what} ({type(exc).__name__}: {exc})",
                provider=_PAYSTACK,
            ) from exc
        except httpx.HTTPError as exc:  # timeouts after sending, dropped connections, ...
            raise _transient(
                write, f"Paystack {what} failed ({type(exc).__name__}: {exc})"
            ) from exc
        return _envelope(response, what, write=write)


_T = TypeVar("_T")


def _checkout_metadata(request: CheckoutRequest) -> dict[str, str]:
    """The host's metadata plus ours (ours win: processing trusts ``paydesk_payment_id``)."""
    metadata = dict(request.metadata)
    metadata["paydesk_payment_id"] = request.payment_id
    if request.host_reference:
        metadata["host_reference"] = request.host_reference
    if request.cancel_url:
        # Paystack's checkout sends the customer here when they cancel.
        metadata["cancel_action"] = request.cancel_url
    return metadata


def _transient(write: bool, message: str, status_code: int | None = None) -> ProviderUnavailable:
    kind = ProviderOutcomeUnknown if write else ProviderUnavailable
    return kind(message, provider=_PAYSTACK, status_code=status_code)


def _envelope(response: httpx.Response, what: str, *, write: bool) -> dict[str, Any]:
    """The envelope of a ``"status": true`` answer; every other answer as a ``base`` error."""
    status = response.status_code
    try:
        body = response.json()
    except ValueError:  # JSONDecodeError, UnicodeDecodeError
        body = None
    message = body.get("message") if isinstance(body, dict) else None
    if not isinstance(message, str) or not message:
        message = f"HTTP {status}"
    code = body.get("code") if isinstance(body, dict) else None
    code = code if isinstance(code, str) and code else None
    if status == httpx.codes.UNAUTHORIZED:
        raise ProviderAuthError(
            f"Paystack refused the secret key ({message}); check PAYSTACK_SECRET_KEY",
            provider=_PAYSTACK,
            code=code,
            status_code=status,
        )
    if status == httpx.codes.TOO_MANY_REQUESTS:
        raise ProviderUnavailable(
            f"Paystack rate limit on {what}: {message}", provider=_PAYSTACK, status_code=status
        )
    if status >= httpx.codes.INTERNAL_SERVER_ERROR:
        raise _transient(write, f"Paystack {what} failed: HTTP {status} {message}", status)
    if not isinstance(body, dict):
        if status >= httpx.codes.BAD_REQUEST:
            raise ProviderDeclined(
                f"Paystack refused {what}: HTTP {status}", provider=_PAYSTACK, status_code=status
            )
        raise _transient(write, f"Paystack answered {what} with an unreadable body", status)
    if httpx.codes.is_success(status) and body.get("status") is True:
        return body
    raise ProviderDeclined(message, provider=_PAYSTACK, code=code, status_code=status)


def _is_duplicate_reference(error: ProviderDeclined) -> bool:
    text = f"{error.code or ''} {error.message}".lower()
    return "duplicate" in text and "reference" in text


def _verified_facts(data: dict[str, Any]) -> EventFacts:
    """Verify ``data`` as facts, parsed like a ``charge.success`` webhook's ``data``."""
    try:
        return _charge_facts("transaction.verify", data)
    except MalformedEvent as exc:
        raise ProviderUnavailable(
            f"Paystack verify answer is unreadable: {exc}", provider=_PAYSTACK
        ) from exc


def _refund_result(refund: Mapping[str, Any]) -> RefundResult:
    refund_id = _text(refund.get("id"))
    status = refund.get("status")
    if refund_id is None or not isinstance(status, str):
        raise ProviderOutcomeUnknown("Paystack refund without id or status", provider=_PAYSTACK)
    return RefundResult(provider_refund_id=refund_id, status=map_refund_status(status))


def _refund_facts(refund: dict[str, Any], payment_currency: str | None) -> RefundFacts:
    """A refund from ``GET /refund`` as facts (``id`` is its stable Paystack id)."""
    what = "refund"
    try:
        currency = (
            _currency(refund, what)
            if refund.get("currency") or not payment_currency
            else payment_currency
        )
        return RefundFacts(
            provider_refund_id=_required_text(refund, "id", what),
            amount_minor=_amount(refund.get("amount"), currency, f"{what}.amount"),
            currency=currency,
            status=map_refund_status(_required_str(refund, "status", what)),
            refund_id=refund_id_from_note(refund.get("merchant_note")),
        )
    except MalformedEvent as exc:
        raise ProviderUnavailable(
            f"Paystack refund list is unreadable: {exc}", provider=_PAYSTACK
        ) from exc


def _refund_belongs_to(refund: dict[str, Any], transaction_id: str, reference: str | None) -> bool:
    """Whether a listed refund is of this transaction (``transaction`` is an id or an object)."""
    transaction = refund.get("transaction")
    if isinstance(transaction, dict):
        ids = {_text(transaction.get("id")), _text(transaction.get("reference"))}
    else:
        ids = {_text(transaction), _text(refund.get("transaction_reference"))}
    return transaction_id in ids or (reference is not None and reference in ids)


def _page_count(envelope: dict[str, Any]) -> int | None:
    meta = envelope.get("meta")
    count = meta.get("pageCount") if isinstance(meta, dict) else None
    return count if isinstance(count, int) and not isinstance(count, bool) else None


def _wire_int(value: object) -> int | None:
    """A wire amount as int (Paystack sends integers, sometimes strings of digits)."""
    if isinstance(value, str) and value.isascii() and value.isdigit():
        return int(value)
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    return None


def _backoff(attempt: int) -> float:
    """Pause after failed try ``attempt`` (exponential, full jitter, as ``base.with_retries``)."""
    cap = min(_RETRY_MAX_DELAY, _RETRY_BASE_DELAY * 2 ** (attempt - 1))
    return random.uniform(0, cap)  # noqa: S311 (jitter, not a secret)
