"""The webhook inbox: every verified delivery, stored before it is acknowledged.

``(provider, event_id)`` is unique, so a redelivery finds the existing row instead of making a
second one. The raw body is kept byte for byte, so processing and replays read exactly what the
provider signed.
"""

from __future__ import annotations

import enum
from datetime import datetime
from typing import Any

from sqlalchemy import JSON, CheckConstraint, Index, LargeBinary, UniqueConstraint
from sqlmodel import Field, SQLModel

from payments_core.models._types import BigIntPK, UTCDateTime, utcnow


class InboxStatus(enum.StrEnum):
    PENDING = "pending"
    PROCESSING = "processing"
    PROCESSED = "processed"
    FAILED = "failed"  # will be retried at next_attempt_at
    DEAD = "dead"  # retries exhausted; replay by hand
    IGNORED = "ignored"  # verified but nothing to apply (event type we do not act on)
    UNMATCHED = "unmatched"  # about a payment we do not know and cannot create


INBOX_STATUS_VALUES = ", ".join(f"'{s.value}'" for s in InboxStatus)


class WebhookEvent(SQLModel, table=True):
    __tablename__ = "webhook_event"
    __table_args__ = (
        CheckConstraint(f"status IN ({INBOX_STATUS_VALUES})", name="status_known"),
        UniqueConstraint("provider", "event_id", name="uq_webhook_event_provider_event"),
        Index("ix_webhook_event_due", "status", "next_attempt_at"),
        Index("ix_webhook_event_payment", "payment_id"),
        # No index on received_at: ids grow with arrival (list newest first by id), and every
        # index is paid for on the intake hot path.
    )

    id: int | None = Field(default=None, primary_key=True, sa_type=BigIntPK)
    provider: str = Field(max_length=20)
    event_id: str = Field(max_length=255)
    event_type: str = Field(max_length=100)
    received_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    payload: bytes = Field(sa_type=LargeBinary)
    headers: dict[str, Any] = Field(default_factory=dict, sa_type=JSON)
    # "signed" (signature checked) or "hint" (unsigned; processing must read the provider API).
    verification: str = Field(default="signed", max_length=20)
    livemode: bool | None = None
    status: str = Field(default=InboxStatus.PENDING.value, max_length=20)
    attempts: int = 0
    next_attempt_at: datetime | None = Field(default_factory=utcnow, sa_type=UTCDateTime)
    last_error: str | None = None
    processed_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    payment_id: str | None = Field(default=None, max_length=40)


class WebhookRejection(SQLModel, table=True):
    """Refused deliveries, counted per provider, reason and hour instead of one row each.

    A flood of forgeries grows a counter, not the table: at most one row (and one audit entry)
    per provider, reason and hour.
    """

    __tablename__ = "webhook_rejection"
    __table_args__ = (
        UniqueConstraint("provider", "reason", "window_start", name="uq_webhook_rejection_window"),
    )

    id: int | None = Field(default=None, primary_key=True, sa_type=BigIntPK)
    provider: str = Field(max_length=20)
    reason: str = Field(max_length=30)
    window_start: datetime = Field(sa_type=UTCDateTime)
    count: int = 0
    first_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    last_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    last_source_ip: str | None = Field(default=None, max_length=64)
    last_detail: str | None = Field(default=None, max_length=300)
