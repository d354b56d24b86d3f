"""Refunds: requested by finance, approved by a second person above a threshold, executed through
the provider with a key stored before the call, and finished by the provider's answer or webhooks.

::

    request ──┬─ below the threshold ────────────────────────> processing ──┬─> succeeded
              └─ at/above it -> pending_approval ── approve ──┘             ├─> failed (declined:
                                                 └─ reject ─> rejected      │   amount freed)
                                                                            └─> needs_attention
                                                                                (outcome unknown:
                                                                                 retry, same key)

Money: a refund's amount counts against its payment from the moment it is requested
(``refund_pending_minor``, summed from the refund rows by the same recompute webhook processing
uses), with the payment row locked, so concurrent requests can never together exceed what was
captured; the database CHECK ``refunds_within_captured`` backs that up. Rejection and failure free
the amount; success moves it to ``refunded_minor``.

Execution has three steps, like starting a checkout: (1) claim the refund in a short transaction
that locks it (``execution_started_at``, ``attempts += 1``): only a ``processing`` refund that is
not claimed and has no provider answer can be claimed, so two executors never call the provider for
one refund; (2) call the adapter outside any transaction with the refund's stored idempotency key;
(3) record the answer in a new transaction. ``retry_refund`` claims a ``needs_attention`` refund
again (or one whose executor died after claiming it) and sends the same key, which the adapters
make safe (Stripe replays its stored answer; Paystack looks for the refund before sending).

Manual payments (bank transfer, cash) are refunded outside Paydesk: they are recorded as offline
refunds with the transfer's or receipt's reference, succeeded at once (after approval when at or
above the threshold).

Every change writes the payment timeline and the audit log in its transaction. Locks are always
taken payment first, then refund, as webhook processing does, so the two never deadlock.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Final

from sqlmodel import Session, col, select

from payments_core.config import Settings, get_settings
from payments_core.models import Payment, Refund, new_id, utcnow
from payments_core.money import MoneyError, format_amount, normalize_currency
from payments_core.providers.base import (
    OperationNotSupported,
    ProviderDeclined,
    ProviderError,
    ProviderName,
    RefundRequest,
)
from payments_core.providers.registry import Adapters, Capability, supports
from payments_core.services.checkout import Transaction
from payments_core.services.payments import record_change
from payments_core.services.permissions import Actor, Permission, guarded
from payments_core.services.processing import recompute_amounts
from payments_core.status import CAPTURED_PAYMENT_STATUSES, RefundStatus, decide_refund

# Who the timeline names for steps no person takes (calling the provider, recording its answer).
EXECUTOR: Final = "system:refunds"
# A claim this old with no answer recorded means its executor died: the refund may be retried.
STALE_CLAIM: Final = timedelta(minutes=15)
MAX_REASON: Final = 100
MAX_NOTE: Final = 1000
MAX_REFERENCE: Final = 255
MAX_REJECTION: Final = 500


class RefundError(ValueError):
    """A refund action that cannot be done; ``field`` names the input at fault."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field
        self.message = message


class RefundNotFoundError(LookupError):
    def __init__(self, refund_id: str) -> None:
        super().__init__(f"no refund {refund_id!r}")
        self.refund_id = refund_id


def refund_key(refund_id: str) -> str:
    """The idempotency key a refund's provider call carries (letters, digits and '-' only)."""
    return f"paydesk-{refund_id.replace('_', '-')}-refund"


# --- Reading and locking -------------------------------------------------------------------------


def _lock_payment(session: Session, payment_id: str) -> Payment | None:
    # populate_existing: a Payment the caller loaded earlier in this session is refreshed under
    # the lock rather than trusted.
    return session.exec(
        select(Payment)
        .where(col(Payment.id) == payment_id)
        .with_for_update()
        .execution_options(populate_existing=True)
    ).one_or_none()


def _lock_refund(session: Session, refund_id: str) -> tuple[Payment, Refund]:
    """The refund and its payment, both locked (payment first)."""
    payment_id = session.exec(
        select(Refund.payment_id).where(col(Refund.id) == refund_id)
    ).one_or_none()
    if payment_id is None:
        raise RefundNotFoundError(refund_id)
    payment = _lock_payment(session, payment_id)
    assert payment is not None  # the foreign key guarantees it
    refund = session.exec(
        select(Refund)
        .where(col(Refund.id) == refund_id)
        .with_for_update()
        .execution_options(populate_existing=True)
    ).one()
    return payment, refund


