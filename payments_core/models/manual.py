"""Proofs of manual and offline payments (bank transfer, cash on delivery, mobile money).

Files live under ``var/`` by content hash; the row keeps the hash, name, type and size. The database
refuses a review by the person who recorded the proof.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, CheckConstraint, Index, UniqueConstraint
from sqlmodel import Field, SQLModel

from payments_core.models._types import UTCDateTime, utcnow
from payments_core.status import ProofStatus

PROOF_STATUS_VALUES = ", ".join(f"'{s.value}'" for s in ProofStatus)


class ManualProof(SQLModel, table=True):
    __tablename__ = "manual_proof"
    __table_args__ = (
        CheckConstraint("amount_minor > 0", name="amount_positive"),
        CheckConstraint("length(currency) = 3", name="currency_code"),
        CheckConstraint(f"status IN ({PROOF_STATUS_VALUES})", name="status_known"),
        CheckConstraint(
            "reviewed_by IS NULL OR reviewed_by <> recorded_by", name="maker_is_not_checker"
        ),
        Index("ix_manual_proof_status_created", "status", "created_at"),
        Index("ix_manual_proof_payment", "payment_id"),
        Index("ix_manual_proof_file", "file_sha256"),
        Index("ix_manual_proof_reference", "reference", "amount_minor"),
    )

    id: str = Field(primary_key=True, max_length=40)
    payment_id: str = Field(foreign_key="payment.id", max_length=40)
    kind: str = Field(max_length=30)
    reference: str = Field(max_length=255)
    amount_minor: int = Field(sa_type=BigInteger)
    currency: str = Field(max_length=3)
    paid_on: date | None = None
    file_sha256: str | None = Field(default=None, max_length=64)
    file_name: str | None = Field(default=None, max_length=255)
    content_type: str | None = Field(default=None, max_length=100)
    file_size: int | None = None
    notes: str | None = Field(default=None, max_length=2000)
    status: str = Field(default=ProofStatus.PENDING_REVIEW.value, max_length=20)
    recorded_by: str = Field(max_length=200)
    reviewed_by: str | None = Field(default=None, max_length=200)
    reviewed_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    review_reason: str | None = Field(default=None, max_length=500)
    duplicate_of_payment_id: str | None = Field(default=None, max_length=40)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)


class StatementLine(SQLModel, table=True):
    """One incoming credit from an imported bank statement (CSV or CAMT.053), and what it was
    matched to. ``line_hash`` identifies the credit, so importing a statement twice adds nothing."""

    __tablename__ = "statement_line"
    __table_args__ = (
        CheckConstraint("amount_minor > 0", name="amount_positive"),
        UniqueConstraint("line_hash", name="uq_statement_line_hash"),
        Index("ix_statement_line_import", "import_id"),
        Index("ix_statement_line_status", "status", "booked_on"),
    )

    id: int | None = Field(default=None, primary_key=True)
    import_id: str = Field(max_length=40)
    line_hash: str = Field(max_length=64)
    booked_on: date | None = None
    amount_minor: int = Field(sa_type=BigInteger)
    currency: str = Field(max_length=3)
    reference: str | None = Field(default=None, max_length=500)
    counterparty: str | None = Field(default=None, max_length=200)
    # matched (a proof awaits review) | unmatched
    status: str = Field(max_length=20)
    payment_id: str | None = Field(default=None, max_length=40)
    proof_id: str | None = Field(default=None, max_length=40)
    # Unmatched: the nearest open manual payments, with why each is near.
    candidates: list[dict[str, Any]] = Field(default_factory=list, sa_type=JSON)
    imported_by: str = Field(max_length=200)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
