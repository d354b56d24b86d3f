"""``payment_day_stat``: payments summed per UTC day and group, kept current by the database.

Analytics over months of payments must not scan every payment (a million rows take seconds), so
the database keeps one row per (UTC day of ``created_at``, provider, method, currency, status,
failure reason) with the counts and sums the charts need. Triggers on ``payment`` and ``dispute``
(migration 0006, one set per database) add a payment's contribution when it is inserted, move it
when a grouped or summed column changes, and remove it when it is deleted, in the same
transaction as the change: the table is never stale and no code path can forget it. Rows whose
counts fell to zero may remain; readers sum, so they are harmless.

``failure_reason`` is ``''`` for none (a NULL would make every such row distinct in the key).
``disputed_payments`` counts captured payments with at least one dispute (any outcome).
"""

from __future__ import annotations

from datetime import date

from sqlalchemy import BigInteger
from sqlmodel import Field, SQLModel


class PaymentDayStat(SQLModel, table=True):
    __tablename__ = "payment_day_stat"

    day: date = Field(primary_key=True)
    provider: str = Field(primary_key=True, max_length=20)
    method: str = Field(primary_key=True, max_length=30)
    currency: str = Field(primary_key=True, max_length=3)
    status: str = Field(primary_key=True, max_length=20)
    failure_reason: str = Field(primary_key=True, max_length=500)
    payments: int = Field(default=0, sa_type=BigInteger)
    amount_minor: int = Field(default=0, sa_type=BigInteger)
    captured_payments: int = Field(default=0, sa_type=BigInteger)
    captured_minor: int = Field(default=0, sa_type=BigInteger)
    refunded_payments: int = Field(default=0, sa_type=BigInteger)
    refunded_minor: int = Field(default=0, sa_type=BigInteger)
    disputed_payments: int = Field(default=0, sa_type=BigInteger)
