"""Refunds: one row per refund request, from request through approval to the provider's answer.

``idempotency_key`` is stored before the provider is called, so a retry after an unknown outcome
reuses it. The database refuses a decision (approve or reject) by the person who requested it.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, CheckConstraint, Index, UniqueConstraint
from sqlmodel import Field, SQLModel

from payments_core.models._types import UTCDateTime, utcnow
from payments_core.status import RefundStatus

REFUND_STATUS_VALUES = ", ".join(f"'{s.value}'" for s in RefundStatus)


class Refund(SQLModel, table=True):
    __tablename__ = "refund"
    __table_args__ = (
        CheckConstraint("amount_minor > 0", name="amount_positive"),
        CheckConstraint("length(currency) = 3", name="currency_code"),
        CheckConstraint(f"status IN ({REFUND_STATUS_VALUES})", name="status_known"),
        CheckConstraint(
            "decided_by IS NULL OR decided_by <> requested_by", name="maker_is_not_checker"
        ),
        UniqueConstraint("idempotency_key", name="uq_refund_idempotency_key"),
        UniqueConstraint("payment_id", "provider_refund_id", name="uq_refund_provider_refund"),
        Index("ix_refund_payment", "payment_id"),
        Index("ix_refund_status_created", "status", "created_at"),
    )

    id: str = Field(primary_key=True, max_length=40)
    payment_id: str = Field(foreign_key="payment.id", max_length=40)
    amount_minor: int = Field(sa_type=BigInteger)
    currency: str = Field(max_length=3)
    status: str = Field(max_length=20)
    reason: str = Field(max_length=100)
    note: str | None = Field(default=None, max_length=1000)
    requested_by: str = Field(max_length=200)
    # The manager who approved or rejected the request (never the requester).
    decided_by: str | None = Field(default=None, max_length=200)
    decided_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    rejection_reason: str | None = Field(default=None, max_length=500)
    provider_refund_id: str | None = Field(default=None, max_length=255)
    idempotency_key: str = Field(max_length=255)
    offline: bool = False
    offline_reference: str | None = Field(default=None, max_length=255)
    failure_reason: str | None = Field(default=None, max_length=500)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    updated_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    succeeded_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    # Execution through the provider: claimed by one executor at a time (set in the transaction
    # that locks the row, before the call), and how many calls were made (all with one key).
    execution_started_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    attempts: int = 0
