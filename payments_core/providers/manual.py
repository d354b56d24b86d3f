"""Manual/offline payments (bank transfer, cash on delivery, ...): proof review -> payment status.

A customer or an operator uploads a proof of payment, which an operator reviews. Only an approved
proof makes the payment succeed; a rejected one leaves the payment waiting for another proof. The
``match`` over ``ProofStatus`` is exhaustive, so a new proof status is a mypy error here.

Source: no provider protocol; this follows the unified statuses in payments_core/status.py
(ProofStatus, PaymentStatus) and ../shared/reference/providers.md section 5 ("pending"/"paid").
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Final, assert_never

from payments_core.config import Settings
from payments_core.models._types import utcnow
from payments_core.money import format_amount
from payments_core.providers.base import (
    CheckoutRequest,
    CheckoutResult,
    PaymentMethod,
    ProviderDeclined,
    ProviderName,
)
from payments_core.status import MappedStatus, PaymentStatus, ProofStatus


def map_proof_status(status: ProofStatus) -> PaymentStatus:
    match status:
        case ProofStatus.PENDING_REVIEW:
            return PaymentStatus.PENDING
        case ProofStatus.APPROVED:
            return PaymentStatus.SUCCEEDED
        case ProofStatus.REJECTED:
            # The payment stays open: the customer may send another proof.
            return PaymentStatus.PENDING
        case _ as unreachable:
            assert_never(unreachable)


# --- Checkout: instructions instead of a payment page --------------------------------------------

MANUAL_METHODS: Final = frozenset(
    {
        PaymentMethod.BANK_TRANSFER.value,
        PaymentMethod.CASH_ON_DELIVERY.value,
        PaymentMethod.MOBILE_MONEY.value,
    }
)


@dataclass(frozen=True, slots=True)
class ManualAdapter:
    """A manual payment waits for a proof; the "checkout" is the instructions the customer needs:
    the reference to quote (our payment id, so a bank statement line can be matched), the amount
    in its currency's format, and where to pay."""

    account_name: str
    iban: str
    bic: str
    bank_name: str
    payment_days: int

    @classmethod
    def from_settings(cls, settings: Settings) -> ManualAdapter:
        return cls(
            account_name=settings.manual_bank_account_name,
            iban=settings.manual_bank_iban,
            bic=settings.manual_bank_bic,
            bank_name=settings.manual_bank_name,
            payment_days=settings.manual_payment_days,
        )

    def create_checkout(self, request: CheckoutRequest) -> CheckoutResult:
        method = request.method or PaymentMethod.BANK_TRANSFER.value
        if method not in MANUAL_METHODS:
            allowed = ", ".join(sorted(MANUAL_METHODS))
            raise ProviderDeclined(
                f"method {method!r} is not a manual payment method; use one of: {allowed}",
                provider=ProviderName.MANUAL,
                code="method_not_supported",
            )
        amount = format_amount(request.amount_minor, request.currency)
        due = utcnow() + timedelta(days=self.payment_days)
        instructions = {
            "method": method,
            "reference": request.payment_id,
            "amount": amount,
            "currency": request.currency,
            "amount_minor": str(request.amount_minor),
            "pay_by": due.date().isoformat(),
        }
        if method == PaymentMethod.BANK_TRANSFER.value:
            instructions |= {
                "account_name": self.account_name,
                "iban": self.iban,
                "bic": self.bic,
                "bank": self.bank_name,
                "text": f"Transfer {amount} to {self.account_name}, IBAN {self.iban}, quoting "
                f"{request.payment_id} as the payment reference.",
            }
        elif method == PaymentMethod.CASH_ON_DELIVERY.value:
            instructions["text"] = (
                f"Pay {amount} in cash on delivery; the receipt must show {request.payment_id}."
            )
        else:
            instructions["text"] = (
                f"Send {amount} by mobile money quoting {request.payment_id}, then upload the "
                "confirmation message."
            )
        return CheckoutResult(
            provider_reference=request.payment_id,
            status=MappedStatus(PaymentStatus.PENDING, "awaiting_proof"),
            instructions=instructions,
            expires_at=due,
        )
