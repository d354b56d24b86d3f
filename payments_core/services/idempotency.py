"""Idempotency keys of host API requests: the same key and body get the stored answer.

``claim`` runs in its own short transaction before the work: it inserts a record without an
answer (the unique (scope, key) constraint decides between two concurrent requests), or finds the
existing one. ``store`` saves the answer once the work is done. A key reused with a different
body is a conflict; a key whose first request is still running is a conflict too (try later).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, delete, select

from payments_core.models import IdempotencyRecord, utcnow

MAX_KEY_LENGTH = 255


class IdempotencyConflict(Exception):
    """409: same key, different request; or the first request with this key is still running."""


@dataclass(frozen=True, slots=True)
class Claim:
    record_id: int
    # The stored answer when this key was already used with the same request.
    status: int | None = None
    body: dict[str, Any] | None = None

    @property
    def replay(self) -> bool:
        return self.status is not None


def request_hash(payload: Any) -> str:
    """A hash of the request's meaning: JSON with sorted keys, so spacing does not matter."""
    canonical = json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def claim(*, session: Session, scope: str, key: str, digest: str, ttl: timedelta) -> Claim:
    key = key.strip()
    if not key or len(key) > MAX_KEY_LENGTH:
        raise ValueError(f"Idempotency-Key must be 1 to {MAX_KEY_LENGTH} characters")
    now = utcnow()
    session.exec(
        delete(IdempotencyRecord).where(
            col(IdempotencyRecord.scope) == scope,
            col(IdempotencyRecord.key) == key,
            col(IdempotencyRecord.expires_at) <= now,
        )
    )
    existing = _find(session, scope, key)
    if existing is None:
        record = IdempotencyRecord(
            scope=scope, key=key, request_hash=digest, created_at=now, expires_at=now + ttl
        )
        try:
            with session.begin_nested():
                session.add(record)
                session.flush()
        except IntegrityError:
            existing = _find(session, scope, key)
            if existing is None:  # pragma: no cover - the winner expired within the same instant
                raise IdempotencyConflict("the key is being used by another request") from None
        else:
            assert record.id is not None
            return Claim(record.id)
    if existing.request_hash != digest:
        raise IdempotencyConflict(
            "this Idempotency-Key was used with a different request body; use a new key"
        )
    assert existing.id is not None
    if existing.response_status is None:
        raise IdempotencyConflict("a request with this Idempotency-Key is still being processed")
    return Claim(existing.id, existing.response_status, existing.response_body)


def store(*, session: Session, record_id: int, status: int, body: dict[str, Any]) -> None:
    record = session.get(IdempotencyRecord, record_id)
    if record is None:  # pragma: no cover - expired and deleted while the request ran
        return
    record.response_status = status
    record.response_body = body
    session.add(record)


def release(*, session: Session, record_id: int) -> None:
    """Forget a claim whose request failed before any effect (so the key can be used again)."""
    record = session.get(IdempotencyRecord, record_id)
    if record is not None and record.response_status is None:
        session.delete(record)


def _find(session: Session, scope: str, key: str) -> IdempotencyRecord | None:
    return session.exec(
        select(IdempotencyRecord).where(
            col(IdempotencyRecord.scope) == scope, col(IdempotencyRecord.key) == key
        )
    ).one_or_none()
