"""Audit entries: append-only and hash-chained.

``hash = sha256(prev_hash + canonical JSON of the entry)`` and ``seq`` counts up by one, so an
altered row breaks its own hash, a deleted row breaks the next row's ``prev_hash`` and leaves a gap
in ``seq``. Triggers refuse UPDATE and DELETE; the chain catches what gets past them.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, Index, UniqueConstraint
from sqlmodel import Field, SQLModel

from payments_core.models._types import BigIntPK, UTCDateTime, utcnow

GENESIS_HASH = "0" * 64


class AuditEntry(SQLModel, table=True):
    __tablename__ = "audit_entry"
    __table_args__ = (
        UniqueConstraint("seq", name="uq_audit_entry_seq"),
        Index("ix_audit_entry_entity", "entity_type", "entity_id"),
        Index("ix_audit_entry_actor", "actor", "at"),
        Index("ix_audit_entry_action", "action", "at"),
    )

    id: int | None = Field(default=None, primary_key=True, sa_type=BigIntPK)
    seq: int = Field(sa_type=BigInteger)
    at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    actor: str = Field(max_length=200)
    action: str = Field(max_length=100)
    entity_type: str = Field(max_length=50)
    entity_id: str = Field(max_length=255)
    before: dict[str, Any] | None = Field(default=None, sa_type=JSON)
    after: dict[str, Any] | None = Field(default=None, sa_type=JSON)
    prev_hash: str = Field(max_length=64)
    hash: str = Field(max_length=64)
