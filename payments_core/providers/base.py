"""Protocols and normalized types shared by provider adapters; adapters are added by later work.

For now this module holds the provider and payment-method names used across the code base and the
error raised when a provider sends a state that our mapping tables do not know.
"""

from __future__ import annotations

import enum


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