def refunds_awaiting_approval(*, session: Session) -> list[Refund]:
    """Requests waiting for a manager, oldest first."""
    return list(
        session.exec(
            select(Refund)
            .where(col(Refund.status) == RefundStatus.PENDING_APPROVAL.value)
            .order_by(col(Refund.created_at), col(Refund.id))
        )
    )


def refunds_for_payment(*, session: Session, payment_id: str) -> list[Refund]:
    """A payment's refunds, oldest first."""
    return list(
        session.exec(
            select(Refund)
            .where(col(Refund.payment_id) == payment_id)
            .order_by(col(Refund.created_at), col(Refund.id))
        )
    )


# Most rows the history shows at once (newest first).
HISTORY_LIMIT: Final = 200


@guarded(Permission.VIEW_PAYMENTS)
def recent_refunds(
    *, session: Session, actor: Actor, status: str | None = None, limit: int = 100
) -> list[Refund]:
    """The newest refunds, optionally only those in one ``status`` (the dashboard's history)."""
    query = select(Refund)
    if status is not None:
        known = [s.value for s in RefundStatus]
        if status not in known:
            raise RefundError(
                "status", f"unknown refund status {status!r} (one of {', '.join(known)})"
            )
        query = query.where(col(Refund.status) == status)
    limit = max(1, min(limit, HISTORY_LIMIT))
    return list(
        session.exec(
            query.order_by(col(Refund.created_at).desc(), col(Refund.id).desc()).limit(limit)
        )
    )


# --- Describing ----------------------------------------------------------------------------------


def _money(amount_minor: int, currency: str) -> str:
    return format_amount(amount_minor, currency)


def _snapshot(refund: Refund) -> dict[str, Any]:
    return {
        "status": refund.status,
        "amount_minor": refund.amount_minor,
        "currency": refund.currency,
        "decided_by": refund.decided_by,
        "provider_refund_id": refund.provider_refund_id,
        "failure_reason": refund.failure_reason,
        "attempts": refund.attempts,
    }


def _amounts(payment: Payment) -> dict[str, Any]:
    return {
        "captured_minor": payment.captured_minor,
        "refunded_minor": payment.refunded_minor,
        "refund_pending_minor": payment.refund_pending_minor,
    }


def _record(
    session: Session,
    payment: Payment,
    refund: Refund,
    *,
    actor: str,
    at: datetime,
    action: str,
    summary: str,
    before: dict[str, Any] | None,
) -> None:
    recompute_amounts(session, payment)
    payment.updated_at = at
    session.add(payment)
    record_change(
        session=session,
        payment=payment,
        actor=actor,
        at=at,
        kind="refund",
        summary=summary,
        # The refund's statuses go in data: from/to_status on the timeline are the payment's.
        data={
            "refund_id": refund.id,
            "from": before["status"] if before else None,
            "status": refund.status,
            **_amounts(payment),
        },
        action=action,
        entity_type="refund",
        entity_id=refund.id,
        before=before,
        after=_snapshot(refund) | {"payment_id": payment.id},
    )


# --- Requesting ----------------------------------------------------------------------------------


def _text(value: str | None, field: str, limit: int, *, missing: str | None = None) -> str | None:
    text = value.strip() if isinstance(value, str) else None
    if not text:
        if missing is not None:
            raise RefundError(field, missing)
        return None
    if len(text) > limit:
        raise RefundError(field, f"at most {limit} characters")
    return text


def _refund_window_check(payment: Payment, settings: Settings, now: datetime) -> None:
    days = settings.refund_window(payment.provider)
    paid_at = payment.paid_at or payment.status_changed_at
    closed_at = paid_at + timedelta(days=days)
    if now > closed_at:
        raise RefundError(
            "payment",
            f"paid on {paid_at:%Y-%m-%d}, outside the {days}-day refund window for "
            f"{payment.provider} payments (it closed on {closed_at:%Y-%m-%d})",
        )


