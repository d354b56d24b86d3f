"""Manual/offline payments (bank transfer, cash on delivery, ...): proof review -> payment status.

A customer or an operator uploads a proof of payment, which an operator reviews. Only an approved
proof makes the payment succeed; a rejected one leaves the payment waiting for another proof. The
``match`` over ``ProofStatus`` is exhaustive, so a new proof status is a mypy error here.

Source: no provider protocol; this follows the unified statuses in payments_core/status.py
(ProofStatus, PaymentStatus) and ../shared/reference/providers.md section 5 ("pending"/"paid").
"""

from __future__ import annotations

from typing import assert_never

from payments_core.status import PaymentStatus, ProofStatus


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
