"""Apply stored webhook events to payments, refunds and disputes: idempotent, in any order.

Each inbox row is processed in two phases:

1. **Read** (no transaction open): the provider's facts are worked out from the stored body, and
   for providers whose webhooks are only hints (PostFinance, M-Pesa) read back from the provider
   API. A slow provider never holds a database lock.
2. **Apply** (one transaction): the inbox row is locked (``FOR UPDATE SKIP LOCKED`` on
   PostgreSQL; SQLite's single writer) and re-checked, the payment row is locked, the facts go
   through the same monotonic rules as every other change (``payments_core.status``), refunds and
   disputes are upserted by the provider's id, the timeline and audit log are written, and the row
   is marked processed, all in one commit. A worker that dies mid-event leaves nothing half done:
   the transaction rolls back and the event is still due.

Order independence comes from the rules, not from arrival order: statuses only move up their rank,
refund and dispute statuses likewise, amounts are recomputed from the refund and dispute rows, and
events that cannot be applied yet (a refund for a payment not captured yet, a dispute about a
payment not seen yet) are deferred and retried until they can.

Failures keep their error on the row and are retried with exponential backoff and jitter; after the
last attempt the event is dead, and ``replay`` makes it due again.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Protocol

from sqlalchemy import case, false, func, or_
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from payments_core.config import Settings, get_settings
from payments_core.db import read_engine, transaction
from payments_core.models import (
    Dispute,
    InboxStatus,
    Payment,
    Refund,
    WebhookEvent,
    new_id,
    utcnow,
)
from payments_core.money import format_amount
from payments_core.providers.base import (
    DisputeFacts,
    EventFacts,
    PaymentFacts,
    ProviderName,
    ProviderUnavailable,
    RefundFacts,
)
from payments_core.services.audit import record_audit
from payments_core.services.payments import add_timeline_event, apply_status, record_change
from payments_core.services.permissions import Actor, Permission, guarded
from payments_core.services.risk import apply_risk
from payments_core.status import (
    CAPTURED_PAYMENT_STATUSES,
    OPEN_DISPUTE_STATUSES,
    OPEN_REFUND_STATUSES,
    Decision,
    DisputeStatus,
    PaymentStatus,
    RefundStatus,
    decide_dispute,
    decide_refund,
)

DUE_STATUSES = (InboxStatus.PENDING.value, InboxStatus.FAILED.value)
# Providers whose signed (or read-back) facts may create a payment Paydesk has not seen.
CREATING_PROVIDERS = frozenset(
    {ProviderName.STRIPE.value, ProviderName.PAYSTACK.value, ProviderName.POSTFINANCE.value}
)


class Deferred(Exception):
    """The event cannot be applied yet (its payment is unknown or not captured): retry later."""


class Unmatched(Exception):
    """The event is about something we do not know and must not create: keep it, show it."""


class FactsReader(Protocol):
    """Turns a stored delivery into facts (reading the provider where its webhook is a hint)."""

    def __call__(self, event: WebhookEvent) -> EventFacts: ...


@dataclass(frozen=True, slots=True)
class Outcome:
    event_id: int
    status: InboxStatus
    detail: str = ""


@dataclass
class RoundResult:
    """What one ``process_due`` round did, by inbox status."""

    outcomes: list[Outcome] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.outcomes)


# --- Retry schedule ------------------------------------------------------------------------------


def retry_delay(attempt: int, settings: Settings, rng: random.Random | None = None) -> timedelta:
    """Exponential backoff with jitter: base * 2^(attempt-1), capped, times a factor in [0.5, 1]."""
    exponent = min(max(attempt - 1, 0), 30)
    ceiling = min(
        settings.webhook_retry_max_seconds, settings.webhook_retry_base_seconds * 2**exponent
    )
    jitter = (rng or random).uniform(0.5, 1.0)
    return timedelta(seconds=ceiling * jitter)


# --- Claiming ------------------------------------------------------------------------------------


def due_event_ids(*, engine: Engine, now: datetime, limit: int) -> list[int]:
    """Ids of events that are due, oldest first (a read; ``apply`` re-checks under a lock)."""
    with Session(read_engine(engine)) as session:
        statement = (
            select(WebhookEvent.id)
            .where(
                col(WebhookEvent.status).in_(DUE_STATUSES),
                col(WebhookEvent.next_attempt_at) <= now,
            )
            .order_by(col(WebhookEvent.next_attempt_at), col(WebhookEvent.id))
            .limit(limit)
        )
        return [event_id for event_id in session.exec(statement) if event_id is not None]


def _lock_due_event(session: Session, event_id: int, now: datetime) -> WebhookEvent | None:
    """The event row locked for this transaction, or None if another worker has it or it is done."""
    statement = select(WebhookEvent).where(
        col(WebhookEvent.id) == event_id,
        col(WebhookEvent.status).in_(DUE_STATUSES),
        col(WebhookEvent.next_attempt_at) <= now,
    )
    if session.get_bind().dialect.name == "postgresql":
        statement = statement.with_for_update(skip_locked=True)
    return session.exec(statement).one_or_none()


# --- Processing one event ------------------------------------------------------------------------


def process_event(
    *,
    engine: Engine,
    event_id: int,
    read_facts: FactsReader,
    now: datetime | None = None,
    settings: Settings | None = None,
    rng: random.Random | None = None,
) -> Outcome | None:
    """Process one due event; None when it was not due (done, or claimed by another worker)."""
    settings = settings or get_settings()
    now = now or utcnow()
    with Session(read_engine(engine)) as session:
        event = session.get(WebhookEvent, event_id)
        if event is None or event.status not in DUE_STATUSES:
            return None
        session.expunge(event)
    try:
        facts = read_facts(event)
    except ProviderUnavailable as exc:
        return _record_failure(engine, event_id, f"provider unavailable: {exc}", now, settings, rng)
    except Exception as exc:  # any bad body or bug: keep the error, retry, then dead
        return _record_failure(engine, event_id, _describe(exc), now, settings, rng)
    try:
        with transaction(engine) as session:
            locked = _lock_due_event(session, event_id, now)
            if locked is None:
                return None
            status, detail = _apply(session, locked, facts, now)
            locked.status = status.value
            locked.attempts += 1
            locked.last_error = detail if status is not InboxStatus.PROCESSED else None
            locked.processed_at = now
            locked.next_attempt_at = None
            session.add(locked)
            return Outcome(event_id, status, detail)
    except Deferred as exc:
        return _record_failure(
            engine, event_id, f"waiting: {exc}", now, settings, rng, deferred=True
        )
    except Exception as exc:  # the apply transaction rolled back; retry later
        return _record_failure(engine, event_id, _describe(exc), now, settings, rng)


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"[:2000]


def _record_failure(
    engine: Engine,
    event_id: int,
    error: str,
    now: datetime,
    settings: Settings,
    rng: random.Random | None,
    *,
    deferred: bool = False,
) -> Outcome | None:
    with transaction(engine) as session:
        event = _lock_due_event(session, event_id, now)
        if event is None:
            return None
        event.attempts += 1
        event.last_error = error
        if event.attempts >= settings.webhook_max_attempts:
            event.status = InboxStatus.DEAD.value
            event.next_attempt_at = None
            record_audit(
                session=session,
                actor="system:worker",
                action="webhook.dead",
                entity_type="webhook_event",
                entity_id=str(event_id),
                after={
                    "provider": event.provider,
                    "event_id": event.event_id,
                    "attempts": event.attempts,
                    "error": error[:500],
                },
                at=now,
            )
        else:
            # A deferred event is not broken, only early: it stays pending while it waits.
            event.status = InboxStatus.PENDING.value if deferred else InboxStatus.FAILED.value
            event.next_attempt_at = now + retry_delay(event.attempts, settings, rng)
        session.add(event)
        return Outcome(event_id, InboxStatus(event.status), error)


def process_due(
    *,
    engine: Engine,
    read_facts: FactsReader,
    now: datetime | None = None,
    limit: int | None = None,
    settings: Settings | None = None,
    rng: random.Random | None = None,
) -> RoundResult:
    """One round: process up to ``limit`` due events, oldest first."""
    settings = settings or get_settings()
    now = now or utcnow()
    result = RoundResult()
    for event_id in due_event_ids(
        engine=engine, now=now, limit=limit or settings.worker_batch_size
    ):
        outcome = process_event(
            engine=engine,
            event_id=event_id,
            read_facts=read_facts,
            now=now,
            settings=settings,
            rng=rng,
        )
        if outcome is not None:
            result.outcomes.append(outcome)
    return result


# --- Replay --------------------------------------------------------------------------------------


@guarded(Permission.REPLAY_WEBHOOKS)
def replay_as(
    *,
    session: Session,
    actor: Actor,
    event_ids: Sequence[int] | None = None,
    failed: bool = False,
    now: datetime | None = None,
) -> list[int]:
    """``replay`` for a person (dashboard, CLI ``--actor``): finance and up may replay."""
    return replay(session=session, actor=actor.name, event_ids=event_ids, failed=failed, now=now)


def replay(
    *,
    session: Session,
    actor: str,
    event_ids: Sequence[int] | None = None,
    failed: bool = False,
    now: datetime | None = None,
) -> list[int]:
    """Make events due again: the given ids (any state), or every failed/dead one. An event a
    worker is applying right now is waited for, not interrupted: both lock its row.

    Attempts start over; the previous error stays on the row until the next run replaces it.
    Replaying a processed event re-applies it, which changes nothing (every step is idempotent).
    """
    if (event_ids is None) == (not failed):
        raise ValueError("give event ids or failed=True, not both")
    now = now or utcnow()
    statement = select(WebhookEvent)
    if event_ids is not None:
        statement = statement.where(col(WebhookEvent.id).in_(list(event_ids)))
    else:
        statement = statement.where(
            col(WebhookEvent.status).in_([InboxStatus.FAILED.value, InboxStatus.DEAD.value])
        )
    events = list(session.exec(statement.order_by(col(WebhookEvent.id)).with_for_update()))
    if event_ids is not None:
        missing = sorted(set(event_ids) - {event.id for event in events if event.id is not None})
        if missing:
            raise LookupError(f"no webhook event with id {', '.join(map(str, missing))}")
    replayed: list[int] = []
    for event in events:
        assert event.id is not None
        before = {
            "status": event.status,
            "attempts": event.attempts,
            "last_error": event.last_error,
        }
        event.status = InboxStatus.PENDING.value
        event.attempts = 0
        event.next_attempt_at = now
        session.add(event)
        record_audit(
            session=session,
            actor=actor,
            action="webhook.replayed",
            entity_type="webhook_event",
            entity_id=str(event.id),
            before=before,
            after={"status": event.status, "provider": event.provider, "event_id": event.event_id},
            at=now,
        )
        replayed.append(event.id)
    return replayed


# --- Applying facts ------------------------------------------------------------------------------


def _apply(
    session: Session, event: WebhookEvent, facts: EventFacts, now: datetime
) -> tuple[InboxStatus, str]:
    if facts.payment is None:
        return InboxStatus.IGNORED, facts.summary or f"{event.event_type}: nothing to apply"
    source = f"{event.provider} webhook {event.event_id}"
    actor = f"provider:{event.provider}"
    try:
        payment = _resolve_payment(session, event, facts.payment, actor, now)
    except Unmatched as exc:
        return InboxStatus.UNMATCHED, str(exc)
    event.payment_id = payment.id
    mismatch = apply_facts(
        session, payment, facts, provider=event.provider, actor=actor, source=source, now=now
    )
    add_timeline_event(
        session=session,
        payment=payment,
        kind="webhook",
        actor=actor,
        summary=f"Webhook {event.event_type} ({event.event_id}) applied"
        + (f": {facts.summary}" if facts.summary else ""),
        data={"webhook_event_id": event.id, "verification": event.verification},
        at=now,
    )
    payment.updated_at = now
    session.add(payment)
    return (InboxStatus.PROCESSED, mismatch or "")  # the flag is on the payment, and here


def apply_facts(
    session: Session,
    payment: Payment,
    facts: EventFacts,
    *,
    provider: str,
    actor: str,
    source: str,
    now: datetime,
) -> str | None:
    """Apply what the provider says to a locked payment, by the same rules whatever brought the
    facts (a webhook, reconciliation): a mismatch flags the payment and, when blocking, changes
    nothing else; status moves only forward; refunds and disputes are upserted and the amounts
    recomputed. Returns the mismatch, if any."""
    assert facts.payment is not None
    _fill_missing(payment, facts.payment)
    mismatch, blocking = _mismatch(payment, facts)
    if mismatch:
        _flag(session, payment, mismatch, actor=actor, source=source, now=now)
    if not blocking and facts.payment.status is not None:
        apply_status(
            session=session,
            payment=payment,
            mapped=facts.payment.status,
            actor=actor,
            source=source,
            captured_minor=_captured(payment, facts.payment),
            at=now,
        )
        _raise_captured(payment, facts.payment)
    if not blocking:
        for refund in facts.refunds:
            _apply_refund(session, payment, refund, provider, actor, source, now)
        for dispute in facts.disputes:
            _apply_dispute(session, payment, dispute, actor, source, now)
        recompute_amounts(session, payment)
    apply_risk(session=session, payment=payment, now=now)
    return mismatch


def _lock(session: Session, payment_id: str) -> Payment | None:
    return session.exec(
        select(Payment).where(col(Payment.id) == payment_id).with_for_update()
    ).one_or_none()


def _find(session: Session, provider: str, facts: PaymentFacts) -> str | None:
    if facts.payment_id:
        found = session.exec(
            select(Payment.id).where(
                col(Payment.id) == facts.payment_id, col(Payment.provider) == provider
            )
        ).one_or_none()
        if found:
            return found
    references = [facts.reference, *facts.alt_references]
    rows = session.exec(
        select(Payment.id, Payment.provider_reference).where(
            col(Payment.provider) == provider, col(Payment.provider_reference).in_(references)
        )
    ).all()
    # Prefer the primary reference over an alternate one.
    for reference in references:
        for payment_id, provider_reference in rows:
            if provider_reference == reference:
                return payment_id
    return None


def _resolve_payment(
    session: Session, event: WebhookEvent, facts: PaymentFacts, actor: str, now: datetime
) -> Payment:
    if event.payment_id:  # M-Pesa: the callback URL's token named the payment
        payment = _lock(session, event.payment_id)
        if payment is None:
            raise Unmatched(f"payment {event.payment_id} no longer exists")
        if payment.provider_reference and payment.provider_reference != facts.reference:
            raise Unmatched(
                f"callback for checkout request {facts.reference}, but payment {payment.id} "
                f"is {payment.provider_reference}: not applied"
            )
        return payment
    payment_id = _find(session, event.provider, facts)
    if payment_id is None:
        if event.provider not in CREATING_PROVIDERS:
            raise Unmatched(f"no {event.provider} payment {facts.reference}: not applied")
        if not facts.complete:
            raise Deferred(f"{event.provider} payment {facts.reference} is not known yet")
        payment_id = _create_from_provider(session, event, facts, actor, now)
    payment = _lock(session, payment_id)
    if payment is None:  # deleted between find and lock: cannot happen without manual SQL
        raise Deferred(f"payment {payment_id} vanished")
    return payment


def _create_from_provider(
    session: Session, event: WebhookEvent, facts: PaymentFacts, actor: str, now: datetime
) -> str:
    """A payment first seen in a provider event (created directly with the provider).

    Inserted with ON CONFLICT DO NOTHING on (provider_reference, provider): two workers creating
    the same payment from two events end with one row, and both then apply to it.
    """
    if facts.amount_minor is None or facts.currency is None or facts.amount_minor <= 0:
        raise Deferred(f"{event.provider} payment {facts.reference}: amount unknown yet")
    payment_id = new_id("pay", at=now)
    values: dict[str, Any] = {
        "id": payment_id,
        "provider": event.provider,
        "provider_reference": facts.reference,
        "host_reference": facts.host_reference,
        "amount_minor": facts.amount_minor,
        "currency": facts.currency,
        "method": facts.method or "card",
        "customer_email": facts.customer_email,
        "customer_phone": facts.customer_phone,
        "customer_name": facts.customer_name,
        "description": facts.description,
        "livemode": bool(facts.livemode),
        "status": PaymentStatus.CREATED.value,
        "origin": "provider",
        "host_metadata": {},
        "created_at": facts.created_at or now,
        "updated_at": now,
        "status_changed_at": now,
    }
    insert = pg_insert if session.get_bind().dialect.name == "postgresql" else sqlite_insert
    inserted = (
        session.connection()
        .execute(
            insert(Payment)
            .values(**values)
            .on_conflict_do_nothing(index_elements=["provider_reference", "provider"])
            .returning(Payment.__table__.c.id)  # type: ignore[attr-defined]
        )
        .first()
    )
    if inserted is None:
        existing = _find(session, event.provider, facts)
        if existing is None:
            raise Deferred(f"{event.provider} payment {facts.reference} is being created")
        return existing
    payment = session.get(Payment, payment_id)
    assert payment is not None
    record_change(
        session=session,
        payment=payment,
        actor=actor,
        at=now,
        kind="created",
        summary=f"First seen in {event.provider} event {event.event_id} "
        f"({format_amount(facts.amount_minor, facts.currency)})",
        data={"webhook_event_id": event.id, "provider_reference": facts.reference},
        action="payment.created_from_provider",
        entity_type="payment",
        entity_id=payment_id,
        after={
            k: v
            for k, v in values.items()
            if k not in {"created_at", "updated_at", "status_changed_at"}
        }
        | {"webhook_event": event.event_id},
    )
    return payment_id


_FILLABLE = ("host_reference", "customer_email", "customer_phone", "customer_name", "description")


def _fill_missing(payment: Payment, facts: PaymentFacts) -> None:
    """Fields Paydesk does not know yet come from the provider; known ones never change."""
    for name in _FILLABLE:
        value = getattr(facts, name)
        if value and getattr(payment, name) is None:
            setattr(payment, name, value)
    if payment.provider_reference is None or (
        payment.provider_reference in facts.alt_references
        and payment.provider_reference != facts.reference
    ):
        # e.g. stored under its Checkout Session id, now known by its PaymentIntent id.
        payment.provider_reference = facts.reference
    if facts.livemode is not None:
        payment.livemode = facts.livemode


def _mismatch(payment: Payment, facts: EventFacts) -> tuple[str | None, bool]:
    """Why the event's money does not fit the payment (or None), and whether that blocks it.

    A payment Paydesk created is never moved by an event with another amount or currency (the
    customer may have paid the wrong amount: a person decides). A payment first seen at the
    provider has no amount of ours to hold against it: an amount that changed there (a
    PaymentIntent updated before payment) is flagged but applied. Another currency always blocks.
    """
    assert facts.payment is not None
    problems: list[str] = []
    blocking = False
    if facts.payment.currency is not None and facts.payment.currency != payment.currency:
        problems.append(f"currency {facts.payment.currency}, expected {payment.currency}")
        blocking = True
    elif (
        facts.payment.amount_minor is not None
        and facts.payment.amount_minor != payment.amount_minor
    ):
        problems.append(
            f"amount {format_amount(facts.payment.amount_minor, payment.currency)}, expected "
            f"{format_amount(payment.amount_minor, payment.currency)}"
        )
        blocking = payment.origin != "provider"
    for kind, currency in [("refund", r.currency) for r in facts.refunds] + [
        ("dispute", d.currency) for d in facts.disputes
    ]:
        if currency != payment.currency:
            problems.append(f"{kind} in {currency}, payment in {payment.currency}")
            blocking = True
    if not problems:
        return None, False
    outcome = "not applied" if blocking else "applied, check the amount"
    return f"{payment.provider} reports {'; '.join(problems)}: {outcome}", blocking


def _flag(
    session: Session, payment: Payment, reason: str, *, actor: str, source: str, now: datetime
) -> None:
    reason = reason[:500]
    if payment.review_reason == reason:
        return
    before = {"review_reason": payment.review_reason}
    payment.review_reason = reason
    record_change(
        session=session,
        payment=payment,
        actor=actor,
        at=now,
        kind="flag",
        summary=f"Flagged for review from {source}: {reason}",
        data={"source": source},
        action="payment.flagged",
        entity_type="payment",
        entity_id=payment.id,
        before=before,
        after={"review_reason": reason, "source": source},
    )


def _captured(payment: Payment, facts: PaymentFacts) -> int | None:
    if facts.captured_minor is None:
        return None
    return max(facts.captured_minor, payment.captured_minor)


def _raise_captured(payment: Payment, facts: PaymentFacts) -> None:
    """Captured money only grows (a later, larger capture figure wins whatever the order)."""
    if (
        facts.captured_minor is not None
        and payment.status_enum in CAPTURED_PAYMENT_STATUSES
        and facts.captured_minor > payment.captured_minor
    ):
        payment.captured_minor = facts.captured_minor


def _apply_refund(
    session: Session,
    payment: Payment,
    facts: RefundFacts,
    provider: str,
    actor: str,
    source: str,
    now: datetime,
) -> None:
    refund = session.exec(
        select(Refund)
        .where(
            col(Refund.payment_id) == payment.id,
            or_(
                col(Refund.provider_refund_id) == facts.provider_refund_id,
                (col(Refund.id) == facts.refund_id) if facts.refund_id else false(),
            ),
        )
        .with_for_update()
    ).first()
    if refund is None and provider == ProviderName.PAYSTACK.value:
        refund = _paystack_refund_by_amount(session, payment, facts)
    if refund is None:
        refund = Refund(
            id=new_id("rf", at=now),
            payment_id=payment.id,
            amount_minor=facts.amount_minor,
            currency=facts.currency,
            status=facts.status.value,
            reason=(facts.reason or "made at the provider")[:100],
            requested_by=actor,
            provider_refund_id=facts.provider_refund_id,
            idempotency_key=f"{provider}:{facts.provider_refund_id}",
            failure_reason=facts.failure_reason,
            created_at=now,
            updated_at=now,
            succeeded_at=now if facts.status is RefundStatus.SUCCEEDED else None,
        )
        session.add(refund)
        record_change(
            session=session,
            payment=payment,
            actor=actor,
            at=now,
            kind="refund",
            summary=f"Refund {format_amount(facts.amount_minor, facts.currency)} "
            f"{facts.status} (made at the provider, {facts.provider_refund_id}) from {source}",
            data={"refund_id": refund.id, "status": facts.status.value},
            action="refund.recorded_from_provider",
            entity_type="refund",
            entity_id=refund.id,
            after={
                "payment_id": payment.id,
                "amount_minor": facts.amount_minor,
                "currency": facts.currency,
                "status": facts.status.value,
                "provider_refund_id": facts.provider_refund_id,
                "source": source,
            },
        )
        session.flush()
        return
    if refund.provider_refund_id is None or (
        refund.provider_refund_id.isdigit() and not facts.provider_refund_id.isdigit()
    ):
        # Paystack names a refund by its numeric id until refund_reference exists: keep the latter.
        refund.provider_refund_id = facts.provider_refund_id
    transition = decide_refund(RefundStatus(refund.status), facts.status)
    if transition.decision is not Decision.APPLY:
        return
    before = {"status": refund.status, "failure_reason": refund.failure_reason}
    refund.status = facts.status.value
    refund.updated_at = now
    if facts.status is RefundStatus.SUCCEEDED:
        refund.succeeded_at = refund.succeeded_at or now
    if facts.failure_reason:
        refund.failure_reason = facts.failure_reason[:500]
    session.add(refund)
    record_change(
        session=session,
        payment=payment,
        actor=actor,
        at=now,
        kind="refund",
        summary=f"Refund {refund.id} {format_amount(refund.amount_minor, refund.currency)}: "
        f"{transition.explanation} from {source}",
        data={"refund_id": refund.id, "status": refund.status},
        action="refund.status_changed",
        entity_type="refund",
        entity_id=refund.id,
        before=before,
        after={"status": refund.status, "failure_reason": refund.failure_reason, "source": source},
    )
    session.flush()


def _paystack_refund_by_amount(
    session: Session, payment: Payment, facts: RefundFacts
) -> Refund | None:
    """The refund a Paystack event means when its id does not match a stored one.

    Paystack sends no stable refund id: pending and processing events carry only the numeric
    ``id`` (``refund_reference`` is null until processed), the refund API answers with the id, and
    later events carry ``refund_reference``. So an event whose id is of the other kind than a
    stored refund's, on the same payment and for the same amount, is that refund, provided there
    is exactly one such candidate; otherwise a new refund row is made (and amounts are checked).
    """
    numeric = facts.provider_refund_id.isdigit()
    candidates = [
        refund
        for refund in session.exec(
            select(Refund)
            .where(
                col(Refund.payment_id) == payment.id,
                col(Refund.amount_minor) == facts.amount_minor,
                col(Refund.currency) == facts.currency,
            )
            .with_for_update()
        )
        if refund.provider_refund_id is None or refund.provider_refund_id.isdigit() != numeric
    ]
    return candidates[0] if len(candidates) == 1 else None


def _apply_dispute(
    session: Session,
    payment: Payment,
    facts: DisputeFacts,
    actor: str,
    source: str,
    now: datetime,
) -> None:
    dispute = session.exec(
        select(Dispute)
        .where(
            col(Dispute.payment_id) == payment.id,
            col(Dispute.provider_dispute_id) == facts.provider_dispute_id,
        )
        .with_for_update()
    ).one_or_none()
    if dispute is None:
        dispute = Dispute(
            id=new_id("dp", at=now),
            payment_id=payment.id,
            provider_dispute_id=facts.provider_dispute_id,
            amount_minor=facts.amount_minor,
            currency=facts.currency,
            status=facts.status.value,
            reason=facts.reason,
            evidence_due_at=facts.evidence_due_at,
            closed_at=None if facts.status in OPEN_DISPUTE_STATUSES else now,
            created_at=now,
            updated_at=now,
        )
        session.add(dispute)
        summary = (
            f"Dispute {facts.provider_dispute_id} opened: "
            f"{format_amount(facts.amount_minor, facts.currency)}, {facts.status}"
            + (f", reason {facts.reason}" if facts.reason else "")
        )
        before: dict[str, Any] | None = None
    else:
        transition = decide_dispute(DisputeStatus(dispute.status), facts.status)
        if dispute.evidence_due_at is None and facts.evidence_due_at is not None:
            dispute.evidence_due_at = facts.evidence_due_at
        if transition.decision is not Decision.APPLY:
            session.add(dispute)
            return
        before = {"status": dispute.status}
        dispute.status = facts.status.value
        dispute.updated_at = now
        if facts.status not in OPEN_DISPUTE_STATUSES:
            dispute.closed_at = dispute.closed_at or now
        session.add(dispute)
        summary = f"Dispute {facts.provider_dispute_id}: {transition.explanation}"
    record_change(
        session=session,
        payment=payment,
        actor=actor,
        at=now,
        kind="dispute",
        summary=f"{summary} from {source}",
        data={"dispute_id": dispute.id, "status": dispute.status},
        action="dispute.opened" if before is None else "dispute.status_changed",
        entity_type="dispute",
        entity_id=dispute.id,
        before=before,
        after={"status": dispute.status, "amount_minor": dispute.amount_minor, "source": source},
    )
    session.flush()


_OPEN_REFUNDS = [status.value for status in OPEN_REFUND_STATUSES]
_DISPUTED = [status.value for status in (*OPEN_DISPUTE_STATUSES, DisputeStatus.LOST)]


def disputed_minor(session: Session, payment_id: str) -> int:
    """What counts as disputed on a payment: the sum of its open and lost disputes."""
    disputed = session.exec(
        select(func.coalesce(func.sum(Dispute.amount_minor), 0)).where(
            col(Dispute.payment_id) == payment_id, col(Dispute.status).in_(_DISPUTED)
        )
    ).one()
    return int(disputed)


def recompute_amounts(session: Session, payment: Payment) -> None:
    """Refunded, in-flight and disputed amounts, summed from their rows (order-independent)."""
    session.flush()
    succeeded = col(Refund.status) == RefundStatus.SUCCEEDED.value
    in_flight = col(Refund.status).in_(_OPEN_REFUNDS)
    refunded, pending = session.exec(
        select(
            func.coalesce(func.sum(case((succeeded, Refund.amount_minor), else_=0)), 0),
            func.coalesce(func.sum(case((in_flight, Refund.amount_minor), else_=0)), 0),
        ).where(col(Refund.payment_id) == payment.id)
    ).one()
    disputed = disputed_minor(session, payment.id)
    if int(refunded) + int(pending) > payment.captured_minor:
        raise Deferred(
            f"refunds of {format_amount(int(refunded) + int(pending), payment.currency)} on "
            f"payment {payment.id}, which has "
            f"{format_amount(payment.captured_minor, payment.currency)} captured so far"
        )
    payment.refunded_minor = int(refunded)
    payment.refund_pending_minor = int(pending)
    payment.disputed_minor = int(disputed)