def _refund_route(payment: Payment, offline_reference: str | None) -> bool:
    """Whether the refund is offline (manual payments), or why the payment cannot be refunded."""
    if payment.status_enum not in CAPTURED_PAYMENT_STATUSES or payment.captured_minor <= 0:
        raise RefundError(
            "payment",
            f"payment {payment.id} is {payment.status}: only a captured payment can be refunded",
        )
    provider = payment.provider
    if provider == ProviderName.MANUAL.value:
        if offline_reference is None:
            raise RefundError(
                "offline_reference",
                "a manual payment is refunded outside Paydesk (bank transfer, cash): give the "
                "reference of that transfer or receipt",
            )
        return True
    if offline_reference is not None:
        raise RefundError(
            "offline_reference",
            f"{provider} payments are refunded through {provider}; an offline reference is only "
            "for manual payments",
        )
    if not supports(provider, Capability.REFUND):
        raise RefundError(
            "payment",
            f"{provider} payments cannot be refunded through Paydesk: return the money at "
            f"{provider} directly",
        )
    if not payment.provider_reference:
        raise RefundError(
            "payment",
            f"payment {payment.id} has no {provider} reference yet, so {provider} cannot be "
            "asked to refund it",
        )
    return False


@guarded(Permission.REQUEST_REFUND)
def request_refund(
    *,
    session: Session,
    actor: Actor,
    payment_id: str,
    amount_minor: int,
    currency: str,
    reason: str,
    note: str | None = None,
    offline_reference: str | None = None,
    settings: Settings | None = None,
) -> Refund:
    """Ask for a full or partial refund. At or above the currency's approval threshold it waits
    for a manager (``pending_approval``); below it, it is due for execution (``processing``) or,
    for a manual payment, recorded as an offline refund (``succeeded``). Its amount counts as in
    flight at once. Refused with ``RefundError`` (nothing written) when it cannot be done."""
    settings = settings or get_settings()
    reason_text = _text(reason, "reason", MAX_REASON, missing="give a reason for the refund")
    assert reason_text is not None
    note_text = _text(note, "note", MAX_NOTE)
    reference = _text(offline_reference, "offline_reference", MAX_REFERENCE)
    if isinstance(amount_minor, bool) or not isinstance(amount_minor, int):
        raise RefundError("amount", "must be a whole number of minor units")
    if amount_minor <= 0:
        raise RefundError("amount", "must be greater than zero")
    try:
        code = normalize_currency(currency)
    except (MoneyError, TypeError) as exc:
        raise RefundError("currency", str(exc)) from None
    payment = _lock_payment(session, payment_id)
    if payment is None:
        raise RefundError("payment", f"no payment {payment_id!r}")
    if code != payment.currency:
        raise RefundError(
            "currency",
            f"payment {payment.id} is in {payment.currency}: a refund in {code} is not possible",
        )
    offline = _refund_route(payment, reference)
    now = utcnow()
    _refund_window_check(payment, settings, now)
    recompute_amounts(session, payment)
    # Money under dispute goes back through the chargeback (or is fought): refunding it as well
    # would return it twice.
    refundable = max(0, payment.refundable_minor - payment.disputed_minor)
    if amount_minor > refundable:
        disputed = (
            f", disputed {_money(payment.disputed_minor, code)}" if payment.disputed_minor else ""
        )
        raise RefundError(
            "amount",
            f"{_money(amount_minor, code)} is more than the {_money(refundable, code)} left to "
            f"refund (captured {_money(payment.captured_minor, code)}, refunded "
            f"{_money(payment.refunded_minor, code)}, in flight "
            f"{_money(payment.refund_pending_minor, code)}{disputed})",
        )

    threshold = settings.refund_approval_threshold(code)
    if amount_minor >= threshold:
        status = RefundStatus.PENDING_APPROVAL
    elif offline:
        status = RefundStatus.SUCCEEDED
    else:
        status = RefundStatus.PROCESSING
    refund_id = new_id("rf", at=now)
    refund = Refund(
        id=refund_id,
        payment_id=payment.id,
        amount_minor=amount_minor,
        currency=code,
        status=status.value,
        reason=reason_text,
        note=note_text,
        requested_by=actor.name,
        idempotency_key=refund_key(refund_id),
        offline=offline,
        offline_reference=reference,
        created_at=now,
        updated_at=now,
        succeeded_at=now if status is RefundStatus.SUCCEEDED else None,
    )
    session.add(refund)
    what = "Offline refund" if offline else "Refund"
    if status is RefundStatus.PENDING_APPROVAL:
        outcome = f"waits for a manager's approval (threshold {_money(threshold, code)})"
    elif offline:
        outcome = f"recorded as paid back outside Paydesk (reference {reference})"
    else:
        outcome = f"to be sent to {payment.provider}"
    _record(
        session,
        payment,
        refund,
        actor=actor.name,
        at=now,
        action="refund.requested",
        summary=f"{what} of {_money(amount_minor, code)} requested by {actor.name} "
        f"({reason_text}): {outcome}",
        before=None,
    )
    return refund


