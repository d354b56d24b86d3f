"""The audit log: who did what to which entity, with before/after, as a hash chain.

Appending takes a lock first (an advisory transaction lock on PostgreSQL; SQLite write
transactions already hold the database's write lock), so entries form one line:
``seq`` = previous + 1 and ``prev_hash`` = previous ``hash``. ``verify_chain`` walks the whole log
and reports the first entry whose content, link or sequence number does not hold.
"""

from __future__ import annotations

import enum
import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import func, text
from sqlmodel import Session, col, select

from payments_core.models import GENESIS_HASH, AuditEntry, utcnow
from payments_core.services.permissions import Actor, Permission, guarded

# Any constant works; it only has to be the same for every writer of the audit log.
_AUDIT_LOCK_KEY = 0x7061796465736B  # "paydesk"


def jsonable(value: Any) -> Any:
    """Plain JSON values for before/after snapshots (what is stored is exactly what is hashed)."""
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        raise TypeError("floats are not allowed in audit snapshots; use minor units")
    if isinstance(value, enum.Enum):
        return jsonable(value.value)
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, bytes):
        return value.hex()
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [jsonable(v) for v in value]
    raise TypeError(f"cannot store {type(value).__name__} in an audit snapshot")


def entry_hash(
    *,
    seq: int,
    at: datetime,
    actor: str,
    action: str,
    entity_type: str,
    entity_id: str,
    before: Any,
    after: Any,
    prev_hash: str,
) -> str:
    body = json.dumps(
        {
            "seq": seq,
            "at": at.isoformat(timespec="microseconds"),
            "actor": actor,
            "action": action,
            "entity_type": entity_type,
            "entity_id": entity_id,
            "before": before,
            "after": after,
        },
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=False,
    )
    return hashlib.sha256(f"{prev_hash}:{body}".encode()).hexdigest()


def _lock_chain(session: Session) -> None:
    bind = session.get_bind()
    if bind.dialect.name == "postgresql":
        session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _AUDIT_LOCK_KEY})


def record_audit(
    *,
    session: Session,
    actor: str,
    action: str,
    entity_type: str,
    entity_id: str,
    before: Mapping[str, Any] | None = None,
    after: Mapping[str, Any] | None = None,
    at: datetime | None = None,
) -> AuditEntry:
    """Append one entry to the chain, in the caller's transaction."""
    _lock_chain(session)
    last = session.exec(
        select(AuditEntry.seq, AuditEntry.hash).order_by(col(AuditEntry.seq).desc()).limit(1)
    ).first()
    seq, prev_hash = (last[0] + 1, last[1]) if last else (1, GENESIS_HASH)
    at = at or utcnow()
    before_json, after_json = jsonable(before), jsonable(after)
    entry = AuditEntry(
        seq=seq,
        at=at,
        actor=actor,
        action=action,
        entity_type=entity_type,
        entity_id=entity_id,
        before=before_json,
        after=after_json,
        prev_hash=prev_hash,
        hash=entry_hash(
            seq=seq,
            at=at,
            actor=actor,
            action=action,
            entity_type=entity_type,
            entity_id=entity_id,
            before=before_json,
            after=after_json,
            prev_hash=prev_hash,
        ),
    )
    session.add(entry)
    session.flush()
    return entry


@dataclass(frozen=True, slots=True)
class ChainReport:
    checked: int
    head_hash: str
    broken_seq: int | None = None
    broken_id: int | None = None
    problem: str | None = None

    @property
    def ok(self) -> bool:
        return self.problem is None


def verify_chain(*, session: Session, batch_size: int = 5000) -> ChainReport:
    """Walk the log in ``seq`` order; stop at the first entry that does not hold."""
    expected_seq, prev_hash, checked = 1, GENESIS_HASH, 0
    rows = session.exec(
        select(AuditEntry).order_by(col(AuditEntry.seq)).execution_options(yield_per=batch_size)
    )
    for entry in rows:
        problem = None
        if entry.seq != expected_seq:
            problem = (
                f"sequence jumps from {expected_seq - 1} to {entry.seq}: "
                f"{entry.seq - expected_seq} entr{'y' if entry.seq - expected_seq == 1 else 'ies'}"
                " missing (deleted)"
                if entry.seq > expected_seq
                else f"sequence number {entry.seq} repeats or goes backwards"
            )
        elif entry.prev_hash != prev_hash:
            problem = (
                "prev_hash does not match the previous entry "
                "(an entry before it was changed or deleted)"
            )
        else:
            recomputed = entry_hash(
                seq=entry.seq,
                at=entry.at,
                actor=entry.actor,
                action=entry.action,
                entity_type=entry.entity_type,
                entity_id=entry.entity_id,
                before=entry.before,
                after=entry.after,
                prev_hash=entry.prev_hash,
            )
            if recomputed != entry.hash:
                problem = "content does not match its hash (the entry was altered)"
        if problem:
            return ChainReport(checked, prev_hash, entry.seq, entry.id, problem)
        checked += 1
        expected_seq, prev_hash = entry.seq + 1, entry.hash
    return ChainReport(checked, prev_hash)


def count_entries(*, session: Session) -> int:
    return session.exec(select(func.count()).select_from(AuditEntry)).one()


AUDIT_PAGE_LIMIT = 200


@guarded(Permission.VIEW_AUDIT)
def list_audit_entries(
    *,
    session: Session,
    actor: Actor,
    by: str | None = None,
    action: str | None = None,
    entity: str | None = None,
    limit: int = AUDIT_PAGE_LIMIT,
) -> list[AuditEntry]:
    """The newest entries first, filtered by who acted (part of the name), the action (exact), and
    the entity (its id, or its type such as ``refund``)."""
    statement = select(AuditEntry)
    if by and by.strip():
        statement = statement.where(col(AuditEntry.actor).contains(by.strip(), autoescape=True))
    if action and action.strip():
        statement = statement.where(col(AuditEntry.action) == action.strip())
    if entity and entity.strip():
        wanted = entity.strip()
        statement = statement.where(
            (col(AuditEntry.entity_id) == wanted) | (col(AuditEntry.entity_type) == wanted)
        )
    limit = max(1, min(limit, 1000))
    return list(session.exec(statement.order_by(col(AuditEntry.seq).desc()).limit(limit)).all())


@guarded(Permission.VIEW_AUDIT)
def check_audit_chain(*, session: Session, actor: Actor) -> ChainReport:
    """``verify_chain`` for a person who may read the audit log."""
    return verify_chain(session=session)
