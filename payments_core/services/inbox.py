"""The webhook inbox: store a verified delivery once, and count the ones we refuse.

``prepare_inbox_insert`` builds ``INSERT ... ON CONFLICT (provider, event_id) DO NOTHING
RETURNING`` for a batch, so a redelivery (even two arriving at the same moment, even in one batch)
finds the existing row and is acknowledged without a second one. The intake's group-commit writer
(``webhook_server/inbox_writer.py``) runs it and commits before answering 2xx: the row is durable
before the provider hears "accepted".

Refused deliveries are not stored one by one (a flood of forgeries must not grow the database):
``record_rejection`` keeps one counter row per provider, reason and hour, and writes one audit
entry when such a window opens.

``list_inbox`` is the dashboard's read of the inbox: newest first (by id, which grows with
arrival), optionally one provider and one status, without the raw bodies.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from typing import Any

import orjson
from sqlalchemy import func, update
from sqlalchemy import select as select_columns
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import Dialect
from sqlmodel import Session, col, select

from payments_core.models import InboxStatus, Payment, WebhookEvent, WebhookRejection, utcnow
from payments_core.providers.base import RejectionReason, VerifiedWebhook
from payments_core.services.audit import record_audit
from payments_core.services.permissions import Actor, Permission, guarded

# Headers worth keeping with the raw body (for support and replays); never authorization.
KEPT_HEADERS = frozenset(
    {
        "content-type",
        "user-agent",
        "stripe-signature",
        "x-signature",
        "x-paystack-signature",
        "x-dummy-signature",
        "x-forwarded-for",
    }
)


@dataclass(frozen=True, slots=True)
class StoredWebhook:
    duplicate: bool
    id: int | None = None  # the new inbox row; None for a duplicate


_STORED_COLUMNS = (
    "provider",
    "event_id",
    "event_type",
    "received_at",
    "payload",
    "headers",
    "verification",
    "livemode",
    "status",
    "attempts",
    "next_attempt_at",
    "payment_id",
)


def _insert_for(session: Session) -> Any:
    return pg_insert if session.get_bind().dialect.name == "postgresql" else sqlite_insert


@dataclass(frozen=True, slots=True)
class InboxItem:
    """One verified delivery waiting to be stored."""

    verified: VerifiedWebhook
    raw: bytes
    headers: Mapping[str, str]
    payment_id: str | None = None
    received_at: datetime | None = None


def insert_sqlite(cursor: Any, prepared: PreparedInsert) -> dict[tuple[str, str], int]:
    """Run a prepared batch on a SQLite DB-API cursor; the rows it created."""
    created: dict[tuple[str, str], int] = {}
    for start in range(0, len(prepared.params), _SQLITE_ROWS_PER_STATEMENT):
        chunk = prepared.params[start : start + _SQLITE_ROWS_PER_STATEMENT]
        cursor.execute(_sqlite_rows_sql(len(chunk)), [value for row in chunk for value in row])
        created.update(((p, e), i) for p, e, i in cursor.fetchall())
    return created


@dataclass(frozen=True, slots=True)
class PreparedInsert:
    """The inbox insert's parameters for a batch, ready for the driver: SQLite's DB-API cursor
    (``insert_sqlite``), or the statement the intake's writer prepared on its PostgreSQL
    connections (``postgresql_inbox_insert_sql``).

    The hot path of webhook intake runs on the driver directly: SQLAlchemy would compile (and the
    driver re-parse) a long multi-row statement per batch, while these statements are the same
    for every batch. Values go through the columns' own SQLAlchemy bind processors, so they
    are stored exactly as the ORM stores them.
    """

    params: list[tuple[Any, ...]]
    keys: list[tuple[str, str]]  # (provider, event_id) per item
    first_of: dict[tuple[str, str], int]

    def columns(self) -> list[list[Any]]:
        """The parameters column by column: the two arrays of the PostgreSQL statement (each
        delivery's fields as JSON bytes, and its body)."""
        return [list(column) for column in zip(*self.params, strict=True)] or [[], []]

    def results(self, created: Mapping[tuple[str, str], int]) -> list[StoredWebhook]:
        """Per item: stored (with its new id) or a duplicate; from the rows RETURNING gave."""
        results: list[StoredWebhook] = []
        for index, key in enumerate(self.keys):
            row_id = created.get(key) if self.first_of[key] == index else None
            results.append(StoredWebhook(duplicate=row_id is None, id=row_id))
        return results


def prepare_inbox_insert(items: Sequence[InboxItem], dialect: Dialect) -> PreparedInsert:
    table = WebhookEvent.__table__  # type: ignore[attr-defined]

    def processor(name: str) -> Callable[[Any], Any]:
        process = table.c[name].type._cached_bind_processor(dialect)
        return process if process is not None else _identity

    at, flag, blob = processor("received_at"), processor("livemode"), processor("payload")
    postgresql = dialect.name == "postgresql"
    now = at(utcnow())  # one receipt time per batch: its members arrived together
    now_text = now.isoformat() if postgresql else ""
    pending = InboxStatus.PENDING.value
    keys: list[tuple[str, str]] = []
    first_of: dict[tuple[str, str], int] = {}
    params: list[tuple[Any, ...]] = []
    for index, item in enumerate(items):
        verified = item.verified
        key = (verified.provider.value, verified.event_id[:255])
        keys.append(key)
        if key in first_of:
            continue
        first_of[key] = index
        received = now if item.received_at is None else at(item.received_at)
        kept = _kept_headers(item.headers)
        if postgresql:
            # Everything but the body as one small JSON object per delivery: two arrays to send
            # for the whole batch instead of twelve (see ``postgresql_inbox_insert_sql``).
            fields = {
                "provider": key[0],
                "event_id": key[1],
                "event_type": verified.event_type[:100],
                "received_at": now_text if item.received_at is None else received.isoformat(),
                "headers": kept,
                "verification": verified.verification.value,
                "livemode": verified.livemode,
                "payment_id": item.payment_id,
            }
            params.append((orjson.dumps(fields), blob(item.raw)))
            continue
        params.append(
            (
                key[0],
                key[1],
                verified.event_type[:100],
                received,
                blob(item.raw),
                orjson.dumps(kept).decode(),  # what the JSON column reads back with json.loads
                verified.verification.value,
                flag(verified.livemode),
                pending,
                0,
                received,
                item.payment_id,
            )
        )
    return PreparedInsert(params, keys, first_of)


def _kept_headers(headers: Mapping[str, str]) -> dict[str, str]:
    kept: dict[str, str] = {}
    for name, value in headers.items():
        lowered = name.lower()
        if lowered in KEPT_HEADERS:
            kept[lowered] = value
    return kept


def _identity(value: Any) -> Any:
    return value


def postgresql_inbox_insert_sql() -> str:
    """PostgreSQL: the whole batch as one statement with two arrays: each delivery's fields as a
    JSON object (orjson; PostgreSQL parses it on its own core) and the raw bodies as bytea.

    One round trip and one short statement whatever the batch size, prepared once per connection
    by the intake's writer, which sends both arrays in binary. ``json_to_record`` in FROM parses
    each object once. (Reading fields from a ``b.fields::jsonb`` in a subquery did not: the
    planner inlined the cast into every reference and PostgreSQL parsed each object ten times,
    100 us a row instead of 57.)
    """
    # Column names, constants and placeholders only; every value is a parameter.
    return (
        f"INSERT INTO webhook_event ({', '.join(_STORED_COLUMNS)}) "  # noqa: S608
        "SELECT r.provider, r.event_id, r.event_type, r.received_at, b.payload, r.headers, "
        f"r.verification, r.livemode, '{InboxStatus.PENDING.value}', 0, r.received_at, "
        "r.payment_id "
        "FROM unnest($1::text[], $2::bytea[]) AS b(fields, payload), "
        "json_to_record(b.fields::json) AS r(provider text, event_id text, event_type text, "
        "received_at timestamptz, headers json, verification text, livemode boolean, "
        "payment_id text) "
        "ON CONFLICT (provider, event_id) DO NOTHING RETURNING provider, event_id, id"
    )


_SQLITE_ROWS_PER_STATEMENT = 256  # 12 parameters a row, far below SQLite's variable limit


@lru_cache(maxsize=_SQLITE_ROWS_PER_STATEMENT)
def _sqlite_rows_sql(rows: int) -> str:
    """SQLite: one multi-row INSERT per batch size (the driver keeps them prepared)."""
    row = "(" + ", ".join("?" for _ in _STORED_COLUMNS) + ")"
    # Column names and placeholders only; every value is a parameter.
    return (
        f"INSERT INTO webhook_event ({', '.join(_STORED_COLUMNS)}) "  # noqa: S608
        f"VALUES {', '.join([row] * rows)} "
        "ON CONFLICT (provider, event_id) DO NOTHING RETURNING provider, event_id, id"
    )


def payment_for_callback_token(*, session: Session, token_hash: str) -> Payment | None:
    return session.exec(
        select(Payment).where(col(Payment.callback_token_hash) == token_hash)
    ).one_or_none()


def record_rejection(
    *,
    session: Session,
    provider: str,
    reason: RejectionReason,
    detail: str,
    source_ip: str | None,
    at: datetime | None = None,
) -> None:
    """Count one refused delivery in its hourly window; audit the first of each window."""
    now = at or utcnow()
    window = now.replace(minute=0, second=0, microsecond=0)
    opened = (
        session.connection()
        .execute(
            _insert_for(session)(WebhookRejection)
            .values(
                provider=provider,
                reason=reason.value,
                window_start=window,
                count=1,
                first_at=now,
                last_at=now,
                last_source_ip=source_ip,
                last_detail=detail[:300],
            )
            .on_conflict_do_nothing(index_elements=["provider", "reason", "window_start"])
            .returning(WebhookRejection.__table__.c.id)  # type: ignore[attr-defined]
        )
        .first()
    )
    if opened is not None:
        record_audit(
            session=session,
            actor=f"provider:{provider}",
            action="webhook.rejected",
            entity_type="webhook_rejection",
            entity_id=f"{provider}:{reason.value}:{window.isoformat()}",
            after={
                "provider": provider,
                "reason": reason.value,
                "detail": detail[:300],
                "source_ip": source_ip,
                "note": "first refusal of this kind this hour; later ones are counted on the row",
            },
            at=now,
        )
        return
    session.execute(
        update(WebhookRejection)
        .where(
            col(WebhookRejection.provider) == provider,
            col(WebhookRejection.reason) == reason.value,
            col(WebhookRejection.window_start) == window,
        )
        .values(
            count=WebhookRejection.count + 1,
            last_at=now,
            last_source_ip=source_ip,
            last_detail=detail[:300],
        )
    )


@dataclass(frozen=True, slots=True)
class InboxHealth:
    backlog: int
    oldest_unprocessed_seconds: float
    dead: int


def inbox_health(*, session: Session, now: datetime | None = None) -> InboxHealth:
    """Backlog (waiting or retrying), the oldest waiting delivery's age, and the dead count."""
    waiting = (InboxStatus.PENDING.value, InboxStatus.PROCESSING.value, InboxStatus.FAILED.value)
    backlog, oldest = session.exec(
        select(func.count(), func.min(WebhookEvent.received_at)).where(
            col(WebhookEvent.status).in_(waiting)
        )
    ).one()
    dead = session.exec(
        select(func.count()).where(col(WebhookEvent.status) == InboxStatus.DEAD.value)
    ).one()
    age = max(0.0, ((now or utcnow()) - oldest).total_seconds()) if oldest else 0.0
    return InboxHealth(backlog=backlog, oldest_unprocessed_seconds=age, dead=dead)


INBOX_PAGE_LIMIT = 200
INBOX_MAX_LIMIT = 1000


@dataclass(frozen=True, slots=True)
class InboxEntry:
    """One inbox row as a person sees it: everything but the raw body and headers."""

    id: int
    provider: str
    event_id: str
    event_type: str
    verification: str
    status: str
    attempts: int
    last_error: str | None
    received_at: datetime
    payment_id: str | None


@guarded(Permission.VIEW_PAYMENTS)
def list_inbox(
    *,
    session: Session,
    actor: Actor,
    provider: str | None = None,
    status: str | None = None,
    limit: int = INBOX_PAGE_LIMIT,
) -> list[InboxEntry]:
    """The newest ``limit`` deliveries (at most ``INBOX_MAX_LIMIT``), optionally filtered."""
    # Named columns only: the raw bodies stay in the database.
    statement = select_columns(
        col(WebhookEvent.id),
        col(WebhookEvent.provider),
        col(WebhookEvent.event_id),
        col(WebhookEvent.event_type),
        col(WebhookEvent.verification),
        col(WebhookEvent.status),
        col(WebhookEvent.attempts),
        col(WebhookEvent.last_error),
        col(WebhookEvent.received_at),
        col(WebhookEvent.payment_id),
    )
    if provider:
        statement = statement.where(col(WebhookEvent.provider) == provider)
    if status:
        statement = statement.where(col(WebhookEvent.status) == status)
    statement = statement.order_by(col(WebhookEvent.id).desc()).limit(
        max(1, min(limit, INBOX_MAX_LIMIT))
    )
    return [
        InboxEntry(
            id=row[0],
            provider=row[1],
            event_id=row[2],
            event_type=row[3],
            verification=row[4],
            status=row[5],
            attempts=row[6],
            last_error=row[7],
            received_at=row[8],
            payment_id=row[9],
        )
        for row in session.execute(statement)
    ]