# --- Deciding ------------------------------------------------------------------------------------


def _check_decidable(refund: Refund, actor: Actor, verb: str) -> None:
    if refund.status != RefundStatus.PENDING_APPROVAL.value:
        raise RefundError(
            "refund",
            f"refund {refund.id} is {refund.status}: only a refund waiting for approval can be "
            f"{verb}d",
        )
    if refund.requested_by.strip().lower() == actor.name.strip().lower():
        raise RefundError(
            "refund",
            f"{actor.name} requested refund {refund.id} and cannot {verb} it: another manager "
            "must decide",
        )


@guarded(Permission.APPROVE_REFUND)
def approve_refund(*, session: Session, actor: Actor, refund_id: str) -> Refund:
    """A manager other than the requester approves: the refund is due for execution
    (``processing``), or for an offline refund, recorded as paid back (``succeeded``)."""
    payment, refund = _lock_refund(session, refund_id)
    _check_decidable(refund, actor, "approve")
    now = utcnow()
    before = _snapshot(refund)
    refund.decided_by = actor.name
    refund.decided_at = now
    refund.updated_at = now
    if refund.offline:
        refund.status = RefundStatus.SUCCEEDED.value
        refund.succeeded_at = now
        outcome = f"recorded as paid back outside Paydesk (reference {refund.offline_reference})"
    else:
        refund.status = RefundStatus.PROCESSING.value
        outcome = f"to be sent to {payment.provider}"
    session.add(refund)
    _record(
        session,
        payment,
        refund,
        actor=actor.name,
        at=now,
        action="refund.approved",
        summary=f"Refund {refund.id} of {_money(refund.amount_minor, refund.currency)} approved "
        f"by {actor.name}: {outcome}",
        before=before,
    )
    return refund


@guarded(Permission.APPROVE_REFUND)
def reject_refund(*, session: Session, actor: Actor, refund_id: str, reason: str) -> Refund:
    """A manager other than the requester rejects, saying why; the amount is freed."""
    why = _text(reason, "reason", MAX_REJECTION, missing="say why the refund is rejected")
    payment, refund = _lock_refund(session, refund_id)
    _check_decidable(refund, actor, "reject")
    now = utcnow()
    before = _snapshot(refund)
    refund.status = RefundStatus.REJECTED.value
    refund.decided_by = actor.name
    refund.decided_at = now
    refund.rejection_reason = why
    refund.updated_at = now
    session.add(refund)
    _record(
        session,
        payment,
        refund,
        actor=actor.name,
        at=now,
        action="refund.rejected",
        summary=f"Refund {refund.id} of {_money(refund.amount_minor, refund.currency)} rejected "
        f"by {actor.name}: {why}",
        before=before,
    )
    return refund


# --- Executing -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Claim:
    refund: Refund
    provider: str
    request: RefundRequest


def _due(refund: Refund) -> bool:
    """Approved (or below the threshold), not offline, not claimed, no provider answer yet."""
    return (
        refund.status == RefundStatus.PROCESSING.value
        and not refund.offline
        and refund.execution_started_at is None
        and refund.provider_refund_id is None
    )


def _retryable(refund: Refund, now: datetime) -> bool:
    if refund.offline:
        return False
    if refund.status == RefundStatus.NEEDS_ATTENTION.value:
        return True
    return (
        refund.status == RefundStatus.PROCESSING.value
        and refund.provider_refund_id is None
        and refund.execution_started_at is not None
        and refund.execution_started_at < now - STALE_CLAIM
    )


