"""PostFinance Checkout (wallee): what transaction and refund states mean for us.

Mapping only, no API calls yet (the adapter is added to this module later). The state sets are the
SDK's own enums, ``postfinancecheckout.models.TransactionState`` and ``RefundState``; the ``match``
statements over them are exhaustive, so an SDK upgrade that adds a state is a mypy error here.
Raw strings (e.g. the ``state`` field of a signed webhook) go through the enum constructor, and an
unknown one raises ``UnknownProviderState``.

Source: ../shared/reference/providers.md sections 2.6 (transaction states), 2.7 (refunds) and
5 (suggested mapping).
"""

from __future__ import annotations

from typing import assert_never

# Imported from the defining modules: under mypy --strict (no implicit re-export) the names
# re-exported by `postfinancecheckout.models` are "not explicitly exported" (attr-defined). Same
# classes as `postfinancecheckout.models.TransactionState` / `.RefundState`.
from postfinancecheckout.models.refund_state import RefundState
from postfinancecheckout.models.transaction_state import TransactionState

from payments_core.providers.base import ProviderName, UnknownProviderState
from payments_core.status import MappedStatus, PaymentStatus, RefundStatus

# --- Transaction (section 2.6) ------------------------------------------------------------------


def parse_transaction_state(value: TransactionState | str) -> TransactionState:
    try:
        return TransactionState(value)
    except ValueError:
        raise UnknownProviderState(ProviderName.POSTFINANCE, "transaction state", value) from None


def map_transaction_state(
    state: TransactionState | str, *, failure_reason: str | None = None
) -> MappedStatus:
    """Map a transaction state; pass the transaction's ``failureReason`` name/description if any.

    ``failure_reason`` is only kept for ``FAILED``. ``DECLINE`` is the negative delivery decision
    after a capture (``COMPLETED``): money was taken but the order must not be fulfilled.
    """
    parsed = parse_transaction_state(state)
    provider_state = parsed.value
    match parsed:
        case TransactionState.CREATE | TransactionState.PENDING | TransactionState.CONFIRMED:
            return MappedStatus(PaymentStatus.PENDING, provider_state)
        case TransactionState.PROCESSING:
            return MappedStatus(PaymentStatus.PROCESSING, provider_state)
        case TransactionState.AUTHORIZED:
            return MappedStatus(PaymentStatus.AUTHORIZED, provider_state)
        case TransactionState.COMPLETED | TransactionState.FULFILL:
            return MappedStatus(PaymentStatus.SUCCEEDED, provider_state)
        case TransactionState.FAILED:
            return MappedStatus(PaymentStatus.FAILED, provider_state, failure_reason=failure_reason)
        case TransactionState.VOIDED:
            return MappedStatus(PaymentStatus.CANCELED, provider_state)
        case TransactionState.DECLINE:
            return MappedStatus(PaymentStatus.DECLINED, provider_state)
        case _ as unreachable:
            assert_never(unreachable)


# --- Refund (section 2.7) -----------------------------------------------------------------------


def parse_refund_state(value: RefundState | str) -> RefundState:
    try:
        return RefundState(value)
    except ValueError:
        raise UnknownProviderState(ProviderName.POSTFINANCE, "refund state", value) from None


def map_refund_state(state: RefundState | str) -> RefundStatus:
    """Map a refund state; ``MANUAL_CHECK`` waits for someone at PostFinance/the merchant."""
    parsed = parse_refund_state(state)
    match parsed:
        case RefundState.CREATE | RefundState.SCHEDULED | RefundState.PENDING:
            return RefundStatus.PROCESSING
        case RefundState.MANUAL_CHECK:
            return RefundStatus.NEEDS_ATTENTION
        case RefundState.SUCCESSFUL:
            return RefundStatus.SUCCEEDED
        case RefundState.FAILED:
            return RefundStatus.FAILED
        case _ as unreachable:
            assert_never(unreachable)
