"""Which provider does what, and the one table that turns a stored webhook into facts.

``WebhookFacts`` is the handler table the worker uses: Stripe, Paystack and dummy events are
signed and carry the whole object, so their facts come from the stored body; PostFinance and
M-Pesa deliveries are only hints, so their facts are read back from the provider API (the
PostFinance transaction or refund through the SDK, an STK Query for an M-Pesa success).
Provider clients are built lazily from the settings, once per reader.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from payments_core.config import Settings, get_settings
from payments_core.providers import dummy, mpesa, paystack, postfinance, stripe
from payments_core.providers.base import EventFacts, ProviderName, ProviderUnavailable

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
                    request_timeout=15,
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
                )
            return self._daraja

    def _mpesa_facts(self, event: WebhookEvent) -> EventFacts:
        verified = mpesa.parse_stk_callback(event.payload)
        checkout_request_id, _, code = verified.event_id.rpartition(":")
        query = None
        if code == str(mpesa.SUCCESS_RESULT_CODE):
            query = self.daraja().stk_query(checkout_request_id)
        return mpesa.callback_facts(event.payload, query)
