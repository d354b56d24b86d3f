"""Creating a payment for a host application and starting its checkout with the provider.

Three steps, so that nothing is lost and nothing is done twice:

1. ``start_payment`` (one transaction): validate, insert the payment as ``created`` with the
   idempotency key that the provider call will carry, audit it, commit. The key is durable before
   the provider hears of the payment.
2. the adapter's ``create_checkout``, outside any transaction (it may take seconds);
3. ``record_checkout`` or ``record_checkout_failure`` (one transaction): the provider reference,
   the checkout URL or instructions and the new status; or the error, kept on the payment.

``create_payment`` runs the three. If step 2's outcome is unknown (timeout), the payment keeps
``checkout_error`` and the same key: ``retry_checkout`` (what a repeated API request with the same
Idempotency-Key does) sends the same key again, which the provider deduplicates.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlmodel import Session

from payments_core.config import Settings, get_settings
from payments_core.models import Payment, new_id, utcnow
from payments_core.money import MoneyError, normalize_currency
from payments_core.providers import mpesa
from payments_core.providers.base import (
    CheckoutRequest,
    CheckoutResult,
    LineItem,
    LineItemKind,
    PaymentMethod,
    ProviderDeclined,
    ProviderError,
    ProviderName,
    ProviderOutcomeUnknown,
)
from payments_core.providers.registry import Adapters, Capability, supports
from payments_core.services.payments import apply_status, lock_payment, record_change
from payments_core.services.risk import apply_risk
from payments_core.status import MappedStatus, PaymentStatus

# The method a provider's checkout takes when the host application does not say.
DEFAULT_METHOD: dict[ProviderName, PaymentMethod] = {
    ProviderName.STRIPE: PaymentMethod.CARD,
    ProviderName.POSTFINANCE: PaymentMethod.CARD,
    ProviderName.PAYSTACK: PaymentMethod.CARD,
    ProviderName.MPESA: PaymentMethod.MOBILE_MONEY,
    ProviderName.MANUAL: PaymentMethod.BANK_TRANSFER,
    ProviderName.DUMMY: PaymentMethod.CARD,
}
_URL = re.compile(r"^https?://[^\s/$.?#][^\s]*$", re.IGNORECASE)
MAX_METADATA_KEYS = 20


class PaymentRequestError(ValueError):
    """The request cannot become a payment; ``errors`` maps field names to messages."""

    def __init__(self, errors: Mapping[str, str]) -> None:
        super().__init__("; ".join(f"{k}: {v}" for k, v in errors.items()))
        self.errors = dict(errors)


@dataclass(frozen=True, slots=True)
class NewPayment:
    provider: str
    amount_minor: int
    currency: str
    host_reference: str | None = None
    method: str | None = None
    description: str | None = None
    customer_email: str | None = None
    customer_phone: str | None = None
    customer_name: str | None = None
    line_items: tuple[LineItem, ...] = ()
    metadata: Mapping[str, str] = field(default_factory=dict)
    success_url: str | None = None
    cancel_url: str | None = None


def validate(new: NewPayment) -> NewPayment:
    """The request with normalized values, or PaymentRequestError naming every bad field."""
    errors: dict[str, str] = {}
    provider: ProviderName | None = None
    try:
        provider = ProviderName(new.provider)
    except ValueError:
        errors["provider"] = f"unknown provider {new.provider!r}"
    if provider is not None and not supports(provider, Capability.CHECKOUT):
        errors["provider"] = f"{provider.value} cannot start payments"
    currency = new.currency
    try:
        currency = normalize_currency(new.currency)
    except MoneyError as exc:
        errors["currency"] = str(exc)
    if isinstance(new.amount_minor, bool) or not isinstance(new.amount_minor, int):
        errors["amount"] = "must be an integer count of minor units"
    elif new.amount_minor <= 0:
        errors["amount"] = "must be greater than zero"
    if new.line_items:
        for index, item in enumerate(new.line_items):
            if item.quantity <= 0:
                errors[f"line_items.{index}.quantity"] = "must be greater than zero"
            if item.unit_amount_minor <= 0:
                errors[f"line_items.{index}.unit_amount"] = "must be greater than zero"
        total = sum(item.total_minor for item in new.line_items)
        if "amount" not in errors and total != new.amount_minor:
            errors["line_items"] = (
                f"add up to {total} minor units, but amount is {new.amount_minor}"
            )
    method = new.method or (DEFAULT_METHOD[provider].value if provider else None)
    if method is not None and method not in {m.value for m in PaymentMethod}:
        errors["method"] = f"unknown method {method!r}"
    for name in ("success_url", "cancel_url"):
        value = getattr(new, name)
        if value is not None and not _URL.match(value):
            errors[name] = "must be an http(s) URL"
    if len(new.metadata) > MAX_METADATA_KEYS:
        errors["metadata"] = f"at most {MAX_METADATA_KEYS} keys"
    phone = new.customer_phone
    if provider is ProviderName.MPESA:
        if not phone:
            errors["customer.phone"] = "M-Pesa needs the customer's phone number"
        else:
            try:
                phone = mpesa.normalize_msisdn(phone)
            except ProviderDeclined as exc:
                errors["customer.phone"] = exc.message
    if provider is ProviderName.PAYSTACK and not new.customer_email:
        errors["customer.email"] = "Paystack needs the customer's email address"
    if errors:
        raise PaymentRequestError(errors)
    return NewPayment(
        provider=new.provider,
        amount_minor=new.amount_minor,
        currency=currency,
        host_reference=new.host_reference,
        method=method,
        description=new.description,
        customer_email=new.customer_email.strip().lower() if new.customer_email else None,
        customer_phone=phone,
        customer_name=new.customer_name,
        line_items=new.line_items,
        metadata=dict(new.metadata),
        success_url=new.success_url,
        cancel_url=new.cancel_url,
    )


def _line_item_json(item: LineItem) -> dict[str, Any]:
    return {
        "name": item.name,
        "quantity": item.quantity,
        "unit_amount_minor": item.unit_amount_minor,
        "kind": item.kind.value,
        "sku": item.sku,
    }


def _line_items(payment: Payment) -> tuple[LineItem, ...]:
    return tuple(
        LineItem(
            name=str(item["name"]),
            quantity=int(item["quantity"]),
            unit_amount_minor=int(item["unit_amount_minor"]),
            kind=LineItemKind(item["kind"]),
            sku=item.get("sku"),
        )
        for item in payment.line_items
    )


def checkout_key(payment_id: str) -> str:
    """The idempotency key of a payment's checkout call. Letters, digits and '-' only: Paystack
    uses it as the transaction reference, which allows no '_'."""
    return f"paydesk-{payment_id.replace('_', '-')}-checkout"


def start_payment(
    *,
    session: Session,
    new: NewPayment,
    actor: str,
    settings: Settings,
    api_key_id: int | None = None,
    payment_id: str | None = None,
) -> tuple[Payment, str | None]:
    """Insert the payment (``created``) with the key its provider call will carry. Returns the
    payment and, for M-Pesa, the secret callback token (only its hash is stored)."""
    new = validate(new)
    now = utcnow()
    payment_id = payment_id or new_id("pay", at=now)
    token = None
    payment = Payment(
        id=payment_id,
        provider=new.provider,
        host_reference=new.host_reference,
        amount_minor=new.amount_minor,
        currency=new.currency,
        method=new.method or PaymentMethod.OTHER.value,
        customer_email=new.customer_email,
        customer_phone=new.customer_phone,
        customer_name=new.customer_name,
        description=new.description,
        livemode=not _test_mode(new.provider, settings),
        host_metadata=dict(new.metadata),
        origin="api",
        line_items=[_line_item_json(item) for item in new.line_items],
        success_url=new.success_url or f"{settings.public_base_url}/return/{payment_id}",
        cancel_url=new.cancel_url or f"{settings.public_base_url}/return/{payment_id}",
        checkout_idempotency_key=checkout_key(payment_id),
        api_key_id=api_key_id,
        created_at=now,
        updated_at=now,
        status_changed_at=now,
    )
    if new.provider == ProviderName.MPESA.value:
        token = mpesa.new_callback_token()
        payment.callback_token_hash = mpesa.hash_callback_token(token)
    session.add(payment)
    session.flush()
    record_change(
        session=session,
        payment=payment,
        actor=actor,
        at=now,
        kind="created",
        summary=f"Payment created by {actor} for {new.provider}",
        to_status=payment.status,
        action="payment.created",
        entity_type="payment",
        entity_id=payment.id,
        after={
            "provider": payment.provider,
            "amount_minor": payment.amount_minor,
            "currency": payment.currency,
            "host_reference": payment.host_reference,
            "method": payment.method,
        },
    )
    apply_risk(session=session, payment=payment, now=now)
    return payment, token


def _test_mode(provider: str, settings: Settings) -> bool:
    flag = getattr(settings, f"{provider}_test_mode", True)
    return bool(flag)


def checkout_request(
    payment: Payment, settings: Settings, callback_token: str | None = None
) -> CheckoutRequest:
    callback_url = None
    if callback_token:
        callback_url = f"{settings.public_base_url}/webhooks/mpesa/{callback_token}"
    return CheckoutRequest(
        payment_id=payment.id,
        amount_minor=payment.amount_minor,
        currency=payment.currency,
        idempotency_key=payment.checkout_idempotency_key or checkout_key(payment.id),
        description=payment.description,
        line_items=_line_items(payment),
        host_reference=payment.host_reference,
        customer_email=payment.customer_email,
        customer_phone=payment.customer_phone,
        customer_name=payment.customer_name,
        metadata={str(k): str(v) for k, v in payment.host_metadata.items()},
        success_url=payment.success_url,
        cancel_url=payment.cancel_url,
        callback_url=callback_url,
        method=payment.method,
    )


def record_checkout(
    *, session: Session, payment_id: str, result: CheckoutResult, actor: str
) -> Payment:
    payment = lock_payment(session=session, payment_id=payment_id)
    now = utcnow()
    before = {"provider_reference": payment.provider_reference, "checkout_url": None}
    payment.provider_reference = result.provider_reference or payment.provider_reference
    payment.checkout_url = result.checkout_url
    payment.instructions = dict(result.instructions) if result.instructions else None
    payment.expires_at = result.expires_at
    payment.checkout_error = None
    if result.checkout_url is None and not result.instructions and not _pushed(payment):
        # Paystack after a lost answer: the transaction exists, its page address is not given
        # twice. Say so rather than hand the host a payment with nowhere to send the customer.
        payment.checkout_error = (
            f"{payment.provider} has this payment ({result.provider_reference}) but did not give "
            "its payment page again; start a new payment for the customer"
        )
    payment.updated_at = now
    session.add(payment)
    record_change(
        session=session,
        payment=payment,
        actor=actor,
        at=now,
        kind="checkout",
        summary=f"Checkout started with {payment.provider}"
        + (f" ({result.provider_reference})" if result.provider_reference else ""),
        data={"checkout_url": result.checkout_url, **dict(result.details)},
        action="payment.checkout_started",
        entity_type="payment",
        entity_id=payment.id,
        before=before,
        after={
            "provider_reference": payment.provider_reference,
            "checkout_url": payment.checkout_url,
        },
    )
    apply_status(
        session=session,
        payment=payment,
        mapped=result.status,
        actor=actor,
        source=f"{payment.provider} checkout",
        at=now,
    )
    return payment


def _pushed(payment: Payment) -> bool:
    """Checkouts that have no page: the customer confirms on their phone (M-Pesa STK push)."""
    return payment.provider == ProviderName.MPESA.value


def record_checkout_failure(
    *, session: Session, payment_id: str, error: ProviderError, actor: str
) -> Payment:
    """Keep the error on the payment. A refusal (nothing happened at the provider) fails the
    payment; an unknown or transient outcome leaves it ``created`` for a retry with the same key."""
    payment = lock_payment(session=session, payment_id=payment_id)
    now = utcnow()
    message = str(error)[:500]
    payment.checkout_error = message
    payment.updated_at = now
    session.add(payment)
    refused = isinstance(error, ProviderDeclined) or not isinstance(error, ProviderOutcomeUnknown)
    record_change(
        session=session,
        payment=payment,
        actor=actor,
        at=now,
        kind="checkout",
        summary=f"Checkout with {payment.provider} failed: {message}",
        data={"error": type(error).__name__, "code": error.code},
        action="payment.checkout_failed",
        entity_type="payment",
        entity_id=payment.id,
        after={"checkout_error": message, "outcome_unknown": not refused},
    )
    if isinstance(error, ProviderDeclined):
        apply_status(
            session=session,
            payment=payment,
            mapped=MappedStatus(PaymentStatus.FAILED, "checkout_refused", message),
            actor=actor,
            source=f"{payment.provider} checkout",
            at=now,
        )
    return payment


Transaction = Callable[[], AbstractContextManager[Session]]


@dataclass(frozen=True, slots=True)
class CheckoutOutcome:
    payment: Payment
    error: ProviderError | None = None


def run_checkout(
    *,
    transaction: Transaction,
    adapters: Adapters,
    payment: Payment,
    actor: str,
    settings: Settings,
    callback_token: str | None = None,
) -> CheckoutOutcome:
    """Steps 2 and 3: call the provider (no transaction held), then record what happened."""
    request = checkout_request(payment, settings, callback_token)
    try:
        result = adapters.checkout(payment.provider).create_checkout(request)
    except ProviderError as error:
        with transaction() as session:
            failed = record_checkout_failure(
                session=session, payment_id=payment.id, error=error, actor=actor
            )
        return CheckoutOutcome(failed, error)
    with transaction() as session:
        recorded = record_checkout(
            session=session, payment_id=payment.id, result=result, actor=actor
        )
    return CheckoutOutcome(recorded)


def create_payment(
    *,
    transaction: Transaction,
    adapters: Adapters,
    new: NewPayment,
    actor: str,
    api_key_id: int | None = None,
    settings: Settings | None = None,
) -> CheckoutOutcome:
    settings = settings or get_settings()
    with transaction() as session:
        payment, token = start_payment(
            session=session, new=new, actor=actor, settings=settings, api_key_id=api_key_id
        )
    return run_checkout(
        transaction=transaction,
        adapters=adapters,
        payment=payment,
        actor=actor,
        settings=settings,
        callback_token=token,
    )


def retry_checkout(
    *,
    transaction: Transaction,
    adapters: Adapters,
    payment: Payment,
    actor: str,
    settings: Settings | None = None,
) -> CheckoutOutcome:
    """Start the checkout again for a payment whose first attempt had no known outcome; the
    provider call carries the same idempotency key. M-Pesa pushes are never repeated."""
    settings = settings or get_settings()
    if (
        payment.status != PaymentStatus.CREATED.value
        or payment.checkout_url
        or (payment.instructions)
    ):
        return CheckoutOutcome(payment)
    if payment.provider == ProviderName.MPESA.value:
        return CheckoutOutcome(
            payment,
            ProviderOutcomeUnknown(
                "the STK push may have reached the phone; it is not sent twice (reconciliation "
                "reads the outcome)",
                provider=ProviderName.MPESA,
            ),
        )
    return run_checkout(
        transaction=transaction, adapters=adapters, payment=payment, actor=actor, settings=settings
    )


def payment_summary(payment: Payment) -> dict[str, Any]:
    """What the host API says about a payment."""
    return {
        "id": payment.id,
        "provider": payment.provider,
        "status": payment.status,
        "amount": payment.amount_minor,
        "currency": payment.currency,
        "method": payment.method,
        "host_reference": payment.host_reference,
        "provider_reference": payment.provider_reference,
        "checkout_url": payment.checkout_url,
        "instructions": payment.instructions,
        "expires_at": _iso(payment.expires_at),
        "captured": payment.captured_minor,
        "refunded": payment.refunded_minor,
        "refund_pending": payment.refund_pending_minor,
        "disputed": payment.disputed_minor,
        "failure_reason": payment.failure_reason,
        "checkout_error": payment.checkout_error,
        "livemode": payment.livemode,
        "created_at": _iso(payment.created_at),
        "paid_at": _iso(payment.paid_at),
        "metadata": payment.host_metadata,
    }


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


__all__: Sequence[str] = [
    "CheckoutOutcome",
    "NewPayment",
    "PaymentRequestError",
    "create_payment",
    "payment_summary",
    "record_checkout",
    "record_checkout_failure",
    "retry_checkout",
    "run_checkout",
    "start_payment",
    "validate",
]
