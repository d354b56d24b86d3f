"""API keys of host applications: created once (the key is shown once), stored as a SHA-256.

A key looks like ``pdk_<prefix>_<secret>``: the prefix is stored in clear so people can tell keys
apart in lists and logs; the whole key is only ever compared through its hash.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from datetime import timedelta

from sqlmodel import Session, col, select

from payments_core.models import ApiKey, utcnow
from payments_core.services.audit import record_audit

KEY_PREFIX = "pdk"
_TOUCH_EVERY = timedelta(minutes=1)  # last_used_at is written at most this often per key


class ApiKeyError(ValueError):
    pass


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def create_api_key(*, session: Session, name: str, actor: str) -> tuple[ApiKey, str]:
    """A new key; returns the row and the key itself, which is not stored anywhere."""
    name = name.strip()
    if not name or len(name) > 100:
        raise ApiKeyError("the key needs a name of 1 to 100 characters")
    if session.exec(select(ApiKey).where(col(ApiKey.name) == name)).first() is not None:
        raise ApiKeyError(f"an API key named {name!r} already exists")
    prefix = secrets.token_hex(4)
    key = f"{KEY_PREFIX}_{prefix}_{secrets.token_urlsafe(32)}"
    row = ApiKey(name=name, prefix=prefix, key_hash=hash_key(key), created_by=actor)
    session.add(row)
    session.flush()
    record_audit(
        session=session,
        actor=actor,
        action="api_key.created",
        entity_type="api_key",
        entity_id=str(row.id),
        after={"name": name, "prefix": prefix},
    )
    return row, key


def authenticate(*, session: Session, key: str) -> ApiKey | None:
    """The active key row for ``key``, or None (unknown, malformed or revoked)."""
    if not key.startswith(f"{KEY_PREFIX}_") or len(key) > 200:
        return None
    digest = hash_key(key)
    row = session.exec(select(ApiKey).where(col(ApiKey.key_hash) == digest)).one_or_none()
    if row is None or row.revoked_at is not None:
        return None
    if not hmac.compare_digest(row.key_hash, digest):  # pragma: no cover - found by this hash
        return None
    now = utcnow()
    if row.last_used_at is None or now - row.last_used_at > _TOUCH_EVERY:
        row.last_used_at = now
        session.add(row)
    return row


def revoke_api_key(*, session: Session, name: str, actor: str) -> ApiKey:
    row = session.exec(select(ApiKey).where(col(ApiKey.name) == name)).one_or_none()
    if row is None:
        raise ApiKeyError(f"no API key named {name!r}")
    if row.revoked_at is None:
        row.revoked_at = utcnow()
        session.add(row)
        record_audit(
            session=session,
            actor=actor,
            action="api_key.revoked",
            entity_type="api_key",
            entity_id=str(row.id),
            after={"name": row.name, "prefix": row.prefix},
        )
    return row


def list_api_keys(*, session: Session) -> list[ApiKey]:
    return list(session.exec(select(ApiKey).order_by(col(ApiKey.id))).all())
