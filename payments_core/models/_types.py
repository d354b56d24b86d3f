"""Column types and helpers shared by every table.

* ``UTCDateTime`` stores timezone-aware UTC datetimes on both databases and always returns aware
  UTC values (SQLite keeps no zone, so naive values read back are UTC by construction).
* ``new_id(prefix)`` makes sortable ids (``pay_06F…``): a 48-bit millisecond timestamp and 80 random
  bits in Crockford base32, like a ULID, so ids created later sort later.
"""

from __future__ import annotations

import base64
import os
import random
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import BigInteger, DateTime, Integer
from sqlalchemy.engine import Dialect
from sqlalchemy.types import TypeDecorator
from sqlmodel import SQLModel

_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"

# Autoincrementing 64-bit keys on PostgreSQL; SQLite only autoincrements INTEGER PRIMARY KEY.
BigIntPK = BigInteger().with_variant(Integer(), "sqlite")


def utcnow() -> datetime:
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"naive datetime {value!r}: Paydesk stores aware UTC datetimes only")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if not isinstance(value, datetime):
            raise TypeError(f"expected a datetime from the database, got {value!r}")
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


_TO_CROCKFORD = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ234567", _CROCKFORD)


def new_id(prefix: str, *, at: datetime | None = None, rng: random.Random | None = None) -> str:
    """A new sortable id; pass ``at`` and a seeded ``rng`` for reproducible demo data."""
    millis = int((at or utcnow()).timestamp() * 1000)
    randomness = rng.getrandbits(80) if rng else int.from_bytes(os.urandom(10), "big")
    raw = ((millis << 80) | randomness).to_bytes(16, "big")
    # 128 bits in base32 are 26 characters (the last one carries 3 bits); order is kept.
    return f"{prefix}_{base64.b32encode(raw).decode()[:26].translate(_TO_CROCKFORD)}"


# Stable constraint names on both databases, so migrations can refer to them.
SQLModel.metadata.naming_convention = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}
