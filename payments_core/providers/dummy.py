"""Dummy: the demo/simulation provider. No external service is involved.

Demo deployments, the simulator and tests create "dummy" payments and send themselves signed
webhooks shaped like a small real provider's, so the whole intake -> processing path can be
exercised without an account anywhere.

Webhook: ``POST`` with header ``X-Dummy-Signature: hex(HMAC-SHA256(secret, raw body))`` and body::

    {"id": "dmy_evt_...", "type": "payment.succeeded", "payment_id": "pay_...",
     "amount": 4990, "currency": "CHF", "livemode": false}

(``amount`` in minor units; amounts are read by the processing, not here.)

Status mapping: each payment event type is a ``Literal`` mapped by an exhaustive ``match``; an
event type we do not know (including ``refund.*``, which is not a payment status) raises
``UnknownProviderState``.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
from dataclasses import dataclass, replace
from typing import Final, Literal, assert_never, cast, get_args

from payments_core.config import Settings
from payments_core.money import UnknownCurrencyError, normalize_currency
from payments_core.providers.base import (
    IGNORED_EVENT,
    CheckoutRequest,
    CheckoutResult,
    EventFacts,
    MalformedEvent,
    PaymentFacts,
    ProviderName,
    RefundRequest,
    RefundResult,
    UnknownProviderState,
    Verification,
    VerifiedWebhook,
    check_hex_hmac,
)
from payments_core.providers.base import (
    load_json_object as _load_json_object,
)
from payments_core.providers.base import (
    malformed_delivery as _malformed,
)
from payments_core.status import MappedStatus, PaymentStatus, RefundStatus

# --- Payment events ------------------------------------------------------------------------------

DummyEventType = Literal[
    "payment.succeeded",
    "payment.failed",
    "payment.pending",
    "payment.canceled",
]
_EVENT_TYPES: Final = frozenset(get_args(DummyEventType))


def parse_event_type(value: str) -> DummyEventType:
    if value not in _EVENT_TYPES:
        raise UnknownProviderState(ProviderName.DUMMY, "event type", value)
    return cast(DummyEventType, value)


def map_event_type(event_type: str) -> MappedStatus:
    """Map a dummy payment event type; ``provider_state`` is the event type itself."""
    parsed = parse_event_type(event_type)
    match parsed:
        case "payment.succeeded":
            return MappedStatus(PaymentStatus.SUCCEEDED, parsed)
        case "payment.failed":
            return MappedStatus(PaymentStatus.FAILED, parsed)
        case "payment.pending":
            return MappedStatus(PaymentStatus.PENDING, parsed)
        case "payment.canceled":
            return MappedStatus(PaymentStatus.CANCELED, parsed)
        case _ as unreachable:
            assert_never(unreachable)


# --- Webhook verification ------------------------------------------------------------------------

SIGNATURE_HEADER: Final = "X-Dummy-Signature"


def sign_payload(raw: bytes, secret: str) -> str:
    """The ``X-Dummy-Signature`` value for ``raw``: lowercase hex HMAC-SHA256."""
    return hmac.new(secret.encode("utf-8"), raw, hashlib.sha256).hexdigest()


def verify_webhook(raw: bytes, signature_header: str | None, secret: str) -> VerifiedWebhook:
    """Verify a dummy delivery on its raw bytes and extract id, type and payment id."""
    check_hex_hmac(
        raw,
        signature_header,
        secret,
        "sha256",
        what="dummy webhook secret",
        header_name=SIGNATURE_HEADER,
    )

    body = _load_json_object(raw)
    event_id = body.get("id")
    event_type = body.get("type")
    payment_id = body.get("payment_id")
    livemode = body.get("livemode")
    if not isinstance(event_id, str) or not event_id:
        raise _malformed("event without id")
    if not isinstance(event_type, str) or not event_type:
        raise _malformed("event without type")
    if payment_id is not None and (not isinstance(payment_id, str) or not payment_id):
        raise _malformed("payment_id is not a string")
    if livemode is not None and not isinstance(livemode, bool):
        raise _malformed("livemode is not a boolean")
    return VerifiedWebhook(
        provider=ProviderName.DUMMY,
        event_id=event_id,
        event_type=event_type,
        verification=Verification.SIGNED,
        livemode=livemode,
        reference=payment_id,
    )


# --- Event facts ---------------------------------------------------------------------------------
# A verified, stored event body -> what it says in our terms (``base.EventFacts``). Dummy payments
# exist only when Paydesk created them, so the facts are never complete (never create a payment).


def event_facts(raw: bytes) -> EventFacts:
    """What one verified dummy event body says; ``payment.*`` types only, others are ignored.

    A ``payment.*`` type we do not know raises ``UnknownProviderState``, a body without what it
    needs ``MalformedEvent``.
    """
    try:
        body = json.loads(raw)
    except (ValueError, RecursionError):
        raise MalformedEvent("dummy event body is not valid JSON") from None
    if not isinstance(body, dict):
        raise MalformedEvent("dummy event body is not a JSON object")
    event_type = body.get("type")
    if not isinstance(event_type, str) or not event_type:
        raise MalformedEvent("dummy event without type")
    if not event_type.startswith("payment."):
        return IGNORED_EVENT
    mapped = map_event_type(event_type)
    payment_id = body.get("payment_id")
    if not isinstance(payment_id, str) or not payment_id:
        raise MalformedEvent("dummy payment event without payment_id")
    amount = body.get("amount")
    if isinstance(amount, bool) or not isinstance(amount, int) or amount < 0:
        raise MalformedEvent(f"dummy amount is not a non-negative integer: {amount!r}")
    currency = body.get("currency")
    if not isinstance(currency, str):
        raise MalformedEvent("dummy event without currency")
    try:
        currency = normalize_currency(currency)
    except UnknownCurrencyError:
        raise MalformedEvent(f"dummy currency {currency!r} is not a known currency") from None
    livemode = body.get("livemode")
    if livemode is not None and not isinstance(livemode, bool):
        raise MalformedEvent("dummy livemode is not a boolean")
    if mapped.status is PaymentStatus.FAILED:
        reason = body.get("failure_reason")
        if reason is not None and not isinstance(reason, str):
            raise MalformedEvent("dummy failure_reason is not a string")
        mapped = replace(mapped, failure_reason=reason or None)
    payment = PaymentFacts(
        reference=payment_id,
        payment_id=payment_id,
        status=mapped,
        amount_minor=amount,
        currency=currency,
        captured_minor=amount if mapped.status is PaymentStatus.SUCCEEDED else None,
        complete=False,
        livemode=livemode,
    )
    return EventFacts(payment=payment, summary=f"{event_type} ({payment_id})")


# --- Outbound: the simulated checkout -----------------------------------------------------------


@dataclass(frozen=True, slots=True)
class DummyAdapter:
    """Checkout on the webhook server's own /simulate/{payment_id} page, whose Pay / Fail buttons
    post signed dummy webhooks; refunds succeed at once. No account anywhere is needed."""

    public_base_url: str

    @classmethod
    def from_settings(cls, settings: Settings) -> DummyAdapter:
        return cls(settings.public_base_url)

    def create_checkout(self, request: CheckoutRequest) -> CheckoutResult:
        return CheckoutResult(
            provider_reference=request.payment_id,
            status=map_event_type("payment.pending"),
            checkout_url=f"{self.public_base_url}/simulate/{request.payment_id}",
        )

    def refund(self, request: RefundRequest) -> RefundResult:
        return RefundResult(f"dummy_re_{request.refund_id}", RefundStatus.SUCCEEDED)


SimulatedOutcome = Literal["succeeded", "failed", "canceled"]


def simulated_event(
    payment_id: str,
    amount_minor: int,
    currency: str,
    outcome: SimulatedOutcome,
    *,
    livemode: bool = False,
) -> bytes:
    """The body of a dummy webhook telling ``outcome`` for a payment (the /simulate page)."""
    body: dict[str, object] = {
        "id": f"dmy_evt_{secrets.token_hex(8)}",
        "type": f"payment.{outcome}",
        "payment_id": payment_id,
        "amount": amount_minor,
        "currency": currency,
        "livemode": livemode,
    }
    if outcome == "failed":
        body["failure_reason"] = "declined on the simulate page"
    return json.dumps(body).encode()