def _start(
    session: Session,
    payment: Payment,
    refund: Refund,
    *,
    actor: str,
    now: datetime,
    action: str,
    summary: str,
    before: dict[str, Any],
) -> _Claim:
    """Claim the locked refund for one provider call and say so on the timeline."""
    refund.execution_started_at = now
    refund.attempts += 1
    refund.updated_at = now
    session.add(refund)
    _record(
        session,
        payment,
        refund,
        actor=actor,
        at=now,
        action=action,
        summary=f"{summary} (attempt {refund.attempts}, key {refund.idempotency_key})",
        before=before,
    )
    request = RefundRequest(
        refund_id=refund.id,
        payment_id=payment.id,
        # The request refuses payments without one; an empty one is declined by the adapter.
        provider_reference=payment.provider_reference or "",
        amount_minor=refund.amount_minor,
        currency=refund.currency,
        idempotency_key=refund.idempotency_key,
        reason=refund.reason,
        captured_minor=payment.captured_minor,
    )
    return _Claim(refund, payment.provider, request)


@dataclass(frozen=True, slots=True)
class _Answer:
    status: RefundStatus
    provider_refund_id: str | None = None
    failure_reason: str | None = None
    error: str | None = None  # the exception's type, when the call raised


def _call(adapters: Adapters, claim: _Claim) -> _Answer:
    try:
        result = adapters.refunds(claim.provider).refund(claim.request)
    except (ProviderDeclined, OperationNotSupported) as exc:
        # Refused: nothing happened at the provider and the same request would be refused again.
        return _Answer(RefundStatus.FAILED, failure_reason=str(exc), error=type(exc).__name__)
    except ProviderError as exc:
        # May have happened (or nothing happened yet, e.g. not configured): a person looks, and
        # a retry sends the same key.
        return _Answer(
            RefundStatus.NEEDS_ATTENTION, failure_reason=str(exc), error=type(exc).__name__
        )
    except Exception as exc:  # a bug after the request may have left: keep it on the refund
        return _Answer(
            RefundStatus.NEEDS_ATTENTION,
            failure_reason=f"{type(exc).__name__}: {exc}",
            error=type(exc).__name__,
        )
    return _Answer(result.status, result.provider_refund_id, result.failure_reason)


def _record_answer(session: Session, refund_id: str, provider: str, answer: _Answer) -> Refund:
    payment, refund = _lock_refund(session, refund_id)
    now = utcnow()
    before = _snapshot(refund)
    if answer.provider_refund_id and refund.provider_refund_id is None:
        refund.provider_refund_id = answer.provider_refund_id
    # A webhook may have got here first (it names our refund id): the rank rules keep the later
    # state whichever order they come in.
    transition = decide_refund(RefundStatus(refund.status), answer.status)
    if transition.applies:
        refund.status = answer.status.value
        if answer.status is RefundStatus.SUCCEEDED:
            refund.succeeded_at = refund.succeeded_at or now
            refund.failure_reason = None
        elif answer.failure_reason or answer.status is not RefundStatus.PROCESSING:
            refund.failure_reason = (answer.failure_reason or f"{provider}: {answer.status}")[:500]
    refund.updated_at = now
    session.add(refund)
    money = _money(refund.amount_minor, refund.currency)
    if answer.error is None:
        said = f"{provider} answered {answer.status}"
        if answer.provider_refund_id:
            said += f" ({answer.provider_refund_id})"
        action = "refund.provider_answered"
    elif answer.status is RefundStatus.FAILED:
        said = f"{provider} refused it: {answer.failure_reason}; the amount is free again"
        action = "refund.provider_refused"
    else:
        said = (
            f"outcome unknown ({answer.failure_reason}); retrying sends the same key "
            f"{refund.idempotency_key}"
        )
        action = "refund.outcome_unknown"
    _record(
        session,
        payment,
        refund,
        actor=EXECUTOR,
        at=now,
        action=action,
        summary=f"Refund {refund.id} of {money}: {said} -> {transition.explanation}",
        before=before,
    )
    return refund


