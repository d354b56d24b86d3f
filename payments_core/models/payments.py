"""Payments and their timeline.

One ``payment`` row per payment, whatever the provider. Amounts are integer minor units of
``currency``; ``captured/refunded/refund_pending/disputed`` track money after the fact so the status
field only says where the payment itself stands (see ``payments_core.status``). The database holds
the invariants it can: positive amounts, known statuses, a refund total (done plus in flight) never
above what was captured, and one row per provider reference.

``payment_event`` is the payment's timeline: every status change, webhook, refund, dispute and proof
leaves one row, written in the same transaction as the change it describes.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, CheckConstraint, Index, UniqueConstraint, text
from sqlmodel import Field, SQLModel

from payments_core.models._types import BigIntPK, UTCDateTime, utcnow
from payments_core.status import PaymentStatus

PAYMENT_STATUS_VALUES = ", ".join(f"'{s.value}'" for s in PaymentStatus)
# Payments still waiting for an outcome (reconciliation reads them back from the provider).
OPEN_STATUSES = (
    PaymentStatus.CREATED,
    PaymentStatus.PENDING,
    PaymentStatus.PROCESSING,
    PaymentStatus.AUTHORIZED,
)
OPEN_STATUS_VALUES = ", ".join(f"'{s.value}'" for s in OPEN_STATUSES)


class PaymentBase(SQLModel):
    provider: str = Field(max_length=20)
    provider_reference: str | None = Field(default=None, max_length=255)
    host_reference: str | None = Field(default=None, max_length=255)
    amount_minor: int = Field(sa_type=BigInteger)
    currency: str = Field(max_length=3)
    method: str = Field(max_length=30)
    customer_email: str | None = Field(default=None, max_length=254)
    customer_phone: str | None = Field(default=None, max_length=32)
    customer_name: str | None = Field(default=None, max_length=200)
    description: str | None = Field(default=None, max_length=500)
    livemode: bool = False


class Payment(PaymentBase, table=True):
    __tablename__ = "payment"
    __table_args__ = (
        CheckConstraint("amount_minor > 0", name="amount_positive"),
        CheckConstraint("length(currency) = 3", name="currency_code"),
        CheckConstraint(f"status IN ({PAYMENT_STATUS_VALUES})", name="status_known"),
        CheckConstraint(
            "captured_minor >= 0 AND refunded_minor >= 0 AND refund_pending_minor >= 0"
            " AND disputed_minor >= 0",
            name="amounts_not_negative",
        ),
        CheckConstraint(
            "refunded_minor + refund_pending_minor <= captured_minor",
            name="refunds_within_captured",
        ),
        # provider_reference first, so a search by reference alone uses this index too.
        UniqueConstraint("provider_reference", "provider", name="uq_payment_provider_reference"),
        Index("ix_payment_created", "created_at", "id"),
        Index("ix_payment_status_created", "status", "created_at", "id"),
        Index("ix_payment_provider_created", "provider", "created_at", "id"),
        Index("ix_payment_method_created", "method", "created_at", "id"),
        Index("ix_payment_currency_created", "currency", "created_at", "id"),
        Index("ix_payment_amount", "amount_minor", "id"),
        Index("ix_payment_currency_amount", "currency", "amount_minor", "id"),
        Index("ix_payment_customer_email", "customer_email"),
        Index("ix_payment_customer_phone", "customer_phone"),
        Index("ix_payment_host_reference", "host_reference"),
        # A unique index, not a constraint: SQLite can add it without rebuilding the table.
        Index("uq_payment_callback_token_hash", "callback_token_hash", unique=True),
        Index(
            "ix_payment_open_status_changed",
            "status",
            "status_changed_at",
            sqlite_where=text(f"status IN ({OPEN_STATUS_VALUES})"),
            postgresql_where=text(f"status IN ({OPEN_STATUS_VALUES})"),
        ),
        Index(
            "ix_payment_risky",
            "risk_score",
            "created_at",
            sqlite_where=text("risk_score > 0"),
            postgresql_where=text("risk_score > 0"),
        ),
        Index(
            "ix_payment_flagged",
            "created_at",
            sqlite_where=text("review_reason IS NOT NULL"),
            postgresql_where=text("review_reason IS NOT NULL"),
        ),
    )

    id: str = Field(primary_key=True, max_length=40)
    status: str = Field(default=PaymentStatus.CREATED.value, max_length=20)
    captured_minor: int = Field(default=0, sa_type=BigInteger)
    refunded_minor: int = Field(default=0, sa_type=BigInteger)
    refund_pending_minor: int = Field(default=0, sa_type=BigInteger)
    disputed_minor: int = Field(default=0, sa_type=BigInteger)
    host_metadata: dict[str, Any] = Field(default_factory=dict, sa_type=JSON)
    # Where the row came from: "api" (a host application), "provider" (first seen in a webhook),
    # "manual" (recorded by staff) or "seed" (demo data).
    origin: str = Field(default="api", max_length=20)
    failure_code: str | None = Field(default=None, max_length=100)
    failure_reason: str | None = Field(default=None, max_length=500)
    # Non-empty when a person must look at it (amount/currency mismatch, late capture, ...).
    review_reason: str | None = Field(default=None, max_length=500)
    risk_score: int = 0
    # Why the score is what it is: one short sentence per rule that fired.
    risk_reasons: list[str] = Field(default_factory=list, sa_type=JSON)
    # SHA-256 of the secret token in this payment's callback URL (M-Pesa callbacks are unsigned).
    callback_token_hash: str | None = Field(default=None, max_length=64)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    updated_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    status_changed_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    paid_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    # Checkout (host API): what the customer is sent to, and what was asked of the provider.
    checkout_url: str | None = Field(default=None, max_length=2000)
    success_url: str | None = Field(default=None, max_length=2000)
    cancel_url: str | None = Field(default=None, max_length=2000)
    line_items: list[dict[str, Any]] = Field(default_factory=list, sa_type=JSON)
    # Manual payments: the instructions shown to the customer (reference to quote, account, ...).
    instructions: dict[str, Any] | None = Field(default=None, sa_type=JSON)
    # Sent with the provider call that starts the checkout; stored before that call is made.
    checkout_idempotency_key: str | None = Field(default=None, max_length=255)
    # The last outbound error when starting the checkout failed (the host may retry).
    checkout_error: str | None = Field(default=None, max_length=500)
    expires_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    reconciled_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    api_key_id: int | None = None

    @property
    def status_enum(self) -> PaymentStatus:
        return PaymentStatus(self.status)

    @property
    def refundable_minor(self) -> int:
        return self.captured_minor - self.refunded_minor - self.refund_pending_minor


class PaymentPublic(PaymentBase):
    id: str
    status: str
    captured_minor: int
    refunded_minor: int
    refund_pending_minor: int
    disputed_minor: int
    host_metadata: dict[str, Any]
    origin: str
    failure_code: str | None
    failure_reason: str | None
    review_reason: str | None
    risk_score: int
    created_at: datetime
    updated_at: datetime
    paid_at: datetime | None


class PaymentEvent(SQLModel, table=True):
    __tablename__ = "payment_event"
    __table_args__ = (Index("ix_payment_event_payment", "payment_id", "at", "id"),)

    id: int | None = Field(default=None, primary_key=True, sa_type=BigIntPK)
    payment_id: str = Field(foreign_key="payment.id", max_length=40)
    at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    # status, created, webhook, refund, dispute, proof, flag, note
    kind: str = Field(max_length=20)
    actor: str = Field(max_length=200)
    summary: str = Field(max_length=500)
    from_status: str | None = Field(default=None, max_length=20)
    to_status: str | None = Field(default=None, max_length=20)
    data: dict[str, Any] = Field(default_factory=dict, sa_type=JSON)
