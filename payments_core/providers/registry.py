"""Which provider does what, the adapters that do it, and the table that turns a stored webhook
into facts.

``CAPABILITIES`` declares what each provider supports, so an unsupported action (a refund through
M-Pesa, dispute evidence outside Stripe) is refused before anything starts; ``Adapters`` builds each
provider's adapter from the settings, once, and refuses an unconfigured provider with
``ProviderNotConfigured``.

``WebhookFacts`` is the handler table the worker uses: Stripe, Paystack and dummy events are
signed and carry the whole object, so their facts come from the stored body; PostFinance and
M-Pesa deliveries are only hints, so their facts are read back from the provider API (the
PostFinance transaction or refund through the SDK, an STK Query for an M-Pesa success).
Provider clients are built lazily from the settings, once per reader.
"""

from __future__ import annotations

import enum
import json
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from payments_core.config import Settings, get_settings
from payments_core.providers import dummy, manual, mpesa, paystack, postfinance, stripe
from payments_core.providers.base import (
    CheckoutAdapter,
    DisputeAdapter,
    EventFacts,
    OperationNotSupported,
    ProviderName,
    ProviderUnavailable,
    RefundAdapter,
    StatusAdapter,
)

if TYPE_CHECKING:
    from payments_core.models import WebhookEvent


class WebhookFacts:
    """``reader(event) -> EventFacts`` for every provider (the worker's handler table)."""

    def __init__(self, settings: Settings | None = None) -> None:
        self._settings = settings
        self._lock = threading.Lock()
        self._postfinance: postfinance.PostFinanceReader | None = None
        self._daraja: mpesa.DarajaClient | None = None
        self._handlers: dict[str, Callable[[WebhookEvent], EventFacts]] = {
            ProviderName.STRIPE.value: lambda event: stripe.event_facts(event.payload),
            ProviderName.PAYSTACK.value: lambda event: paystack.event_facts(event.payload),
            ProviderName.DUMMY.value: lambda event: dummy.event_facts(event.payload),
            ProviderName.POSTFINANCE.value: self._postfinance_facts,
            ProviderName.MPESA.value: self._mpesa_facts,
        }

    @property
    def settings(self) -> Settings:
        return self._settings or get_settings()

    def __call__(self, event: WebhookEvent) -> EventFacts:
        handler = self._handlers.get(event.provider)
        if handler is None:
            raise ValueError(f"no handler for provider {event.provider!r}")
        return handler(event)

    # --- PostFinance: read the entity the notification names --------------------------------

    def postfinance_reader(self) -> postfinance.PostFinanceReader:
        with self._lock:
            if self._postfinance is None:
                from postfinancecheckout.configuration import Configuration

                settings = self.settings
                if not settings.postfinance_user_id:
                    raise ProviderUnavailable("PostFinance API credentials are not configured")
                configuration = Configuration(
                    host=settings.postfinance_api_base,
                    user_id=settings.postfinance_user_id,
                    authentication_key=settings.postfinance_authentication_key.get_secret_value(),
                    request_timeout=settings.provider_timeout_seconds,
                )
                self._postfinance = postfinance.PostFinanceReader(
                    configuration, settings.postfinance_space_id
                )
            return self._postfinance

    def _postfinance_facts(self, event: WebhookEvent) -> EventFacts:
        body: dict[str, Any] = json.loads(event.payload)
        entity = str(body["listenerEntityTechnicalName"])
        entity_id = str(body["entityId"])
        return self.postfinance_reader().facts(entity, entity_id)

    # --- M-Pesa: a success counts only once an STK Query confirms it ------------------------

    def daraja(self) -> mpesa.DarajaClient:
        with self._lock:
            if self._daraja is None:
                settings = self.settings
                if not settings.mpesa_consumer_key.get_secret_value():
                    raise ProviderUnavailable("M-Pesa API credentials are not configured")
                self._daraja = mpesa.DarajaClient(
                    settings.mpesa_api_base,
                    settings.mpesa_consumer_key.get_secret_value(),
                    settings.mpesa_consumer_secret.get_secret_value(),
                    settings.mpesa_shortcode,
                    settings.mpesa_passkey.get_secret_value(),
                    timeout=settings.provider_timeout_seconds,
                )
            return self._daraja

    def _mpesa_facts(self, event: WebhookEvent) -> EventFacts:
        verified = mpesa.parse_stk_callback(event.payload)
        checkout_request_id, _, code = verified.event_id.rpartition(":")
        query = None
        if code == str(mpesa.SUCCESS_RESULT_CODE):
            query = self.daraja().stk_query(checkout_request_id)
        return mpesa.callback_facts(event.payload, query)


# --- What each provider supports, and its adapters ----------------------------------------------


