"""Reconciliation: payments still open past their provider's expected time are read back from the
provider and advanced by the same rules as webhooks (``processing.apply_facts``).

Each payment is read outside any transaction, then applied in its own transaction with the
payment row locked, so a webhook arriving meanwhile is serialized with it and the monotonic rules
decide. The report says what changed and, for what does not agree, why: the provider does not
know the payment, it reports a status ours outranks (statuses never move back), an amount or
currency that differs, or the provider could not be asked.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlmodel import Session, col, or_, select

from payments_core.models import Payment, utcnow
from payments_core.models.payments import OPEN_STATUSES
from payments_core.providers.base import (
    EventFacts,
    ProviderEntityNotFound,
    ProviderError,
    ProviderName,
)
from payments_core.providers.registry import (
    CAPABILITIES,
    EXPECTED_SECONDS,
    Adapters,
    Capability,
)
from payments_core.services.payments import lock_payment, record_change
from payments_core.services.processing import apply_facts
from payments_core.status import Decision, decide_payment

ACTOR = "system:reconcile"
Transaction = Callable[[], AbstractContextManager[Session]]


@dataclass(frozen=True, slots=True)
class ReconcileLine:
    payment_id: str
    provider: str
    provider_reference: str | None
    before: str
    after: str
    provider_state: str | None = None
    disagreement: str | None = None
    error: str | None = None

    @property
    def changed(self) -> bool:
        return self.before != self.after


@dataclass
class ReconcileReport:
    started_at: datetime
    lines: list[ReconcileLine] = field(default_factory=list)

    @property
    def changed(self) -> list[ReconcileLine]:
        return [line for line in self.lines if line.changed]

    @property
    def disagreements(self) -> list[ReconcileLine]:
        return [line for line in self.lines if line.disagreement]

    @property
    def errors(self) -> list[ReconcileLine]:
        return [line for line in self.lines if line.error]

    def render(self) -> str:
        out = [
            f"reconciled {len(self.lines)} payment(s): {len(self.changed)} changed, "
            f"{len(self.disagreements)} disagree, {len(self.errors)} could not be read"
        ]
        for line in self.lines:
            what = f"{line.before} -> {line.after}" if line.changed else f"still {line.after}"
            state = f" (provider: {line.provider_state})" if line.provider_state else ""
            out.append(f"  {line.payment_id} {line.provider} {what}{state}")
            if line.disagreement:
                out.append(f"    disagrees: {line.disagreement}")
            if line.error:
                out.append(f"    not read: {line.error}")
        return "\n".join(out)


def _providers_with_status() -> list[ProviderName]:
    return [p for p, caps in CAPABILITIES.items() if Capability.STATUS in caps]


def due_payments(
    *, session: Session, now: datetime, older_than: timedelta | None, limit: int = 500
) -> list[Payment]:
    """Open payments with a provider reference, unchanged for longer than their provider's
    expected time (or ``older_than`` for all), oldest first."""
    conditions = []
    for provider in _providers_with_status():
        age = older_than or timedelta(seconds=EXPECTED_SECONDS.get(provider, 900))
        conditions.append(
            (col(Payment.provider) == provider.value)
            & (col(Payment.status_changed_at) <= now - age)
        )
    if not conditions:
        return []
    return list(
        session.exec(
            select(Payment)
            .where(
                col(Payment.status).in_([s.value for s in OPEN_STATUSES]),
                col(Payment.provider_reference).is_not(None),
                or_(*conditions),
            )
            .order_by(col(Payment.status_changed_at))
            .limit(limit)
        ).all()
    )


def reconcile(
    *,
    transaction: Transaction,
    adapters: Adapters,
    older_than: timedelta | None = None,
    now: datetime | None = None,
    limit: int = 500,
) -> ReconcileReport:
    now = now or utcnow()
    report = ReconcileReport(started_at=now)
    with transaction() as session:
        due = [
            (p.id, p.provider, p.provider_reference, p.status)
            for p in due_payments(session=session, now=now, older_than=older_than, limit=limit)
        ]
    for payment_id, provider, reference, status in due:
        assert reference is not None
        try:
            facts = adapters.status(provider).fetch_payment(reference)
        except ProviderEntityNotFound as exc:
            report.lines.append(
                _not_known(transaction, payment_id, provider, reference, status, str(exc), now)
            )
            continue
        except ProviderError as exc:
            report.lines.append(
                ReconcileLine(payment_id, provider, reference, status, status, error=str(exc))
            )
            continue
        report.lines.append(_apply(transaction, payment_id, provider, reference, facts, now))
    return report


def _apply(
    transaction: Transaction,
    payment_id: str,
    provider: str,
    reference: str,
    facts: EventFacts,
    now: datetime,
) -> ReconcileLine:
    with transaction() as session:
        payment = lock_payment(session=session, payment_id=payment_id)
        before = payment.status_enum
        if facts.payment is None:
            payment.reconciled_at = now
            session.add(payment)
            return ReconcileLine(
                payment_id,
                provider,
                reference,
                before.value,
                before.value,
                disagreement="the provider's answer says nothing about this payment",
            )
        mismatch = apply_facts(
            session,
            payment,
            facts,
            provider=provider,
            actor=ACTOR,
            source="reconciliation",
            now=now,
        )
        payment.reconciled_at = now
        session.add(payment)
        said = facts.payment.status
        disagreement = mismatch
        if said is not None and disagreement is None:
            decision = decide_payment(before, said.status).decision
            if decision is Decision.STALE:
                disagreement = (
                    f"the provider says {said.status} ({said.provider_state}) but Paydesk has "
                    f"{before}, which a status never leaves for that one; check the provider's "
                    "dashboard"
                )
        return ReconcileLine(
            payment_id,
            provider,
            reference,
            before.value,
            payment.status,
            provider_state=said.provider_state if said else None,
            disagreement=disagreement,
        )


def _not_known(
    transaction: Transaction,
    payment_id: str,
    provider: str,
    reference: str,
    status: str,
    detail: str,
    now: datetime,
) -> ReconcileLine:
    reason = f"{provider} does not know {reference} ({detail})"
    with transaction() as session:
        payment = lock_payment(session=session, payment_id=payment_id)
        payment.reconciled_at = now
        session.add(payment)
        record_change(
            session=session,
            payment=payment,
            actor=ACTOR,
            at=now,
            kind="note",
            summary=f"Reconciliation: {reason}",
            action="payment.reconcile_disagreement",
            entity_type="payment",
            entity_id=payment.id,
            after={"reason": reason},
        )
    return ReconcileLine(payment_id, provider, reference, status, status, disagreement=reason)
