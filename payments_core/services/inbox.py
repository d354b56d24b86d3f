"""The webhook inbox: store a verified delivery once, and count the ones we refuse.

``store_webhook`` inserts with ``ON CONFLICT DO NOTHING`` on (provider, event_id), so a redelivery
(even two arriving at the same moment) finds the existing row and is acknowledged without a
second one. The caller commits before answering 2xx: the row is durable before the provider hears
"accepted".

Refused deliveries are not stored one by one (a flood of forgeries must not grow the database):
``record_rejection`` keeps one counter row per provider, reason and hour, and writes one audit
entry when such a window opens.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import func, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlmodel import Session, col, select

from payments_core.models import InboxStatus, Payment, WebhookEvent, WebhookRejection, utcnow
from payments_core.providers.base import RejectionReason, VerifiedWebhook
from payments_core.services.audit import record_audit

# Headers worth keeping with the raw body (for support and replays); never authorization.
KEPT_HEADERS = frozenset(
    {
        "content-type",
        "user-agent",
        "stripe-signature",
        "x-signature",
        "x-paystack-signature",
        "x-dummy-signature",
        "x-forwarded-for",
    }
)


@dataclass(frozen=True, slots=True)
class StoredWebhook:
    duplicate: bool
    id: int | None = None  # the new inbox row; None for a duplicate


def _insert_for(session: Session) -> Any:
    return pg_insert if session.get_bind().dialect.name == "postgresql" else sqlite_insert


def store_webhook(
    *,
    session: Session,
    verified: VerifiedWebhook,
    raw: bytes,
    headers: Mapping[str, str],
    payment_id: str | None = None,
    received_at: datetime | None = None,
) -> StoredWebhook:
    """Put a verified delivery in the inbox unless (provider, event_id) is already there."""
    now = received_at or utcnow()
    statement = (
        _insert_for(session)(WebhookEvent)
        .values(
            provider=verified.provider.value,
            event_id=verified.event_id[:255],
            event_type=verified.event_type[:100],
            received_at=now,
            payload=raw,
            headers={k.lower(): v for k, v in headers.items() if k.lower() in KEPT_HEADERS},
            verification=verified.verification.value,
            livemode=verified.livemode,
            status=InboxStatus.PENDING.value,
            attempts=0,
            next_attempt_at=now,
            payment_id=payment_id,
        )
        .on_conflict_do_nothing(index_elements=["provider", "event_id"])
        .returning(WebhookEvent.__table__.c.id)  # type: ignore[attr-defined]
    )
    # A Core execution with RETURNING: the ORM-enabled path reports rowcount -1 on PostgreSQL,
    # and a returned row is the unambiguous sign that this delivery created it.
    inserted = session.connection().execute(statement).first()
    return StoredWebhook(duplicate=inserted is None, id=None if inserted is None else inserted[0])


def payment_for_callback_token(*, session: Session, token_hash: str) -> Payment | None:
    return session.exec(
        select(Payment).where(col(Payment.callback_token_hash) == token_hash)
    ).one_or_none()


def record_rejection(
    *,
    session: Session,
    provider: str,
    reason: RejectionReason,
    detail: str,
    source_ip: str | None,
    at: datetime | None = None,
) -> None:
    """Count one refused delivery in its hourly window; audit the first of each window."""
    now = at or utcnow()
    window = now.replace(minute=0, second=0, microsecond=0)
    opened = (
        session.connection()
        .execute(
            _insert_for(session)(WebhookRejection)
            .values(
                provider=provider,
                reason=reason.value,
                window_start=window,
                count=1,
                first_at=now,
                last_at=now,
                last_source_ip=source_ip,
                last_detail=detail[:300],
            )
            .on_conflict_do_nothing(index_elements=["provider", "reason", "window_start"])
            .returning(WebhookRejection.__table__.c.id)  # type: ignore[attr-defined]
        )
        .first()
    )
    if opened is not None:
        record_audit(
            session=session,
            actor=f"provider:{provider}",
            action="webhook.rejected",
            entity_type="webhook_rejection",
            entity_id=f"{provider}:{reason.value}:{window.isoformat()}",
            after={
                "provider": provider,
                "reason": reason.value,
                "detail": detail[:300],
                "source_ip": source_ip,
                "note": "first refusal of this kind this hour; later ones are counted on the row",
            },
            at=now,
        )
        return
    session.execute(
        update(WebhookRejection)
        .where(
            col(WebhookRejection.provider) == provider,
            col(WebhookRejection.reason) == reason.value,
            col(WebhookRejection.window_start) == window,
        )
        .values(
            count=WebhookRejection.count + 1,
            last_at=now,
            last_source_ip=source_ip,
            last_detail=detail[:300],
        )
    )


@dataclass(frozen=True, slots=True)
class InboxHealth:
    backlog: int
    oldest_unprocessed_seconds: float
    dead: int


def inbox_health(*, session: Session, now: datetime | None = None) -> InboxHealth:
    """Backlog (waiting or retrying), the oldest waiting delivery's age, and the dead count."""
    waiting = (InboxStatus.PENDING.value, InboxStatus.PROCESSING.value, InboxStatus.FAILED.value)
    backlog, oldest = session.exec(
        select(func.count(), func.min(WebhookEvent.received_at)).where(
            col(WebhookEvent.status).in_(waiting)
        )
    ).one()
    dead = session.exec(
        select(func.count()).where(col(WebhookEvent.status) == InboxStatus.DEAD.value)
    ).one()
    age = max(0.0, ((now or utcnow()) - oldest).total_seconds()) if oldest else 0.0
    return InboxHealth(backlog=backlog, oldest_unprocessed_seconds=age, dead=dead)
