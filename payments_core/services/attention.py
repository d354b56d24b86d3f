"""The attention queue: everything that waits for a person, in one list, oldest first.

Each kind below is one query on an index that starts with the column it filters on, with a limit,
so the queue costs the same whether the database holds a thousand payments or ten million:

* refunds awaiting a manager's approval, and refunds whose outcome a person must check
  (``refund``: status, created_at);
* manual payment proofs awaiting review (``manual_proof``: status, created_at);
* disputes needing a response due within ``DISPUTE_DUE_WITHIN`` or already overdue, and those
  whose due date the provider did not give (``dispute``: status, evidence_due_at);
* payments still pending, processing or authorized past their provider's expected time
  (``registry.EXPECTED_SECONDS``, the same ages reconciliation uses; partial index on open
  statuses and status_changed_at); manual and dummy payments have no expected time and never
  count as stuck;
* payments flagged for review: amount or currency mismatch, late capture, declined delivery
  (``payment.review_reason``; partial index on flagged payments);
* webhook events that went dead after their retries, and provider callbacks about payments we
  do not know (``webhook_event``: status, next_attempt_at);
* bank statement credits that matched no payment (``statement_line``: status, booked_on).

``since`` is when the item started waiting (a refund's request, a stuck payment's last status
change, a dispute's opening, an event's arrival); the list is sorted on it, oldest first.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Final

from sqlmodel import Session, col, or_, select

from payments_core.models import (
    Dispute,
    InboxStatus,
    ManualProof,
    Payment,
    Refund,
    StatementLine,
    WebhookEvent,
    utcnow,
)
from payments_core.models.payments import OPEN_STATUSES
from payments_core.money import format_amount
from payments_core.providers.registry import EXPECTED_SECONDS
from payments_core.services.permissions import Actor, Permission, guarded
from payments_core.status import DisputeStatus, PaymentStatus, ProofStatus, RefundStatus

# Disputes appear this long before their response is due (and stay until answered).
DISPUTE_DUE_WITHIN: Final = timedelta(hours=72)
DEFAULT_LIMIT: Final = 200
# Open statuses in which a payment waits on the customer or provider, not on us: "created" is a
# checkout not started yet (it expires by itself), so it is never "stuck".
STUCK_STATUSES: Final = (PaymentStatus.PENDING, PaymentStatus.PROCESSING, PaymentStatus.AUTHORIZED)
assert set(STUCK_STATUSES) <= set(OPEN_STATUSES)


class AttentionKind(enum.StrEnum):
    REFUND_APPROVAL = "refund_approval"
    REFUND_PROBLEM = "refund_problem"
    PROOF_REVIEW = "proof_review"
    DISPUTE_RESPONSE = "dispute_response"
    STUCK_PAYMENT = "stuck_payment"
    PAYMENT_REVIEW = "payment_review"
    DEAD_WEBHOOK = "dead_webhook"
    UNMATCHED_CALLBACK = "unmatched_callback"
    UNMATCHED_STATEMENT_LINE = "unmatched_statement_line"


@dataclass(frozen=True, slots=True)
class AttentionItem:
    kind: AttentionKind
    since: datetime
    title: str
    entity_type: str
    entity_id: str
    payment_id: str | None = None
    due_at: datetime | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": self.kind.value,
            "since": self.since.isoformat(),
            "title": self.title,
            "entity_type": self.entity_type,
            "entity_id": self.entity_id,
            "payment_id": self.payment_id,
            "due_at": self.due_at.isoformat() if self.due_at else None,
        }


def _age(since: datetime, now: datetime) -> str:
    seconds = max(0, int((now - since).total_seconds()))
    if seconds < 3600:
        return f"{seconds // 60} min"
    if seconds < 2 * 86400:
        return f"{seconds // 3600} h"
    return f"{seconds // 86400} days"


def _refunds(session: Session, now: datetime, limit: int) -> Iterable[AttentionItem]:
    statuses = [RefundStatus.PENDING_APPROVAL.value, RefundStatus.NEEDS_ATTENTION.value]
    rows = session.exec(
        select(Refund)
        .where(col(Refund.status).in_(statuses))
        .order_by(col(Refund.created_at))
        .limit(limit)
    )
    for refund in rows:
        amount = format_amount(refund.amount_minor, refund.currency)
        if refund.status == RefundStatus.PENDING_APPROVAL.value:
            kind = AttentionKind.REFUND_APPROVAL
            title = (
                f"Refund of {amount} on {refund.payment_id} awaits approval "
                f"(requested by {refund.requested_by})"
            )
        else:
            kind = AttentionKind.REFUND_PROBLEM
            problem = f": {refund.failure_reason}" if refund.failure_reason else ""
            title = f"Refund of {amount} on {refund.payment_id} needs checking{problem}"
        yield AttentionItem(kind, refund.created_at, title, "refund", refund.id, refund.payment_id)


def _proofs(session: Session, now: datetime, limit: int) -> Iterable[AttentionItem]:
    rows = session.exec(
        select(ManualProof)
        .where(col(ManualProof.status) == ProofStatus.PENDING_REVIEW.value)
        .order_by(col(ManualProof.created_at))
        .limit(limit)
    )
    for proof in rows:
        amount = format_amount(proof.amount_minor, proof.currency)
        yield AttentionItem(
            AttentionKind.PROOF_REVIEW,
            proof.created_at,
            f"Proof of {amount} by {proof.kind.replace('_', ' ')} (reference {proof.reference}) "
            f"for {proof.payment_id} awaits review (recorded by {proof.recorded_by})",
            "manual_proof",
            proof.id,
            proof.payment_id,
        )


def _disputes(session: Session, now: datetime, limit: int) -> Iterable[AttentionItem]:
    rows = session.exec(
        select(Dispute)
        .where(
            col(Dispute.status) == DisputeStatus.NEEDS_RESPONSE.value,
            or_(
                col(Dispute.evidence_due_at) <= now + DISPUTE_DUE_WITHIN,
                col(Dispute.evidence_due_at).is_(None),
            ),
        )
        .order_by(col(Dispute.created_at))
        .limit(limit)
    )
    for dispute in rows:
        amount = format_amount(dispute.amount_minor, dispute.currency)
        due = dispute.evidence_due_at
        if due is None:
            when = "response needed (no due date given)"
        elif due <= now:
            when = f"response overdue by {_age(due, now)}"
        else:
            when = f"response due in {_age(now, due)}"
        reason = f" ({dispute.reason})" if dispute.reason else ""
        yield AttentionItem(
            AttentionKind.DISPUTE_RESPONSE,
            dispute.created_at,
            f"Dispute of {amount} on {dispute.payment_id}{reason}: {when}",
            "dispute",
            dispute.id,
            dispute.payment_id,
            due_at=due,
        )


def _stuck_payments(session: Session, now: datetime, limit: int) -> Iterable[AttentionItem]:
    overdue = [
        (col(Payment.provider) == provider.value)
        & (col(Payment.status_changed_at) <= now - timedelta(seconds=seconds))
        for provider, seconds in EXPECTED_SECONDS.items()
    ]
    if not overdue:
        return
    rows = session.exec(
        select(Payment)
        .where(col(Payment.status).in_([s.value for s in STUCK_STATUSES]), or_(*overdue))
        .order_by(col(Payment.status_changed_at))
        .limit(limit)
    )
    for payment in rows:
        amount = format_amount(payment.amount_minor, payment.currency)
        yield AttentionItem(
            AttentionKind.STUCK_PAYMENT,
            payment.status_changed_at,
            f"Payment {payment.id} of {amount} ({payment.provider}) {payment.status} for "
            f"{_age(payment.status_changed_at, now)}",
            "payment",
            payment.id,
            payment.id,
        )


def _flagged_payments(session: Session, now: datetime, limit: int) -> Iterable[AttentionItem]:
    rows = session.exec(
        select(Payment)
        .where(col(Payment.review_reason).is_not(None))
        .order_by(col(Payment.created_at))
        .limit(limit)
    )
    for payment in rows:
        amount = format_amount(payment.amount_minor, payment.currency)
        yield AttentionItem(
            AttentionKind.PAYMENT_REVIEW,
            payment.created_at,
            f"Payment {payment.id} of {amount} ({payment.provider}, {payment.status}) needs "
            f"review: {payment.review_reason}",
            "payment",
            payment.id,
            payment.id,
        )


def _webhook_events(session: Session, now: datetime, limit: int) -> Iterable[AttentionItem]:
    rows = session.exec(
        select(WebhookEvent)
        .where(col(WebhookEvent.status).in_([InboxStatus.DEAD.value, InboxStatus.UNMATCHED.value]))
        .order_by(col(WebhookEvent.received_at), col(WebhookEvent.id))
        .limit(limit)
    )
    for event in rows:
        what = f"{event.provider} {event.event_type} {event.event_id}"
        if event.status == InboxStatus.DEAD.value:
            kind = AttentionKind.DEAD_WEBHOOK
            error = f": {event.last_error.splitlines()[0][:200]}" if event.last_error else ""
            title = f"Webhook {what} failed {event.attempts} times and is dead{error}"
        else:
            kind = AttentionKind.UNMATCHED_CALLBACK
            title = f"Webhook {what} is about a payment Paydesk does not know"
        yield AttentionItem(
            kind, event.received_at, title, "webhook_event", str(event.id), event.payment_id
        )


def _statement_lines(session: Session, now: datetime, limit: int) -> Iterable[AttentionItem]:
    rows = session.exec(
        select(StatementLine)
        .where(col(StatementLine.status) == "unmatched")
        .order_by(col(StatementLine.created_at), col(StatementLine.id))
        .limit(limit)
    )
    for line in rows:
        amount = format_amount(line.amount_minor, line.currency)
        booked = f" booked {line.booked_on.isoformat()}" if line.booked_on else ""
        source = f" from {line.counterparty}" if line.counterparty else ""
        reference = f" (reference {line.reference!r})" if line.reference else ""
        yield AttentionItem(
            AttentionKind.UNMATCHED_STATEMENT_LINE,
            line.created_at,
            f"Bank credit of {amount}{booked}{source}{reference} matches no payment",
            "statement_line",
            str(line.id),
            None,
        )


_SOURCES: Final[tuple[Callable[[Session, datetime, int], Iterable[AttentionItem]], ...]] = (
    _refunds,
    _proofs,
    _disputes,
    _stuck_payments,
    _flagged_payments,
    _webhook_events,
    _statement_lines,
)


@guarded(Permission.VIEW_PAYMENTS)
def attention_queue(
    *,
    session: Session,
    actor: Actor,
    now: datetime | None = None,
    limit: int = DEFAULT_LIMIT,
) -> list[AttentionItem]:
    """What needs a person, oldest first, at most ``limit`` items (each kind is read with the
    same limit, so the oldest ``limit`` overall are always among what was read)."""
    now = now or utcnow()
    items = [item for source in _SOURCES for item in source(session, now, limit)]
    items.sort(key=lambda item: (item.since, item.kind.value, item.entity_id))
    return items[:limit]