class Capability(enum.StrEnum):
    CHECKOUT = "checkout"  # start a payment (payment page, STK push, instructions)
    REFUND = "refund"  # return money through the provider
    STATUS = "status"  # read a payment back (reconciliation)
    DISPUTE_EVIDENCE = "dispute_evidence"  # submit evidence or accept a dispute
    PROOFS = "proofs"  # paid outside any system; a person reviews a proof


_C = Capability
CAPABILITIES: dict[ProviderName, frozenset[Capability]] = {
    ProviderName.STRIPE: frozenset({_C.CHECKOUT, _C.REFUND, _C.STATUS, _C.DISPUTE_EVIDENCE}),
    ProviderName.POSTFINANCE: frozenset({_C.CHECKOUT, _C.REFUND, _C.STATUS}),
    ProviderName.PAYSTACK: frozenset({_C.CHECKOUT, _C.REFUND, _C.STATUS}),
    # Daraja's reversal API is not an STK refund: M-Pesa money goes back outside Paydesk.
    ProviderName.MPESA: frozenset({_C.CHECKOUT, _C.STATUS}),
    # Manual refunds are recorded as offline refunds with a reference, not executed.
    ProviderName.MANUAL: frozenset({_C.CHECKOUT, _C.PROOFS}),
    ProviderName.DUMMY: frozenset({_C.CHECKOUT, _C.REFUND}),
}

# How long a payment may stay open before reconciliation asks its provider (a Checkout page or
# an STK prompt the customer never finished); ``paydesk reconcile --older-than`` overrides it.
EXPECTED_SECONDS: dict[ProviderName, int] = {
    ProviderName.STRIPE: 15 * 60,
    ProviderName.POSTFINANCE: 15 * 60,
    ProviderName.PAYSTACK: 15 * 60,
    ProviderName.MPESA: 3 * 60,  # the STK prompt times out on the phone after about a minute
}


def supports(provider: ProviderName | str, capability: Capability) -> bool:
    try:
        return capability in CAPABILITIES[ProviderName(provider)]
    except ValueError:
        return False


def require(provider: ProviderName | str, capability: Capability) -> ProviderName:
    """The provider, or OperationNotSupported saying what it cannot do."""
    try:
        name = ProviderName(provider)
    except ValueError:
        raise OperationNotSupported(f"unknown provider {provider!r}") from None
    if capability not in CAPABILITIES[name]:
        raise OperationNotSupported(
            f"{name.value} does not support {capability.value.replace('_', ' ')}", provider=name
        )
    return name


class Adapters:
    """Each provider's adapter, built from the settings on first use (thread-safe)."""

    def __init__(self, settings: Settings | None = None) -> None:
        self._settings = settings
        self._lock = threading.Lock()
        self._built: dict[ProviderName, Any] = {}
        self._built_for: Settings | None = None

    @property
    def settings(self) -> Settings:
        return self._settings or get_settings()

    def _adapter(self, provider: ProviderName) -> Any:
        settings = self.settings
        with self._lock:
            if settings is not self._built_for:  # the settings were reloaded: rebuild
                self._built, self._built_for = {}, settings
            if provider not in self._built:
                self._built[provider] = _FACTORIES[provider](settings)
            return self._built[provider]

    def checkout(self, provider: ProviderName | str) -> CheckoutAdapter:
        adapter: CheckoutAdapter = self._adapter(require(provider, Capability.CHECKOUT))
        return adapter

    def refunds(self, provider: ProviderName | str) -> RefundAdapter:
        adapter: RefundAdapter = self._adapter(require(provider, Capability.REFUND))
        return adapter

    def status(self, provider: ProviderName | str) -> StatusAdapter:
        adapter: StatusAdapter = self._adapter(require(provider, Capability.STATUS))
        return adapter

    def disputes(self, provider: ProviderName | str) -> DisputeAdapter:
        adapter: DisputeAdapter = self._adapter(require(provider, Capability.DISPUTE_EVIDENCE))
        return adapter


_FACTORIES: dict[ProviderName, Callable[[Settings], Any]] = {
    ProviderName.STRIPE: lambda settings: stripe.StripeAdapter.from_settings(settings),
    ProviderName.POSTFINANCE: lambda settings: postfinance.PostFinanceAdapter.from_settings(
        settings
    ),
    ProviderName.PAYSTACK: lambda settings: paystack.PaystackAdapter.from_settings(settings),
    ProviderName.MPESA: lambda settings: mpesa.MpesaAdapter.from_settings(settings),
    ProviderName.MANUAL: manual.ManualAdapter.from_settings,
    ProviderName.DUMMY: dummy.DummyAdapter.from_settings,
}
