"""Unified statuses for payments, refunds and disputes, and the rules that move them.

Every provider's own states map onto these (see ``payments_core/providers/*``). Transitions are
monotonic: each status has a rank, and a status only ever moves to a strictly higher rank. A
duplicate input (same status) or a stale one (lower or equal rank) is reported and changes nothing,
so events may arrive in any order and any number of times and still end in the same state.

Payment ranks, lowest first::

    created < pending < processing < authorized < {failed, canceled, expired} < succeeded < declined

* The three no-money outcomes share a rank: whichever arrives first stays (a void does not turn
  into a failure afterwards, or the other way round).
* ``succeeded`` outranks them: a provider confirming a capture after we saw a failed attempt or an
  expiry (customer retried, late callback) records the money. Nothing moves a payment out of
  ``succeeded`` except ``declined``.
* ``declined`` is PostFinance's negative delivery decision, only reachable after a capture: the
  money was taken but must not be fulfilled (refund or investigate).

Refunds and amounts captured/refunded/disputed are tracked as amounts on the payment, not as
payment statuses, so a refund never competes with a capture for the status field.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Generic, TypeVar

S = TypeVar("S", bound=enum.StrEnum)


class PaymentStatus(enum.StrEnum):
    CREATED = "created"
    PENDING = "pending"
    PROCESSING = "processing"
    AUTHORIZED = "authorized"
    FAILED = "failed"
    CANCELED = "canceled"
    EXPIRED = "expired"
    SUCCEEDED = "succeeded"
    DECLINED = "declined"


class RefundStatus(enum.StrEnum):
    PENDING_APPROVAL = "pending_approval"
    REJECTED = "rejected"
    PROCESSING = "processing"
    NEEDS_ATTENTION = "needs_attention"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELED = "canceled"


class DisputeStatus(enum.StrEnum):
    NEEDS_RESPONSE = "needs_response"
    UNDER_REVIEW = "under_review"
    WON = "won"
    LOST = "lost"
    CLOSED = "closed"  # inquiry closed or dispute prevented without a chargeback


class ProofStatus(enum.StrEnum):
    PENDING_REVIEW = "pending_review"
    APPROVED = "approved"
    REJECTED = "rejected"


PAYMENT_RANK: dict[PaymentStatus, int] = {
    PaymentStatus.CREATED: 0,
    PaymentStatus.PENDING: 10,
    PaymentStatus.PROCESSING: 20,
    PaymentStatus.AUTHORIZED: 30,
    PaymentStatus.FAILED: 40,
    PaymentStatus.CANCELED: 40,
    PaymentStatus.EXPIRED: 40,
    PaymentStatus.SUCCEEDED: 50,
    PaymentStatus.DECLINED: 60,
}

# A refund that Stripe reported succeeded may still fail later (returned by the bank), so failure
# outranks success; rejection only ever follows an approval request.
REFUND_RANK: dict[RefundStatus, int] = {
    RefundStatus.PENDING_APPROVAL: 0,
    RefundStatus.PROCESSING: 10,
    RefundStatus.NEEDS_ATTENTION: 20,
    RefundStatus.SUCCEEDED: 30,
    RefundStatus.REJECTED: 40,
    RefundStatus.FAILED: 40,
    RefundStatus.CANCELED: 40,
}

DISPUTE_RANK: dict[DisputeStatus, int] = {
    DisputeStatus.NEEDS_RESPONSE: 10,
    DisputeStatus.UNDER_REVIEW: 20,
    DisputeStatus.WON: 30,
    DisputeStatus.LOST: 30,
    DisputeStatus.CLOSED: 30,
}

PROOF_RANK: dict[ProofStatus, int] = {
    ProofStatus.PENDING_REVIEW: 0,
    ProofStatus.APPROVED: 10,
    ProofStatus.REJECTED: 10,
}

TERMINAL_PAYMENT_STATUSES = frozenset(
    {
        PaymentStatus.FAILED,
        PaymentStatus.CANCELED,
        PaymentStatus.EXPIRED,
        PaymentStatus.SUCCEEDED,
        PaymentStatus.DECLINED,
    }
)
CAPTURED_PAYMENT_STATUSES = frozenset({PaymentStatus.SUCCEEDED, PaymentStatus.DECLINED})
OPEN_PAYMENT_STATUSES = frozenset(
    {
        PaymentStatus.CREATED,
        PaymentStatus.PENDING,
        PaymentStatus.PROCESSING,
        PaymentStatus.AUTHORIZED,
    }
)
OPEN_REFUND_STATUSES = frozenset(
    {RefundStatus.PENDING_APPROVAL, RefundStatus.PROCESSING, RefundStatus.NEEDS_ATTENTION}
)
OPEN_DISPUTE_STATUSES = frozenset({DisputeStatus.NEEDS_RESPONSE, DisputeStatus.UNDER_REVIEW})


class Decision(enum.StrEnum):
    APPLY = "apply"
    DUPLICATE = "duplicate"  # already in that status
    STALE = "stale"  # would move backwards or sideways among equals: ignored


@dataclass(frozen=True, slots=True)
class Transition(Generic[S]):
    current: S
    target: S
    decision: Decision

    @property
    def applies(self) -> bool:
        return self.decision is Decision.APPLY

    @property
    def explanation(self) -> str:
        if self.decision is Decision.APPLY:
            return f"{self.current} -> {self.target}"
        if self.decision is Decision.DUPLICATE:
            return f"already {self.current}"
        return f"ignored {self.target}: {self.current} is final or further along"


def _decide(current: S, target: S, rank: dict[S, int]) -> Transition[S]:
    if current == target:
        return Transition(current, target, Decision.DUPLICATE)
    if rank[target] > rank[current]:
        return Transition(current, target, Decision.APPLY)
    return Transition(current, target, Decision.STALE)


def decide_payment(current: PaymentStatus, target: PaymentStatus) -> Transition[PaymentStatus]:
    return _decide(current, target, PAYMENT_RANK)


def decide_refund(current: RefundStatus, target: RefundStatus) -> Transition[RefundStatus]:
    return _decide(current, target, REFUND_RANK)


def decide_dispute(current: DisputeStatus, target: DisputeStatus) -> Transition[DisputeStatus]:
    return _decide(current, target, DISPUTE_RANK)


def decide_proof(current: ProofStatus, target: ProofStatus) -> Transition[ProofStatus]:
    return _decide(current, target, PROOF_RANK)


def is_late_success(current: PaymentStatus, target: PaymentStatus) -> bool:
    """A capture confirmed after the payment was already closed without money: worth a flag."""
    return target is PaymentStatus.SUCCEEDED and current in {
        PaymentStatus.FAILED,
        PaymentStatus.CANCELED,
        PaymentStatus.EXPIRED,
    }


@dataclass(frozen=True, slots=True)
class MappedStatus:
    """What a provider's state means for our payment, with the provider's own words kept."""

    status: PaymentStatus
    provider_state: str
    failure_reason: str | None = None