def _run(transaction: Transaction, adapters: Adapters, claim: _Claim) -> Refund:
    answer = _call(adapters, claim)
    with transaction() as session:
        return _record_answer(session, claim.refund.id, claim.provider, answer)


def execute_refund(*, transaction: Transaction, adapters: Adapters, refund_id: str) -> Refund:
    """Send a refund that is due (approved, or below the threshold) to its provider, once.

    Called after the request or approval is committed. A refund that is not due (waiting for
    approval, offline, already claimed or answered, finished) is returned unchanged."""
    with transaction() as session:
        payment, refund = _lock_refund(session, refund_id)
        if not _due(refund):
            return refund
        claim = _start(
            session,
            payment,
            refund,
            actor=EXECUTOR,
            now=utcnow(),
            action="refund.sent",
            summary=f"Refund {refund.id} of {_money(refund.amount_minor, refund.currency)} sent "
            f"to {payment.provider}",
            before=_snapshot(refund),
        )
    return _run(transaction, adapters, claim)


@guarded(Permission.REQUEST_REFUND)
def retry_refund(
    *, transaction: Transaction, adapters: Adapters, actor: Actor, refund_id: str
) -> Refund:
    """Send a ``needs_attention`` refund again with the same idempotency key (also a refund
    whose executor died after claiming it, ``STALE_CLAIM`` ago)."""
    with transaction() as session:
        payment, refund = _lock_refund(session, refund_id)
        now = utcnow()
        if not _retryable(refund, now):
            detail = (
                "it is being sent right now"
                if refund.status == RefundStatus.PROCESSING.value and refund.execution_started_at
                else "only a refund that needs attention can be retried"
            )
            raise RefundError("refund", f"refund {refund.id} is {refund.status}: {detail}")
        before = _snapshot(refund)
        # A person's decision to try again: the one move back (needs_attention -> processing).
        refund.status = RefundStatus.PROCESSING.value
        refund.failure_reason = None
        claim = _start(
            session,
            payment,
            refund,
            actor=actor.name,
            now=now,
            action="refund.retried",
            summary=f"Refund {refund.id} of {_money(refund.amount_minor, refund.currency)} sent "
            f"to {payment.provider} again by {actor.name}",
            before=before,
        )
    return _run(transaction, adapters, claim)


# --- Request or approve, then execute ------------------------------------------------------------


@guarded(Permission.REQUEST_REFUND)
def request_and_execute(
    *,
    transaction: Transaction,
    adapters: Adapters,
    actor: Actor,
    payment_id: str,
    amount_minor: int,
    currency: str,
    reason: str,
    note: str | None = None,
    offline_reference: str | None = None,
    settings: Settings | None = None,
) -> Refund:
    """``request_refund`` in its own transaction, then ``execute_refund`` if it is due."""
    with transaction() as session:
        refund = request_refund(
            session=session,
            actor=actor,
            payment_id=payment_id,
            amount_minor=amount_minor,
            currency=currency,
            reason=reason,
            note=note,
            offline_reference=offline_reference,
            settings=settings,
        )
    if not _due(refund):
        return refund
    return execute_refund(transaction=transaction, adapters=adapters, refund_id=refund.id)


@guarded(Permission.APPROVE_REFUND)
def approve_and_execute(
    *, transaction: Transaction, adapters: Adapters, actor: Actor, refund_id: str
) -> Refund:
    """``approve_refund`` in its own transaction, then ``execute_refund`` if it is due."""
    with transaction() as session:
        refund = approve_refund(session=session, actor=actor, refund_id=refund_id)
    if not _due(refund):
        return refund
    return execute_refund(transaction=transaction, adapters=adapters, refund_id=refund.id)


__all__: Sequence[str] = [
    "EXECUTOR",
    "HISTORY_LIMIT",
    "STALE_CLAIM",
    "RefundError",
    "RefundNotFoundError",
    "approve_and_execute",
    "approve_refund",
    "execute_refund",
    "recent_refunds",
    "refund_key",
    "refunds_awaiting_approval",
    "refunds_for_payment",
    "reject_refund",
    "request_and_execute",
    "request_refund",
    "retry_refund",
]
