"""Disputes (chargebacks and inquiries), created and updated from provider events."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, CheckConstraint, Index, UniqueConstraint
from sqlmodel import Field, SQLModel

from payments_core.models._types import UTCDateTime, utcnow
from payments_core.status import DisputeStatus

DISPUTE_STATUS_VALUES = ", ".join(f"'{s.value}'" for s in DisputeStatus)


class Dispute(SQLModel, table=True):
    __tablename__ = "dispute"
    __table_args__ = (
        CheckConstraint("amount_minor > 0", name="amount_positive"),
        CheckConstraint("length(currency) = 3", name="currency_code"),
        CheckConstraint(f"status IN ({DISPUTE_STATUS_VALUES})", name="status_known"),
        UniqueConstraint("payment_id", "provider_dispute_id", name="uq_dispute_provider_dispute"),
        Index("ix_dispute_status_due", "status", "evidence_due_at"),
        Index("ix_dispute_payment", "payment_id"),
    )

    id: str = Field(primary_key=True, max_length=40)
    payment_id: str = Field(foreign_key="payment.id", max_length=40)
    provider_dispute_id: str = Field(max_length=255)
    amount_minor: int = Field(sa_type=BigInteger)
    currency: str = Field(max_length=3)
    status: str = Field(max_length=20)
    reason: str | None = Field(default=None, max_length=100)
    evidence_due_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    evidence: dict[str, Any] = Field(default_factory=dict, sa_type=JSON)
    evidence_submitted_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    closed_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    updated_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
